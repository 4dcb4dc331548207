"""One optimizer step, two ways, and evaluation, two ways.

`accumulate_step`: forward + backward of each micro-batch (gradients summed,
synchronised on the last one only where the plugin allows), then one
optimizer and one scheduler step. `pipeline_step`: the same through
ColossalAI's pipeline schedule (--pp > 1), which splits one batch into
micro-batches itself. Both weigh every label token of the step equally over
micro-batches and data-parallel ranks (see loss.py): every plugin averages
gradients over the data-parallel ranks, so each rank's backward uses
dp_size * (its summed loss) / (label tokens of the whole step).
`evaluate` runs `eval_batch` (or `pipeline_eval_batch` with --pp > 1) over
the evaluation data. Every loss comes from `loss.row_losses`.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist

from colossal_llama.data.loader import loss_categories
from colossal_llama.model.attention import document_block_mask
from colossal_llama.training.loss import label_tokens, pipeline_loss_sum, row_losses, step_tokens, trained_mask

if TYPE_CHECKING:
    from colossal_llama.training.loop import Run

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


@dataclass
class StepResult:
    loss: float
    """Mean loss over every label token of the step, all ranks."""
    tokens: int
    """Label tokens of the step, all ranks."""
    input_tokens: int
    """Non-padding input tokens of the step, all ranks."""
    row_length: int
    """Padded row length of the step's last micro-batch (for the attention FLOPs)."""
    padded_tokens: int = 0
    """Input positions including padding, all ranks (padding share = 1 - input_tokens / padded_tokens)."""
    grad_norm: float | None = None
    category_loss: dict = field(default_factory=dict)


def model_inputs(batch: dict, device) -> dict:
    """The model's keyword arguments on `device`; with document ids (--attention flex), the block mask
    built from them there."""
    inputs = {k: batch[k].to(device, non_blocking=True) for k in MODEL_INPUTS if k in batch}
    if "document_ids" in batch:
        inputs["attention_mask"] = document_block_mask(batch["document_ids"].to(device, non_blocking=True))
    return inputs


class CategoryTotals:
    """Loss sums and label-token counts per category, summed over ranks on demand.

    Counted per segment: a label token belongs to the category of the segment
    (document or conversation) that holds it, so a row packed across
    categories adds to each of its categories.
    """

    def __init__(self, categories: list[str]):
        self.index = {c: i for i, c in enumerate(categories)}
        self.sums = torch.zeros(len(categories), dtype=torch.float64)
        self.counts = torch.zeros(len(categories), dtype=torch.float64)

    def add(self, batch: dict, losses: torch.Tensor) -> None:
        """Add a micro-batch's per-column losses (`RowLosses.tokens`, B x L - 1)."""
        if "segments" not in batch:
            return
        # summed where the losses are: no (B, L - 1) copy to the host (and no GPU sync) per micro-batch
        device = losses.device
        self.sums, self.counts = self.sums.to(device), self.counts.to(device)
        trained = trained_mask(batch["labels"]).to(device)
        index = batch.get("loss_category")  # the collator's, when it knew the categories
        if index is None:
            index = loss_categories(batch["segments"], self.index, trained.shape[1] + 1)
        index = index.to(device, non_blocking=True)
        keep = (trained & (index >= 0)).double()
        # every column added, weighted 0 where not counted: boolean indexing would wait for the GPU
        columns = index.clamp(min=0).flatten()
        self.sums.index_add_(0, columns, (losses.detach().double() * keep).flatten())
        self.counts.index_add_(0, columns, keep.flatten())

    def reduce(self, device, group) -> dict:
        both = torch.stack([self.sums, self.counts]).to(device)
        if dist.is_initialized():
            dist.all_reduce(both, group=group)
        both = both.cpu()
        return {c: float(both[0, i] / both[1, i]) for c, i in self.index.items() if both[1, i] > 0}


def _sum_over(values: list[float], device, group) -> list[float]:
    both = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(both, group=group)
    return both.cpu().tolist()


def _optimizer_step(run: Run) -> float | None:
    """Clip (where the loop owns clipping), step optimizer and scheduler; returns the gradient norm."""
    norm = None
    if run.clips_in_loop:
        max_norm = run.config.grad_clip or float("inf")
        norm = float(run.optimizer.clip_grad_by_norm(max_norm))
    run.optimizer.step()
    if not run.clips_in_loop:
        try:
            norm = float(run.optimizer.get_grad_norm())
        except (NotImplementedError, AttributeError, TypeError):
            norm = None
    run.scheduler.step()
    run.optimizer.zero_grad()
    return norm


def accumulate_step(run: Run, micro_batches: list[dict]) -> StepResult:
    """Forward and backward over the micro-batches, then one optimizer step."""
    all_reduce = (lambda t: dist.all_reduce(t, group=run.dp_group)) if dist.is_initialized() else None
    n = step_tokens(micro_batches, all_reduce, run.device)
    scale = run.dp_size / max(n, 1)
    # summed on the device: a float() per micro-batch would wait for its backward before the next forward
    totals, inputs = CategoryTotals(run.train.categories), 0
    local_sum = torch.zeros((), dtype=torch.float64, device=run.device)
    for i, batch in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        sync = nullcontext() if last or not run.no_sync else run.booster.no_sync(run.model, run.optimizer)
        with sync:
            with run.autocast():
                logits = run.model(**model_inputs(batch, run.device)).logits
            losses = row_losses(logits, batch["labels"].to(run.device))
            run.booster.backward(losses.sums.sum() * scale, run.optimizer)
        totals.add(batch, losses.tokens)
        local_sum += losses.sums.detach().sum().double()
        inputs += int(batch["lengths"].sum())
    norm = _optimizer_step(run)
    padded = sum(b["input_ids"].numel() for b in micro_batches)
    total, input_tokens, padded = _sum_over([float(local_sum), inputs, padded], run.device, run.dp_group)
    return StepResult(loss=total / max(n, 1), tokens=n, input_tokens=int(input_tokens), padded_tokens=int(padded),
                      row_length=micro_batches[-1]["input_ids"].shape[1], grad_norm=norm,
                      category_loss=totals.reduce(run.device, run.dp_group))


