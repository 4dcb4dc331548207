"""Saving and loading the whole training state: checkpoints a run resumes from exactly.

    <save_dir>/step-00000012/
        model/  optimizer/          booster.save_model (safetensors shards) / save_optimizer (ColossalAI's
                                    torch.save shards; ddp: optimizer.pt, whole: see below)
        lr_scheduler.json           the scheduler's state_dict
        rng/rank-00000.safetensors  each rank's torch, CUDA, numpy and Python generator states
        state.json                  step, epoch, data position (global rows), tokens seen, global batch,
                                    data-parallel size, the model's signature, what the run trains on
                                    and with which settings (identity.py: seed, LoRA rank, ...)
        train_config.json           the resolved config
        tokenizer/                  the tokenizer the data was made with
        files.json                  every file's size and xxh3_64 content hash, written last

Resuming runs no code from the folder: what this project writes is
safetensors and JSON (`state_files.py`), and the files ColossalAI writes with
torch.save are read under `safe_loading()` (weights_only, no TorchScript).
Before anything is loaded, every file of files.json is checked: present,
its size, then its hash (a truncated, flipped or replaced file is named and
refused), and every .json / .safetensors must parse as one.

The data position is a global row count, so a run resumes with another
number of processes as long as the global batch (rows per optimizer step over
all ranks) is the same; otherwise the rows of a step would change, and it is
refused.

Under ddp every rank holds the whole optimizer state, and ColossalAI's
sharded optimizer loader calls an accelerator synchronize that its CPU
accelerator refuses, so ddp writes the optimizer unsharded (`optimizer.pt`;
`plugins.PluginSpec.whole_optimizer`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

import torch.distributed as dist

from colossal_llama.errors import ConfigError, UnsafeFileError
from colossal_llama.safe_loading import safe_loading
from colossal_llama.tokenizer.folder import save_tokenizer
from colossal_llama.training.checkpoint import atomic_checkpoint, latest_checkpoint, prune_checkpoints
from colossal_llama.training.identity import check_same_run
from colossal_llama.training.plugins import spec_of
from colossal_llama.training.state_files import (check_formats, index_files, load_rng, load_scheduler, save_rng,
                                                 save_scheduler, verify_files)


@dataclass
class TrainState:
    epoch: int = 0
    position: int = 0
    """Global rows of this epoch already consumed."""
    step: int = 0
    """Optimizer steps done in all."""
    tokens_seen: int = 0
    """Label tokens trained on in all."""


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def save_checkpoint(run) -> str:
    """Write the checkpoint of the current step; returns its folder."""
    cfg, state = run.config, run.state
    with atomic_checkpoint(cfg.save_dir, state.step, is_main=run.is_main, barrier=barrier) as folder:
        run.booster.save_model(run.model, os.path.join(folder, "model"), shard=True, use_safetensors=True)
        whole = spec_of(cfg.plugin).whole_optimizer
        run.booster.save_optimizer(run.optimizer, optimizer_path(run, folder), shard=not whole)
        if run.is_main:  # the same schedule on every rank
            save_scheduler(os.path.join(folder, "lr_scheduler.json"), run.scheduler)
        os.makedirs(os.path.join(folder, "rng"), exist_ok=True)
        save_rng(rng_path(folder, run.rank))
        if run.is_main:
            # the seed, LoRA rank and every other setting that shapes the result are in the identity ("run")
            info = {"state": dataclasses.asdict(state), "global_batch": run.train.global_batch,
                    "dp_size": run.dp_size, "model": run.signature, "run": run.identity}
            _write_json(os.path.join(folder, "state.json"), info)
            _write_json(os.path.join(folder, "train_config.json"), cfg.to_dict())
            # checked once, where the run loaded it (build.py) and at the export: the same tokenizer every save
            save_tokenizer(run.tokenizer, os.path.join(folder, "tokenizer"), check=False)
        barrier()
        if run.is_main:
            _write_json(os.path.join(folder, "files.json"), index_files(folder))
    if run.is_main:
        prune_checkpoints(cfg.save_dir, cfg.keep_last_n_checkpoints)
    barrier()
    return os.path.join(cfg.save_dir, f"step-{state.step:08d}")


def rng_path(folder: str, rank: int) -> str:
    return os.path.join(folder, "rng", f"rank-{rank:05d}.safetensors")


def optimizer_path(run, folder: str) -> str:
    """Where the optimizer state is in checkpoint `folder`: a file or a folder of shards, by plugin."""
    return os.path.join(folder, spec_of(run.config.plugin).optimizer_file)


def _write_json(path: str, data) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


def resolve_checkpoint(path: str | None, save_dir: str) -> str | None:
    """`latest` -> the newest complete checkpoint in save_dir (None when there is none yet)."""
    if path == "latest":
        return latest_checkpoint(save_dir)
    return path


def read_checkpoint_info(folder: str, weights_only: bool = False) -> dict:
    """state.json of a complete checkpoint whose files all match files.json (sizes, then hashes).

    `weights_only` checks only what a weights-only load reads (model/ and state.json: the optimizer state,
    twice the model's size under Adam, is neither hashed nor needed), and also accepts an older checkpoint
    whose files.json has sizes only (checked).

    Raises:
        ConfigError: a missing folder, a partial checkpoint, a missing, truncated or changed file, a .json or
            .safetensors file that is not one, or a checkpoint of an older version (no hashes).
    """
    if not os.path.isdir(folder):
        raise ConfigError(f"--load_checkpoint {folder}: folder does not exist")
    files_path = os.path.join(folder, "files.json")
    if not os.path.isfile(files_path):
        raise ConfigError(f"--load_checkpoint {folder}: not a complete checkpoint (no files.json: the save did not "
                          "finish); load the previous one")
    expected = _read_json(folder, "files.json")
    if weights_only and isinstance(expected, dict):
        expected = {name: entry for name, entry in expected.items() if name == "state.json" or name.startswith("model/")}
    verify_files(folder, expected, f"--load_checkpoint {folder}", sizes_only_ok=weights_only)
    check_formats(folder, expected, f"--load_checkpoint {folder}")
    return _read_json(folder, "state.json")


def _read_json(folder: str, name: str):
    try:
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--load_checkpoint {folder}: {name} is unreadable or not valid JSON ({exc})") from exc


def _load_part(folder: str, name: str, load) -> None:
    """Run one loader under safe_loading(); any failure becomes a ConfigError naming the file."""
    with safe_loading() as refused:
        try:
            load()
        except Exception as exc:  # torch/safetensors raise many kinds on damaged files
            if refused or isinstance(exc, UnsafeFileError):  # (a loader may reword the refusal)
                bad = refused[0] if refused else exc
                where = os.path.relpath(bad.path, folder)
                raise ConfigError(f"--load_checkpoint {folder}: {where}: {bad.reason}") from None
            raise ConfigError(f"--load_checkpoint {folder}: corrupt checkpoint, {name} ({type(exc).__name__}: "
                              f"{exc})") from exc


def check_same_model(folder: str, saved: dict, signature: dict) -> None:
    if saved != signature:
        diff = ", ".join(f"{k} {saved.get(k)} vs {signature.get(k)}" for k in signature if saved.get(k) != signature[k])
        raise ConfigError(f"--load_checkpoint {folder}: saved from a different model ({diff}, checkpoint vs "
                          f"--pretrained)")


def load_checkpoint(run, folder: str) -> None:
    """Restore model, optimizer, scheduler, RNG and data position from `folder`.

    Raises:
        ConfigError: a partial, truncated or corrupt checkpoint, another model, another global batch, or
            other data or settings (identity.py names each).
    """
    info = read_checkpoint_info(folder)
    check_same_model(folder, info["model"], run.signature)
    if info["global_batch"] != run.train.global_batch:
        raise ConfigError(
            f"--load_checkpoint {folder}: saved with a global batch of {info['global_batch']} rows per step "
            f"({info['dp_size']} data-parallel processes), this run has {run.train.global_batch}; set --batch_size "
            f"x --accumulation_steps x processes to {info['global_batch']} to resume, or use --weights_only")
    check_same_run(folder, info.get("run"), run.identity)
    optimizer = optimizer_path(run, folder)
    _load_part(folder, "model", lambda: run.booster.load_model(run.model, os.path.join(folder, "model")))
    _load_part(folder, os.path.basename(optimizer), lambda: run.booster.load_optimizer(run.optimizer, optimizer))
    _load_part(folder, "lr_scheduler.json",
               lambda: load_scheduler(os.path.join(folder, "lr_scheduler.json"), run.scheduler))
    rng = rng_path(folder, run.rank)
    if os.path.exists(rng):  # a new rank (more processes than before) keeps its seeded state
        _load_part(folder, os.path.relpath(rng, folder), lambda: load_rng(rng))
    run.state = TrainState(**info["state"])


def load_weights(run, folder: str) -> None:
    """Only the model weights, from a checkpoint or an HF model folder (the start of a new stage)."""
    if os.path.isfile(os.path.join(folder, "files.json")):
        info = read_checkpoint_info(folder, weights_only=True)
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
        with safe_loading():
            run.booster.load_model(run.model, source)
    except UnsafeFileError as exc:
        raise ConfigError(f"--load_checkpoint {folder}: {exc}") from None
    except Exception as exc:
        raise ConfigError(f"--load_checkpoint {folder}: cannot load its weights into this model "
                          f"({type(exc).__name__}: {exc})") from exc
