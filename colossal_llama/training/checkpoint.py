"""Checkpoint folders that are either complete or absent, and keeping the last N.

    with atomic_checkpoint(save_dir, step, is_main=rank == 0, barrier=dist.barrier) as folder:
        booster.save_model(model, os.path.join(folder, "model"), shard=True)
        ...

Everything is written into `save_dir/.step-00000123.partial` (the same name
on every rank) and renamed to `save_dir/step-00000123` by the main process
once all ranks are done. A save that fails deletes its partial folder; one
killed leaves it, and `list_checkpoints` ignores it and the next save of that
step replaces it: the previous checkpoint stays the latest loadable one.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager

from colossal_llama.training.savedir import removed_on_failure

NAME = re.compile(r"^step-(\d{8})$")


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
    """Yield the partial folder to write into; on success it becomes `step-XXXXXXXX`, on an error it is
    deleted (a full or read-only save_dir raises OutputError `save_dir: reason`)."""
    final = os.path.join(save_dir, checkpoint_name(step))
    partial = os.path.join(save_dir, f".{checkpoint_name(step)}.partial")
    with removed_on_failure(partial, is_main, report_as=save_dir):
        if is_main:
            shutil.rmtree(partial, ignore_errors=True)  # left by a crash
            os.makedirs(partial)
        if barrier:
            barrier()
        yield partial
        if barrier:
            barrier()
        if is_main:
            if os.path.exists(final):
                shutil.rmtree(final)
            os.rename(partial, final)


def prune_checkpoints(save_dir: str, keep: int) -> list[str]:
    """Delete all but the newest `keep` checkpoints (keep <= 0: keep all); returns what was deleted."""
    found = list_checkpoints(save_dir)
    doomed = [path for _, path in found[:-keep]] if keep > 0 else []
    for path in doomed:
        shutil.rmtree(path)
    return doomed
