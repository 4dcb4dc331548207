"""Mixtures: the rows of several prepared folders, each repeated by its weight, written as buckets.

    manifest = build_mixture("runs/zh/stages/02-b/data",
                             [MixPart("wiki_zh", "runs/zh/data/wiki_zh-1f2e", 1.0),
                              MixPart("chat", "runs/zh/data/chat-9a0b", 0.5)], buckets=4, seed=42)

A weight is a repeat factor: a source of `count` rows gives round(count *
weight) rows, every row floor(weight) times and then a seeded sample without
repeats for the rest (`chosen_rows`: 2 takes every row twice, 0.5 a seeded
half). Each source's chosen rows are cut into `buckets` consecutive slices and
bucket k holds slice k of every source, so every bucket has the mixture's
proportions (the sampler shuffles inside a bucket):

    story, weight 2, rows s0 s1 s2:  s0 s1 s2 s0 s1 s2   buckets 2:  [s0 s1 s2 | c1]  [s0 s1 s2 | c4]
    chat, weight 0.4, rows c0..c4:   c1 c4

The output is laid out like prepared data, so training and the tools read it
the same way: `arrow/part-XXXXX` written by `shards.RowWriter` (empty buckets
are not written), `manifest.json` in the data manifest's schema (kind
`mixture`; per bucket and per category: rows, segments, tokens, label tokens,
fill; `sources`: what each source gave), and the `tokenizer/` folder of the
first source that has one (SFT data carries its chat template there). The
manifest's `mixture_key` names sources, weights, buckets and seed: a folder
that holds the same mixture is kept, any other is replaced.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from colossal_llama import __version__
from colossal_llama.data.manifest import fill_ratio, json_digest, parts_of, read_manifest, write_manifest
from colossal_llama.data.rng import derived_rng
from colossal_llama.data.segments import SEGMENT_CATEGORIES
from colossal_llama.data.shards import BATCH_ROWS, RowWriter, part_fingerprint, read_rows
from colossal_llama.errors import DataError
from colossal_llama.outputs import staged_output

FORMAT = 2
"""Part of the mixture key: mixtures written by an earlier format (datasets' save_to_disk, another
sampling) are written again rather than reused."""
COUNTS = ("rows", "segments", "tokens", "label_tokens")


@dataclass
class MixPart:
    """One source of a mixture."""

    label: str
    """Its name in the manifest and the printed table (also seeds its sample)."""
    folder: str
    """A prepared folder: `manifest.json` and `arrow/part-XXXXX`."""
    factor: float
    """Repeat factor (the weight): 2 takes every row twice, 0.5 a seeded half of them."""


def chosen_rows(count: int, factor: float, seed: int, label: str) -> np.ndarray:
    """Row indices for a repeat factor: round(count * factor) of them, every row floor(factor)
    times, then a sorted, seeded sample without repeats for the rest."""
    whole = int(factor)
    picks = [np.arange(count, dtype=np.int64)] * whole
    extra = round(count * factor) - whole * count
    if extra > 0:
        sample = derived_rng(seed, "mixture", label).choice(count, size=extra, replace=False)
        picks.append(np.sort(sample).astype(np.int64))
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


def _segment_categories(rows: pa.Table, categories: list[str], segments: np.ndarray) -> list[str]:
    """The category of every segment of `rows`, flat (a row of one category repeats it)."""
    if SEGMENT_CATEGORIES in rows.column_names:
        return rows.column(SEGMENT_CATEGORIES).combine_chunks().flatten().to_pylist()
    return [c for c, n in zip(categories, segments.tolist()) for _ in range(n)]


def _flat(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """(values of all rows, flat; entries per row) of a list column."""
    array = column.combine_chunks()
    return array.flatten().to_numpy(), pc.list_value_length(array).to_numpy()


def _count(stats: dict[str, Counter], names: list[str], lengths: np.ndarray, labels: np.ndarray,
           segments: np.ndarray) -> None:
    """Add a batch's rows to the per-category counters (per segment; `rows`: the rows holding the category)."""
    index = {name: i for i, name in enumerate(sorted(set(names)))}
    code = np.fromiter((index[n] for n in names), dtype=np.int64, count=len(names))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    trained = np.add.reduceat((labels != -100).astype(np.int64), starts) if len(starts) else starts
    row = np.repeat(np.arange(len(segments)), segments)
    row_tokens = np.add.reduceat(lengths, np.concatenate(([0], np.cumsum(segments)[:-1])))
    held = np.unique(row * len(index) + code)  # (row, category) pairs
    sums = {"segments": np.bincount(code, minlength=len(index)),
            "tokens": np.bincount(code, lengths, len(index)), "label_tokens": np.bincount(code, trained, len(index)),
            "rows": np.bincount(held % len(index), minlength=len(index)),
            "row_tokens": np.bincount(held % len(index), row_tokens[held // len(index)], len(index))}
    for name, i in index.items():
        stats.setdefault(name, Counter()).update({key: int(values[i]) for key, values in sums.items()})


def _write_rows(writer: RowWriter, table: pa.Table, picked: np.ndarray, stats: dict) -> None:
    """Append the rows `picked` of `table` to `writer`, batch by batch (the table stays memory-mapped)."""
    for start in range(0, len(picked), BATCH_ROWS):
        rows = table.take(pa.array(picked[start : start + BATCH_ROWS]))
        ids, row_lengths = _flat(rows.column("input_ids"))
        labels, _ = _flat(rows.column("labels"))
        seq_lengths, segments = _flat(rows.column("seq_lengths"))
        categories = rows.column("category").to_pylist()
        names = _segment_categories(rows, categories, segments)
        writer.write(ids, labels, row_lengths, seq_lengths, segments, categories,
                     names if writer.segment_categories else None)
        _count(stats, names, seq_lengths, labels, segments)


def _entry(counts: Counter, max_length: int) -> dict:
    return {**{k: int(counts.get(k, 0)) for k in COUNTS},
            "fill": fill_ratio(int(counts.get("row_tokens", 0)), int(counts.get("rows", 0)), max_length)}


def _write_buckets(arrow: str, tables: list[pa.Table], rows: list[np.ndarray], buckets: int, key: str,
                   max_length: int, categories: dict[str, Counter]) -> list[dict]:
    """Bucket k = slice k of every source's chosen rows; returns the manifest entry of every written part
    and adds their counts to `categories`."""
    mixed = any(SEGMENT_CATEGORIES in t.column_names for t in tables)
    slices = [np.array_split(picked, buckets) for picked in rows]
    parts = []
    for k in range(buckets):
        if not any(len(s[k]) for s in slices):
            continue
        name = f"part-{len(parts):05d}"
        writer = RowWriter(os.path.join(arrow, name), part_fingerprint(key, k), segment_categories=mixed)
        stats: dict[str, Counter] = {}
        for table, own in zip(tables, slices):
            _write_rows(writer, table, own[k], stats)
        files = writer.close()
        total = Counter()
        for name_counts in stats.values():
            total.update({c: name_counts[c] for c in ("segments", "tokens", "label_tokens")})
        total.update(rows=writer.rows, row_tokens=total["tokens"])  # a row counts once, with all its tokens
        for category, counts in stats.items():
            categories.setdefault(category, Counter()).update(counts)
        parts.append({"part": f"arrow/{name}", "bucket": k, "files": files, **_entry(total, max_length),
                      "categories": {n: _entry(c, max_length) for n, c in sorted(stats.items())}})
    return parts


def _load_sources(out: str, parts: list[MixPart], seed: int) -> tuple[list[pa.Table], list[np.ndarray]]:
    """Every source's rows (memory-mapped) and the indices of those it gives.

    Raises:
        DataError: a weight that selects none of its source's rows.
    """
    tables, rows = [], []
    for part in parts:
        pieces = [read_rows(p) for p in parts_of(part.folder)]
        table = pa.concat_tables(pieces) if len(pieces) != 1 else pieces[0]
        picked = chosen_rows(table.num_rows, part.factor, seed, part.label)
        if not len(picked):
            raise DataError(f"mixture {out}: {part.label} with weight {part.factor:g} selects none of its "
                            f"{table.num_rows} rows; raise the weight")
        tables.append(table)
        rows.append(picked)
    return tables, rows


def _sources_table(parts: list[MixPart], tables: list[pa.Table], rows: list[np.ndarray]) -> list[dict]:
    """What each source gave: rows, tokens and their share of the mixture."""
    table = []
    for part, data, picked in zip(parts, tables, rows):
        seq_lengths, segments = _flat(data.column("seq_lengths"))
        row_tokens = np.add.reduceat(seq_lengths, np.concatenate(([0], np.cumsum(segments)[:-1])))
        table.append({"source": part.label, "folder": part.folder, "weight": part.factor, "rows": int(len(picked)),
                      "source_rows": data.num_rows, "tokens": int(row_tokens[picked].sum())})
    total = sum(t["tokens"] for t in table)
    for t in table:
        t["share"] = round(t["tokens"] / max(total, 1), 4)
    return table


def _inputs(manifests: list[dict]) -> list[dict]:
    """The input files of all sources, each once."""
    seen, inputs = set(), []
    for m in manifests:
        for entry in m.get("inputs", []):
            if (entry.get("path"), entry.get("sha256")) not in seen:
                seen.add((entry.get("path"), entry.get("sha256")))
                inputs.append(entry)
    return inputs


def _totals(written: list[dict], max_length: int) -> dict:
    totals = {"rows": sum(p["rows"] for p in written), "segments": sum(p["segments"] for p in written),
              "tokens_out": sum(p["tokens"] for p in written),
              "label_tokens": sum(p["label_tokens"] for p in written), "parts": len(written)}
    totals["fill"] = fill_ratio(totals["tokens_out"], totals["rows"], max_length)
    return totals


def build_mixture(out: str, parts: list[MixPart], buckets: int, seed: int) -> dict:
    """Write the mixture (see the module docstring) into `out`, unless it holds it already; returns its manifest.

    Raises:
        DataError: sources prepared with different tokenizers, or a weight that selects no row.
        OutputError: `out` cannot be written.
    """
    manifests = [read_manifest(p.folder) for p in parts]
    config = {"buckets": buckets, "seed": seed,
              "sources": [{"source": p.label, "folder": p.folder, "weight": p.factor} for p in parts]}
    key = json_digest({"format": FORMAT, "parts": [[p.label, os.path.abspath(p.folder), json_digest(m), p.factor]
                                                   for p, m in zip(parts, manifests)], "buckets": buckets, "seed": seed})
    if os.path.isfile(os.path.join(out, "manifest.json")):
        existing = read_manifest(out)
        if existing.get("mixture_key") == key:
            return existing
    if len({m["tokenizer"]["fingerprint"] for m in manifests}) > 1:
        raise DataError(f"mixture {out}: its sources were prepared with different tokenizers: "
                        + ", ".join(f"{p.label} ({m['tokenizer']['name_or_path']})" for p, m in zip(parts, manifests)))
    tables, rows = _load_sources(out, parts, seed)
    max_length = max(m["max_length"] for m in manifests)
    # a mixture of other sources or weights in `out` is replaced (the runner asks for it by key)
    with staged_output(out, overwrite=True, flag="mixture") as tmp:
        categories: dict[str, Counter] = {}
        written = _write_buckets(os.path.join(tmp, "arrow"), tables, rows, buckets, key, max_length, categories)
        manifest = {"tool": "colossal_llama", "version": __version__, "kind": "mixture",
                    "tokenizer": manifests[0]["tokenizer"], "max_length": max_length, "num_bins": buckets,
                    "seed": seed, "config": config, "inputs": _inputs(manifests), "mixture_key": key,
                    "sources": _sources_table(parts, tables, rows), "totals": _totals(written, max_length),
                    "buckets": written, "categories": {n: _entry(c, max_length) for n, c in sorted(categories.items())}}
        write_manifest(tmp, manifest)
        for part in parts:  # SFT data carries its chat template in tokenizer/; the export takes it from there
            if os.path.isdir(os.path.join(part.folder, "tokenizer")):
                shutil.copytree(os.path.join(part.folder, "tokenizer"), os.path.join(tmp, "tokenizer"))
                break
    return manifest


def print_mixture(name: str, manifest: dict) -> None:
    """The table of a stage's mixture: per source its weight, rows, tokens and share."""
    rows = [b["rows"] for b in manifest["buckets"]]
    print(f"stage {name}: mixture of {sum(rows)} rows in {len(rows)} buckets")
    print(f"  {'source':<36}{'weight':>8}{'rows':>9}{'tokens':>11}{'share':>8}")
    for t in manifest["sources"]:
        print(f"  {t['source']:<36}{t['weight']:>8g}{t['rows']:>9}{t['tokens']:>11,}{t['share']:>8.1%}")
