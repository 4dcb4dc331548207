"""The model as training gets it: loaded from an HF folder, then frozen, LoRA-wrapped or noised as asked.

    model = load_causal_lm("model_dir", torch.float32, attention="sdpa")
    add_neftune(model, alpha=5.0)

NEFTune (Jain et al. 2023, https://arxiv.org/abs/2310.05914) adds
U(-1, 1) * alpha / sqrt(L * d) to the input embeddings in training mode only
(L: the row length, d: the hidden size), so evaluation and the exported model
are untouched. The noise is drawn from torch's generator, whose state every
checkpoint keeps, so a resumed run draws the same noise.
"""

from __future__ import annotations

import math
import os

import torch

from colossal_llama.errors import ConfigError

LORA_TARGETS = "all-linear"  # peft: every nn.Linear of the decoder, not the output head


def model_signature(model) -> dict:
    """What identifies a model's shape; a checkpoint from another model has another signature."""
    config = model.config
    return {"architecture": type(model).__name__, "vocab_size": config.vocab_size,
            "hidden_size": config.hidden_size, "num_hidden_layers": config.num_hidden_layers,
            "parameters": sum(p.numel() for p in model.parameters())}


def load_causal_lm(folder: str, dtype: torch.dtype, attention: str = "sdpa", trust_remote_code: bool = False):
    """`AutoModelForCausalLM` from `folder` in `dtype`, in training mode.

    Raises:
        ConfigError: the folder is missing or holds no loadable model.
    """
    from transformers import AutoModelForCausalLM

    from colossal_llama.safe_loading import safe_loading

    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise ConfigError(f"--pretrained {folder}: no config.json there (an HF model folder is expected)")
    try:
        with safe_loading() as refused:  # .bin weights: plain tensors only, never a TorchScript archive
            model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=dtype, attn_implementation=attention,
                                                         trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        reason = refused[0] if refused else f"cannot load the model ({exc})"  # transformers rewords the refusal
        raise ConfigError(f"--pretrained {folder}: {reason}") from exc
    model.config.use_cache = False  # no KV cache in training; it only costs memory
    return model.train()


def enable_grad_checkpointing(model) -> None:
    # non-reentrant checkpointing also works when the inputs need no grad (frozen embeddings, LoRA)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def lora_config(rank: int, alpha: float | None):
    """peft's LoraConfig for every linear layer of the decoder."""
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, lora_dropout=0.0, target_modules=LORA_TARGETS,
                      task_type="CAUSAL_LM")


def add_neftune(model, alpha: float):
    """Noise the input embeddings while `model.training`; returns the hook handle."""
    def noise(module, inputs, output):
        if not module.training:
            return output
        magnitude = alpha / math.sqrt(output.shape[1] * output.shape[2])
        return output + torch.empty_like(output).uniform_(-magnitude, magnitude)

    return model.get_input_embeddings().register_forward_hook(noise)


def merged_for_export(model):
    """The plain transformers model to export: LoRA adapters merged into the weights."""
    try:
        from peft import PeftModel
    except ImportError:  # peft comes with colossalai; without it there can be no adapters
        return model
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model
