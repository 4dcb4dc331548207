"""The map step: one input chunk -> tokenized documents spilled to disk.

Each chunk is independent (it needs only the chunk, the encoder and the
record kind), so chunks run as tasks of an engine (engine.py: this machine's
processes, or a Ray cluster); the reduce step (packing and binning per
category) only reads the spill files.

Spill files of chunk i, under the spill folder:

    c000i.ids     int32, the documents' token ids back to back
    c000i.trained uint8, 1 where the label is the token itself, 0 where it is -100
                  (a label is always one or the other: a quarter of the bytes of int32
                  labels, 37% less spill to write and to read back)
    c000i.docs    int64 pairs (local category index, length) per document
    c000i.rejected.jsonl   rejected records (only with --on_error skip); a
                           `too_large` record is kept as its first 1,000 bytes
                           with `record_truncated: true` and `record_bytes`

Memory per worker is bounded by one chunk of input plus one batch of tokens.
Workers need only numpy and `tokenizers` or `sentencepiece`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from colossal_llama.data.records import InputChunk, is_valid_text, iter_chunk_lines
from colossal_llama.data.tokenize import IGNORE_INDEX
from colossal_llama.errors import BadRecord
from colossal_llama.jsonl import OversizedLine, decode_json_line


class ChunkBadRecord(Exception):
    """A bad record met in `--on_error raise` mode; the parent adds the absolute line."""

    def __init__(self, path: str, chunk_start: int, local_line: int, reason: str, message: str):
        super().__init__(path, chunk_start, local_line, reason, message)
        self.path, self.chunk_start, self.local_line = path, chunk_start, local_line
        self.reason, self.message = reason, message


@dataclass
class ChunkResult:
    index: int
    lines: int = 0
    blank_lines: int = 0
    records: int = 0
    tokens: int = 0
    categories: list[str] = field(default_factory=list)
    rejected: Counter = field(default_factory=Counter)
    """(category or "<unknown>", reason) -> rejected records."""
    dropped: Counter = field(default_factory=Counter)
    """(category, reason) -> valid records left out (SFT: too long even with one turn)."""
    stats: Counter = field(default_factory=Counter)


@dataclass(frozen=True)
class MapSettings:
    """Everything a worker needs besides the chunk (picklable)."""

    kind: object
    """A record kind: `parse(obj) -> (payload, category)` and
    `tokenize(payloads, encoder, info) -> TokenizedBatch`."""
    info: object
    spill_dir: str
    on_error: str
    max_record_bytes: int
    """Longer lines are rejected (`too_large`) without being read into memory."""


def spill_path(spill_dir: str, index: int, suffix: str) -> str:
    return os.path.join(spill_dir, f"c{index:06d}.{suffix}")


_ENCODERS: dict = {}  # per process: EncoderSpec -> encoder, built on first use


def preload_encoder(spec, encoder) -> None:
    """Give this process an encoder for `spec` (forked workers inherit it)."""
    _ENCODERS[spec] = encoder


def release_encoder(spec) -> None:
    """Drop this process's encoder for `spec` (a finished run must not keep it alive)."""
    _ENCODERS.pop(spec, None)


class _ChunkSpill:
    """Open spill files of one chunk, appended to batch by batch.

    Ray may retry a chunk while an earlier attempt still runs (on a node it
    lost contact with), so an attempt writes names of its own
    (`.c000001.ids.<pid>-<token>`) and `close()` renames them to the final
    names only when the chunk succeeded: an identical later rename leaves a
    reader of the earlier files on their inode (no truncated file, no SIGBUS
    under a map). A failed attempt removes its files.
    """

    def __init__(self, spill_dir: str, index: int):
        self.spill_dir, self.index = spill_dir, index
        self._attempt = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._written: list[str] = []  # suffixes with a file under this attempt's name
        self.files: dict = {}
        self.rejected = None
        try:
            for s in ("ids", "trained", "docs"):
                self.files[s] = self._open(s, "wb")
        except BaseException:
            self.close(failed=True)
            raise

    def _temporary(self, suffix: str) -> str:
        return os.path.join(self.spill_dir, f".c{self.index:06d}.{suffix}.{self._attempt}")

    def _open(self, suffix: str, mode: str, **kwargs):
        f = open(self._temporary(suffix), mode, **kwargs)
        self._written.append(suffix)
        return f

    def reject(self, path: str, line: int, bad: BadRecord, raw: bytes | OversizedLine) -> None:
        """Write a rejected.jsonl entry; an oversized line only as the prefix that was kept."""
        if self.rejected is None:
            self.rejected = self._open("rejected.jsonl", "w", encoding="utf-8")
        entry = {"file": path, "line": line, "reason": bad.reason, "message": bad.message}
        if isinstance(raw, OversizedLine):
            entry.update(record_truncated=True, record_bytes=raw.size)
            raw = raw.prefix
        entry["record"] = raw.decode("utf-8", errors="replace")
        self.rejected.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self, failed: bool) -> None:
        """Close the files, then rename them to their final names, or remove them if the chunk failed."""
        try:
            for f in [*self.files.values(), self.rejected]:
                if f is not None:
                    f.close()
        except BaseException:
            failed = True
            raise
        finally:
            written, self._written = self._written, []
            for suffix in written:
                if failed:
                    with contextlib.suppress(OSError):
                        os.remove(self._temporary(suffix))
                else:
                    os.replace(self._temporary(suffix), spill_path(self.spill_dir, self.index, suffix))


