"""The data preparation driver shared by pretraining and SFT data.

A job (`PRETRAIN` in pretrain.py, `SFT` in sft.py) says how records are
parsed and tokenized and what else goes into the output; this module does the
rest. Steps: find input files -> map (parallel, per chunk: validate + tokenize,
spilled to disk) -> reduce (split, pack, bin; tasks per category, see buckets.py)
-> write (a task per bucket, bucket_writer.py) -> manifest. All of them run as
tasks of an engine (engine.py). Everything is written into a temporary
`<out>.tmp-*` folder beside it and renamed to `<out>` at the end, so an error
never leaves a half-written output folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import replace
from typing import TypeVar

from tqdm import tqdm

from colossal_llama.config import HOW_IT_RUNS, DataConfig
from colossal_llama.data.bucket_writer import write_buckets
from colossal_llama.data.buckets import plan_buckets
from colossal_llama.data.encoder_check import check_encoder_on_input
from colossal_llama.data.manifest import build_manifest, count_per_input, input_files, summary_table, write_manifest
from colossal_llama.data.engine import open_engine
from colossal_llama.data.mapstep import (ChunkBadRecord, MapSettings, preload_encoder, release_encoder, run_map,
                                         spill_path)
from colossal_llama.data.records import count_lines_before, discover_input_files, plan_chunks
from colossal_llama.errors import DataError, TokenizerError, WorkerDied, exit_status
from colossal_llama.model.hub import resolve_model_dir
from colossal_llama.outputs import check_output_free, staged_output
from colossal_llama.tokenizer.encoder import FastEncoder
from colossal_llama.tokenizer.loading import describe_tokenizer, load_tokenizer

MIN_CHUNK_BYTES = 64 << 10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def plan_input_chunks(paths: list[str], config: DataConfig) -> list:
    """Chunks small enough that every worker gets several, never above config.chunk_bytes."""
    total = sum(os.path.getsize(p) for p in paths)
    return plan_chunks(paths, max(MIN_CHUNK_BYTES, min(config.chunk_bytes, total // (4 * config.num_workers) + 1)))


def map_inputs(chunks, settings: MapSettings, engine, meanwhile=None) -> list:
    """The map step on `engine`, with one progress bar over the chunks showing tokens per second."""
    bar = tqdm(total=len(chunks), unit="chunk", desc="tokenize", file=sys.stderr, mininterval=0.5)
    tokens, started = 0, time.perf_counter()

    def done(result) -> None:
        nonlocal tokens
        tokens += result.tokens
        bar.set_postfix_str(f"{tokens / max(time.perf_counter() - started, 1e-9):,.0f} tokens/s", refresh=False)
        bar.update(1)

    try:
        return run_map(chunks, settings, engine, on_done=done, meanwhile=meanwhile)
    except ChunkBadRecord as bad:
        line = count_lines_before(bad.path, bad.chunk_start) + bad.local_line
        raise DataError(f"{bad.path}:{line}: {bad.message} (use --on_error skip to skip bad records)") from None
    finally:
        bar.close()


def check_empty_files(paths, chunks, results, on_error: str) -> list[str]:
    """Files without a single record: an error, or with --on_error skip a counted warning."""
    seen = {p: 0 for p in paths}
    for r in results:
        seen[chunks[r.index].path] += r.records + sum(r.rejected.values()) + sum(r.dropped.values())
    empty = [p for p, n in seen.items() if n == 0]
    for path in empty:
        if on_error == "raise":
            raise DataError(f"{path}: file is empty (no records); remove it or use --on_error skip")
        log(f"warning: {path}: file is empty (no records), skipped")
    return empty


def merge_rejected(spill: str, chunks, results, out_path: str) -> None:
    """Concatenate the chunks' rejected records with absolute line numbers."""
    base_line: dict[int, int] = {}
    lines_so_far: dict[str, int] = {}
    for r in results:
        path = chunks[r.index].path
        base_line[r.index] = lines_so_far.get(path, 0)
        lines_so_far[path] = base_line[r.index] + r.lines
    with open(out_path, "w", encoding="utf-8") as out:
        for r in results:
            if not r.rejected:
                continue
            with open(spill_path(spill, r.index, "rejected.jsonl"), encoding="utf-8") as f:
                for line in f:
                    entry = json.loads(line)
                    entry["line"] += base_line[r.index]
                    out.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _prepare_into(tmp: str, paths: list[str], chunks, engine, info, config, kind, job, tokenizer) -> dict:
    """Map, reduce and write into `tmp`; returns the manifest.

    The job's extra outputs (`job.finish`) and the hashing of the inputs are
    done in the parent while the workers tokenize.
    """
    spill = os.path.join(tmp, "_spill")
    settings = MapSettings(kind=kind, info=info, spill_dir=spill, on_error=config.on_error,
                           max_record_bytes=config.max_record_bytes)
    started = time.perf_counter()
    extra: dict = {}

    def meanwhile() -> None:
        extra["inputs"] = input_files(paths)
        extra["manifest"] = job.finish(tmp, tokenizer, kind)

    results = map_inputs(chunks, settings, engine, meanwhile)
    engine.stop_workers()  # local: their memory is not held through packing and writing
    mapped = time.perf_counter()
    empty = check_empty_files(paths, chunks, results, config.on_error)
    rejected = sum(sum(r.rejected.values()) for r in results)
    if not sum(r.records for r in results):
        dropped = sum(sum(r.dropped.values()) for r in results)
        raise DataError(f"no record was accepted ({rejected} rejected, {dropped} too long); nothing written")
    # pretraining configs have neither flag: packed, one category per row (bins and buckets depend on it)
    plan = plan_buckets(engine, spill, results, config.max_length, config.num_spliced_dataset_bins, config.seed,
                        pack=getattr(config, "pack", True),
                        across_categories=not getattr(config, "pack_within_category", True))
    inputs = count_per_input(extra["inputs"], results, {c.index: c.path for c in chunks})
    # what the rows depend on: not the paths (the inputs' hashes stand for them) nor how the work ran
    settings_that_matter = {k: v for k, v in config.to_dict().items()
                            if k not in HOW_IT_RUNS + ("data_input_dirs", "data_output_dirs", "tokenizer_dir",
                                                       "on_error", "recursive")}
    if settings_that_matter.get("pack_within_category"):  # the rows made before the flag existed: same identity
        del settings_that_matter["pack_within_category"]
    identity = json.dumps([job.name, info.fingerprint, [i["sha256"] for i in inputs], settings_that_matter],
                          sort_keys=True)
    packed = time.perf_counter()
    with tqdm(total=len(plan.buckets), unit="bucket", desc="write", file=sys.stderr, mininterval=0.5) as bar:
        parts = write_buckets(engine, plan, os.path.join(tmp, "arrow"), identity, on_part=lambda _: bar.update(1))
    if rejected:
        merge_rejected(spill, chunks, results, os.path.join(tmp, "rejected.jsonl"))
    shutil.rmtree(spill)
    manifest = build_manifest(config, info, inputs, results, plan.category_inputs, parts, empty, job.name)
    manifest.update(extra["manifest"])
    log(f"time: tokenize {mapped - started:.2f} s, pack {packed - mapped:.2f} s, write {time.perf_counter() - packed:.2f} s")
    return manifest


