"""Output folders published atomically, never replacing another run's work.

    with staged_output("runs/data/pretrain", overwrite=False) as tmp:
        ...write everything into tmp...
    # now runs/data/pretrain holds it; on an error nothing was published

Every command that writes a folder (data preparation, tokenizer expansion,
embedding initialisation, the stage runner's mixtures) writes into a staging
folder `<out>.tmp-XXXXXXXX` beside the output (same file system, so the final
rename is atomic) and renames it at the end:

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
- Staging folders follow the umask like any other output (`mkdtemp` makes
  them 0700).
- Errors of the file system (read-only, full, permission) become one
  `OutputError` naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
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


def describe_os_error(exc: OSError, fallback_path: str) -> str:
    """`path: reason` for an OSError, e.g. `runs/x: Read-only file system`."""
    path = exc.filename if exc.filename is not None else fallback_path
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{path}: {reason}"


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


def remove_stale_staging(out: str) -> list[str]:
    """Delete the staging folders of `out` left by dead runs; returns the deleted paths."""
    parent = os.path.dirname(os.path.abspath(out)) or "."
    # exactly the names mkdtemp gives (8 characters of its alphabet), so a user's own folder is never taken
    staging = re.compile(re.escape(os.path.basename(os.path.abspath(out))) + r"\.tmp-[a-z0-9_]{8}")
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return removed
    for name in sorted(names):
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


@contextlib.contextmanager
def staged_output(out: str, overwrite: bool = False, flag: str = "output"):
    """Yield a locked staging folder beside `out`; publish it when the block ends without error.

    On an exception the staging folder is deleted and nothing is published.
    An OSError inside the block (read-only or full file system) becomes an
    OutputError naming the path.
    """
    check_output_free(out, overwrite, flag)
    parent = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(parent, exist_ok=True)
        remove_stale_staging(out)
        tmp = tempfile.mkdtemp(prefix=os.path.basename(os.path.abspath(out)) + ".tmp-", dir=parent)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, parent)) from None
    lock = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        lock = take_lock(os.path.join(tmp, LOCK_NAME))
        yield tmp
        os.remove(os.path.join(tmp, LOCK_NAME))  # not part of the output; the lock itself holds until closed
        publish(tmp, out, overwrite, flag)
    except OSError as exc:
        raise OutputError(describe_os_error(exc, tmp)) from None
    finally:
        if lock is not None:
            lock.close()
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
