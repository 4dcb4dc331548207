"""A stage's data: sources prepared on first use (cached by content), then mixed into buckets.

    folder = prepare_source(source, tokenizer_dir, cache_dir)        # <cache>/<name>-<key>/
    mixture = build_mixture(out, [MixPart("wiki_zh", folder, 1.0)], buckets=4, seed=42)

Cache key of a prepared source: its kind and preparation settings, the
tokenizer's fingerprint and the sha256 of every input file, so the same
files prepared with the same tokenizer are prepared once per run folder, and
any change (a file edited, another tokenizer after vocabulary expansion)
prepares them again.

A mixture is written as buckets like any prepared dataset. A weight is a
repeat factor: 2 takes every row of the source twice, 0.5 a seeded half of
them. Each source's chosen rows are cut into `buckets` consecutive slices and
bucket k holds slice k of every source, so every bucket has the mixture's
proportions (the sampler shuffles inside a bucket).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass

import numpy as np

from colossal_llama.data.manifest import file_sha256
from colossal_llama.data.records import discover_input_files
from colossal_llama.errors import DataError
from colossal_llama.outputs import staged_output
from colossal_llama.stages.recipe import KINDS, Source
from colossal_llama.tokenizer.loading import load_tokenizer, tokenizer_fingerprint


def parts_of(folder: str) -> list[str]:
    """The bucket folders of a prepared dataset, in order."""
    arrow = os.path.join(folder, "arrow")
    if not os.path.isdir(arrow):
        raise DataError(f"{folder}: no arrow/ folder (not written by prepare_*_dataset.py)")
    return [os.path.join(arrow, p) for p in sorted(os.listdir(arrow)) if p.startswith("part-")]


def read_manifest(folder: str) -> dict:
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


class FileHashes:
    """sha256 of input files, remembered by (path, size, mtime) in `<cache>/file-hashes.json`."""

    def __init__(self, cache_dir: str):
        self.path = os.path.join(cache_dir, "file-hashes.json")
        self.known = {}
        if os.path.isfile(self.path):
            with open(self.path, encoding="utf-8") as f:
                self.known = json.load(f)

    def __call__(self, path: str) -> str:
        stat = os.stat(path)
        real = os.path.realpath(path)
        seen = self.known.get(real)
        if seen and seen["size"] == stat.st_size and seen["mtime_ns"] == stat.st_mtime_ns:
            return seen["sha256"]
        digest = file_sha256(path)
        self.known[real] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(self.known, f, indent=1)
        os.replace(self.path + ".tmp", self.path)
        return digest


def input_files(paths: list[str]) -> list[str]:
    """Files of a source: files as given, folders as their *.jsonl(.gz) files sorted by path."""
    files = []
    for path in paths:
        files += discover_input_files([path]) if os.path.isdir(path) else [path]
    return files


def _link_inputs(files: list[str], folder: str) -> None:
    """A folder of links to the files, named so that sorting keeps the given order."""
    os.makedirs(folder, exist_ok=True)
    for i, path in enumerate(files):
        link = os.path.join(folder, f"{i:05d}-{os.path.basename(path)}")
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(path), link)


def prepare_source(source: Source, tokenizer_dir: str, cache_dir: str, hashes: FileHashes) -> str:
    """The prepared folder of `source` for this tokenizer, preparing it on first use."""
    if source.prepared:
        return source.prepared
    files = input_files(source.jsonl)
    fingerprint = tokenizer_fingerprint(load_tokenizer(tokenizer_dir))
    settings = {k: v for k, v in source.prepare.items() if k != "num_workers"}
    key = _digest({"kind": source.kind, "prepare": settings, "tokenizer": fingerprint,
                   "files": [[os.path.basename(p), hashes(p)] for p in files]})
    out = os.path.join(cache_dir, f"{source.name}-{key}")
    if os.path.isfile(os.path.join(out, "manifest.json")):
        print(f"data {source.name}: prepared before ({out})", flush=True)
        return out
    print(f"data {source.name}: preparing {len(files)} file(s) ({source.kind}) into {out}", flush=True)
    from colossal_llama.data.manifest import summary_table
    from colossal_llama.data.pretrain import prepare_pretrain_dataset
    from colossal_llama.data.sft import prepare_sft_dataset

    inputs = out + ".inputs"
    _link_inputs(files, inputs)
    config = KINDS[source.kind](data_input_dirs=[inputs], tokenizer_dir=tokenizer_dir, data_output_dirs=out,
                                overwrite=True, **source.prepare)
    prepare = prepare_pretrain_dataset if source.kind == "pretrain" else prepare_sft_dataset
    print(summary_table(prepare(config)), flush=True)
    return out


@dataclass
class MixPart:
    label: str
    folder: str
    factor: float


def chosen_rows(count: int, factor: float, seed: int, label: str) -> np.ndarray:
    """Row indices for a repeat factor: every row floor(factor) times, then a seeded sample for the rest."""
    whole, rest = int(factor), factor - int(factor)
    picks = [np.arange(count)] * whole
    extra = round(rest * count)
    if extra:
        rng = np.random.default_rng([seed, int(_digest(label), 16) % (1 << 32)])
        picks.append(np.sort(rng.choice(count, size=extra, replace=False)))
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


def build_mixture(out: str, parts: list[MixPart], buckets: int, seed: int) -> dict:
    """Write the mixture's buckets, manifest.json (and the SFT tokenizer folder) into `out`; returns the manifest."""
    import datasets

    datasets.disable_progress_bars()  # one bar per bucket written says nothing here
    manifests = [read_manifest(p.folder) for p in parts]
    key = _digest({"parts": [[p.label, os.path.abspath(p.folder), m["inputs"], p.factor] for p, m in zip(parts, manifests)],
                   "buckets": buckets, "seed": seed})
    if os.path.isfile(os.path.join(out, "manifest.json")):
        existing = read_manifest(out)
        if existing.get("mixture_key") == key:
            return existing
    fingerprints = {m["tokenizer"]["fingerprint"] for m in manifests}
    if len(fingerprints) > 1:
        raise DataError(f"mixture {out}: its sources were prepared with different tokenizers: "
                        + ", ".join(f"{p.label} ({m['tokenizer']['name_or_path']})" for p, m in zip(parts, manifests)))
    tables, rows = [], []
    for part in parts:
        data = datasets.concatenate_datasets([datasets.load_from_disk(p) for p in parts_of(part.folder)])
        picked = chosen_rows(len(data), part.factor, seed, part.label)
        if not len(picked):
            raise DataError(f"mixture {out}: {part.label} with weight {part.factor:g} selects none of its "
                            f"{len(data)} rows; raise the weight")
        tables.append(data)
        rows.append(picked)
    # a mixture of other sources or weights in `out` is replaced (the runner asks for it by key)
    with staged_output(out, overwrite=True, flag="mixture") as tmp:
        sizes = []
        for k in range(buckets):
            pieces = [data.select(np.array_split(picked, buckets)[k]) for data, picked in zip(tables, rows)]
            bucket = datasets.concatenate_datasets([p for p in pieces if len(p)])
            bucket.save_to_disk(os.path.join(tmp, "arrow", f"part-{k:05d}"))
            sizes.append(len(bucket))
        table = []
        for part, data, picked in zip(parts, tables, rows):
            row_tokens = np.array([sum(s) for s in data["seq_lengths"]], dtype=np.int64)
            table.append({"source": part.label, "folder": part.folder, "weight": part.factor,
                          "rows": int(len(picked)), "source_rows": len(data), "tokens": int(row_tokens[picked].sum())})
        total = sum(t["tokens"] for t in table)
        for t in table:
            t["share"] = round(t["tokens"] / max(total, 1), 4)
        manifest = {"tool": "colossal_llama", "kind": "mixture", "mixture_key": key,
                    "tokenizer": manifests[0]["tokenizer"], "max_length": max(m["max_length"] for m in manifests),
                    "bucket_rows": sizes, "sources": table, "inputs": [], "config": {}}
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
        for part in parts:  # SFT data carries its chat template in tokenizer/; the export takes it from there
            if os.path.isdir(os.path.join(part.folder, "tokenizer")):
                shutil.copytree(os.path.join(part.folder, "tokenizer"), os.path.join(tmp, "tokenizer"))
                break
    return manifest


def print_mixture(name: str, manifest: dict) -> None:
    print(f"stage {name}: mixture of {sum(manifest['bucket_rows'])} rows in {len(manifest['bucket_rows'])} buckets")
    print(f"  {'source':<36}{'weight':>8}{'rows':>9}{'tokens':>11}{'share':>8}")
    for t in manifest["sources"]:
        print(f"  {t['source']:<36}{t['weight']:>8g}{t['rows']:>9}{t['tokens']:>11,}{t['share']:>8.1%}")
