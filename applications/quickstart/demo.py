"""The quickstart: the main job on bundled data, on one CPU.

    make demo          # or: python applications/quickstart/demo.py [--run_dir runs/demo]

Today it trains a small LLaMA-style tokenizer on the bundled bilingual corpus
(applications/quickstart/data/pretrain), prepares that corpus into packed,
bucketed Arrow shards with the real command line (prepare_pretrain_dataset.py),
and prints the statistics and one packed row. Training stages join it as they
land.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DATA = os.path.join(HERE, "data", "pretrain")


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


def show_row(part: str, tokenizer_dir: str) -> None:
    import datasets
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    row = datasets.load_from_disk(part)[0]
    print(f"row 0 of {part}: category {row['category']}, {len(row['input_ids'])} tokens, "
          f"documents {row['seq_lengths']}")
    start = 0
    for n in row["seq_lengths"][:3]:
        ids, labels = row["input_ids"][start : start + n], row["labels"][start : start + n]
        masked = sum(x == -100 for x in labels)
        text = tok.decode(ids)
        print(f"  [{n} tokens, {masked} masked] {text[:110]!r}{'...' if len(text) > 110 else ''}")
        start += n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", default=os.path.join(REPO, "runs", "demo"), help="where everything is written")
    args = parser.parse_args(argv)
    tokenizer_dir = os.path.join(args.run_dir, "tokenizer")
    data_dir = os.path.join(args.run_dir, "data", "pretrain")

    step("1. tokenizer: SentencePiece BPE with byte fallback, trained on the bundled corpus")
    if not os.path.exists(os.path.join(tokenizer_dir, "tokenizer.json")):
        from colossal_llama.tokenizer.train import train_llama_tokenizer

        train_llama_tokenizer(corpus_texts(), tokenizer_dir, vocab_size=2000)
    print(f"tokenizer in {tokenizer_dir}")

    step("2. data: prepare_pretrain_dataset.py on the bundled corpus")
    command = [sys.executable, os.path.join(REPO, "prepare_pretrain_dataset.py"),
               "--data_input_dirs", DATA, "--tokenizer_dir", tokenizer_dir, "--data_output_dirs", data_dir,
               "--max_length", "512", "--num_spliced_dataset_bins", "4", "--overwrite"]
    print("$ " + " ".join(os.path.relpath(c, REPO) if c.startswith(REPO) else c for c in command), flush=True)
    subprocess.run(command, check=True)

    step("3. a packed row (documents kept apart by seq_lengths)")
    show_row(os.path.join(data_dir, "arrow", "part-00000"), tokenizer_dir)
    print(f"\nmanifest: {os.path.join(data_dir, 'manifest.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
