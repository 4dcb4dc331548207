"""Benchmark pretraining data preparation: tokens/s, fill, token accounting, peak memory.

    python benchmarks/prepare_pretrain.py                      # ../shared/realdata, 10 copies, LLaMA-2
    python benchmarks/prepare_pretrain.py --input_dir my/jsonl --tokenizer_dir my/tok --repeat 1

Runs the real command line (prepare_pretrain_dataset.py) in a subprocess, as a
user would, and times the whole run: interpreter start, tokenizer loading,
tokenization, packing, writing. Peak memory is sampled over the process and
its workers (summed RSS) every 100 ms.

Reference figures of the old Colossal-LLaMA script on the same 10x corpus, 2
cores (../shared/realdata/README.md): 78 s, about 56,000 tokens/s; it kept
4,142,281 of 4,348,960 tokens and filled its rows to 91.6%.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import sys
import tempfile

from _common import REPO, benchmark_parser, make_corpus, make_llama2_tokenizer, run_once

OLD_TOKENS_PER_S = 56_000


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


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser(__doc__, "pretrain", max_length=4096)
    p.add_argument("--num_spliced_dataset_bins", type=int, default=10)
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="bench_prepare_")
    try:
        corpus_bytes = make_corpus(args.input_dir, args.repeat, os.path.join(work, "corpus"))
        tokenizer_dir = args.tokenizer_dir or make_llama2_tokenizer(os.path.join(work, "tokenizer"))
        out = os.path.join(work, "out")
        command = [sys.executable, os.path.join(REPO, "prepare_pretrain_dataset.py"),
                   "--data_input_dirs", os.path.join(work, "corpus"), "--tokenizer_dir", tokenizer_dir,
                   "--data_output_dirs", out, "--max_length", str(args.max_length),
                   "--num_spliced_dataset_bins", str(args.num_spliced_dataset_bins),
                   "--num_workers", str(args.num_workers), "--overwrite"]
        runs = [run_once(command) for _ in range(args.runs)]
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        fill_but_lightest = fill_without_lightest_rows(out, args.max_length)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    t = manifest["totals"]
    walls = sorted(w for w, _, _ in runs)
    wall = statistics.median(walls)
    bound = sum(math.ceil(c["tokens"] / args.max_length) for c in manifest["categories"].values())
    phases = [line for line in runs[-1][2].splitlines() if line.startswith("time:")]
    print(f"corpus            {args.input_dir} x{args.repeat}: {corpus_bytes / 1e6:.1f} MB, {t['records']:,} records")
    print(f"tokenizer         {manifest['tokenizer']['class']} ({manifest['tokenizer']['vocab_size']:,} pieces)")
    print(f"wall time         {wall:.2f} s median of {len(walls)} ({', '.join(f'{w:.2f}' for w in walls)}); "
          f"{phases[0] if phases else ''}")
    best = walls[0]
    print(f"throughput        median {t['tokens_in'] / wall:,.0f} tokens/s = {t['tokens_in'] / wall / OLD_TOKENS_PER_S:.1f}x, "
          f"best {t['tokens_in'] / best:,.0f} tokens/s = {t['tokens_in'] / best / OLD_TOKENS_PER_S:.1f}x "
          f"the old script's {OLD_TOKENS_PER_S:,} tokens/s")
    print(f"token accounting  in {t['tokens_in']:,} = out {t['tokens_out']:,} + dropped {t['tokens_dropped']:,} "
          f"({100 * (t['tokens_out'] + t['tokens_dropped']) / t['tokens_in']:.2f}% accounted for)")
    print(f"fill              {t['fill']:.2%} over {t['rows']:,} rows of {args.max_length}; lower bound on rows "
          f"(one partly filled row per category) {bound:,}: fill {t['tokens_out'] / (bound * args.max_length):.2%}")
    print(f"                  all rows but the lightest of each category: {fill_but_lightest:.2%}")
    print(f"peak memory       {max(m for _, m, _ in runs) / 2**20:,.0f} MiB (process + workers, summed RSS)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
