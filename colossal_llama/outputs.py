"""Output folders and files published atomically, never replacing another run's work.

    with staged_output("runs/data/pretrain", overwrite=False) as tmp:
        ...write everything into tmp...
    # now runs/data/pretrain holds it; on an error nothing was published

    with staged_output(export_dir, overwrite=True, is_main=rank == 0, barrier=dist.barrier,
                       report_as=export_dir) as tmp:
        ...every rank writes its share into tmp...

    write_json("runs/x/train_config.json", config)     # the whole new file or the old one, never half

Every command that writes a folder (data preparation, mixtures, tokenizer
expansion, embedding initialisation, checkpoints, the HF export) writes into a
staging folder `<out>.tmp-XXXXXXXX` beside the output (same file system, so
the final rename is atomic) and renames it at the end:

- Without `overwrite`, the rename itself is the check: POSIX `rename` onto a
  directory succeeds only when that directory is empty, so when two runs race
  for one output the later one fails at publication (and says so) instead of
  replacing the finished output of the other. A run that finds a non-empty
  output at the start stops before doing any work.
- With `overwrite`, the old output is moved aside, the new one renamed in, and
  the old one deleted.
- A staging folder holds `.owner.lock`, locked (`flock`) by the process that
  writes it. The OS drops the lock when that process dies, however it dies, so
  the next run beside it removes staging folders whose lock it can take: those
  of killed runs, never those of a live one.
- Several processes (the ranks of a training) write one output together: the
  main one creates the staging folder under a name every rank computes from
  `out` alone (no message needed), a barrier lets the others in, a second one
  waits for all of them, and the main one publishes. That name is only ever
  created locked (a private folder is locked first, then renamed to it).
- Staging folders follow the umask like any other output (`mkdtemp` makes
  them 0700).
- Errors of the file system (read-only, full, permission) become one
  `OutputError` naming the path and the reason; the staging folder is deleted
  after the reason is found (deleting it frees the space again).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time

from colossal_llama.errors import OutputError

LOCK_NAME = ".owner.lock"
LOCKLESS_GRACE_S = 3600
"""A staging folder without a lock file (from a run killed between creating it and locking it, or
written by an older version) is removed only once it is this old: its owner may be a breath away
from taking the lock."""
LOW_SPACE = 1 << 20
"""Free bytes under which a failed write is put down to a full file system (a write fills it up to its end)."""


def describe_os_error(exc: OSError, fallback_path: str) -> str:
    """`path: reason` for an OSError, e.g. `runs/x: Read-only file system`."""
    path = exc.filename if exc.filename is not None else fallback_path
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{path}: {reason}"


def _existing(path: str) -> str:
    while path and not os.path.exists(path):
        path = os.path.dirname(path)
    return path or "."


def file_system_failure(exc: BaseException, path: str) -> str | None:
    """Why a write under `path` failed when the file system is to blame (read-only, full, ...), else None.

    A full disk does not always raise an OSError: torch.save reports
    `RuntimeError: ... unexpected pos`, safetensors `SafetensorError: ... (os
    error 28)`. So the exception chain is read first, then the file system itself is asked.
    """
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def take_lock(path: str):
    """An open file holding an exclusive flock on `path`, or None when someone else holds it."""
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def remove_stale_staging(out: str, names: str | None = None) -> list[str]:
    """Delete the staging folders of `out` left by dead runs; returns the deleted paths.

    Args:
        names: a regular expression for the output names whose staging folders to look at
            (default: the name of `out` only), e.g. `step-\\d{8}` for every checkpoint.
    """
    parent = os.path.dirname(os.path.abspath(out)) or "."
    # exactly the names mkdtemp gives (8 characters of its alphabet), so a user's own folder is never taken
    stem = names if names is not None else re.escape(os.path.basename(os.path.abspath(out)))
    staging = re.compile(f"(?:{stem})" + r"\.tmp-[a-z0-9_]{8}")
    removed = []
    try:
        names_here = os.listdir(parent)
    except OSError:
        return removed
    for name in sorted(names_here):
        folder = os.path.join(parent, name)
        if not staging.fullmatch(name) or not os.path.isdir(folder) or os.path.islink(folder):
            continue
        lock_path = os.path.join(folder, LOCK_NAME)
        if not os.path.exists(lock_path):
            with contextlib.suppress(OSError):
                if time.time() - os.stat(folder).st_mtime > LOCKLESS_GRACE_S:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder)
            continue
        with contextlib.suppress(OSError):
            lock = take_lock(lock_path)
            if lock is None:
                continue  # a live run owns it
            try:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            finally:
                lock.close()
    return removed


def check_output_free(out: str, overwrite: bool, flag: str) -> None:
    """Refuse early an output that exists and is not an empty folder (unless overwrite).

    Raises:
        OutputError: `out` is a file, or a non-empty folder without `overwrite`.
    """
    if os.path.exists(out) and not os.path.isdir(out):
        raise OutputError(f"{flag} {out}: exists and is not a folder")
    if not overwrite and os.path.isdir(out) and os.listdir(out):
        raise OutputError(f"{flag} {out}: folder exists and is not empty (add --overwrite to replace it)")


def publish(tmp: str, out: str, overwrite: bool, flag: str = "output") -> None:
    """Rename the finished `tmp` to `out`; see the module docstring for the rules.

    Raises:
        OutputError: without `overwrite`, `out` was filled meanwhile (by another run); or an OS error.
    """
    if not overwrite or not os.path.lexists(out):
        try:
            os.rename(tmp, out)  # onto an empty folder or nothing: atomic; onto a non-empty folder: refused
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise OutputError(f"{flag} {out}: another run wrote it while this one was working; nothing "
                                  "was replaced (add --overwrite to replace it)") from None
            raise OutputError(describe_os_error(exc, out)) from None
        return
    old = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(out)) + ".old-",
                           dir=os.path.dirname(os.path.abspath(out)))
    try:
        os.rename(out, os.path.join(old, "previous"))
        os.rename(tmp, out)
    except OSError as exc:
        if not os.path.lexists(out) and os.path.lexists(os.path.join(old, "previous")):
            os.rename(os.path.join(old, "previous"), out)  # put the old output back
        raise OutputError(describe_os_error(exc, out)) from None
    finally:
        shutil.rmtree(old, ignore_errors=True)


def shared_staging_path(out: str) -> str:
    """The staging folder of `out` when several processes write it: the same name in each of them."""
    out = os.path.abspath(out)
    return f"{out}.tmp-{hashlib.sha256(out.encode()).hexdigest()[:8]}"


def _claim_shared(private: str, out: str, flag: str) -> str:
    """Rename the locked `private` staging folder to the shared name; returns that name."""
    shared = shared_staging_path(out)
    if os.path.isdir(shared) and not os.path.lexists(os.path.join(shared, LOCK_NAME)):
        # born locked (renamed from a locked folder): without a lock file it is from a run killed while publishing
        shutil.rmtree(shared, ignore_errors=True)
    try:
        os.rename(private, shared)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise OutputError(f"{flag} {out}: another run is writing it now ({shared})") from None
        raise
    return shared


def _create_staging(out: str, shared: bool, flag: str):
    """(staging folder, its open lock) beside `out`, after removing the staging folders of dead runs."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    remove_stale_staging(out)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(out)) + ".tmp-", dir=parent)
    lock = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        lock = take_lock(os.path.join(tmp, LOCK_NAME))
        if shared:
            tmp = _claim_shared(tmp, out, flag)
    except BaseException:
        if lock is not None:
            lock.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, lock


