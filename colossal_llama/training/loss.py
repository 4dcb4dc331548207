"""Token-weighted loss: a step's loss is the mean over every label token it saw.

With micro-batches b = 1..m of an optimizer step (on every rank), each
backward uses sum_b / N, where N is the number of label tokens of the whole
step (all micro-batches, all ranks, summed before the first forward). The
accumulated gradient is then the gradient of the mean over all N tokens,
whatever the split into micro-batches and ranks; the usual mean-per-micro-
batch instead weighs a token of a short micro-batch more than one of a long
micro-batch.
"""

from __future__ import annotations

import torch

from colossal_llama.data.tokenize import IGNORE_INDEX


def label_tokens(labels: torch.Tensor) -> int:
    """Tokens a causal LM is trained on in this batch (labels shift by one)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross entropy of the next-token predictions (in float32)."""
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")


def step_tokens(micro_batches: list[dict], all_reduce=None) -> int:
    """N: label tokens of every micro-batch of the step, summed over ranks by `all_reduce` (a function)."""
    local = torch.tensor(sum(label_tokens(b["labels"]) for b in micro_batches), dtype=torch.long)
    if all_reduce is not None:
        all_reduce(local)
    return int(local)
