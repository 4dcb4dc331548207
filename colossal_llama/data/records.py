"""Reading jsonl input: finding files, cutting them into chunks, validating records.

Input files are `*.jsonl` or `*.jsonl.gz`. A plain file is cut into chunks of
at most `chunk_bytes` at line boundaries so workers can take them in parallel
with bounded memory; a gzip file cannot be entered in the middle and is one
chunk, read as a stream. Chunk boundaries never change the output: results
are concatenated in (file, offset) order.

Validation follows data-spec section 5: every problem is a `BadRecord` with a
reason code (used for counts in the manifest) and a message for the user; the
caller adds the file and line.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import dataclass
from typing import Iterator

INPUT_SUFFIXES = (".jsonl", ".jsonl.gz")


class DataError(ValueError):
    """Bad input a user can fix; the message names the file (and line) and the problem."""


class BadRecord(Exception):
    """One record is bad input. `reason` is a short code counted in the manifest."""

    def __init__(self, reason: str, message: str):
        super().__init__(reason, message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class InputChunk:
    """A byte range [start, end) of one input file; `end` None means to the end (gzip)."""

    index: int
    path: str
    start: int
    end: int | None

    @property
    def compressed(self) -> bool:
        return self.path.endswith(".gz")


def _files_in(folder: str, recursive: bool) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(INPUT_SUFFIXES))
        if not recursive:
            break
    return found


def discover_input_files(folders: list[str], recursive: bool = False) -> list[str]:
    """All input files of `folders`, folders in the given order, files sorted by path.

    Raises:
        DataError: a folder does not exist, is not a folder, holds no input
            files, or a file is reached twice.
    """
    paths: list[str] = []
    seen: dict[str, str] = {}
    for folder in folders:
        if not os.path.exists(folder):
            raise DataError(f"--data_input_dirs: folder {folder} does not exist")
        if not os.path.isdir(folder):
            raise DataError(f"--data_input_dirs: {folder} is not a folder (give the folder that holds the jsonl files)")
        files = _files_in(folder, recursive)
        if not files:
            hint = "" if recursive else " (add --recursive to search its sub-folders)"
            raise DataError(f"--data_input_dirs: folder {folder} holds no *.jsonl or *.jsonl.gz files{hint}")
        for path in files:
            real = os.path.realpath(path)
            if real in seen:
                raise DataError(f"{path}: the same file as {seen[real]}; each input file may be given once")
            seen[real] = path
            paths.append(path)
    return paths


def _next_line_start(f, pos: int, size: int) -> int:
    """The offset just after the first newline at or after `pos` (or `size`)."""
    f.seek(pos)
    while pos < size:
        block = f.read(1 << 16)
        if not block:
            break
        nl = block.find(b"\n")
        if nl >= 0:
            return pos + nl + 1
        pos += len(block)
    return size


def plan_chunks(paths: list[str], chunk_bytes: int) -> list[InputChunk]:
    """Cut every file into line-aligned chunks of about `chunk_bytes`."""
    chunks: list[InputChunk] = []
    for path in paths:
        size = os.path.getsize(path)
        if path.endswith(".gz"):
            chunks.append(InputChunk(len(chunks), path, 0, None))
            continue
        start = 0
        with open(path, "rb") as f:
            while start < size:
                end = _next_line_start(f, start + chunk_bytes, size) if start + chunk_bytes < size else size
                chunks.append(InputChunk(len(chunks), path, start, end))
                start = end
        if size == 0:
            chunks.append(InputChunk(len(chunks), path, 0, 0))
    return chunks


def iter_chunk_lines(chunk: InputChunk, batch_lines: int = 4096) -> Iterator[list[bytes]]:
    """Yield the chunk's lines (without their newline) in batches.

    Raises:
        DataError: a gzip file is corrupt.
    """
    if not chunk.compressed:
        with open(chunk.path, "rb") as f:
            f.seek(chunk.start)
            data = f.read(chunk.end - chunk.start)
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for i in range(0, len(lines), batch_lines):
            yield lines[i : i + batch_lines]
        return
    try:
        with gzip.open(chunk.path, "rb") as f:
            batch = []
            for line in f:
                batch.append(line[:-1] if line.endswith(b"\n") else line)
                if len(batch) == batch_lines:
                    yield batch
                    batch = []
            if batch:
                yield batch
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{chunk.path}: not a readable gzip file: {exc}") from exc


def count_lines_before(path: str, offset: int) -> int:
    """Number of newlines in the first `offset` bytes of a plain file (for error messages)."""
    count = 0
    with open(path, "rb") as f:
        while offset > 0:
            block = f.read(min(offset, 1 << 20))
            if not block:
                break
            count += block.count(b"\n")
            offset -= len(block)
    return count


def decode_json_line(line: bytes, first_in_file: bool = False) -> dict:
    """bytes of one line -> the JSON object it holds.

    Raises:
        BadRecord: invalid UTF-8, invalid JSON, or not an object.
    """
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord("invalid_utf8", f"invalid UTF-8 at byte {exc.start} of the line") from None
    if first_in_file and text.startswith("\ufeff"):
        text = text[1:]  # a UTF-8 byte-order mark, as some Windows editors write
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRecord("invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BadRecord("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    return obj


def require_str(obj: dict, key: str, allow_empty: bool) -> str:
    """obj[key] as a string.

    Raises:
        BadRecord: the field is missing, not a string, or empty when it may not be.
    """
    if key not in obj:
        raise BadRecord("missing_field", f'missing field "{key}"')
    value = obj[key]
    if not isinstance(value, str):
        raise BadRecord("wrong_type", f'field "{key}" must be a string, got {type(value).__name__}')
    if not allow_empty and value == "":
        raise BadRecord(f"empty_{key}", f'field "{key}" is empty')
    return value


def parse_pretrain_record(obj: dict) -> tuple[str, str, str]:
    """A pretraining record -> (source, target, category) (data-spec section 1).

    Raises:
        BadRecord: a field is missing, not a string, or `target`/`category` is empty.
    """
    source = require_str(obj, "source", allow_empty=True)
    target = require_str(obj, "target", allow_empty=False)
    category = require_str(obj, "category", allow_empty=False)
    return source, target, category
