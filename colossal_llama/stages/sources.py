"""A stage's sources, prepared on first use and cached by content.

    hashes = FileHashes("runs/zh/data")
    folder = prepare_source(source, tokenizer_dir, "runs/zh/data", hashes)   # runs/zh/data/<name>-<key>/

Cache key of a prepared source: its kind and preparation settings, the
tokenizer's fingerprint and the sha256 of every input file, so the same
files prepared with the same tokenizer are prepared once per run folder, and
any change (a file edited, another tokenizer after vocabulary expansion)
prepares them again. Mixing the prepared sources into a stage's buckets is
`colossal_llama.data.mixtures`.
"""

from __future__ import annotations

import json
import os

from colossal_llama.config import HOW_IT_RUNS
from colossal_llama.data.manifest import file_sha256, json_digest
from colossal_llama.data.records import discover_input_files
from colossal_llama.outputs import write_json
from colossal_llama.stages.recipe import KINDS, Source
from colossal_llama.tokenizer.loading import load_tokenizer, tokenizer_fingerprint


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
        write_json(self.path, self.known, indent=1)
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
    settings = {k: v for k, v in source.prepare.items() if k not in HOW_IT_RUNS}  # a switch to Ray reuses the data
    key = json_digest({"kind": source.kind, "prepare": settings, "tokenizer": fingerprint,
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
