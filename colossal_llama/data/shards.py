"""Writing packed rows as a `datasets.load_from_disk` folder, streaming; reading one back (`read_rows`).

`Dataset.save_to_disk` needs the whole table first; a bucket can be larger
than memory, so rows are written here batch by batch with pyarrow's IPC
stream writer, in the layout `save_to_disk` produces (data-XXXXX-of-YYYYY.arrow
files + dataset_info.json + state.json, features in the schema metadata).
Files rotate at `max_shard_bytes`, like `save_to_disk`'s 500 MB shards.

Output is byte-identical for identical rows: fixed batch size, no
timestamps, a fingerprint derived from the content's identity.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil

import numpy as np
import pyarrow as pa

from colossal_llama.data.segments import SEGMENT_CATEGORIES

BATCH_ROWS = 1024
MAX_SHARD_BYTES = 500 << 20


# The features of a packed row (data-spec section 4) in `datasets`' own JSON
# form. Written by hand so that preparing data does not import `datasets`
# (0.75 s); a test checks it equals `datasets.Features(...)` of the pinned version.
_INT_LIST = {"feature": {"dtype": "int32", "_type": "Value"}, "_type": "List"}
ROW_FEATURES = {
    "input_ids": _INT_LIST,
    "labels": _INT_LIST,
    "seq_lengths": _INT_LIST,
    "category": {"dtype": "string", "_type": "Value"},
}
# rows that may mix categories (SFT packed across categories) add one category per segment
MIXED_ROW_FEATURES = {**ROW_FEATURES, SEGMENT_CATEGORIES: {"feature": {"dtype": "string", "_type": "Value"},
                                                           "_type": "List"}}


def row_schema(segment_categories: bool = False) -> pa.Schema:
    """Arrow schema of a packed row, with the features in its metadata as `datasets` writes them.

    Args:
        segment_categories: add the `segment_categories` column (list of strings).
    """
    ints = pa.list_(pa.int32())
    features = MIXED_ROW_FEATURES if segment_categories else ROW_FEATURES
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    fields = [("input_ids", ints), ("labels", ints), ("seq_lengths", ints), ("category", pa.string())]
    if segment_categories:
        fields.append((SEGMENT_CATEGORIES, pa.list_(pa.string())))
    return pa.schema(fields, metadata=metadata)


def _int32_array(values: np.ndarray) -> pa.Array:
    # from_buffers instead of pa.array: pa.array probes for pandas on first
    # use, and importing pandas costs a quarter of a second
    values = np.ascontiguousarray(values, dtype=np.int32)
    return pa.Array.from_buffers(pa.int32(), len(values), [None, pa.py_buffer(values)])


def _string_array(strings: list[str]) -> pa.Array:
    encoded = [x.encode("utf-8") for x in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), data])


def _list_array(values: pa.Array, lengths: np.ndarray) -> pa.Array:
    """Rows of `lengths[i]` consecutive entries of the flat `values`."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(_int32_array(offsets), values)


def part_fingerprint(identity: str, bucket: int) -> str:
    """The datasets fingerprint of bucket `bucket`'s part, from what names the whole output (`identity`)."""
    return hashlib.sha256(f"{identity}/{bucket}".encode()).hexdigest()[:16]


class RowWriter:
    """Appends packed rows to one dataset folder; `close()` finishes it.

    Rows are given as flat arrays per batch: `ids`/`labels` concatenated over
    rows, `row_lengths` (tokens per row), `seq_lengths` flat with
    `row_segments` (segments per row), and the category of every row; with
    `segment_categories=True` also the category of every segment, flat.

    The folder is written as `.NAME.<pid>-<token>` beside it and renamed to
    `folder` by `close()`, in one step: a task that Ray retries while an
    earlier attempt still runs never writes into a folder another attempt
    writes or has finished. If `folder` is already there (another attempt
    finished first, with the same bytes), this attempt's copy is deleted.
    `abort()` deletes it after a failure.
    """

    def __init__(self, folder: str, fingerprint: str, max_shard_bytes: int = MAX_SHARD_BYTES,
                 segment_categories: bool = False):
        self.folder = folder
        self.fingerprint = fingerprint
        self.max_shard_bytes = max_shard_bytes
        self.segment_categories = segment_categories
        self.schema = row_schema(segment_categories)
        self.files: list[str] = []
        self.rows = 0
        self._sink = None
        self._writer = None
        parent, name = os.path.split(os.path.normpath(folder))
        self._work = os.path.join(parent, f".{name}.{os.getpid()}-{secrets.token_hex(6)}")
        os.makedirs(self._work)

    def abort(self) -> None:
        """Delete this attempt's folder (after a failure; the final folder is not touched)."""
        try:
            self._close_file()
        finally:
            shutil.rmtree(self._work, ignore_errors=True)

    def _open(self) -> None:
        path = os.path.join(self._work, f"part{len(self.files):05d}.arrow.partial")
        self.files.append(path)
        self._sink = pa.OSFile(path, "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None

    def write(self, ids, labels, row_lengths, seq_lengths, row_segments, categories: list[str],
              segment_categories: list[str] | None = None) -> None:
        if self._writer is None:
            self._open()
        columns = [
            _list_array(_int32_array(ids), row_lengths),
            _list_array(_int32_array(labels), row_lengths),
            _list_array(_int32_array(seq_lengths), row_segments),
            _string_array(categories),
        ]
        if self.segment_categories:
            columns.append(_list_array(_string_array(segment_categories), row_segments))
        batch = pa.record_batch(columns, schema=self.schema)
        self._writer.write_batch(batch)
        self.rows += len(categories)
        if self._sink.tell() >= self.max_shard_bytes:
            self._close_file()

    def close(self) -> list[str]:
        """Finish the folder; returns the data file names."""
        if not self.files:  # an empty dataset still needs one (empty) file
            self._open()
        self._close_file()
        names = [f"data-{i:05d}-of-{len(self.files):05d}.arrow" for i in range(len(self.files))]
        for path, name in zip(self.files, names):
            os.replace(path, os.path.join(self._work, name))
        state = {
            "_data_files": [{"filename": n} for n in names],
            "_fingerprint": self.fingerprint,
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        with open(os.path.join(self._work, "state.json"), "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2, sort_keys=True)
        features = MIXED_ROW_FEATURES if self.segment_categories else ROW_FEATURES
        info = {"citation": "", "description": "", "features": features, "homepage": "", "license": ""}
        with open(os.path.join(self._work, "dataset_info.json"), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
        try:
            os.rename(self._work, self.folder)  # replaces no folder but an empty one
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            shutil.rmtree(self._work, ignore_errors=True)  # another attempt's folder, the same bytes
        return names


def read_rows(folder: str) -> pa.Table:
    """The rows of one part folder (written here or by `save_to_disk`), memory-mapped, not read into memory."""
    with open(os.path.join(folder, "state.json"), encoding="utf-8") as f:
        files = [entry["filename"] for entry in json.load(f)["_data_files"]]
    tables = [pa.ipc.open_stream(pa.memory_map(os.path.join(folder, name))).read_all() for name in files]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]
