"""Processes that die with the process that started them, so a killed run leaves no trainer behind (Linux).

    python -m colossal_llama.lifeline PARENT_PID COMMAND...   # COMMAND ends when PARENT_PID does

The stage runner starts its launcher through this. A launcher is a chain in
which no link notices the one above it dying: `colossalai run` -> its
per-node process -> (a shell exec'ing) `torchrun` -> `train.py` workers,
which torchrun starts in sessions of their own. Left alone, `kill -9` of the
runner leaves the workers training and holding the rendezvous port, and the
rerun fails on that port. Two pieces close the chain:

- the lifeline runs COMMAND in a process group of its own and ends that group
  (SIGTERM, SIGKILL after a grace period) when PARENT_PID dies
  (`PR_SET_PDEATHSIG`), when it is itself stopped (SIGTERM, SIGINT, SIGHUP),
  or when COMMAND exits (taking stragglers with it). torchrun, given SIGTERM,
  stops its workers itself.
- `die_with_launcher`, which train.py calls first: a worker torchrun started
  dies with that torchrun however it ends (`kill -9 torchrun`).

On other systems `die_with_parent` does nothing: the lifeline still ends the
group when it is stopped or when COMMAND exits, not when its parent is killed.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # <linux/prctl.h>
GRACE_SECONDS = 10.0  # torchrun gives its workers up to 30 s after SIGTERM; a killed run needs no checkpoint


def _prctl(option: int, value: int) -> bool:
    """prctl(option, value) on Linux; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value}) failed")
    return True


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent exits (Linux; elsewhere a no-op).

    If the parent is already gone (this process now belongs to init), `sig` is sent at once.
    """
    if _prctl(PR_SET_PDEATHSIG, int(sig)) and os.getppid() == 1:  # the parent died before the prctl
        os.kill(os.getpid(), sig)


def die_with_launcher() -> None:
    """In a worker torchrun started (in a session of its own), die with that torchrun, however it ends."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        die_with_parent()


class _Stopped(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame) -> None:
    raise _Stopped(signum)


def _reap() -> None:
    """Collect exited children: the launcher's orphans come to the lifeline, their subreaper."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def end_group(pgid: int, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM to every process of group `pgid`, SIGKILL to those left after `grace` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            time.sleep(0.05)
            _reap()
            os.killpg(pgid, 0)  # ProcessLookupError once the group is empty (zombies count: hence _reap)
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run(parent: int, command: list[str]) -> int:
    """Run `command` in its own process group until it exits or `parent` dies; returns its exit status."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _stop)
    child = None
    try:
        die_with_parent(signal.SIGTERM)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
        if os.getppid() != parent:  # it died before the prctl
            return 128 + signal.SIGTERM
        # stdin from /dev/null: a launcher that reads the terminal (`colossalai run` does) would stop outside
        # the terminal's foreground group
        child = subprocess.Popen(command, start_new_session=True, stdin=subprocess.DEVNULL)
        code = child.wait()
        return 128 - code if code < 0 else code
    except _Stopped as stopped:
        return 128 + stopped.signum
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if child is not None:
            end_group(child.pid)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m colossal_llama.lifeline", description=__doc__.split("\n\n")[0])
    p.add_argument("parent", type=int, help="the process id whose death ends COMMAND")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments, as they are")
    args = p.parse_args(argv)
    if not args.command:
        p.error("no COMMAND given")
    return run(args.parent, args.command)


if __name__ == "__main__":
    raise SystemExit(main())
