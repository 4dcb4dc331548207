"""The reduce step: per category pack and bin; then write buckets (data-spec 3, 4).

Per category (independent of every other category):

1. split documents longer than `max_length` into pieces; drop pieces whose
   labels are all -100 (they cannot reach the loss) and count their tokens;
2. pack the pieces into rows with best-fit decreasing (seeded tie-break);
3. shuffle the rows (seeded) and cut them into `N` bins of nearly equal token
   count: row i goes to bin floor(midpoint_i * N / total), where midpoint_i
   is the token position of the row's middle. A category with fewer than N
   rows spreads them over the buckets instead of filling the first ones.

Bucket k = bin k of every category, in a seeded order. Empty buckets are not
written; part numbers stay contiguous and the manifest records the bucket
index of each part.

All randomness comes from `derived_rng(seed, purpose, ...)`, so one seed fixes
the whole output.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass

import numpy as np

from colossal_llama.data.mapstep import ChunkResult, spill_path
from colossal_llama.data.packing import best_fit_decreasing, split_documents
from colossal_llama.data.shards import BATCH_ROWS, RowWriter
from colossal_llama.data.tokenize import IGNORE_INDEX

DROP_ALL_MASKED = "all_masked_chunk"


def derived_rng(seed: int, *purpose) -> np.random.Generator:
    """A generator for one purpose, independent of Python's hash seed."""
    digest = hashlib.sha256(json.dumps([seed, *purpose]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class SpillReader:
    """Memory-mapped access to the spill files of the map step."""

    def __init__(self, spill_dir: str, results: list[ChunkResult]):
        self._maps = {}
        for r in results:
            for kind in ("ids", "labels"):
                path = spill_path(spill_dir, r.index, kind)
                empty = os.path.getsize(path) == 0
                # a plain ndarray view of the map: slicing a np.memmap costs ~20x more
                mapped = np.zeros(0, np.int32) if empty else np.memmap(path, np.int32, "r").view(np.ndarray)
                self._maps[kind, r.index] = mapped

    def ids(self, chunk: int, start: int, n: int) -> np.ndarray:
        return self._maps["ids", chunk][start : start + n]

    def labels(self, chunk: int, start: int, n: int) -> np.ndarray:
        return self._maps["labels", chunk][start : start + n]


@dataclass
class DocTable:
    """Every accepted document in input order: where its tokens are and its category."""

    chunk: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    category: np.ndarray
    names: list[str]
    """Category names, sorted; `category` indexes into it."""


def load_doc_table(spill_dir: str, results: list[ChunkResult]) -> DocTable:
    names = sorted({c for r in results for c in r.categories})
    index = {n: i for i, n in enumerate(names)}
    parts = []
    for r in results:
        docs = np.fromfile(spill_path(spill_dir, r.index, "docs"), dtype=np.int64).reshape(-1, 2)
        local_to_global = np.array([index[c] for c in r.categories] or [0], dtype=np.int64)
        lengths = docs[:, 1]
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(lengths) else lengths
        chunk = np.full(len(docs), r.index, dtype=np.int64)
        parts.append((chunk, offsets, lengths, local_to_global[docs[:, 0]]))
    cols = [np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(4)]
    return DocTable(*cols, names=names)


@dataclass
class CategoryPlan:
    """The packed rows of one category; arrays describe kept pieces."""

    name: str
    chunk: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    first: np.ndarray
    """True on the first kept piece of each document (where it is counted)."""
    split: np.ndarray
    """True on pieces of documents longer than max_length."""
    dropped: np.ndarray
    """Tokens of the piece's document dropped as all-masked, on its first kept piece."""
    rows: list[list[int]]
    row_bin: np.ndarray


def assign_bins(row_tokens: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin of every row: contiguous runs of nearly equal token count (exact integer math)."""
    tokens = np.asarray(row_tokens, dtype=np.int64)
    total = int(tokens.sum())
    if total == 0:
        return np.zeros(len(tokens), dtype=np.int64)
    midpoint2 = 2 * np.cumsum(tokens) - tokens  # twice the token position of each row's middle
    return np.minimum(midpoint2 * num_bins // (2 * total), num_bins - 1)


def plan_category(name: str, docs: np.ndarray, table: DocTable, reader: SpillReader, max_length: int,
                  num_bins: int, seed: int, pack: bool = True) -> CategoryPlan:
    """Split, drop, pack and bin the documents `docs` (indices into `table`) of one category.

    With `pack=False` every piece gets a row of its own (SFT `--no-pack`).
    """
    lengths = table.length[docs]
    piece_doc, piece_start, piece_len = split_documents(lengths, max_length)
    chunk = table.chunk[docs][piece_doc]
    offset = table.offset[docs][piece_doc] + piece_start
    split = lengths[piece_doc] > max_length
    keep = np.ones(len(piece_doc), dtype=bool)
    for p in np.flatnonzero(split).tolist():
        keep[p] = bool((reader.labels(int(chunk[p]), int(offset[p]), int(piece_len[p])) != IGNORE_INDEX).any())
    dropped_per_doc = np.bincount(piece_doc[~keep], weights=piece_len[~keep], minlength=len(docs)).astype(np.int64)
    piece_doc, chunk, offset, piece_len, split = (a[keep] for a in (piece_doc, chunk, offset, piece_len, split))
    first = np.ones(len(piece_doc), dtype=bool)
    first[1:] = piece_doc[1:] != piece_doc[:-1]
    dropped = np.where(first, dropped_per_doc[piece_doc], 0)
    if pack:
        rows = best_fit_decreasing(piece_len, max_length, derived_rng(seed, "pack", name).permutation(len(piece_len)))
    else:
        rows = [[p] for p in range(len(piece_len))]
    order = derived_rng(seed, "rows", name).permutation(len(rows))
    rows = [rows[i] for i in order]
    row_tokens = np.array([int(piece_len[r].sum()) for r in rows], dtype=np.int64)
    return CategoryPlan(name, chunk, offset, piece_len, first, split, dropped, rows, assign_bins(row_tokens, num_bins))


def _write_rows(writer: RowWriter, entries, plans, reader: SpillReader, stats: dict) -> None:
    ids, labels, row_len, seq, segs, cats = [], [], [], [], [], []
    for c, r in entries:
        plan = plans[c]
        pieces = plan.rows[r]
        for p in pieces:
            ids.append(reader.ids(int(plan.chunk[p]), int(plan.offset[p]), int(plan.length[p])))
            labels.append(reader.labels(int(plan.chunk[p]), int(plan.offset[p]), int(plan.length[p])))
        row_labels = np.concatenate(labels[-len(pieces):])
        lengths = plan.length[pieces]
        s = stats.setdefault(plan.name, Counter())
        s["rows"] += 1
        s["segments"] += len(pieces)
        s["tokens"] += int(lengths.sum())
        s["label_tokens"] += int((row_labels != IGNORE_INDEX).sum())
        s["documents"] += int(plan.first[pieces].sum())
        s["chunks"] += int(plan.split[pieces].sum())
        s["dropped_" + DROP_ALL_MASKED] += int(plan.dropped[pieces].sum())
        row_len.append(int(lengths.sum()))
        seq.append(lengths)
        segs.append(len(pieces))
        cats.append(plan.name)
    writer.write(np.concatenate(ids), np.concatenate(labels), np.array(row_len), np.concatenate(seq),
                 np.array(segs), cats)


def write_buckets(plans: list[CategoryPlan], reader: SpillReader, arrow_dir: str, num_bins: int, seed: int,
                  identity: str, on_rows=None) -> list[dict]:
    """Write bucket k = bin k of every category to `arrow_dir/part-XXXXX`.

    Args:
        identity: a string naming the content (tokenizer, inputs, config);
            the parts' fingerprints derive from it.
        on_rows: called with the number of rows written (progress).
    Returns:
        one entry per written part: part path (relative), bucket index,
        per-category stats.
    """
    parts = []
    for k in range(num_bins):
        entries = [(c, int(r)) for c, plan in enumerate(plans) for r in np.flatnonzero(plan.row_bin == k)]
        if not entries:
            continue
        order = derived_rng(seed, "bucket", k).permutation(len(entries))
        entries = [entries[i] for i in order]
        name = f"part-{len(parts):05d}"
        fingerprint = hashlib.sha256(f"{identity}/{k}".encode()).hexdigest()[:16]
        writer = RowWriter(os.path.join(arrow_dir, name), fingerprint)
        stats: dict = {}
        for start in range(0, len(entries), BATCH_ROWS):
            batch = entries[start : start + BATCH_ROWS]
            _write_rows(writer, batch, plans, reader, stats)
            if on_rows:
                on_rows(len(batch))
        files = writer.close()
        parts.append({"part": f"arrow/{name}", "bucket": k, "files": files, "categories": stats})
    return parts
