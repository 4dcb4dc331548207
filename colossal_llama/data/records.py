"""The data path's input: finding files, cutting them into chunks, validating records.

Input files are `*.jsonl` or `*.jsonl.gz`. A plain file is cut into chunks of
at most `chunk_bytes` at line boundaries so workers can take them in parallel
with bounded memory; a gzip file cannot be entered in the middle and is one
chunk, read as a stream. Chunk boundaries never change the output: results
are concatenated in (file, offset) order. Lines are read and decoded by the
shared reader, `colossal_llama.jsonl`.

Validation follows data-spec section 5: every problem is a `BadRecord` with a
reason code (used for counts in the manifest) and a message for the user; the
caller adds the file and line. Hostile records are bad input like any other,
so that one of them never stops an `--on_error skip` run: a line over
`--max_record_bytes` (`too_large`, never held in memory whole), nesting
deeper than Python's JSON decoder recurses (`too_deeply_nested`), and lone
surrogates such as `"\\ud800"` in a string that is used (`invalid_unicode`:
valid JSON, but no tokenizer accepts it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator

from colossal_llama.errors import BadRecord, DataError
from colossal_llama.jsonl import OversizedLine, bounded_lines, open_input

INPUT_SUFFIXES = (".jsonl", ".jsonl.gz")


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


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_chunk_lines(chunk: InputChunk, max_line_bytes: int,
                     batch_lines: int = 4096) -> Iterator[list[bytes | OversizedLine]]:
    """Yield the chunk's lines (without their newline) in batches; a line over
    `max_line_bytes` comes as an `OversizedLine`.

    Raises:
        DataError: a gzip file is corrupt.
    """
    length = None if chunk.compressed else chunk.end - chunk.start
    with open_input(chunk.path, chunk.start) as f:
        yield from _batches(bounded_lines(f, max_line_bytes, length), batch_lines)


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


def is_valid_text(value: str) -> bool:
    """False for a string holding a lone surrogate (JSON's `"\\ud800"`), which no tokenizer accepts."""
    if value.isascii():  # O(1) in CPython, and true of most text
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_str(obj: dict, key: str, allow_empty: bool) -> str:
    """obj[key] as a string.

    Raises:
        BadRecord: the field is missing, not a string, holds a lone
            surrogate, or is empty when it may not be.
    """
    if key not in obj:
        raise BadRecord("missing_field", f'missing field "{key}"')
    value = obj[key]
    if not isinstance(value, str):
        raise BadRecord("wrong_type", f'field "{key}" must be a string, got {type(value).__name__}')
    if not allow_empty and value == "":
        raise BadRecord(f"empty_{key}", f'field "{key}" is empty')
    if not is_valid_text(value):
        raise BadRecord("invalid_unicode", f'field "{key}" holds a lone surrogate (such as "\\ud800"), '
                        "which is not text")
    return value


def parse_pretrain_record(obj: dict) -> tuple[str, str, str]:
    """A pretraining record -> (source, target, category) (data-spec section 1).

    Raises:
        BadRecord: a field is missing, not a string, or `target`/`category` is empty.
    """
    source, target, category = obj.get("source"), obj.get("target"), obj.get("category")
    if (type(source) is str and type(target) is str and type(category) is str and target and category
            and is_valid_text(source) and is_valid_text(target) and is_valid_text(category)):
        return source, target, category  # the usual record, checked at once; any other gets its exact error below
    source = require_str(obj, "source", allow_empty=True)
    target = require_str(obj, "target", allow_empty=False)
    category = require_str(obj, "category", allow_empty=False)
    return source, target, category
