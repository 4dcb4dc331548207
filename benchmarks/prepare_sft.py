"""Benchmark SFT data preparation: tokens/s, phases, conversations kept/dropped, fill, peak memory.

    python benchmarks/prepare_sft.py            # ../shared/realdata/sft, 10 copies, LLaMA-2, --llama_version 2, 512
    python benchmarks/prepare_sft.py --repeat 50 --variants default

Runs the real command line (prepare_sft_dataset.py) in a subprocess and times
the whole run. Fill is the non-padding share of the row capacity (tokens /
(rows * max_length)), with the default packing (rows may hold conversations
of several categories; timed), `--pack_within_category` (one category per
row, here one per source file), `--no-pack` (one conversation per row, as the
old script stored them), and `--category sft` (all conversations in one
category). `--variants default within` runs some of them (default: all).
Then `--hf_runs` runs of the first variant with `--encoder hf` time the HF
tokenizer and check that the shards are byte-identical.

Reference figures of the old Colossal-LLaMA script on the same 10x corpus, 2
cores (../shared/realdata/README.md): 65 s, about 17,000 tokens/s; one
conversation per row padded to max_length: about 59% fill. It is not
installed here, and its time on other corpora was not measured: ratios are
printed for the 10x corpus only.
"""

from __future__ import annotations

import json
import os
import shutil

from _common import (benchmark_parser, interleaved_runs, old_figure, prepare_command, print_speed, run_once,
                     same_files, scratch_corpus)

OLD_SECONDS = {10: 65.0}
"""The old script's wall time on `--repeat` copies of ../shared/realdata/sft (2 cores, max_length 512)."""
VARIANTS = {"default": [], "within": ["--pack_within_category"], "no-pack": ["--no-pack"],
            "one-category": ["--category", "sft"]}


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser(__doc__, "sft", max_length=512)
    p.add_argument("--llama_version", type=int, default=2)
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS),
                   help="packing variants to run (default: all; the first one is timed)")
    args = p.parse_args(argv)
    old_seconds = old_figure(OLD_SECONDS, args, "sft", max_length=512, llama_version=2)
    work, corpus_bytes, tokenizer_dir = scratch_corpus(args, "bench_sft_")
    try:
        def command(out: str, *flags: str) -> list[str]:
            return prepare_command("prepare_sft_dataset.py", os.path.join(work, "corpus"), tokenizer_dir, out, args,
                                   "--llama_version", str(args.llama_version), *flags)

        results, hf_runs = {}, []
        for i, pack in enumerate(args.variants):
            out = os.path.join(work, f"out{i}")
            if i == 0:  # timed, beside the hf encoder
                hf = command(os.path.join(work, "out_hf"), *VARIANTS[pack], "--encoder", "hf")
                runs, hf_runs = interleaved_runs(command(out, *VARIANTS[pack]), hf, args.runs, args.hf_runs)
            else:  # the other variants run once, for their fill
                runs = [run_once(command(out, *VARIANTS[pack]))]
            with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
                results[pack] = (runs, json.load(f))
        identical = (same_files(os.path.join(work, "out0", "arrow"), os.path.join(work, "out_hf", "arrow"))
                     if hf_runs else None)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    runs, manifest = results[args.variants[0]]
    t, encoder = manifest["totals"], manifest["tokenizer"]["encoder"]
    kept, dropped = t["records"], sum(t["dropped_records"].values())
    print(f"corpus            {args.input_dir} x{args.repeat}: {corpus_bytes / 1e6:.1f} MB, max_length "
          f"{args.max_length}, --llama_version {args.llama_version}; {t['tokens_in']:,} tokens kept")
    print(f"encoder           {encoder['kind']}: {encoder['reason']}")
    print_speed(runs, hf_runs, identical, t["tokens_in"], old_seconds, f"{args.variants[0]} packing")
    print(f"conversations     kept {kept:,}, dropped {dropped:,} {t['dropped_records']}, rejected {t['rejected']}; "
          f"turns kept {t.get('turns_kept', 0):,}, cut by max_length {t.get('turns_truncated', 0):,}")
    for pack, (_, m) in results.items():
        per_category = ", ".join(f"{k} {v['fill']:.1%} ({v['rows']:,} rows)" for k, v in m["categories"].items())
        label = f"{pack} ({' '.join(VARIANTS[pack]) or 'default flags'})"
        print(f"fill {label:<40} {m['totals']['fill']:.2%} over {m['totals']['rows']:,} rows; {per_category}")
    return 0 if identical is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
