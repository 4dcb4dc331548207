"""The next-token loss: one per-row function for training, evaluation and probes, weighted by label token.

    losses = row_losses(logits, labels)      # .sums (B,), .counts (B,), .tokens (B, L - 1)
    mean = losses.sums.sum() / losses.counts.sum()

A causal LM predicts the token at position j + 1 from the positions up to j,
so the labels shift by one and column j of the loss scores label j + 1:

    labels   [-100, -100,   A,   .,  EOS]       (IGNORE_INDEX: not trained)
    columns        [  F,    T,   T,   T ]       trained_mask(labels)

Mean loss, per-category loss (steps.CategoryTotals sums `tokens` per
segment) and probe scores (stages/probes.py: `sums` per answer) all derive
from `row_losses`, so they cannot disagree about which tokens count.

Token-weighted: with micro-batches b = 1..m of an optimizer step (on every
rank), each backward uses sum_b / N, where N is the number of label tokens of
the whole step (all micro-batches, all ranks, summed before the first
forward). The accumulated gradient is then the gradient of the mean over all
N tokens, whatever the split into micro-batches and ranks; the usual
mean-per-micro-batch instead weighs a token of a short micro-batch more than
one of a long micro-batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from colossal_llama.data.tokenize import IGNORE_INDEX


class RowLosses(NamedTuple):
    sums: torch.Tensor
    """Summed next-token cross entropy of each row (float32), shape (B,)."""
    counts: torch.Tensor
    """Label tokens of each row (int64), shape (B,)."""
    tokens: torch.Tensor
    """Cross entropy at each column (float32, 0 where not trained), shape (B, L - 1)."""


def trained_mask(labels: torch.Tensor) -> torch.Tensor:
    """True at the loss columns (B, L - 1) whose label is trained on."""
    return labels[:, 1:] != IGNORE_INDEX


def label_tokens(labels: torch.Tensor) -> int:
    """Tokens a causal LM is trained on in this batch."""
    return int(trained_mask(labels).sum())


def row_losses(logits: torch.Tensor, labels: torch.Tensor) -> RowLosses:
    """Per-row next-token loss of a batch: summed cross entropy and label-token count of each row.

    Args:
        logits: (B, L, V) in any float dtype (the loss is computed in float32).
        labels: (B, L), IGNORE_INDEX where not trained; on the device of `logits`.
    """
    tokens = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels[:, 1:],
                                               ignore_index=IGNORE_INDEX, reduction="none")
    return RowLosses(tokens.sum(dim=1), trained_mask(labels).sum(dim=1), tokens)


def step_tokens(micro_batches: list[dict], all_reduce=None) -> int:
    """N: label tokens of every micro-batch of the step, summed over ranks by `all_reduce` (a function)."""
    local = torch.tensor(sum(label_tokens(b["labels"]) for b in micro_batches), dtype=torch.long)
    if all_reduce is not None:
        all_reduce(local)
    return int(local)


def pipeline_loss_sum(reported: float, rows: int, microbatch_size: int) -> float:
    """The summed loss of a batch run forward-only through ColossalAI's pipeline schedule.

    The schedule splits the batch into ceil(rows / microbatch_size) micro-batches (the last one may be
    short) and reports the sum over them of criterion / number of micro-batches; with a criterion that
    sums the rows' losses, the batch's summed loss is the report times that number.
    """
    micro_batches = -(-rows // microbatch_size)
    return reported * micro_batches
