"""The final HF model folder: safetensors weights, config, tokenizer with its chat template.

    AutoModelForCausalLM.from_pretrained(export_dir); AutoTokenizer.from_pretrained(export_dir)

The weights come from `booster.save_model`, which gathers them from whatever
the plugin sharded. LoRA adapters are merged into the weights first, so the
folder loads without peft. The chat template is the one the SFT data was
prepared with (`<data out>/tokenizer`), else the model tokenizer's own.
Written to `<export_dir>.partial` and renamed when complete (deleted when the export fails).
"""

from __future__ import annotations

import json
import os
import shutil

from colossal_llama.model.training_model import merged_for_export
from colossal_llama.tokenizer.folder import save_tokenizer
from colossal_llama.training.resume import barrier as _barrier
from colossal_llama.training.savedir import removed_on_failure


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
    partial = folder.rstrip("/") + ".partial"
    with removed_on_failure(partial, run.is_main, report_as=folder):
        if run.is_main:
            shutil.rmtree(partial, ignore_errors=True)
            os.makedirs(partial)
        _barrier()
        unwrapped = run.model.unwrap(unwrap_peft=False) if hasattr(run.model, "unwrap") else run.model
        if run.config.lora_rank and run.config.plugin == "ddp":
            # every rank holds the whole model under ddp: merge the adapters and save plain transformers weights
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
            if os.path.exists(folder):
                shutil.rmtree(folder)
            os.rename(partial, folder)
    _barrier()
    return folder


def _write_tokenizer(run, folder: str) -> None:
    save_tokenizer(run.tokenizer, folder, chat_template=data_chat_template(run.config.dataset),
                   trust_remote_code=run.config.trust_remote_code)
