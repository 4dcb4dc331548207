"""What the GPU-speed path saves, measured on CPU: the collator's time per batch and the loss's peak memory.

    python benchmarks/gpu_path_cpu.py                 # rows of 4,096, 4 a batch; vocabulary 128,256

1. Collator: milliseconds to collate a batch of packed rows (documents of the real corpus's lengths when
   ../shared/realdata is there, else 300-token documents) in each form: the additive 4-D mask (sdpa),
   document ids (flex: the block mask is then built on the GPU), positions only (flash). The mask form
   also gives its bytes per batch: what the DataLoader hands over, pins and copies to the GPU.
2. Loss: peak resident memory of forward + backward of the loss over (1, L, V) bf16 logits, the plain
   `cross_entropy(logits.float())` against `training.loss.row_losses` (chunked), each in a fresh process
   (ru_maxrss), minus the same process's peak with the logits alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _common import REALDATA, REPO

LOSS_CHILD = """
import resource, sys, torch
from colossal_llama.training.loss import row_losses
kind, length, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
logits = torch.randn(1, length, vocab, dtype=torch.bfloat16).requires_grad_()
labels = torch.randint(0, vocab, (1, length))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if kind == "plain":
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels[:, 1:], reduction="sum")
elif kind == "chunked":
    loss = row_losses(logits, labels).sums.sum()
if kind != "none":
    loss.backward()
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 2**20)
"""


def document_lengths(count: int) -> list[int]:
    realdata = os.path.join(REALDATA, "pretrain")
    if not os.path.isdir(realdata):
        return [300] * count
    lengths = []
    for name in sorted(os.listdir(realdata)):
        with open(os.path.join(realdata, name), encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                lengths.append(max(2, len(record["source"] + record["target"]) // 2))  # ~2 characters a token
    return (lengths * (count // len(lengths) + 1))[:count]


def packed_rows(rows: int, length: int) -> list[dict]:
    lengths, out, i = document_lengths(50 * rows), [], 0
    for _ in range(rows):
        seq, used = [], 0
        while used < length - 1:
            n = min(lengths[i % len(lengths)], length - used)
            seq.append(n)
            used += n
            i += 1
        ids = list(range(3, 3 + used))
        out.append({"input_ids": ids, "labels": ids, "seq_lengths": seq})
    return out


def collator_figures(rows: list[dict], repeats: int) -> None:
    import torch

    from colossal_llama.data.loader import PackedCollator

    for form in ("mask", "documents", "positions"):
        collate = PackedCollator(0, form=form, mask_dtype=torch.bfloat16)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            batch = collate(rows)
            times.append(time.perf_counter() - start)
        size = sum(t.numel() * t.element_size() for t in batch.values() if isinstance(t, torch.Tensor))
        print(f"collator {form:9s}: {1000 * statistics.median(times):7.1f} ms a batch (median of {repeats}), "
              f"{size / 2**20:7.1f} MiB of tensors")


def loss_figures(length: int, vocab: int) -> None:
    def peak(kind: str) -> float:
        done = subprocess.run([sys.executable, "-c", LOSS_CHILD, kind, str(length), str(vocab)], check=True,
                              capture_output=True, text=True, cwd=REPO)
        return float(done.stdout.strip().splitlines()[-1])

    logits = length * vocab * 2 / 2**30
    for kind in ("plain", "chunked"):
        print(f"loss {kind:8s}: peak {peak(kind):5.2f} GiB beyond the {logits:.2f} GiB of bf16 logits "
              f"(forward + backward, 1 x {length} x {vocab})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--length", type=int, default=4096)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--loss_length", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    collator_figures(packed_rows(args.rows, args.length), args.repeats)
    loss_figures(args.loss_length, args.vocab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