def _parse_lines(lines, first_line: int, chunk: InputChunk, kind, result: ChunkResult, on_bad):
    """Validate a batch of lines -> (payloads, categories, line numbers) of good records."""
    payloads, categories, line_numbers = [], [], []
    for offset, raw in enumerate(lines):
        line = first_line + offset
        if isinstance(raw, OversizedLine):
            on_bad(line, raw.bad_record(), raw, None)
            continue
        if not raw or raw.isspace():  # blank: nothing but ASCII whitespace (as `not raw.strip()`, without a copy)
            result.blank_lines += 1
            continue
        try:
            obj = decode_json_line(raw, first_in_file=(chunk.start == 0 and line == 1))
        except BadRecord as bad:
            on_bad(line, bad, raw, None)
            continue
        try:
            payload, category = kind.parse(obj)
        except BadRecord as bad:
            hint = obj.get("category")
            on_bad(line, bad, raw, hint if isinstance(hint, str) and hint and is_valid_text(hint) else None)
            continue
        payloads.append(payload)
        categories.append(category)
        line_numbers.append((line, raw))
    return payloads, categories, line_numbers


def map_chunk(chunk: InputChunk, settings: MapSettings) -> ChunkResult:
    """Tokenize one chunk into its spill files (run inside a worker)."""
    spec = settings.info.encoder
    if spec not in _ENCODERS:
        _ENCODERS[spec] = spec.build()
    encoder = _ENCODERS[spec]
    result = ChunkResult(chunk.index)
    category_index: dict[str, int] = {}
    spill = _ChunkSpill(settings.spill_dir, chunk.index)

    def reject(bads: list) -> None:
        """A batch's bad records in line order, whichever step found them: the first one raised, or each
        counted and written to rejected.jsonl (so neither depends on where batches or chunks begin)."""
        bads.sort(key=lambda b: b[0])
        for line, bad, raw, category in bads:
            if settings.on_error == "raise":
                raise ChunkBadRecord(chunk.path, chunk.start, line, bad.reason, bad.message)
            result.rejected[category or "<unknown>", bad.reason] += 1
            spill.reject(chunk.path, line, bad, raw)

    try:
        for lines in iter_chunk_lines(chunk, settings.max_record_bytes):
            first_line = result.lines + 1
            result.lines += len(lines)
            bads: list = []
            payloads, categories, where = _parse_lines(lines, first_line, chunk, settings.kind, result,
                                                       lambda *bad: bads.append(bad))
            if not payloads:
                reject(bads)
                continue
            batch = settings.kind.tokenize(payloads, encoder, settings.info)
            bads += [(where[doc][0], bad, where[doc][1], categories[doc]) for doc, bad in batch.rejected.items()]
            reject(bads)
            for doc, reason in batch.dropped.items():
                result.dropped[categories[doc], reason] += 1
            result.stats.update(batch.stats)
            cats = [category_index.setdefault(categories[i], len(category_index)) for i in batch.kept]
            docs = np.stack([np.asarray(cats, dtype=np.int64), batch.lengths.astype(np.int64)], axis=1)
            ids = np.ascontiguousarray(batch.ids, dtype=np.int32)
            trained = batch.labels == ids  # token ids are never -100: the same as `labels != -100` ...
            # ... while a label is its token or -100, which the spill's one byte per token needs
            if not (batch.labels[~trained] == IGNORE_INDEX).all():
                raise RuntimeError("a record kind produced a label that is neither its token nor -100")
            spill.files["ids"].write(ids)  # numpy arrays are written through the buffer protocol, without a copy
            spill.files["trained"].write(trained.view(np.uint8))
            spill.files["docs"].write(docs)
            result.records += len(batch.kept)
            result.tokens += int(batch.lengths.sum())
    except BaseException:
        spill.close(failed=True)
        raise
    spill.close(failed=False)
    result.categories = list(category_index)
    return result


def run_map(chunks: list[InputChunk], settings: MapSettings, engine, on_done=None, meanwhile=None) -> list[ChunkResult]:
    """Run `map_chunk` over all chunks on `engine` (engine.py); results in chunk order.

    Args:
        on_done: called with each finished chunk's result (progress reporting).
        meanwhile: work for the parent while the workers tokenize (it would
            otherwise wait idle); run after the map when the engine works in this process.
    Raises:
        ChunkBadRecord: a bad record in `raise` mode (chunks not started yet are cancelled).
        WorkerDied: a worker process died (and, under Ray, its retries too).
    """
    tasks = engine.start(map_chunk, chunks, settings)
    if meanwhile and not engine.in_process:
        meanwhile()
    done = []
    for _, result in tasks:
        done.append(result)
        if on_done:
            on_done(result)
    if meanwhile and engine.in_process:
        meanwhile()
    return sorted(done, key=lambda r: r.index)
