"""The final HF model folder: safetensors weights, config, tokenizer with its chat template.

    AutoModelForCausalLM.from_pretrained(export_dir); AutoTokenizer.from_pretrained(export_dir)

The weights come from `booster.save_model`, which gathers them from whatever
the plugin sharded. LoRA adapters are merged into the weights first, so the
folder loads without peft. The chat template is the one the SFT data was
prepared with (`<data out>/tokenizer`), else the model tokenizer's own.
Written by all ranks into a staging folder beside it (`outputs.staged_output`) and renamed when
complete (deleted when the export fails).
"""

from __future__ import annotations

import json
import os

from colossal_llama.model.training_model import merged_for_export
from colossal_llama.outputs import staged_output
from colossal_llama.tokenizer.folder import save_tokenizer
from colossal_llama.training.plugins import spec_of
from colossal_llama.training.resume import barrier as _barrier


def data_chat_template(dataset_paths: list[str]) -> str | None:
    """The chat template written beside the SFT data these parts come from, if any."""
    for part in dataset_paths:
        config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(part))), "tokenizer",
                              "tokenizer_config.json")
        if os.path.isfile(config):
            with open(config, encoding="utf-8") as f:
                template = json.load(f).get("chat_template")
            if template:
                return template
    return None


def export_model(run, folder: str) -> str:
    """Write the HF folder of the trained model; returns it."""
    folder = folder.rstrip("/")
    with staged_output(folder, overwrite=True, flag="--export_dir", is_main=run.is_main, barrier=_barrier,
                       report_as=folder) as partial:
        unwrapped = run.model.unwrap(unwrap_peft=False) if hasattr(run.model, "unwrap") else run.model
        if run.config.lora_rank and spec_of(run.config.plugin).whole_model:
            # every rank holds the whole model (ddp): merge the adapters and save plain transformers weights
            merged = merged_for_export(unwrapped)
            if run.is_main:
                merged.save_pretrained(partial, safe_serialization=True)
        else:
            run.booster.save_model(run.model, partial, shard=True, use_safetensors=True)
            if run.is_main:
                model = merged_for_export(unwrapped)
                model.config.save_pretrained(partial)
                if getattr(model, "generation_config", None) is not None:
                    model.generation_config.save_pretrained(partial)
        if run.is_main:
            _write_tokenizer(run, partial)
    _barrier()  # published: every rank returns the finished folder
    return folder


def _write_tokenizer(run, folder: str) -> None:
    save_tokenizer(run.tokenizer, folder, chat_template=data_chat_template(run.config.dataset),
                   trust_remote_code=run.config.trust_remote_code)
