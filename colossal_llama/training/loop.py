"""The training loop: fit() trains the Run that build.setup() made.

    run = setup(config)          # build.py: plugin, tokenizer, data, model, optimizer, schedule, resume
    fit(run)                     # the loop: step -> log -> evaluate -> maybe_save; then the HF export

One loop for every plugin: setup() picks its step function once
(`accumulate_step`, or `pipeline_step` with pipeline parallelism), and there
is one `maybe_save`. Nothing here checks user input: everything a user can
get wrong is raised from setup(), before the first step.
"""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ContextManager

import torch

from colossal_llama.training.config import TrainConfig
from colossal_llama.training.feed import Feed
from colossal_llama.training.resume import TrainState, save_checkpoint
from colossal_llama.training.steps import StepResult, evaluate

if TYPE_CHECKING:  # heavy imports, for the annotations only
    import torch.distributed as dist
    from colossalai.booster import Booster
    from colossalai.interface import OptimizerWrapper
    from transformers import PreTrainedTokenizerBase

    from colossal_llama.training.metrics import Monitor

StepFn = Callable[["Run", list[dict]], StepResult]
"""One optimizer step over a step's micro-batches (`steps.accumulate_step` or `steps.pipeline_step`)."""


@dataclass
class Run:
    """Everything fit() works on: what setup() built, and the training state."""

    config: TrainConfig
    booster: Booster
    model: torch.nn.Module
    optimizer: OptimizerWrapper
    """The boosted optimizer: a torch optimizer wrapped by the plugin (it clips and reports the grad norm)."""
    scheduler: torch.optim.lr_scheduler.LRScheduler
    tokenizer: PreTrainedTokenizerBase
    train: Feed
    evaluation: Feed | None
    state: TrainState
    total_steps: int
    signature: dict
    identity: dict
    """What the run trains on and every setting that shapes its result (identity.py), saved in checkpoints."""
    device: torch.device
    rank: int = 0
    dp_group: dist.ProcessGroup | None = None
    dp_size: int = 1
    is_main: bool = True
    no_sync: bool = False
    """Skip the gradient all-reduce on all micro-batches but the last (plugins.PluginSpec.no_sync)."""
    clips_in_loop: bool = True
    """The loop clips the gradient norm, not the plugin (plugins.PluginSpec.clips_in_loop)."""
    autocast: Callable[[], ContextManager] = nullcontext
    monitor: Monitor | None = None
    step_fn: StepFn | None = None
    last_saved: int = -1


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
    """Evaluate every --eval_interval steps, at each epoch end and at the very end (with --eval_dataset)."""
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
                asked = time.perf_counter()
                micro_batches = [next(batches) for _ in range(cfg.accumulation_steps)]
                waited = time.perf_counter() - asked  # the loader's workers were behind (or there are none)
                result = run.step_fn(run, micro_batches)
                took = time.perf_counter() - asked
                epoch_ended = advance(run, result)
                run.monitor.log_step(state, result, run.scheduler.get_last_lr()[0], epoch, waited, took)
                maybe_evaluate(run, epoch_ended)
                maybe_save(run, epoch_ended)
        maybe_save(run, epoch_ended=False)
        folder = export_model(run, cfg.export_dir or os.path.join(cfg.save_dir, "final"))
        run.monitor.note(f"exported the model to {folder}")
    finally:
        run.monitor.close()  # the metrics logged so far stay, even when a save fails
    return folder
