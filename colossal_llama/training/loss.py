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


CHUNK_BYTES = 256 * 2**20
"""float32 working memory of the cross entropy: positions are taken this many bytes of logits at a time."""


class TokenCrossEntropy(torch.autograd.Function):
    """Cross entropy of each position (N, V) -> (N,), float32, computed a chunk of positions at a time.

    The usual `cross_entropy(logits.float())` keeps a float32 copy of all the logits and their float32
    log-softmax for the backward: 2 x 4 bytes x N x V beside the logits themselves (at LLaMA-3's 128,256
    pieces and 4,096 positions, 4.2 GB a row). Here only the logits (already alive: they are the model's
    output) and one float per position (the log-sum-exp) are kept; each chunk is converted to float32 when
    it is used, in the forward and again in the backward, whose gradient (softmax - one-hot) is written
    straight into a tensor of the logits' dtype.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        chunk = max(1, CHUNK_BYTES // (4 * logits.shape[1]))
        trained = targets != IGNORE_INDEX
        safe = torch.where(trained, targets, 0)
        lse = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)
        losses = torch.empty_like(lse)
        for start in range(0, logits.shape[0], chunk):
            part = logits[start : start + chunk].float()
            lse[start : start + chunk] = torch.logsumexp(part, dim=1)
            picked = part.gather(1, safe[start : start + chunk, None]).squeeze(1)
            losses[start : start + chunk] = lse[start : start + chunk] - picked
        ctx.save_for_backward(logits, safe, trained, lse)
        return losses.masked_fill_(~trained, 0.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, safe, trained, lse = ctx.saved_tensors
        chunk = max(1, CHUNK_BYTES // (4 * logits.shape[1]))
        weight = grad.float() * trained
        result = torch.empty_like(logits)
        for start in range(0, logits.shape[0], chunk):
            end = start + chunk
            part = torch.exp(logits[start:end].float() - lse[start:end, None])
            part.scatter_add_(1, safe[start:end, None], torch.full_like(part[:, :1], -1.0))
            result[start:end] = part * weight[start:end, None]
        return result, None


def row_losses(logits: torch.Tensor, labels: torch.Tensor) -> RowLosses:
    """Per-row next-token loss of a batch: summed cross entropy and label-token count of each row.

    Args:
        logits: (B, L, V) in any float dtype (the loss is computed in float32, a chunk at a time:
            `TokenCrossEntropy`).
        labels: (B, L), IGNORE_INDEX where not trained; on the device of `logits`.
    """
    batch, length, vocab = logits.shape
    # column j scores label j + 1; the last position predicts nothing. The targets are shifted rather than
    # the logits, so the (B, L, V) logits are read in place (a shifted slice would be copied).
    targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    tokens = TokenCrossEntropy.apply(logits.reshape(batch * length, vocab), targets.reshape(-1))
    tokens = tokens.view(batch, length)[:, :-1]
    return RowLosses(tokens.sum(dim=1), trained_mask(labels).sum(dim=1), tokens)


def step_tokens(micro_batches: list[dict], all_reduce=None, device="cpu") -> int:
    """N: label tokens of every micro-batch of the step, summed over ranks by `all_reduce` (a function) on
    `device` (NCCL, the GPU backend, reduces GPU tensors only)."""
    local = torch.tensor(sum(label_tokens(b["labels"]) for b in micro_batches), dtype=torch.long, device=device)
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
