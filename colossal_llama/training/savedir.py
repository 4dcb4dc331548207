"""One training per `--save_dir`, and a save_dir that cannot be written as one line, not a traceback.

    with exclusive_save_dir(config.save_dir, is_main=rank == 0):    # ConfigError if another run holds it
        ...train...

The lock is an `flock` on `<save_dir>/.lock`, taken by the main process
before anything is written and held for the whole run; the OS drops it when
that process ends, however it ends, so a killed run never blocks the next.
Only the main process takes it (all ranks of one job write into the same
folder); its answer is broadcast so that every rank stops together.

Checkpoints and the export are written through `outputs.staged_output`, which
turns a full or read-only file system into `OutputError "save_dir: reason"`.
"""

from __future__ import annotations

import contextlib
import os
import socket

from colossal_llama.errors import ConfigError, OutputError
from colossal_llama.outputs import describe_os_error, take_lock

LOCK_NAME = ".lock"


def lock_save_dir(save_dir: str):
    """The open lock file of `save_dir`, held exclusively; close it to release.

    Raises:
        ConfigError: another process holds it.
        OutputError: save_dir cannot be created or written (read-only, full, permission).
    """
    path = os.path.join(save_dir, LOCK_NAME)
    try:
        os.makedirs(save_dir, exist_ok=True)
        f = take_lock(path)
        if f is None:
            with open(path, encoding="utf-8") as held:
                holder = held.read().strip()
    except OSError as exc:
        raise OutputError(describe_os_error(exc, save_dir)) from None
    if f is None:
        raise ConfigError(f"--save_dir {save_dir}: another training ({holder or 'starting'}) is using it; wait for "
                          "it to end or choose another --save_dir") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        f.flush()
    except OSError as exc:
        f.close()
        raise OutputError(describe_os_error(exc, path)) from None
    return f


def _agree(refusal: Exception | None) -> None:
    """Raise the main process's refusal on every rank."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        box = [refusal]
        dist.broadcast_object_list(box, src=0)
        refusal = box[0]
    if refusal is not None:
        raise refusal


@contextlib.contextmanager
def exclusive_save_dir(save_dir: str, is_main: bool = True):
    """Hold `save_dir` for this run alone while the block runs (see the module docstring).

    Raises:
        ConfigError: another training holds it.
        OutputError: it cannot be written.
    """
    lock, refusal = None, None
    if is_main:
        try:
            lock = lock_save_dir(save_dir)
        except (ConfigError, OutputError) as exc:
            refusal = exc
    try:
        _agree(refusal)
        yield
    finally:
        if lock is not None:
            lock.close()
