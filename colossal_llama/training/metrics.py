"""Watching a run: tensorboard scalars and `metrics.jsonl` on rank 0, a tqdm bar, a summary line, MFU.

    tensorboard --logdir logs_dir

Scalars (x axis: optimizer step): train/loss, train/lr, train/grad_norm,
train/tokens_per_s (non-padding input tokens, all ranks), train/label_tokens_seen, train/padding_share,
train/data_wait_share (the share of the steps' time spent waiting for their batches),
train/loss/<category>, eval/loss and eval/loss/<category>, and train/mfu on GPU.
`metrics.jsonl` holds the same numbers, one JSON object per logged step, for
readers without tensorboard: the stage runner (its summary of a stage's last
step), benchmarks/train_throughput.py and the tests; the stage report's plots
read the tensorboard events. A resumed run first drops the lines after its
checkpoint's step, so each step is there once (tensorboard's readers keep the
last value of a step anyway).

MFU = achieved FLOP/s / (devices * peak FLOP/s per device), with the FLOPs of
a token = 6 N (N parameters: forward and backward matmuls) + 12 * layers *
hidden * row length (attention scores and values, PaLM appendix B,
https://arxiv.org/abs/2204.02311). With isolated documents the attention
term is an upper bound (a document attends within itself only).
"""

from __future__ import annotations

import json
import os
import sys
import time

from tqdm import tqdm

from colossal_llama.outputs import replace_file

# dense bf16/fp16 tensor-core peak per device, from the vendors' data sheets (FLOP/s)
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "H800": 989e12, "H20": 148e12, "A100": 312e12, "A800": 312e12,
              "L40S": 362e12, "A10": 125e12, "4090": 165e12, "V100": 125e12}


def device_peak_flops(device_name: str) -> float | None:
    for key, flops in PEAK_FLOPS.items():
        if key in device_name:
            return flops
    return None


def flops_per_token(parameters: int, layers: int, hidden: int, row_length: int) -> float:
    return 6 * parameters + 12 * layers * hidden * row_length


def keep_metrics_until(path: str, step: int) -> None:
    """Drop the lines of `metrics.jsonl` after `step`, where a run starting at `step` (0: a fresh one)
    continues: a resumed run logs again the steps after its checkpoint, which the run it resumes had
    logged already. A half-written line (of a killed run) goes too. Rewritten as a new file renamed
    over the old, so a crash leaves one or the other."""
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            if line.endswith("\n") and json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            pass
    if kept == lines:
        return
    replace_file(path, "".join(kept))


class Monitor:
    """Logs on the main process only; every other rank gets a Monitor that does nothing."""

    def __init__(self, config, is_main: bool, total_steps: int, first_step: int, flops_token=None,
                 peak_flops: float | None = None, devices: int = 1):
        self.is_main, self.log_interval = is_main, config.log_interval
        self.flops_token, self.peak_flops, self.devices = flops_token, peak_flops, devices
        self.writer = self.jsonl = self.bar = None
        self.last = time.perf_counter()
        self.window_tokens, self.window_wait, self.window_steps = 0, 0.0, 0.0
        if not is_main:
            return
        from torch.utils.tensorboard import SummaryWriter

        os.makedirs(config.tensorboard_dir, exist_ok=True)
        self.writer = SummaryWriter(config.tensorboard_dir)
        path = os.path.join(config.tensorboard_dir, "metrics.jsonl")
        keep_metrics_until(path, first_step)
        self.jsonl = open(path, "a", encoding="utf-8")
        self.bar = tqdm(total=total_steps, initial=first_step, desc="train", unit="step", file=sys.stderr,
                        dynamic_ncols=True)

    def _record(self, step: int, values: dict) -> None:
        for name, value in values.items():
            if value is not None and name != "step":
                self.writer.add_scalar(name, value, step)
        self.jsonl.write(json.dumps({"step": step, **values}) + "\n")
        self.jsonl.flush()

    def log_step(self, state, result, lr: float, epoch: int, data_wait: float = 0.0, took: float = 0.0) -> None:
        """Called after every optimizer step; writes every `log_interval` steps.

        Args:
            data_wait: seconds the step waited for its micro-batches.
            took: seconds of the whole step, the wait included (not evaluations or saves).
        """
        if not self.is_main:
            return
        self.window_tokens += result.input_tokens
        self.window_wait, self.window_steps = self.window_wait + data_wait, self.window_steps + took
        self.bar.update(1)
        if state.step % self.log_interval:
            return
        now = time.perf_counter()
        elapsed = max(now - self.last, 1e-9)
        tokens_per_s, wait_share = self.window_tokens / elapsed, self.window_wait / max(self.window_steps, 1e-9)
        self.last, self.window_tokens, self.window_wait, self.window_steps = now, 0, 0.0, 0.0
        values = {"train/loss": result.loss, "train/lr": lr, "train/grad_norm": result.grad_norm,
                  "train/tokens_per_s": tokens_per_s, "train/label_tokens_seen": state.tokens_seen,
                  "train/epoch": epoch, "train/row_length": result.row_length,
                  "train/padding_share": 1 - result.input_tokens / max(result.padded_tokens, 1),
                  "train/data_wait_share": wait_share}
        if self.flops_token and self.peak_flops:
            flops = self.flops_token(result.row_length)
            values["train/mfu"] = tokens_per_s * flops / (self.devices * self.peak_flops)
        values.update({f"train/loss/{c}": loss for c, loss in result.category_loss.items()})
        self._record(state.step, values)
        grad = "" if result.grad_norm is None else f" | grad {result.grad_norm:.3f}"
        mfu = f" | MFU {values['train/mfu']:.1%}" if "train/mfu" in values else ""
        self.bar.set_postfix(loss=f"{result.loss:.4f}", refresh=False)
        self.bar.write(f"step {state.step}/{self.bar.total} | epoch {epoch} | loss {result.loss:.4f} | lr {lr:.3e}"
                       f"{grad} | {tokens_per_s:,.0f} tok/s{mfu} | {state.tokens_seen:,} label tokens",
                       file=sys.stderr)

    def log_eval(self, step: int, loss: float, category_loss: dict) -> None:
        if not self.is_main:
            return
        values = {"eval/loss": loss, **{f"eval/loss/{c}": v for c, v in category_loss.items()}}
        self._record(step, values)
        per = ", ".join(f"{c} {v:.4f}" for c, v in category_loss.items())
        self.bar.write(f"eval at step {step}: loss {loss:.4f}" + (f" ({per})" if per else ""), file=sys.stderr)
        self.last = time.perf_counter()  # evaluation time is not training throughput

    def note(self, message: str) -> None:
        if self.is_main:
            (self.bar.write if self.bar else print)(message, file=sys.stderr)

    def close(self) -> None:
        if self.is_main:
            self.bar.close()
            self.writer.close()
            self.jsonl.close()