def pipeline_step(run: Run, micro_batches: list[dict]) -> StepResult:
    """One optimizer step through the pipeline schedule (--pp > 1, one batch per step)."""
    (batch,) = micro_batches
    all_reduce = (lambda t: dist.all_reduce(t, group=run.dp_group)) if dist.is_initialized() else None
    n = step_tokens([batch], all_reduce, run.device)
    microbatches = run.config.batch_size // run.config.microbatch_size
    # the schedule divides each micro-batch's loss by their number
    scale = run.dp_size * microbatches / max(n, 1)
    tensors = {**model_inputs(batch, run.device), "labels": batch["labels"].to(run.device)}

    def criterion(outputs, inputs):
        return row_losses(outputs.logits, inputs["labels"]).sums.sum() * scale

    out = run.booster.execute_pipeline(iter([tensors]), run.model, criterion, run.optimizer, return_loss=True)
    norm = _optimizer_step(run)
    # the loss exists on the last stage only: move it to every rank, then sum over data-parallel ranks
    local = torch.zeros(1, dtype=torch.float64, device=run.device)
    if out.get("loss") is not None:
        local += float(out["loss"]) / run.dp_size
    dist.all_reduce(local)  # over all ranks: pp stages (one non-zero) and dp ranks; tp ranks repeat it
    mean = float(local) / run.config.tp
    input_tokens, padded = _sum_over([float(batch["lengths"].sum()), batch["input_ids"].numel()], run.device,
                                     run.dp_group)
    return StepResult(loss=mean, tokens=n, input_tokens=int(input_tokens), padded_tokens=int(padded),
                      row_length=batch["input_ids"].shape[1],
                      grad_norm=norm)


def eval_batch(run: Run, batch: dict, totals: CategoryTotals) -> tuple[float, int]:
    """Summed loss and label tokens of one evaluation batch on this rank (adds to the per-category totals)."""
    with run.autocast():
        logits = run.model(**model_inputs(batch, run.device)).logits
    losses = row_losses(logits, batch["labels"].to(run.device))
    totals.add(batch, losses.tokens)
    return float(losses.sums.sum()), int(losses.counts.sum())


def pipeline_eval_batch(run: Run, batch: dict, totals: CategoryTotals) -> tuple[float, int]:
    """The same through the pipeline schedule (--pp > 1); the loss exists on the last stage only (0 elsewhere),
    and there is no per-category loss (the logits never leave the last stage)."""
    tensors = {**model_inputs(batch, run.device), "labels": batch["labels"].to(run.device)}
    out = run.booster.execute_pipeline(iter([tensors]), run.model,
                                       lambda o, i: row_losses(o.logits, i["labels"]).sums.sum(), None,
                                       return_loss=True)
    reported = out.get("loss")
    loss = 0.0 if reported is None else pipeline_loss_sum(float(reported), batch["input_ids"].shape[0],
                                                          run.config.microbatch_size)
    return loss, label_tokens(batch["labels"])


# what ColossalAI's pipeline schedules remember of the last batch (1F1B: num_microbatches, interleaved:
# num_microbatch); a forward-only pass sets them from its own batch
SCHEDULE_STATE = ("num_microbatches", "num_microbatch", "last_batch_size", "enable_metadata_cache")


@contextmanager
def training_schedule_kept(booster):
    """Evaluation through the pipeline leaves the schedule as training had it.

    A forward-only pass over a short last evaluation batch (fewer rows than
    --batch_size) sets the schedule's micro-batch count and last batch size
    from that batch, and the next training step would then fail ColossalAI's
    `last_batch_size == batch_size` assert (colossalai 0.5.0,
    `one_f_one_b.load_batch`)."""
    schedule = getattr(getattr(booster, "plugin", None), "scheduler", None)
    kept = {name: getattr(schedule, name) for name in SCHEDULE_STATE if hasattr(schedule, name)}
    try:
        yield
    finally:
        for name, value in kept.items():
            setattr(schedule, name, value)


@torch.no_grad()
def evaluate(run: Run) -> tuple[float, dict]:
    """Mean loss over every label token of the evaluation data (all ranks), and per category."""
    pipelined = run.config.pp > 1
    step = pipeline_eval_batch if pipelined else eval_batch
    run.model.eval()
    totals = CategoryTotals(run.evaluation.categories)
    local = [0.0, 0.0]
    run.evaluation.sampler.set_epoch(0, 0)
    with training_schedule_kept(run.booster) if pipelined else nullcontext():
        for batch in run.evaluation.loader:
            loss, tokens = step(run, batch, totals)
            local[0] += loss
            local[1] += tokens
    run.model.train()
    if pipelined:
        # summed over all ranks: each stage counted the tokens, the loss came from the last one (tp ranks
        # repeat both, which cancels in the ratio)
        total, count = _sum_over(local, run.device, None)
        count /= run.config.pp
    else:
        total, count = _sum_over(local, run.device, run.dp_group)
    return total / max(count, 1), totals.reduce(run.device, run.dp_group)
