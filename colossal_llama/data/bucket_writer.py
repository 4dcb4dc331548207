"""The write step: bucket k -> `arrow/part-XXXXX`, one task per bucket (the plan is in buckets.py).

    parts = write_buckets(engine, plan, os.path.join(tmp, "arrow"), identity)

A task reads its bucket's runs of pieces saved by the plan tasks (across
categories it packs them here: the bucket is that plan's unit), puts the rows
in the bucket's seeded order, gathers their tokens from the spill batch by
batch and writes them with `shards.RowWriter` under the part name the plan
fixed. It returns the part's manifest entry. Rewriting a part gives the same
bytes, and each attempt writes a folder of its own that it renames to the
part's name at the end (the first attempt to finish wins; see `RowWriter`),
so a task that Ray retries, even one overlapping an earlier attempt still
running, is harmless. A task holds its bucket's
pieces (42 bytes each, and 8 per row) and one batch of rows' tokens.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass

import numpy as np

from colossal_llama.data.buckets import DROP_ALL_MASKED, BucketPlan, BucketTask, Pieces, PlanSettings
from colossal_llama.data.packing import Rows, best_fit_decreasing
from colossal_llama.data.rng import derived_rng
from colossal_llama.data.segments import row_category
from colossal_llama.data.shards import BATCH_ROWS, RowWriter, part_fingerprint
from colossal_llama.data.spill import SpillReader, load_arrays, shared_reader, task_reader


@dataclass(frozen=True)
class WriteSettings:
    """What every write task needs besides its bucket (picklable)."""

    plan: PlanSettings
    arrow_dir: str
    identity: str
    """A string naming the content (tokenizer, inputs, config); the parts' fingerprints derive from it."""


def bucket_rows(task: BucketTask, s: PlanSettings) -> tuple[Pieces, Rows]:
    """The bucket's pieces and its rows over them, in the order of the plan (category by category; across:
    as packed)."""
    loaded: dict[int, list[np.ndarray]] = {}
    names = ("pieces",) if s.across else ("pieces", "row_offsets")
    parts, sizes = [], []
    for group, category, start, end in task.runs.tolist():
        if group not in loaded:
            loaded[group] = load_arrays(s.plan_dir, f"g{group:06d}", *names)
        fields = loaded[group]
        if not s.across:  # start, end count rows: their pieces are consecutive
            row_offsets = fields[1][start : end + 1]
            sizes.append(np.diff(row_offsets))
            start, end = int(row_offsets[0]), int(row_offsets[-1])
        parts.append(Pieces.from_records(fields[0][start:end], category))
    pieces = Pieces.concatenate(parts)
    if s.across:
        ties = derived_rng(s.seed, "pack bucket", task.bucket).permutation(len(pieces))
        return pieces, best_fit_decreasing(pieces.length, s.max_length, ties)
    sizes = np.concatenate(sizes)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return pieces, Rows(np.arange(len(pieces), dtype=np.int64), offsets)


def _count_rows(stats: dict, names, p: Pieces, index: np.ndarray, segments: np.ndarray, row_tokens: np.ndarray,
                trained: np.ndarray) -> None:
    """Add rows to the per-category counters: segments, tokens ... of each category's segments,
    and `rows` / `row_tokens` (the row and all its tokens) to every category it holds.

    Args:
        index: the rows' pieces, row after row; segments: pieces per row;
        row_tokens: tokens per row; trained: whether each token of the rows is trained on (label != -100).
    """
    count = len(names)
    lengths, category = p.length[index], p.category[index]
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    # summed as bytes into int64: no int64 copy of the mask (0.15 s on the 50x corpus)
    label_tokens = np.add.reduceat(trained.view(np.uint8), starts, dtype=np.int64)
    per_category = lambda values: np.bincount(category, values, count).astype(np.int64)  # noqa: E731
    sums = {"segments": np.bincount(category, minlength=count), "tokens": per_category(lengths),
            "label_tokens": per_category(label_tokens), "documents": per_category(p.first[index]),
            "chunks": per_category(p.split[index]), "dropped_" + DROP_ALL_MASKED: per_category(p.dropped[index])}
    held = np.unique(np.repeat(np.arange(len(segments)), segments) * count + category)  # (row, category) pairs
    held_row, held_category = held // count, held % count
    sums["rows"] = np.bincount(held_category, minlength=count)
    sums["row_tokens"] = np.bincount(held_category, row_tokens[held_row], count).astype(np.int64)
    for c in np.unique(category).tolist():
        s = stats.setdefault(names[c], Counter())
        for key, values in sums.items():
            s[key] += int(values[c])


def _gather_rows(pieces: Pieces, rows: Rows, start: int, end: int, names, reader: SpillReader, stats: dict) -> tuple:
    """The arguments of `RowWriter.write` for rows start .. end; their counts are added to `stats`."""
    index = rows.members[rows.offsets[start] : rows.offsets[end]]
    segments = np.diff(rows.offsets[start : end + 1])
    where = list(zip(pieces.chunk[index].tolist(), pieces.offset[index].tolist(), pieces.length[index].tolist()))
    ids, labels, trained = reader.gather(where)
    lengths = pieces.length[index]
    first = np.concatenate(([0], np.cumsum(segments)[:-1]))
    row_tokens = np.add.reduceat(lengths, first)
    _count_rows(stats, names, pieces, index, segments, row_tokens, trained)
    segment_names = [names[c] for c in pieces.category[index].tolist()]
    categories = [row_category(segment_names[a : a + n]) for a, n in zip(first.tolist(), segments.tolist())]
    return ids, labels, row_tokens, lengths, segments, categories, segment_names


def write_bucket(task: BucketTask, settings: WriteSettings) -> dict:
    """The write task: bucket `task.bucket` = its rows in a seeded order, to `arrow_dir/<task.part>`.

    Returns:
        the part's entry: part path (relative), bucket index, files, rows,
        per-category stats (counted per segment; `rows`: rows holding the category).
    """
    s = settings.plan
    pieces, rows = bucket_rows(task, s)
    rows = rows.take(derived_rng(s.seed, "bucket", task.bucket).permutation(len(rows)))
    writer = RowWriter(os.path.join(settings.arrow_dir, task.part), part_fingerprint(settings.identity, task.bucket),
                       segment_categories=s.across)
    stats: dict = {}
    try:
        with task_reader(s.spill_dir) as reader:
            for start in range(0, len(rows), BATCH_ROWS):
                writer.write(*_gather_rows(pieces, rows, start, min(start + BATCH_ROWS, len(rows)), s.names,
                                           reader, stats))
                reader.release()
        files = writer.close()
    except BaseException:
        writer.abort()
        raise
    return {"part": f"arrow/{task.part}", "bucket": task.bucket, "files": files, "rows": writer.rows,
            "categories": stats}


def write_buckets(engine, plan: BucketPlan, arrow_dir: str, identity: str, on_part=None) -> list[dict]:
    """Run the write tasks on `engine`; returns the parts' entries in bucket order.

    Args:
        on_part: called with each part's entry as it is written (progress).
    """
    os.makedirs(arrow_dir, exist_ok=True)
    parts = []
    with shared_reader(plan.settings.spill_dir):
        for _, part in engine.start(write_bucket, plan.buckets, WriteSettings(plan.settings, arrow_dir, identity)):
            parts.append(part)
            if on_part:
                on_part(part)
    for name in os.listdir(arrow_dir):  # the folders of attempts whose worker died mid-write (Ray reran them)
        if name.startswith(".part-"):
            shutil.rmtree(os.path.join(arrow_dir, name), ignore_errors=True)
    return sorted(parts, key=lambda part: part["bucket"])
