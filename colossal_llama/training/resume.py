"""Saving and loading the whole training state: checkpoints a run resumes from exactly.

    <save_dir>/step-00000012/
        model/  optimizer/          booster.save_model / save_optimizer (sharded; ddp: optimizer.pt, whole)
        lr_scheduler.pt             booster.save_lr_scheduler
        rng/rank-00000.pt           each rank's torch, CUDA, numpy and Python generator states
        state.json                  step, epoch, data position (global rows), tokens seen, global batch,
                                    the model's signature
        train_config.json           the resolved config
        tokenizer/                  the tokenizer the data was made with
        files.json                  every file's size, written last: a truncated file is caught before loading

The data position is a global row count, so a run resumes with another
number of processes as long as the global batch (rows per optimizer step over
all ranks) is the same; otherwise the rows of a step would change, and it is
refused.

Under ddp every rank holds the whole optimizer state, and ColossalAI's
sharded optimizer loader calls an accelerator synchronize that its CPU
accelerator refuses, so ddp writes the optimizer unsharded (`optimizer.pt`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from colossal_llama.config import ConfigError
from colossal_llama.tokenizer.folder import save_tokenizer
from colossal_llama.training.checkpoint import atomic_checkpoint, latest_checkpoint, prune_checkpoints


@dataclass
class TrainState:
    epoch: int = 0
    position: int = 0
    """Global rows of this epoch already consumed."""
    step: int = 0
    """Optimizer steps done in all."""
    tokens_seen: int = 0
    """Label tokens trained on in all."""


def rng_states() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def list_files(folder: str) -> dict:
    sizes = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            sizes[os.path.relpath(path, folder)] = os.path.getsize(path)
    return sizes


def save_checkpoint(run) -> str:
    """Write the checkpoint of the current step; returns its folder."""
    cfg, state = run.config, run.state
    with atomic_checkpoint(cfg.save_dir, state.step, is_main=run.is_main, barrier=barrier) as folder:
        run.booster.save_model(run.model, os.path.join(folder, "model"), shard=True, use_safetensors=True)
        run.booster.save_optimizer(run.optimizer, optimizer_path(run, folder), shard=run.config.plugin != "ddp")
        run.booster.save_lr_scheduler(run.scheduler, os.path.join(folder, "lr_scheduler.pt"))
        os.makedirs(os.path.join(folder, "rng"), exist_ok=True)
        torch.save(rng_states(), os.path.join(folder, "rng", f"rank-{run.rank:05d}.pt"))
        if run.is_main:
            info = {"state": dataclasses.asdict(state), "global_batch": run.train.global_batch,
                    "dp_size": run.dp_size, "seed": cfg.seed, "model": run.signature,
                    "lora_rank": cfg.lora_rank}
            _write_json(os.path.join(folder, "state.json"), info)
            _write_json(os.path.join(folder, "train_config.json"), cfg.to_dict())
            save_tokenizer(run.tokenizer, os.path.join(folder, "tokenizer"))
        barrier()
        if run.is_main:
            _write_json(os.path.join(folder, "files.json"), list_files(folder))
    if run.is_main:
        prune_checkpoints(cfg.save_dir, cfg.keep_last_n_checkpoints)
    barrier()
    return os.path.join(cfg.save_dir, f"step-{state.step:08d}")


def optimizer_path(run, folder: str) -> str:
    return os.path.join(folder, "optimizer.pt" if run.config.plugin == "ddp" else "optimizer")


def _write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


def resolve_checkpoint(path: str | None, save_dir: str) -> str | None:
    """`latest` -> the newest complete checkpoint in save_dir (None when there is none yet)."""
    if path == "latest":
        return latest_checkpoint(save_dir)
    return path


def read_checkpoint_info(folder: str) -> dict:
    """state.json of a complete, untruncated checkpoint.

    Raises:
        ConfigError: a missing folder, a partial or truncated checkpoint.
    """
    if not os.path.isdir(folder):
        raise ConfigError(f"--load_checkpoint {folder}: folder does not exist")
    files_path = os.path.join(folder, "files.json")
    if not os.path.isfile(files_path):
        raise ConfigError(f"--load_checkpoint {folder}: not a complete checkpoint (no files.json: the save did not "
                          "finish); load the previous one")
    try:
        with open(files_path, encoding="utf-8") as f:
            expected = json.load(f)
        with open(os.path.join(folder, "state.json"), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--load_checkpoint {folder}: unreadable checkpoint index ({exc})") from exc
    for name, size in expected.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise ConfigError(f"--load_checkpoint {folder}: {name} is missing")
        if os.path.getsize(path) != size:
            raise ConfigError(f"--load_checkpoint {folder}: {name} is truncated or changed "
                              f"({os.path.getsize(path)} bytes, {size} when saved)")
    return info


def check_same_model(folder: str, saved: dict, signature: dict) -> None:
    if saved != signature:
        diff = ", ".join(f"{k} {saved.get(k)} vs {signature.get(k)}" for k in signature if saved.get(k) != signature[k])
        raise ConfigError(f"--load_checkpoint {folder}: saved from a different model ({diff}, checkpoint vs "
                          f"--pretrained)")


def load_checkpoint(run, folder: str) -> None:
    """Restore model, optimizer, scheduler, RNG and data position from `folder`.

    Raises:
        ConfigError: a partial, truncated or corrupt checkpoint, another model, or another global batch.
    """
    info = read_checkpoint_info(folder)
    check_same_model(folder, info["model"], run.signature)
    if info.get("lora_rank", 0) != run.config.lora_rank:
        raise ConfigError(f"--load_checkpoint {folder}: saved with --lora_rank {info.get('lora_rank', 0)}, "
                          f"this run has {run.config.lora_rank}")
    if info["global_batch"] != run.train.global_batch:
        raise ConfigError(
            f"--load_checkpoint {folder}: saved with a global batch of {info['global_batch']} rows per step "
            f"({info['dp_size']} data-parallel processes), this run has {run.train.global_batch}; set --batch_size "
            f"x --accumulation_steps x processes to {info['global_batch']} to resume, or use --weights_only")
    if info["seed"] != run.config.seed:
        raise ConfigError(f"--load_checkpoint {folder}: saved with --seed {info['seed']}, this run has "
                          f"{run.config.seed} (the data order would change)")
    try:
        run.booster.load_model(run.model, os.path.join(folder, "model"))
        run.booster.load_optimizer(run.optimizer, optimizer_path(run, folder))
        run.booster.load_lr_scheduler(run.scheduler, os.path.join(folder, "lr_scheduler.pt"))
        rng = os.path.join(folder, "rng", f"rank-{run.rank:05d}.pt")
        if os.path.exists(rng):  # a new rank (more processes than before) keeps its seeded state
            set_rng_states(torch.load(rng, weights_only=False))
    except Exception as exc:  # torch/safetensors raise many kinds on damaged files
        raise ConfigError(f"--load_checkpoint {folder}: corrupt checkpoint ({type(exc).__name__}: {exc})") from exc
    run.state = TrainState(**info["state"])


def load_weights(run, folder: str) -> None:
    """Only the model weights, from a checkpoint or an HF model folder (the start of a new stage)."""
    if os.path.isfile(os.path.join(folder, "files.json")):
        info = read_checkpoint_info(folder)
        check_same_model(folder, info["model"], run.signature)
        source = os.path.join(folder, "model")
    elif os.path.isfile(os.path.join(folder, "config.json")):
        source = folder
        if not any(n.endswith(".index.json") for n in os.listdir(folder)):
            source = os.path.join(folder, "model.safetensors")
    else:
        raise ConfigError(f"--load_checkpoint {folder}: neither a checkpoint (files.json) nor an HF model folder "
                          "(config.json)")
    try:
        run.booster.load_model(run.model, source)
    except Exception as exc:
        raise ConfigError(f"--load_checkpoint {folder}: cannot load its weights into this model "
                          f"({type(exc).__name__}: {exc})") from exc
