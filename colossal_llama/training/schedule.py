"""Learning rate: linear warmup, then cosine decay to a floor; one step per optimizer step.

    lr(s) = base * (s + 1) / warmup                                       s < warmup
    lr(s) = floor + (base - floor) * (1 + cos(pi * (s - warmup) / (total - warmup))) / 2   after

A plain function of the step, wrapped in torch's LambdaLR, so every plugin
(pipeline parallel included) steps it the same way and a resumed run gets the
same value from the step count alone.
"""

from __future__ import annotations

import math

import torch


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """The learning rate of optimizer step `step` (0-based)."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR following `lr_at` for every parameter group (relative to its own lr)."""
    bases = [group["lr"] for group in optimizer.param_groups]
    factors = [
        (lambda step, base=base: lr_at(step, base, warmup_steps, total_steps, min_lr) / base) if base else
        (lambda step: 0.0)
        for base in bases
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
