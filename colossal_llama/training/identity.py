"""What a checkpoint was trained on, and which settings a resumed run may change.

    identity = run_identity(config, tokenizer, total_steps, warmup_steps)   # saved in state.json as "run"
    check_same_run(folder, saved_identity, identity)                         # ConfigError naming every difference

A resume must continue the trajectory the checkpoint is on: the same data
(by content, a prepared part's fingerprint, not its path: a re-prepared part
at the same path is other data), the same tokenizer, the same schedule and
the same value of every setting that changes what a step computes. Every
TrainConfig field has one rule in RESUME_RULES (a test fails for a field
that has none):

    same      compared as given: --lr, --seed, --mixed_precision, LoRA, NEFTune, ...
    content   a path whose contents are compared, the path itself may change: --dataset and
              --eval_dataset by the parts' fingerprints, --pretrained by the tokenizer's
              fingerprint and the model's signature (resume.check_same_model)
    schedule  may change while the learning-rate schedule stays the same (total optimizer
              steps, warmup): the cosine decays over all steps, so a larger --max_steps would
              give the remaining steps other learning rates
    batch     may change while the global batch (rows per optimizer step) stays the same
              (resume.load_checkpoint checks it)
    free      where things are written, how often they are saved, logged and evaluated, and
              how a step is computed without changing what it computes
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

from colossal_llama.errors import ConfigError
from colossal_llama.training.config import TrainConfig

SAME, CONTENT, SCHEDULE, BATCH, FREE = "same", "content", "schedule", "batch", "free"

RESUME_RULES = {
    # what the run trains: compared by content
    "pretrained": CONTENT, "dataset": CONTENT, "eval_dataset": CONTENT,
    # what a step computes
    "plugin": SAME, "lr": SAME, "min_lr_ratio": SAME, "max_length": SAME, "mixed_precision": SAME,
    "grad_clip": SAME, "weight_decay": SAME, "use_neft": SAME, "neft_alpha": SAME,
    "freeze_non_embeds_params": SAME, "train_new_rows_only": SAME, "lora_rank": SAME, "lora_alpha": SAME,
    "packed_attention": SAME, "seed": SAME, "benchmark": SAME, "num_samples": SAME,
    # NEFTune's noise scales with the padded row length
    "padding_mode": SAME,
    # the parallel layout shapes the optimizer's saved shards (and is untested across a resume)
    "tp": SAME, "pp": SAME, "sp": SAME, "zero_stage": SAME, "sp_mode": SAME,
    "enable_sequence_parallelism": SAME, "zero_cpu_offload": SAME, "microbatch_size": SAME,
    # the learning-rate schedule
    "num_epochs": SCHEDULE, "max_steps": SCHEDULE, "warmup_steps": SCHEDULE,
    # the rows of a step
    "batch_size": BATCH, "accumulation_steps": BATCH,
    # where things go, how often, and how a step is computed (same numbers up to rounding; NEFTune's noise
    # scales with the padded row length, which --attention flex rounds up to whole 128-token tiles)
    "load_checkpoint": FREE, "weights_only": FREE, "save_interval": FREE, "save_dir": FREE,
    "keep_last_n_checkpoints": FREE, "export_dir": FREE, "tensorboard_dir": FREE, "config_file": FREE,
    "skip_save_each_epoch": FREE, "eval_interval": FREE, "log_interval": FREE, "trust_remote_code": FREE,
    "use_grad_checkpoint": FREE, "use_flash_attn": FREE, "attention": FREE, "dataloader_workers": FREE,
    "pad_token": FREE,
}

DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}


def part_fingerprint(part: str) -> str:
    """A prepared part's identity: its `datasets` fingerprint (derived by the preparation from the
    inputs' sha256, the tokenizer and the settings) and its files' names and sizes.

    Raises:
        ConfigError: the part has no readable state.json.
    """
    try:
        with open(os.path.join(part, "state.json"), encoding="utf-8") as f:
            state = json.load(f)
        files = sorted((d["filename"], os.path.getsize(os.path.join(part, d["filename"])))
                       for d in state.get("_data_files", []))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{part}: cannot read its state.json to identify the data ({exc})") from None
    blob = json.dumps({"fingerprint": state.get("_fingerprint"), "files": files})
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_identity(config: TrainConfig, tokenizer, total_steps: int, warmup_steps: int) -> dict:
    """Everything that determines the run's result (see the module docstring), as JSON."""
    from colossal_llama.tokenizer.loading import tokenizer_fingerprint

    parts = lambda paths: [{"path": p, "fingerprint": part_fingerprint(p)} for p in paths]  # noqa: E731
    return {"settings": {name: getattr(config, name) for name, rule in RESUME_RULES.items() if rule == SAME},
            "dataset": parts(config.dataset), "eval_dataset": parts(config.eval_dataset),
            "tokenizer": tokenizer_fingerprint(tokenizer),
            "schedule": {"total_steps": total_steps, "warmup_steps": warmup_steps}}


def _show(value) -> str:
    if isinstance(value, list):
        return " ".join(map(str, value)) or "(none)"
    return "(unset)" if value is None else str(value)


def _data_difference(flag: str, saved: list[dict], current: list[dict]) -> list[str]:
    if [p["fingerprint"] for p in saved] == [p["fingerprint"] for p in current]:
        return []
    paths = lambda parts: _show([p["path"] for p in parts])  # noqa: E731
    if len(saved) != len(current):
        return [f"saved with {flag} {paths(saved)}, this run has {paths(current)}"]
    return [f"saved with {flag} {s['path']}, this run has {c['path']} (other data)"
            for s, c in zip(saved, current) if s["fingerprint"] != c["fingerprint"]]


def run_differences(saved: dict, current: dict) -> list[str]:
    """What differs between a checkpoint's identity and this run's, one phrase each."""
    found = []
    for name, value in current["settings"].items():
        old = saved["settings"].get(name, DEFAULTS.get(name))  # a setting added since: it was at its default
        if old != value:
            found.append(f"saved with --{name} {_show(old)}, this run has {_show(value)}")
    for flag in ("dataset", "eval_dataset"):
        found += _data_difference(f"--{flag}", saved[flag], current[flag])
    if saved["tokenizer"] != current["tokenizer"]:
        found.append("saved with another tokenizer than this run's --pretrained has")
    old, new = saved["schedule"], current["schedule"]
    if old != new:
        found.append(f"saved with a schedule of {old['total_steps']} steps ({old['warmup_steps']} warmup), this run "
                     f"has {new['total_steps']} ({new['warmup_steps']} warmup) from --num_epochs, --max_steps, "
                     "--warmup_steps: the remaining steps would get other learning rates")
    return found


def check_same_run(folder: str, saved: dict | None, current: dict) -> None:
    """Refuse to resume a checkpoint trained on other data or settings, naming every difference.

    Raises:
        ConfigError: a difference, or a checkpoint that does not say what it was trained on.
    """
    if saved is None:
        raise ConfigError(f"--load_checkpoint {folder}: saved by an older version that did not record what it was "
                          "trained on; start a new stage from its weights with --weights_only")
    found = run_differences(saved, current)
    if found:
        raise ConfigError(f"--load_checkpoint {folder}: " + "; ".join(found) + ". Resume with the checkpoint's "
                          "settings (its train_config.json), or start a new stage from its weights with --weights_only")