def _explained(exc: Exception, path: str, report_as: str | None) -> OutputError | None:
    """The OutputError to raise instead of `exc`, or None to let `exc` through."""
    if isinstance(exc, OutputError):
        return None
    if report_as is None:  # the file that failed, as the OS names it
        return OutputError(describe_os_error(exc, path)) if isinstance(exc, OSError) else None
    reason = file_system_failure(exc, path)
    return OutputError(f"{report_as}: {reason}") if reason is not None else None


@contextlib.contextmanager
def staged_output(out: str, overwrite: bool = False, flag: str = "output", *, is_main: bool = True,
                  barrier=None, report_as: str | None = None):
    """Yield a locked staging folder beside `out`; publish it when the block ends without error.

    On an exception the staging folder is deleted and nothing is published.

    Args:
        overwrite: replace an existing `out` (else refuse one that is not empty).
        flag: how the user named `out`, for messages (`--data_output_dirs`).
        is_main: this process creates, publishes and deletes the staging folder.
        barrier: given when several processes write `out` together (every one calls this with the
            same `out`): called after the staging folder exists and before it is published.
        report_as: name a failure of the file system as `report_as: reason`, and recognise it in
            any exception (torch.save's RuntimeError on a full disk); without it only an OSError
            is one, named by the file that failed.
    Raises:
        OutputError: see the module docstring.
    """
    if is_main:
        check_output_free(out, overwrite, flag)
    tmp = None if is_main else shared_staging_path(out)  # main: set once it created the folder
    lock = None
    try:
        if is_main:
            tmp, lock = _create_staging(out, shared=barrier is not None, flag=flag)
        if barrier is not None:
            barrier()
        yield tmp
        if barrier is not None:
            barrier()  # every rank has written its share
        if is_main:
            os.remove(os.path.join(tmp, LOCK_NAME))  # not part of the output; the lock itself holds until closed
            publish(tmp, out, overwrite, flag)
    except Exception as exc:
        # explained before the staging folder is deleted: deleting it frees the space again
        error = _explained(exc, tmp or os.path.dirname(os.path.abspath(out)), report_as)
        if error is None:
            raise
        raise error from exc
    finally:
        if lock is not None:
            lock.close()
        if is_main and tmp is not None and os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def replace_file(path: str, text: str) -> None:
    """Replace the file `path` with `text`: the whole new file or the old one, never half of it.

    Written to a temporary file in the same folder, then `os.replace`d over
    `path` (atomic on POSIX).

    Raises:
        OutputError: `path: reason` when the file system refuses (read-only, full, permission).
    """
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; the file follows the umask like any other
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(f"{path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.remove(tmp)


def write_json(path: str, data, **dump_options) -> None:
    """`replace_file` with `data` as JSON and a newline; `dump_options` go to `json.dumps` (indent ...)."""
    replace_file(path, json.dumps(data, **dump_options) + "\n")
