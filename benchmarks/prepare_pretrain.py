"""Benchmark pretraining data preparation: tokens/s, phases, fill, token accounting, peak memory.

    python benchmarks/prepare_pretrain.py                      # ../shared/realdata, 10 copies, LLaMA-2
    python benchmarks/prepare_pretrain.py --repeat 50          # the 50x corpus (21.7M tokens)
    python benchmarks/prepare_pretrain.py --input_dir my/jsonl --tokenizer_dir my/tok --repeat 1

Runs the real command line (prepare_pretrain_dataset.py) in a subprocess, as a
user would, and times the whole run: interpreter start, tokenizer loading,
tokenization, packing, writing; the phases come from the command's own
`time:` line. Peak memory is sampled over the process and its workers every
100 ms (summed RSS, and summed PSS, which counts the pages forked workers
share with the parent once). Then `--hf_runs` runs with `--encoder hf` (the
HF tokenizer, whatever the default encoder is) time that path and check that
its shards are byte-identical to the default run's.

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

from _common import (benchmark_parser, interleaved_runs, old_figure, prepare_command, print_speed, same_files,
                     scratch_corpus)

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


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser(__doc__, "pretrain", max_length=4096)
    p.add_argument("--num_spliced_dataset_bins", type=int, default=10)
    args = p.parse_args(argv)
    old_seconds = old_figure(OLD_SECONDS, args, "pretrain", max_length=4096)
    work, corpus_bytes, tokenizer_dir = scratch_corpus(args, "bench_prepare_")
    try:
        def command(out: str, *flags: str) -> list[str]:
            return prepare_command("prepare_pretrain_dataset.py", os.path.join(work, "corpus"), tokenizer_dir, out, args,
                                   "--num_spliced_dataset_bins", str(args.num_spliced_dataset_bins), *flags)

        out, out_hf = os.path.join(work, "out"), os.path.join(work, "out_hf")
        runs, hf_runs = interleaved_runs(command(out), command(out_hf, "--encoder", "hf"), args.runs, args.hf_runs)
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        identical = same_files(os.path.join(out, "arrow"), os.path.join(out_hf, "arrow")) if hf_runs else None
        fill_but_lightest = fill_without_lightest_rows(out, args.max_length)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    t, encoder = manifest["totals"], manifest["tokenizer"]["encoder"]
    bound = sum(math.ceil(c["tokens"] / args.max_length) for c in manifest["categories"].values())
    print(f"corpus            {args.input_dir} x{args.repeat}: {corpus_bytes / 1e6:.1f} MB, {t['records']:,} records, "
          f"{t['tokens_in']:,} tokens")
    print(f"tokenizer         {manifest['tokenizer']['class']} ({manifest['tokenizer']['vocab_size']:,} pieces); "
          f"encoder {encoder['kind']}: {encoder['reason']}")
    print_speed(runs, hf_runs, identical, t["tokens_in"], old_seconds, "default encoder")
    print(f"token accounting  in {t['tokens_in']:,} = out {t['tokens_out']:,} + dropped {t['tokens_dropped']:,} "
          f"({100 * (t['tokens_out'] + t['tokens_dropped']) / t['tokens_in']:.2f}% accounted for)")
    print(f"fill              {t['fill']:.2%} over {t['rows']:,} rows of {args.max_length}; lower bound on rows "
          f"(one partly filled row per category) {bound:,}: fill {t['tokens_out'] / (bound * args.max_length):.2%}")
    print(f"                  all rows but the lightest of each category: {fill_but_lightest:.2%}")
    return 0 if identical is not False else 1


if __name__ == "__main__":
    raise SystemExit(main())
