"""The one JSONL reader of every command: plain or gzip files, bounded lines, `FILE:LINE: reason` errors.

    for number, obj in read_jsonl("probes.jsonl"):        # (line number, dict) of every non-blank line
        ...
    for number, text in read_lines("prompts.txt"):       # the same for text files, one text per line
        ...

Every problem with a line is reported as `DataError("FILE:LINE: reason")`
(`line_error`), line numbers counting from 1; a problem with the whole file
as `FILE: reason`. The reasons are those of `decode_json_line`, whose
`BadRecord` codes the data path counts in its manifest (`invalid_utf8`,
`invalid_json`, `too_deeply_nested`, `not_an_object`) plus `too_large`.

Blank lines (nothing but ASCII whitespace) are skipped by every reader, and
counted in line numbers, so a number always matches what an editor shows.
A UTF-8 byte-order mark at the start of a file is dropped.

Memory is bounded whatever the input: a line over `max_line_bytes` is read
through in blocks and only its first `OVERSIZED_PREFIX_BYTES` kept (an
`OversizedLine`). The data path uses the same pieces (`open_input`,
`bounded_lines`, `decode_json_line`) on byte ranges of files, in parallel
workers (`colossal_llama.data.records.iter_chunk_lines`); it catches the
`BadRecord`s itself, to count or reject records one by one.

This module imports only the standard library and `colossal_llama.errors`.
"""

from __future__ import annotations

import gzip
import json
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from colossal_llama.errors import BadRecord, DataError

DEFAULT_MAX_LINE_BYTES = 16 << 20
"""The longest line read (the default of the data commands' `--max_record_bytes`)."""
OVERSIZED_PREFIX_BYTES = 1000
"""How much of a `too_large` line is kept (for rejected.jsonl)."""


def line_error(path: str, line: int, reason: str) -> DataError:
    """The error for a bad line, in the one format of every command: `FILE:LINE: reason`."""
    return DataError(f"{path}:{line}: {reason}")


@dataclass(frozen=True)
class OversizedLine:
    """A line longer than the limit, read through but not kept: its first bytes and its size."""

    prefix: bytes
    size: int
    limit: int

    def bad_record(self, setting: str | None = "--max_record_bytes") -> BadRecord:
        """The `too_large` rejection of this line; `setting` names the flag that raises the limit."""
        hint = f" ({setting})" if setting else ""
        return BadRecord("too_large", f"record is {self.size:,} bytes, over the limit of {self.limit:,}{hint}")


@contextmanager
def open_input(path: str, start: int = 0) -> Iterator[BinaryIO]:
    """`path` opened for binary reading at byte `start`; a `.gz` file is decompressed as a stream.

    Raises:
        DataError: the file cannot be opened, or a gzip file turns out corrupt while it is read.
    """
    try:
        f = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb", buffering=1 << 20)
    except OSError as exc:
        raise DataError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    with f:
        if not path.endswith(".gz"):
            f.seek(start)
            yield f
            return
        # a gzip stream cannot be entered in the middle: its callers read it whole, as one chunk
        assert start == 0, "a gzip file is read from its start"
        try:
            yield f
        except (OSError, EOFError, zlib.error) as exc:  # raised by reads inside the with block
            raise DataError(f"{path}: not a readable gzip file: {exc}") from exc


def _read_through(f, start: bytes, max_bytes: int, left: float) -> tuple[OversizedLine, float]:
    """The rest of the line that begins with `start` (over `max_bytes`), read in blocks of 1 MiB and
    dropped but for its first bytes; returns it and the byte budget `left` after it."""
    size, prefix, block = len(start), start[:OVERSIZED_PREFIX_BYTES], start
    while left > 0 and not block.endswith(b"\n"):
        block = f.readline(1 << 20)
        if not block:
            break
        left -= len(block)
        text = block[:-1] if block.endswith(b"\n") else block
        size += len(text)
        if len(prefix) < OVERSIZED_PREFIX_BYTES:
            prefix += text[: OVERSIZED_PREFIX_BYTES - len(prefix)]
    return OversizedLine(prefix, size, max_bytes), left


def bounded_lines(f: BinaryIO, max_bytes: int, length: int | None = None) -> Iterator[bytes | OversizedLine]:
    """The lines (without their newline) of the next `length` bytes of `f`, or up to its end.

    A line over `max_bytes` comes as an `OversizedLine`, so memory stays
    bounded by `max_bytes` whatever the line's size. This is the data path's
    inner loop: keep it lean.
    """
    left = length if length is not None else float("inf")
    while left > 0:
        line = f.readline(max_bytes + 1)
        if not line:
            return
        left -= len(line)
        if line.endswith(b"\n"):
            yield line[:-1]
        elif len(line) <= max_bytes:  # the last line of the file, without a newline
            yield line
        else:
            oversized, left = _read_through(f, line, max_bytes, left)
            yield oversized


def decode_text_line(line: bytes, first_in_file: bool = False) -> str:
    """bytes of one line -> its text; a byte-order mark opening a file is dropped.

    Raises:
        BadRecord: invalid UTF-8 (`invalid_utf8`).
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord("invalid_utf8", f"invalid UTF-8 at byte {exc.start} of the line") from None
    if first_in_file and text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 byte-order mark, as some Windows editors write
    return text


_raw_decode = json.JSONDecoder().raw_decode


def decode_json_line(line: bytes, first_in_file: bool = False) -> dict:
    """bytes of one line -> the JSON object it holds.

    Raises:
        BadRecord: invalid UTF-8, invalid JSON, nesting too deep to decode, or not an object.
    """
    text = decode_text_line(line, first_in_file)
    if text.startswith("{"):  # the usual line: decoded by the scanner alone (json.loads adds 2 regex matches)
        try:
            obj, end = _raw_decode(text)
        except (ValueError, RecursionError):
            pass  # json.loads below raises the error with its message
        else:
            if end == len(text):
                return obj
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRecord("invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:  # the decoder recurses once per level: `[` x 100,000 is valid-looking JSON
        raise BadRecord("too_deeply_nested", "JSON nested too deeply to decode") from None
    if not isinstance(obj, dict):
        raise BadRecord("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _decoded(path: str, max_line_bytes: int, decode) -> Iterator[tuple[int, object]]:
    """(line number, decode(line, first_in_file)) of every non-blank line of `path`."""
    with open_input(path) as f:
        for number, raw in enumerate(bounded_lines(f, max_line_bytes), start=1):
            try:
                if isinstance(raw, OversizedLine):
                    raise raw.bad_record(setting=None)
                if not raw.strip():
                    continue
                yield number, decode(raw, number == 1)
            except BadRecord as bad:
                raise line_error(path, number, bad.message) from None


def read_jsonl(path: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, dict]]:
    """(line number, object) of every non-blank line of a `.jsonl` or `.jsonl.gz` file.

    Raises:
        DataError: `FILE:LINE: reason` for a line that is not one JSON object
            (or is over `max_line_bytes`); `FILE: reason` for a file that
            cannot be read.
    """
    return _decoded(path, max_line_bytes, decode_json_line)


def read_lines(path: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(line number, text) of every non-blank line of a text file (plain or `.gz`), without "\\r\\n".

    Raises:
        DataError: `FILE:LINE: reason` for a line that is not UTF-8 (or is
            over `max_line_bytes`); `FILE: reason` for a file that cannot be read.
    """
    def decode(raw: bytes, first: bool) -> str:
        return decode_text_line(raw, first).rstrip("\r")  # a Windows line end

    return _decoded(path, max_line_bytes, decode)
