"""The quickstart: the main job on bundled data, on one CPU.

    make demo          # or: python applications/quickstart/demo.py [--run_dir runs/demo]

Today it trains a small LLaMA-style tokenizer on the bundled bilingual corpus
(applications/quickstart/data/pretrain), prepares that corpus into packed,
bucketed Arrow shards with the real command line (prepare_pretrain_dataset.py),
prepares the bundled conversations (applications/quickstart/data/sft) with
prepare_sft_dataset.py, prints the statistics and a packed row of each,
trained-on spans marked, and expands the tokenizer with the bundled Chinese
pieces (compression report). Then it builds a tiny LLaMA in code, pretrains
it for a few steps with train.py (evaluated per category), exports it in HF
format, fine-tunes that export on the conversations and exports again with
the chat template. The multi-stage recipe (knowledge injection, replay)
joins it with its own issue.
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


def train_stages(run_dir: str, tokenizer_dir: str, data_dir: str, sft_dir: str) -> None:
    """A tiny LLaMA pretrained for a few steps, exported, then fine-tuned on the SFT data from that export."""
    from colossal_llama.model.tiny import build_tiny_llama

    step("7. a tiny LLaMA (2 layers, hidden 64) for the tokenizer, built in code")
    model_dir = build_tiny_llama(tokenizer_dir, os.path.join(run_dir, "model-tiny"), layers=2, hidden=64)
    print(f"model in {model_dir}")
    train = os.path.join(run_dir, "train")
    common = ["--plugin", "ddp", "--mixed_precision", "fp32", "--batch_size", "4", "--lr", "2e-3",
              "--save_interval", "10", "--keep_last_n_checkpoints", "1", "--log_interval", "5"]
    parts = lambda folder: sorted(os.path.join(folder, "arrow", p) for p in os.listdir(os.path.join(folder, "arrow")))  # noqa: E731

    step("8. pretraining: train.py for 20 steps on the buckets, evaluated per category, exported in HF format")
    run([sys.executable, os.path.join(REPO, "train.py"), "--pretrained", model_dir, "--dataset", *parts(data_dir)[:-1],
         "--eval_dataset", parts(data_dir)[-1], "--max_steps", "20", "--save_dir", os.path.join(train, "pretrain"),
         "--tensorboard_dir", os.path.join(train, "logs", "pretrain"), *common])

    step("9. SFT: from the exported pretraining weights, 20 steps on the conversations, exported with the template")
    final = os.path.join(train, "sft", "final")
    run([sys.executable, os.path.join(REPO, "train.py"), "--pretrained", os.path.join(train, "pretrain", "final"),
         "--dataset", *parts(sft_dir), "--max_steps", "20", "--save_dir", os.path.join(train, "sft"),
         "--tensorboard_dir", os.path.join(train, "logs", "sft"), "--export_dir", final, *common])
    check_export(final, sft_dir)


def check_export(final: str, sft_dir: str) -> None:
    """The exported model loads alone; its chat template is the one the SFT data was checked against."""
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(final)
    tokenizer = AutoTokenizer.from_pretrained(final)
    messages = [{"role": "user", "content": "Where are the Calvessa Islands?"},
                {"role": "assistant", "content": "In the north."}]
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    print(f"{final}: {sum(p.numel() for p in model.parameters()):,} parameters, chat template renders "
          f"{len(ids)} tokens")
    with open(os.path.join(sft_dir, "manifest.json"), encoding="utf-8") as f:
        checked = json.load(f)["chat_template"]["round_trip"]  # apply_chat_template == training ids, per conversation
    data_template = AutoTokenizer.from_pretrained(os.path.join(sft_dir, "tokenizer")).chat_template
    if checked and tokenizer.chat_template == data_template:
        print("chat template round trip: same ids as training")
    else:
        print("chat template round trip: FAILED (the export's template differs from the data's)")


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
    train_stages(args.run_dir, tokenizer_dir, data_dir, sft_dir)
    print(f"\noutputs under {args.run_dir}; tensorboard --logdir {os.path.join(args.run_dir, 'train')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
