"""Benchmark SFT data preparation: tokens/s, conversations kept/dropped, fill, peak memory.

    python benchmarks/prepare_sft.py            # ../shared/realdata/sft, 10 copies, LLaMA-2, --llama_version 2, 512

Runs the real command line (prepare_sft_dataset.py) in a subprocess and times
the whole run. Fill is the non-padding share of the row capacity (tokens /
(rows * max_length)), with the default packing (rows may hold conversations
of several categories; timed), `--pack_within_category` (one category per
row, here one per source file), `--no-pack` (one conversation per row, as the
old script stored them), and `--category sft` (all conversations in one
category). `--variants default within` runs some of them (default: all).

Reference figures of the old Colossal-LLaMA script on the same 10x corpus, 2
cores (../shared/realdata/README.md): 65 s, about 17,000 tokens/s; one
conversation per row padded to max_length: about 59% fill.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile

from _common import REPO, benchmark_parser, make_corpus, make_llama2_tokenizer, run_once

OLD_TOKENS_PER_S = 17_000
VARIANTS = {"default": [], "within": ["--pack_within_category"], "no-pack": ["--no-pack"],
            "one-category": ["--category", "sft"]}


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser(__doc__, "sft", max_length=512)
    p.add_argument("--llama_version", type=int, default=2)
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS),
                   help="packing variants to run (default: all; the first one is timed)")
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="bench_sft_")
    try:
        corpus_bytes = make_corpus(args.input_dir, args.repeat, os.path.join(work, "corpus"))
        tokenizer_dir = args.tokenizer_dir or make_llama2_tokenizer(os.path.join(work, "tokenizer"))
        results = {}
        for i, pack in enumerate(args.variants):
            flags = VARIANTS[pack]
            out = os.path.join(work, f"out{i}")
            command = [sys.executable, os.path.join(REPO, "prepare_sft_dataset.py"),
                       "--data_input_dirs", os.path.join(work, "corpus"), "--tokenizer_dir", tokenizer_dir,
                       "--data_output_dirs", out, "--max_length", str(args.max_length),
                       "--llama_version", str(args.llama_version), "--num_workers", str(args.num_workers),
                       "--overwrite", *flags]
            runs = [run_once(command) for _ in range(args.runs if i == 0 else 1)]
            with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
                results[pack] = (runs, json.load(f))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    runs, manifest = results[args.variants[0]]
    t = manifest["totals"]
    walls = sorted(w for w, _, _ in runs)
    wall = statistics.median(walls)
    phases = [line for line in runs[-1][2].splitlines() if line.startswith("time:")]
    kept, dropped = t["records"], sum(t["dropped_records"].values())
    print(f"corpus            {args.input_dir} x{args.repeat}: {corpus_bytes / 1e6:.1f} MB, max_length "
          f"{args.max_length}, --llama_version {args.llama_version}")
    print(f"wall time         {wall:.2f} s median of {len(walls)} ({', '.join(f'{w:.2f}' for w in walls)}); "
          f"{phases[0] if phases else ''}")
    best = walls[0]
    print(f"throughput        median {t['tokens_in'] / wall:,.0f} tokens/s = {t['tokens_in'] / wall / OLD_TOKENS_PER_S:.1f}x, "
          f"best {t['tokens_in'] / best:,.0f} tokens/s = {t['tokens_in'] / best / OLD_TOKENS_PER_S:.1f}x "
          f"the old script's {OLD_TOKENS_PER_S:,} tokens/s ({t['tokens_in']:,} tokens kept)")
    print(f"conversations     kept {kept:,}, dropped {dropped:,} {t['dropped_records']}, rejected {t['rejected']}; "
          f"turns kept {t.get('turns_kept', 0):,}, cut by max_length {t.get('turns_truncated', 0):,}")
    for pack, (_, m) in results.items():
        per_category = ", ".join(f"{k} {v['fill']:.1%} ({v['rows']:,} rows)" for k, v in m["categories"].items())
        label = f"{pack} ({' '.join(VARIANTS[pack]) or 'default flags'})"
        print(f"fill {label:<40} {m['totals']['fill']:.2%} over {m['totals']['rows']:,} rows; {per_category}")
    print(f"peak memory       {max(m for _, m, _ in runs) / 2**20:,.0f} MiB (process + workers, summed RSS)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