Config = TypeVar("Config", bound=DataConfig)


def with_tokenizer_folder(config: Config) -> Config:
    """A copy of `config` whose --tokenizer_dir is a folder: a hub id becomes its cached snapshot, so the workers
    and the manifest get the folder (a copy also keeps what a job fills in out of the caller's config)."""
    return replace(config, tokenizer_dir=resolve_model_dir(config.tokenizer_dir, "--tokenizer_dir", TokenizerError))


def prepare_dataset(config: DataConfig, job) -> dict:
    """Run a whole preparation; returns the manifest.

    Args:
        job: `name`; `prepare_tokenizer(tokenizer)` checks or adjusts the
            tokenizer; `make_kind(tokenizer, info)` -> the record kind workers
            use; `finish(folder, tokenizer, kind)` writes extra outputs and
            returns entries for the manifest.
    Raises:
        DataError: bad input (file, line, reason), nothing written.
        TokenizerError: the tokenizer folder is missing or unusable.
        OutputError: the output folder is taken (by another run, too) or cannot be written.
    """
    paths = discover_input_files(config.data_input_dirs, config.recursive)
    out = config.data_output_dirs
    check_output_free(out, config.overwrite, "--data_output_dirs")
    if config.on_error == "raise":
        for path in paths:
            if os.path.getsize(path) == 0:
                raise DataError(f"{path}: file is empty (no records); remove it or use --on_error skip")
    chunks = plan_input_chunks(paths, config)
    with staged_output(out, config.overwrite, "--data_output_dirs") as tmp:
        os.makedirs(os.path.join(tmp, "_spill"))
        engine = open_engine(config.engine, min(config.num_workers, len(chunks)), config.ray_address)
        info = None
        try:
            # Ray: every node checks the paths while this process loads the tokenizer
            checked = engine.begin_check(paths + [os.path.join(tmp, "_spill")])
            tokenizer = load_tokenizer(config.tokenizer_dir)
            job.prepare_tokenizer(tokenizer)
            info = describe_tokenizer(tokenizer, config.tokenizer_dir, os.path.join(tmp, "_spill"), config.encoder)
            kind = job.make_kind(tokenizer, info)
            info = check_encoder_on_input(info, tokenizer, kind, paths)
            if info.encoder.kind == "fast":
                preload_encoder(info.encoder, FastEncoder(backend=tokenizer.backend_tokenizer))
            elif info.encoder.kind == "sentencepiece":
                preload_encoder(info.encoder, info.encoder.build())
            engine.start_workers()  # local: forked now, so they inherit the preloaded encoder
            checked()
            log(f"{len(paths)} input file(s) in {len(chunks)} chunk(s); tokenizer {info.class_name}, "
                f"vocab {info.vocab_size}; encoder {info.encoder.kind}: {info.encoder_reason}; engine {engine.name}")
            manifest = _prepare_into(tmp, paths, chunks, engine, info, config, kind, job, tokenizer)
        finally:
            if info is not None:
                release_encoder(info.encoder)
            engine.close()  # before the clean-up, so no worker writes into tmp any more
        write_manifest(tmp, manifest)
    return manifest


def skip_torch_import() -> None:
    """Tell transformers not to import torch in this process.

    Loading a tokenizer needs no torch, but `import transformers` imports it
    when installed: 1.6 s of a 4 s preparation run. `USE_TORCH=0` is
    transformers' own switch; it is only set when transformers is not loaded
    yet (so a process that already uses torch models is left alone).
    """
    if "transformers" not in sys.modules:
        os.environ.setdefault("USE_TORCH", "0")
        os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def run_cli(parse_args, prepare, argv: list[str] | None = None) -> int:
    """The command-line wrapper of a preparation: errors a user can fix -> one line and exit code 2."""
    skip_torch_import()
    return exit_status(lambda: _prepare_and_report(parse_args(argv), prepare), also=(WorkerDied,))


def _prepare_and_report(config: DataConfig, prepare) -> int:
    manifest = prepare(config)
    print(summary_table(manifest))
    print(f"wrote {config.data_output_dirs}/arrow/part-00000 .. part-{manifest['totals']['parts'] - 1:05d}, "
          f"{config.data_output_dirs}/manifest.json")
    return 0
