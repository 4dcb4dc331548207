"""Training as plain functions: setup() builds a Run, fit() trains it.

    run = setup(config)          # process group, plugin, tokenizer, data, model, optimizer, schedule, resume
    fit(run)                     # the loop: step -> log -> evaluate -> maybe_save; then the HF export

One loop for every plugin: it picks its step function once (`accumulate_step`,
or `pipeline_step` with pipeline parallelism) and has one `maybe_save`.
Everything a user can get wrong (paths, data made for another tokenizer or
length, a plugin without CUDA, a batch that does not divide, a bad
checkpoint) is raised from setup(), before the first step.
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist

from colossal_llama.errors import ConfigError
from colossal_llama.training.config import TrainConfig, check_machine
from colossal_llama.training.feed import Feed
from colossal_llama.training.resume import TrainState, save_checkpoint
from colossal_llama.training.steps import StepResult, accumulate_step, evaluate, pipeline_step


@dataclass
class Run:
    config: TrainConfig
    booster: object
    model: torch.nn.Module
    optimizer: object
    scheduler: object
    tokenizer: object
    train: Feed
    evaluation: Feed | None
    state: TrainState
    total_steps: int
    signature: dict
    identity: dict
    """What the run trains on and every setting that shapes its result (identity.py), saved in checkpoints."""
    device: torch.device
    rank: int = 0
    dp_group: object = None
    dp_size: int = 1
    is_main: bool = True
    no_sync: bool = False
    clips_in_loop: bool = True
    autocast: object = nullcontext
    monitor: object = None
    step_fn: object = None
    last_saved: int = -1


def total_steps(config: TrainConfig, steps_per_epoch: int) -> int:
    steps = config.num_epochs * steps_per_epoch
    return min(steps, config.max_steps) if config.max_steps else steps


def advance(run: Run, result: StepResult) -> bool:
    """Count a finished optimizer step; True when it ended an epoch."""
    state = run.state
    state.step += 1
    state.position += run.train.global_batch
    state.tokens_seen += result.tokens
    if state.position >= run.train.epoch_rows:
        state.epoch, state.position = state.epoch + 1, 0
        return True
    return False


def maybe_evaluate(run: Run, epoch_ended: bool) -> None:
    cfg = run.config
    if run.evaluation is None:
        return
    due = cfg.eval_interval and run.state.step % cfg.eval_interval == 0
    if due or epoch_ended or run.state.step == run.total_steps:
        loss, per_category = evaluate(run)
        run.monitor.log_eval(run.state.step, loss, per_category)


def maybe_save(run: Run, epoch_ended: bool) -> None:
    """Save every --save_interval steps, at each epoch end (unless skipped) and at the very end."""
    cfg, step = run.config, run.state.step
    due = (cfg.save_interval and step % cfg.save_interval == 0) or (epoch_ended and not cfg.skip_save_each_epoch)
    if (due or step == run.total_steps) and step != run.last_saved:
        folder = save_checkpoint(run)
        run.last_saved = step
        run.monitor.note(f"saved {folder}")


def fit(run: Run) -> str:
    """Train until the last step, saving and evaluating on the way; returns the exported HF folder."""
    from colossal_llama.training.export import export_model

    cfg, state = run.config, run.state
    try:
        while state.step < run.total_steps:
            epoch = state.epoch
            run.train.sampler.set_epoch(epoch, state.position)
            batches = iter(run.train.loader)
            while state.epoch == epoch and state.step < run.total_steps:
                micro_batches = [next(batches) for _ in range(cfg.accumulation_steps)]
                result = run.step_fn(run, micro_batches)
                epoch_ended = advance(run, result)
                run.monitor.log_step(state, result, run.scheduler.get_last_lr()[0], epoch)
                maybe_evaluate(run, epoch_ended)
                maybe_save(run, epoch_ended)
        maybe_save(run, epoch_ended=False)
        folder = export_model(run, cfg.export_dir or os.path.join(cfg.save_dir, "final"))
        run.monitor.note(f"exported the model to {folder}")
    finally:
        run.monitor.close()  # the metrics logged so far stay, even when a save fails
    return folder


def autocast_for(config: TrainConfig, device: torch.device):
    """ddp keeps fp32 weights and computes in bf16 under autocast; other plugins own their precision."""
    if config.plugin == "ddp" and config.mixed_precision == "bf16":
        return partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
    return nullcontext


def pick_step(config: TrainConfig):
    return pipeline_step if config.pp > 1 else accumulate_step


def check_config(config: TrainConfig) -> None:
    check_machine(config, torch.cuda.is_available())
    if config.load_checkpoint and config.load_checkpoint != "latest" and not os.path.isdir(config.load_checkpoint):
        raise ConfigError(f"--load_checkpoint {config.load_checkpoint}: folder does not exist")
    for path in config.dataset + config.eval_dataset:
        if not os.path.isdir(path):
            flag = "--dataset" if path in config.dataset else "--eval_dataset"
            raise ConfigError(f"{flag} {path}: folder does not exist")
    if not os.path.isdir(config.pretrained):
        raise ConfigError(f"--pretrained {config.pretrained}: folder does not exist")


def world_info(plugin) -> tuple[object, int, int]:
    """(data-parallel group, its size, this rank's index in it)."""
    group = getattr(plugin, "dp_group", None)
    if not dist.is_initialized():
        return None, 1, 0
    return group, dist.get_world_size(group), dist.get_rank(group)
