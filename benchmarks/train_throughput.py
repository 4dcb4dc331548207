"""Benchmark training throughput on CPU: non-padding tokens/s and padding share of three row layouts.

    python benchmarks/train_throughput.py          # ../shared/realdata/sft, LLaMA-2 tokenizer, 512, 2 processes

Prepares the real SFT conversations twice (packed rows, and one conversation
per row as the old script stored them), builds a tiny LLaMA for the LLaMA-2
vocabulary, and trains it with `torchrun --nproc_per_node 2 train.py --plugin
ddp` (gloo, fp32) for each layout:

    packed + isolate   packed rows, documents kept apart (4-D mask, restarting positions)
    packed + cross     packed rows, documents see each other (the plain causal mask)
    one per row        one conversation per row padded to max_length (the old SFT behaviour)

tokens/s is the median over the logged steps after the first two (warm-up) of
non-padding input tokens per second summed over both processes; the padding
share is padding positions / all positions fed to the model.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from _common import REALDATA, REPO, make_llama2_tokenizer

from colossal_llama.model.tiny import build_tiny_llama

LAYOUTS = {  # name -> (prepared data, train.py flags)
    "packed + isolate": ("packed", ["--packed_attention", "isolate"]),
    "packed + cross": ("packed", ["--packed_attention", "cross"]),
    "one per row": ("one_per_row", ["--packed_attention", "cross", "--padding_mode", "max_length"]),
}


def prepare(model_dir: str, out: str, max_length: int, pack: bool) -> list[str]:
    subprocess.run([sys.executable, os.path.join(REPO, "prepare_sft_dataset.py"), "--data_input_dirs",
                    os.path.join(REALDATA, "sft"), "--tokenizer_dir", model_dir, "--data_output_dirs", out,
                    "--max_length", str(max_length), "--llama_version", "2", "--num_spliced_dataset_bins", "1",
                    "--pack" if pack else "--no-pack"], check=True, capture_output=True)
    arrow = os.path.join(out, "arrow")
    return [os.path.join(arrow, p) for p in sorted(os.listdir(arrow))]


def train(model_dir: str, parts: list[str], out: str, flags: list[str], args) -> list[dict]:
    from colossal_llama.ports import free_port

    command = [os.path.join(os.path.dirname(sys.executable), "torchrun"), "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()), os.path.join(REPO, "train.py"), "--plugin", "ddp", "--mixed_precision", "fp32", "--pretrained",
               model_dir, "--dataset", *parts, "--batch_size", str(args.batch_size), "--max_steps", str(args.steps),
               "--save_interval", "0", "--skip_save_each_epoch", "--save_dir", os.path.join(out, "ck"),
               "--tensorboard_dir", os.path.join(out, "tb"), *flags]
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo", PYTHONWARNINGS="ignore")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr[-3000:])
    with open(os.path.join(out, "tb", "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max_length", type=int, default=512)
    p.add_argument("--batch_size", type=int, default=4, help="rows per process per step")
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args(argv)
    if not os.path.isdir(REALDATA):
        print(f"{REALDATA} is missing: this benchmark needs the real corpus and tokenizer", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="bench_train_")
    try:
        model_dir = build_tiny_llama(make_llama2_tokenizer(os.path.join(work, "tokenizer")),
                                     os.path.join(work, "model"), layers=2, hidden=128, positions=args.max_length)
        data = {"packed": prepare(model_dir, os.path.join(work, "packed"), args.max_length, True),
                "one_per_row": prepare(model_dir, os.path.join(work, "one"), args.max_length, False)}
        print(f"tiny LLaMA (2 layers, hidden 128, vocab 32,000), 2 processes x {args.batch_size} rows, "
              f"max_length {args.max_length}, {args.steps} steps, fp32 ddp on CPU")
        print(f"{'layout':18} {'tokens/s':>10} {'padding':>8} {'rows/step':>9} {'final loss':>10}")
        for name, (kind, flags) in LAYOUTS.items():
            metrics = train(model_dir, data[kind], os.path.join(work, name.replace(" ", "_")), flags, args)
            timed = metrics[2:] or metrics
            speed = statistics.median(m["train/tokens_per_s"] for m in timed)
            padding = statistics.fmean(m["train/padding_share"] for m in metrics)
            print(f"{name:18} {speed:>10,.0f} {padding:>8.1%} {2 * args.batch_size:>9} "
                  f"{metrics[-1]['train/loss']:>10.4f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
