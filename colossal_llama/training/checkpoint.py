"""Checkpoint folders that are either complete or absent, and keeping the last N.

    with atomic_checkpoint(save_dir, step, is_main=rank == 0, barrier=dist.barrier) as folder:
        booster.save_model(model, os.path.join(folder, "model"), shard=True)
        ...

Everything is written into a staging folder `save_dir/step-00000123.tmp-XXXXXXXX`
(`outputs.staged_output`: the same name on every rank, created and locked by
the main process) and renamed to `save_dir/step-00000123` by the main process
once all ranks are done. A save that fails deletes its staging folder; one
killed leaves it, `list_checkpoints` ignores it, and the next save (of any
step) deletes it once its lock is free: the previous checkpoint stays the
latest loadable one.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager

from colossal_llama.outputs import remove_stale_staging, staged_output

NAME_PATTERN = r"step-(\d{8})"
NAME = re.compile(f"^{NAME_PATTERN}$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(save_dir: str) -> list[tuple[int, str]]:
    """(step, folder) of every complete checkpoint, oldest first."""
    if not os.path.isdir(save_dir):
        return []
    found = [(int(m.group(1)), os.path.join(save_dir, name))
             for name in os.listdir(save_dir) if (m := NAME.match(name)) and os.path.isdir(os.path.join(save_dir, name))]
    return sorted(found)


def latest_checkpoint(save_dir: str) -> str | None:
    found = list_checkpoints(save_dir)
    return found[-1][1] if found else None


@contextmanager
def atomic_checkpoint(save_dir: str, step: int, is_main: bool = True, barrier=None):
    """Yield the staging folder to write into; on success it becomes `step-XXXXXXXX` (replacing one
    of that step), on an error it is deleted (a full or read-only save_dir raises OutputError
    `save_dir: reason`).

    Args:
        barrier: given when all ranks write the checkpoint together (see `outputs.staged_output`).
    """
    final = os.path.join(save_dir, checkpoint_name(step))
    if is_main:  # saves killed at other steps leave staging folders no later save has the name of
        remove_stale_staging(final, names=NAME_PATTERN)
    with staged_output(final, overwrite=True, flag="--save_dir", is_main=is_main, barrier=barrier,
                       report_as=save_dir) as folder:
        yield folder


def prune_checkpoints(save_dir: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` checkpoints (keep <= 0: keep all); returns what was deleted."""
    found = list_checkpoints(save_dir)
    doomed = [path for _, path in found[:-keep]] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path)
    return doomed
