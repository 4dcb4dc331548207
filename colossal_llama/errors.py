"""Every error type of the project, in one leaf module (it imports nothing of ours).

Commands turn the user errors (the `ValueError`s below) into one line
`error: <message>` and exit 2; the message names the file (and line, where
there is one) and the reason, e.g. `data/a.jsonl:12: invalid JSON (column 3)`.
"""

from __future__ import annotations

import sys
from typing import Callable


class ConfigError(ValueError):
    """A setting a user gave is invalid; the message says which and why."""


class DataError(ValueError):
    """Bad input a user can fix; the message names the file (and line) and the problem."""


class TokenizerError(ValueError):
    """The tokenizer folder is missing, unreadable, or unfit for this use."""


class OutputError(ValueError):
    """An output folder cannot be written or published; the message names the path and the reason."""


class PluginError(ValueError):
    """A plugin that cannot run here, or a setting it does not take."""


class RecipeError(ValueError):
    """The recipe is invalid; the message names the file and the key."""


class InferenceError(ValueError):
    """A model folder, prompt or setting that inference cannot use; the message names it."""


class UnsafeFileError(ValueError):
    """A file that could run code when loaded (or is not in a format that can be loaded safely)."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


class BadRecord(Exception):
    """One record is bad input. `reason` is a short code counted in the manifest."""

    def __init__(self, reason: str, message: str):
        super().__init__(reason, message)
        self.reason = reason
        self.message = message


class StageFailed(RuntimeError):
    """train.py (or a step before it) failed; rerunning resumes where it stopped."""


class WorkerDied(RuntimeError):
    """A worker process ended abruptly (killed, most often for lack of memory)."""


# what a command reports as `error: <message>` with exit status 2 (anything else is a bug: a traceback)
USER_ERRORS = (ConfigError, DataError, TokenizerError, OutputError, PluginError, RecipeError, InferenceError,
               UnsafeFileError)


def exit_status(command: Callable[[], int], also: tuple[type[BaseException], ...] = ()) -> int:
    """`command()`'s exit status; a user error (or one of `also`) printed as one line `error: <message>` on
    stderr, with status 2."""
    try:
        return command()
    except USER_ERRORS + also as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
