"""One training per `--save_dir`, and a save_dir that cannot be written as one line, not a traceback.

    with exclusive_save_dir(config.save_dir, is_main=rank == 0):    # ConfigError if another run holds it
        ...train...
    with removed_on_failure(partial, is_main, report_as=save_dir):  # OutputError "save_dir: reason" if full/read-only
        ...write partial...

The lock is an `flock` on `<save_dir>/.lock`, taken by the main process
before anything is written and held for the whole run; the OS drops it when
that process ends, however it ends, so a killed run never blocks the next.
Only the main process takes it (all ranks of one job write into the same
folder); its answer is broadcast so that every rank stops together.

A full disk does not always raise an OSError: torch.save reports
`RuntimeError: ... unexpected pos`, safetensors `SafetensorError: ... (os
error 28)`. So a failed write is explained by the exception chain first and
then by the file system itself (read-only flag, no space left), checked
before the partial output is removed (which frees the space again).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket

from colossal_llama.errors import ConfigError, OutputError
from colossal_llama.outputs import describe_os_error, take_lock

LOCK_NAME = ".lock"
LOW_SPACE = 1 << 20
"""Free bytes under which a failed write is put down to a full file system (a write fills it up to its end)."""


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


def _existing(path: str) -> str:
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    return path or "."


def file_system_failure(exc: BaseException, path: str) -> str | None:
    """Why a write under `path` failed when the file system is to blame (read-only, full, ...), else None."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen.strerror or os.strerror(seen.errno)
        code = re.search(r"os error (\d+)\)", str(seen))  # safetensors' Rust I/O errors
        if code:
            return os.strerror(int(code.group(1)))
        seen = seen.__cause__ or seen.__context__
    try:
        fs = os.statvfs(_existing(path))
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS)
    if fs.f_bavail * fs.f_frsize < LOW_SPACE:
        return os.strerror(errno.ENOSPC)
    return None


@contextlib.contextmanager
def removed_on_failure(partial: str, is_main: bool, report_as: str):
    """Delete the `partial` output if the block fails; a failure of the file system becomes an
    OutputError `report_as: reason` (report_as: the folder the user chose; the partial one is gone)."""
    try:
        yield
    except BaseException as exc:
        explain = isinstance(exc, Exception) and not isinstance(exc, OutputError)
        reason = file_system_failure(exc, partial) if explain else None  # before the space is freed again
        if is_main:
            shutil.rmtree(partial, ignore_errors=True)
        if reason is not None:
            raise OutputError(f"{report_as}: {reason}") from exc
        raise
