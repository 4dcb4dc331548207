"""Freezing helpers for the stage right after vocabulary expansion.

    freeze_all_but_embeddings(model)          # train the input embeddings and the head only
    train_only_new_rows(model, old_vocab)     # ... and of those only the rows of new tokens

The second masks the gradient of old rows with a hook, so the optimizer sees
zeros there (with weight decay off for these rows the old values stay exact;
AdamW's decoupled decay would still shrink them, so use weight_decay=0 for
the embedding parameters in that stage).
"""

from __future__ import annotations

import torch


def embedding_parameters(model) -> list[torch.nn.Parameter]:
    """The input embedding matrix and, when untied, the output head."""
    params = [model.get_input_embeddings().weight]
    head = model.get_output_embeddings()
    if head is not None and head.weight is not params[0]:
        params.append(head.weight)
    return params


def freeze_all_but_embeddings(model) -> list[str]:
    """requires_grad only on the embeddings (and untied head); returns the trainable parameter names."""
    trainable = {id(p) for p in embedding_parameters(model)}
    for param in model.parameters():
        param.requires_grad_(id(param) in trainable)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def train_only_new_rows(model, old_vocab_size: int) -> list:
    """Freeze all but the embeddings, and zero the gradient of rows below `old_vocab_size`.

    Returns:
        the hook handles (call `.remove()` on them to train every row again).
    """
    freeze_all_but_embeddings(model)

    def mask(grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:old_vocab_size] = 0
        return grad

    return [param.register_hook(mask) for param in embedding_parameters(model)]
