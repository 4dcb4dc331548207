"""Benchmark pretraining data preparation: tokens/s, phases, fill, token accounting, peak memory.

    python benchmarks/prepare_pretrain.py                      # ../shared/realdata, 10 copies, LLaMA-2
    python benchmarks/prepare_pretrain.py --repeat 50          # the 50x corpus (21.7M tokens)
    python benchmarks/prepare_pretrain.py --input_dir my/jsonl --tokenizer_dir my/tok --repeat 1
    unshare -n sh -c 'ip link set lo up; python benchmarks/prepare_pretrain.py --repeat 50 --engine ray'

Runs the real command line (prepare_pretrain_dataset.py) in a subprocess, as a
user would, and times the whole run: interpreter start, tokenizer loading,
tokenization, packing, writing; the phases come from the command's own
`time:` line. Peak memory is sampled over the process and its workers every
100 ms (summed RSS, and summed PSS, which counts the pages forked workers
share with the parent once). Then `--hf_runs` runs with `--encoder hf` (the
HF tokenizer, whatever the default encoder is) time that path and check that
its shards are byte-identical to the default run's.

`--engine ray` compares the engines: for each worker count of
`--ray_workers` (default 1 and 2) it starts a Ray cluster of that many CPUs
on this machine (owned by the benchmark, stopped after; its start-up time is
printed apart, as it is what `--ray_address auto` adds to a run when no
cluster runs) and alternates runs with `--engine local --num_workers N` and
runs joining the cluster, so both see the same machine load; it prints
tokens/s, tokens/s per core and Ray's rate against local, and checks the
shards are byte-identical. With `--ray_address HOST:PORT` the runs join that
cluster instead (against local runs with --num_workers). Peak memory of a
Ray run counts the command only, not the cluster's workers. Ray binds the
machine's network interface whatever address it is given, so where the
network must stay untouched (this machine's tests keep to 127.0.0.0/8) run
the benchmark inside a network namespace holding only loopback, as above
(root; `unshare -n`).

The old Colossal-LLaMA script is not installed here; its figures were
measured on the same corpora with the LLaMA-2 tokenizer, max_length 4096, on
the 2-core machine (../shared/realdata/README.md and issue 18): 78 s for the
10x corpus (kept 4,142,281 of 4,348,960 tokens, rows 91.6% full) and 183 s
for the 50x corpus. The ratios printed are against those times.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
from types import SimpleNamespace

from _common import (benchmark_parser, interleaved_runs, local_ray_cluster, old_figure, prepare_command, print_speed,
                     same_files, scratch_corpus)

OLD_SECONDS = {10: 78.0, 50: 183.0}
"""The old script's wall time on `--repeat` copies of ../shared/realdata/pretrain (2 cores, max_length 4096)."""


def fill_without_lightest_rows(out: str, max_length: int) -> float:
    """Fill of all rows except the lightest row of each category (the waste packing cannot avoid)."""
    import datasets

    loads: dict[str, list[int]] = {}
    for part in sorted(os.listdir(os.path.join(out, "arrow"))):
        ds = datasets.load_from_disk(os.path.join(out, "arrow", part))
        for category, lengths in zip(ds["category"], ds["seq_lengths"]):
            loads.setdefault(category, []).append(sum(lengths))
    kept = [sorted(v)[1:] for v in loads.values()]
    rows = sum(len(k) for k in kept)
    return sum(sum(k) for k in kept) / (rows * max_length) if rows else 0.0


def engine_blocks(args):
    """(workers, HOST:PORT, cluster start-up seconds or None) per block of the engine comparison; a cluster
    started here lives while its block runs."""
    if args.ray_address != "auto":  # a running cluster: local runs with --num_workers beside it
        yield args.num_workers, args.ray_address, None
        return
    for workers in args.ray_workers:
        with local_ray_cluster(workers) as (address, startup):
            yield workers, address, startup


def compare_engines(args, command, work: str) -> tuple[list, bool, str]:
    """Alternate local and Ray runs per worker count; (table rows, shards identical, an output folder)."""
    rows, identical, out = [], True, os.path.join(work, "out")
    for workers, address, startup in engine_blocks(args):
        local = SimpleNamespace(**{**vars(args), "engine": "local", "num_workers": workers})
        ray = SimpleNamespace(**{**vars(args), "num_workers": workers, "ray_address": address})
        out_ray = os.path.join(work, f"out_ray{workers}")
        local_runs, ray_runs = interleaved_runs(command(out, local), command(out_ray, ray), args.runs, args.runs)
        identical &= same_files(os.path.join(out, "arrow"), os.path.join(out_ray, "arrow"))
        rows.append((workers, startup, local_runs, ray_runs))
    return rows, identical, out


