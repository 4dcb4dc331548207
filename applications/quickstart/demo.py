"""The quickstart: the main job on bundled data, on one CPU.

    make demo          # or: python applications/quickstart/demo.py [--run_dir runs/demo]

Today it trains a small LLaMA-style tokenizer on the bundled bilingual corpus
(applications/quickstart/data/pretrain), prepares that corpus into packed,
bucketed Arrow shards with the real command line (prepare_pretrain_dataset.py),
prepares the bundled conversations (applications/quickstart/data/sft) with
prepare_sft_dataset.py, prints the statistics and a packed row of each,
trained-on spans marked, and expands the tokenizer with the bundled Chinese
pieces (compression report). Training stages join it as they land.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(HERE, "data", "pretrain")
SFT_DATA = os.path.join(HERE, "data", "sft")


def corpus_texts() -> list[str]:
    import glob
    import gzip
    import json

    texts = []
    for path in sorted(glob.glob(os.path.join(DATA, "*.jsonl*"))):
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            texts += [(r["source"] + "\n" + r["target"]).strip() for r in map(json.loads, f)]
    return texts


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def run(command: list[str]) -> None:
    """Run one of the project's commands as a user would, showing it first."""
    shown = [os.path.relpath(c, REPO) if c.startswith(REPO) else c for c in command]
    print("$ " + " ".join(["python"] + shown[1:]), flush=True)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", default=os.path.join(REPO, "runs", "demo"), help="where everything is written")
    args = parser.parse_args(argv)
    tokenizer_dir = os.path.join(args.run_dir, "tokenizer")
    data_dir = os.path.join(args.run_dir, "data", "pretrain")
    sft_dir = os.path.join(args.run_dir, "data", "sft")

    step("1. tokenizer: SentencePiece BPE with byte fallback, trained on the bundled corpus")
    if not os.path.exists(os.path.join(tokenizer_dir, "tokenizer.json")):
        from colossal_llama.tokenizer.train import train_llama_tokenizer

        train_llama_tokenizer(corpus_texts(), tokenizer_dir, vocab_size=2000)
    print(f"tokenizer in {tokenizer_dir}")

    step("2. pretraining data: prepare_pretrain_dataset.py on the bundled corpus")
    run([sys.executable, os.path.join(REPO, "prepare_pretrain_dataset.py"), "--data_input_dirs", DATA,
         "--tokenizer_dir", tokenizer_dir, "--data_output_dirs", data_dir, "--max_length", "512",
         "--num_spliced_dataset_bins", "4", "--overwrite"])

    step("3. a packed pretraining row: documents kept apart by seq_lengths, trained-on tokens marked")
    run([sys.executable, "-m", "colossal_llama.data.inspect", os.path.join(data_dir, "arrow", "part-00000"),
         "--index", "0"])

    step("4. SFT data: prepare_sft_dataset.py on the bundled conversations")
    run([sys.executable, os.path.join(REPO, "prepare_sft_dataset.py"), "--data_input_dirs", SFT_DATA,
         "--tokenizer_dir", tokenizer_dir, "--data_output_dirs", sft_dir, "--llama_version", "2",
         "--max_length", "512", "--num_spliced_dataset_bins", "2", "--overwrite"])

    step("5. a packed SFT row: only the assistant replies are trained on")
    run([sys.executable, "-m", "colossal_llama.data.inspect", os.path.join(sft_dir, "arrow", "part-00000"),
         "--index", "0"])

    step("6. vocabulary expansion: bundled Chinese pieces added as real pieces, compression measured")
    run([sys.executable, "-m", "colossal_llama.tokenizer.init_tokenizer", "--source_tokenizer_dir", tokenizer_dir,
         "--target_tokenizer_dir", os.path.join(args.run_dir, "tokenizer-zh"), "--expand_tokens_file",
         os.path.join(HERE, "data", "pieces_zh.jsonl"), "--report_corpus", DATA, "--overwrite"])
    print(f"\noutputs under {args.run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