def print_engine_table(rows, tokens: int) -> None:
    """Median wall time, tokens/s (whole run and map phase), per core, and the driver's pack + write time (not
    parallel) of each engine and worker count."""
    print(f"{'workers':>7}  {'engine':<6} {'wall s':>7} {'tokens/s':>11} {'per core':>10} {'map tokens/s':>13} "
          f"{'pack+write s':>12}  ray/local")
    for workers, startup, local_runs, ray_runs in rows:
        rates = {}
        for name, runs in (("local", local_runs), ("ray", ray_runs)):
            wall = statistics.median(r.wall for r in runs)
            tokenize = statistics.median(r.phases().get("tokenize", 0.0) for r in runs)
            reduce = statistics.median(r.phases().get("pack", 0.0) + r.phases().get("write", 0.0) for r in runs)
            rates[name] = tokens / wall
            versus = f"  {rates['ray'] / rates['local']:.1%}" if name == "ray" else ""
            print(f"{workers:>7}  {name:<6} {wall:>7.2f} {tokens / wall:>11,.0f} {tokens / wall / workers:>10,.0f} "
                  f"{tokens / tokenize if tokenize else 0:>13,.0f} {reduce:>12.2f}{versus}")
        if startup is not None:
            print(f"{'':>7}  Ray cluster of {workers} CPU(s) started in {startup:.1f} s (not in the runs: what "
                  "--ray_address auto adds to a run when no cluster runs)")
    print(f"medians of {len(rows[0][2])} run(s) each, local and ray alternating")


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser(__doc__, "pretrain", max_length=4096)
    p.add_argument("--num_spliced_dataset_bins", type=int, default=10)
    p.add_argument("--ray_workers", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2],
                   help="with --engine ray: comma-separated CPU counts of the clusters started here (default 1,2)")
    args = p.parse_args(argv)
    old_seconds = old_figure(OLD_SECONDS, args, "pretrain", max_length=4096)
    work, corpus_bytes, tokenizer_dir = scratch_corpus(args, "bench_prepare_")
    try:
        def command(out: str, settings, *flags: str) -> list[str]:
            return prepare_command("prepare_pretrain_dataset.py", os.path.join(work, "corpus"), tokenizer_dir, out,
                                   settings, "--num_spliced_dataset_bins", str(args.num_spliced_dataset_bins), *flags)

        if args.engine == "ray":
            engine_rows, identical, out = compare_engines(args, command, work)
        else:
            out, out_hf = os.path.join(work, "out"), os.path.join(work, "out_hf")
            runs, hf_runs = interleaved_runs(command(out, args), command(out_hf, args, "--encoder", "hf"), args.runs,
                                             args.hf_runs)
            identical = same_files(os.path.join(out, "arrow"), os.path.join(out_hf, "arrow")) if hf_runs else None
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        fill_but_lightest = fill_without_lightest_rows(out, args.max_length)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    t, encoder = manifest["totals"], manifest["tokenizer"]["encoder"]
    bound = sum(math.ceil(c["tokens"] / args.max_length) for c in manifest["categories"].values())
    print(f"corpus            {args.input_dir} x{args.repeat}: {corpus_bytes / 1e6:.1f} MB, {t['records']:,} records, "
          f"{t['tokens_in']:,} tokens")
    print(f"tokenizer         {manifest['tokenizer']['class']} ({manifest['tokenizer']['vocab_size']:,} pieces); "
          f"encoder {encoder['kind']}: {encoder['reason']}")
    if args.engine == "ray":
        print_engine_table(engine_rows, t["tokens_in"])
        print(f"shards            {'byte-identical' if identical else 'DIFFERENT'} with --engine local and ray")
    else:
        print_speed(runs, hf_runs, identical, t["tokens_in"], old_seconds, "default encoder")
    print(f"token accounting  in {t['tokens_in']:,} = out {t['tokens_out']:,} + dropped {t['tokens_dropped']:,} "
          f"({100 * (t['tokens_out'] + t['tokens_dropped']) / t['tokens_in']:.2f}% accounted for)")
    print(f"fill              {t['fill']:.2%} over {t['rows']:,} rows of {args.max_length}; lower bound on rows "
          f"(one partly filled row per category) {bound:,}: fill {t['tokens_out'] / (bound * args.max_length):.2%}")
    print(f"                  all rows but the lightest of each category: {fill_but_lightest:.2%}")
    return 0 if identical is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
