"""Learning-rate schedule, the plugin table, and the loss arithmetic."""

import contextlib
import math

import pytest
import torch

from colossal_llama.errors import PluginError
from colossal_llama.training.plugins import PLUGINS, PluginSettings, check_cuda, make_plugin, spec_of
from colossal_llama.training.schedule import lr_at, warmup_cosine


def test_lr_sequence():
    seq = [lr_at(s, 1e-3, warmup_steps=4, total_steps=12, min_lr=1e-4) for s in range(14)]
    assert seq[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])  # linear warmup reaching the base
    assert seq[4] == pytest.approx(1e-3)  # cosine starts at the top
    assert seq[8] == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert seq[12] == pytest.approx(1e-4) and seq[13] == pytest.approx(1e-4)  # floor after the end
    assert all(a >= b for a, b in zip(seq[4:], seq[5:]))


def test_scheduler_steps_once_per_optimizer_step():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [param], "lr": 1e-3}], lr=1e-3)
    scheduler = warmup_cosine(optimizer, warmup_steps=2, total_steps=6)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([lr_at(s, 1e-3, 2, 6) for s in range(6)])
    resumed = torch.optim.AdamW([param], lr=1e-3)  # a resumed run loads both states
    again = warmup_cosine(resumed, warmup_steps=2, total_steps=6)
    resumed.load_state_dict(optimizer.state_dict())
    again.load_state_dict(scheduler.state_dict())
    assert resumed.param_groups[0]["lr"] == pytest.approx(lr_at(6, 1e-3, 2, 6))
    again.step()
    assert resumed.param_groups[0]["lr"] == pytest.approx(lr_at(7, 1e-3, 2, 6))


def test_plugins_on_cpu():
    import torch.distributed as dist

    from colossal_llama.ports import free_port

    # plugins need a process group: one process, on a free port
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        assert make_plugin("ddp", PluginSettings()).__class__.__name__ == "TorchDDPPlugin"
    finally:
        dist.destroy_process_group()
    check_cuda("ddp", cuda_available=False)
    for name in ("gemini", "gemini_auto", "zero2", "zero2_cpu", "3d"):
        with pytest.raises(PluginError, match=f"--plugin {name} needs CUDA"):
            check_cuda(name, cuda_available=False)
        check_cuda(name, cuda_available=True)
    with pytest.raises(PluginError, match="must be one of"):
        make_plugin("fsdp", PluginSettings())
    assert sorted(PLUGINS) == ["3d", "ddp", "gemini", "gemini_auto", "zero2", "zero2_cpu"]


# plugin -> (weights, autocast, Booster mixed_precision) for --mixed_precision fp32 / bf16 / fp16
PRECISION_HANDLING = {
    "ddp": {"fp32": ("fp32", None, None), "bf16": ("fp32", "bf16", None), "fp16": ("fp32", None, "fp16")},
    **{name: {p: (p, None, None) for p in ("fp32", "bf16", "fp16")}
       for name in ("gemini", "gemini_auto", "zero2", "zero2_cpu", "3d")},
}


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_plugin_table_entry(name):
    """What each plugin does differently: only ddp leaves precision, clipping and syncing to the loop and
    saves a whole optimizer (old checkpoints hold optimizer.pt); only 3d reads the hybrid flags."""
    from colossal_llama.training.config import CHOICES

    spec = spec_of(name)
    ddp = name == "ddp"
    assert (spec.needs_cuda, spec.clips_in_loop, spec.no_sync, spec.whole_model) == (not ddp, ddp, ddp, ddp)
    assert spec.optimizer_file == ("optimizer.pt" if ddp else "optimizer")
    assert spec.hybrid == (name == "3d")
    assert set(spec.precisions) == ({"bf16", "fp16"} if name.startswith("gemini") else {"fp32", "bf16", "fp16"})
    for precision in spec.precisions:
        got = (spec.weights_precision(precision), spec.autocast_precision(precision),
               spec.booster_mixed_precision(precision))
        assert got == PRECISION_HANDLING[name][precision]
    assert CHOICES["plugin"] == tuple(PLUGINS)


def test_autocast_and_step_follow_the_config():
    from colossal_llama.training.build import autocast_for, pick_step
    from colossal_llama.training.config import TrainConfig
    from colossal_llama.training.steps import accumulate_step, pipeline_step

    cpu = torch.device("cpu")
    for precision, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        config = TrainConfig(pretrained="m", dataset=["d"], plugin="ddp", mixed_precision=precision)
        with autocast_for(config, cpu)():
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    assert pick_step(config) is accumulate_step
    hybrid = TrainConfig(pretrained="m", dataset=["d"], plugin="3d", pp=2, batch_size=4, microbatch_size=2)
    assert pick_step(hybrid) is pipeline_step


def test_token_weighted_accumulation_equals_one_big_batch():
    from transformers import LlamaConfig, LlamaForCausalLM

    from colossal_llama.training.loss import row_losses, step_tokens

    def loss_sum(logits, labels):
        return row_losses(logits, labels).sums.sum()

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    ids = torch.randint(3, 40, (4, 9))
    labels = ids.clone()
    labels[0, :7] = -100  # micro-batches with very different numbers of label tokens
    labels[1, :2] = -100
    micro = [{"input_ids": ids[:1], "labels": labels[:1]}, {"input_ids": ids[1:], "labels": labels[1:]}]
    total = step_tokens(micro)
    assert total == int((labels[:, 1:] != -100).sum())
    for b in micro:
        (loss_sum(model(input_ids=b["input_ids"]).logits, b["labels"]) / total).backward()
    accumulated = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (loss_sum(model(input_ids=ids).logits, labels) / total).backward()
    for a, b in zip(accumulated, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    model.zero_grad()  # the usual mean per micro-batch is not the same thing
    for b in micro:
        out = model(input_ids=b["input_ids"], labels=b["labels"])
        (out.loss / len(micro)).backward()
    assert not all(torch.allclose(a, p.grad, rtol=1e-3) for a, p in zip(accumulated, model.parameters()))


def test_row_losses_match_the_model_loss():
    """Per-row sums and counts give HF's own mean loss, per-row counts follow the shifted labels."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from colossal_llama.data.tokenize import IGNORE_INDEX
    from colossal_llama.training.loss import label_tokens, row_losses

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    ids = torch.randint(3, 40, (3, 7))
    labels = ids.clone()
    labels[0, :4] = IGNORE_INDEX  # a masked prompt: 3 label tokens (positions 4, 5, 6)
    labels[2, 5:] = IGNORE_INDEX  # padding: 4 label tokens (positions 1 to 4; position 0 is never a label)
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
        losses = row_losses(out.logits, labels)
    assert losses.counts.tolist() == [3, 6, 4] and label_tokens(labels) == 13
    assert losses.sums.dtype == torch.float32 and losses.tokens.shape == (3, 6)
    assert float(losses.sums.sum() / losses.counts.sum()) == pytest.approx(float(out.loss), rel=1e-6)
    assert torch.equal(losses.tokens.sum(dim=1), losses.sums)
    assert torch.all(losses.tokens[labels[:, 1:] == IGNORE_INDEX] == 0)


@pytest.mark.parametrize("rows, microbatch_size", [(4, 2), (8, 3), (3, 2), (6, 1)])
def test_pipeline_eval_loss_is_not_floored(rows, microbatch_size):
    """The pipeline schedule reports sum over micro-batches of (their summed loss / number of micro-batches),
    the last micro-batch possibly short (forward-only); pipeline_loss_sum recovers the batch's summed loss."""
    from colossal_llama.training.loss import pipeline_loss_sum

    row_sums = [1.3 + 0.5 * i for i in range(rows)]  # summed losses, their total not a whole number
    chunks = [row_sums[i:i + microbatch_size] for i in range(0, rows, microbatch_size)]
    reported = sum(sum(chunk) / len(chunks) for chunk in chunks)  # what the schedule returns
    assert pipeline_loss_sum(reported, rows, microbatch_size) == pytest.approx(sum(row_sums), rel=1e-12)
    old = reported * rows // microbatch_size  # the former formula floored the sum
    assert old != pytest.approx(sum(row_sums), rel=1e-12)


def test_a_short_evaluation_batch_leaves_the_pipeline_schedule_as_training_had_it():
    """ColossalAI's 1F1B schedule keeps the last batch's size; a short forward-only batch would make the next
    training step fail its `last_batch_size == batch_size` assert, unless the state is put back."""
    from types import SimpleNamespace

    from colossalai.pipeline.schedule.one_f_one_b import OneForwardOneBackwardSchedule

    from colossal_llama.training.steps import training_schedule_kept

    def load(schedule, rows: int, forward_only: bool):
        schedule.forward_only = forward_only
        schedule.load_batch(iter([{"input_ids": torch.zeros(rows, 3)}]))

    def short_eval_then_train(keep: bool):
        schedule = OneForwardOneBackwardSchedule(SimpleNamespace(num_stages=2), microbatch_size=2)
        schedule.comm = None
        load(schedule, 4, forward_only=False)  # a training batch: 2 micro-batches of 2
        with training_schedule_kept(SimpleNamespace(plugin=SimpleNamespace(scheduler=schedule))) if keep \
                else contextlib.nullcontext():
            load(schedule, 3, forward_only=True)  # the last evaluation batch, one row short
        load(schedule, 4, forward_only=False)
        return schedule.num_microbatches

    with pytest.raises(AssertionError):
        short_eval_then_train(keep=False)
    assert short_eval_then_train(keep=True) == 2


def test_hybrid_adam_without_its_kernels_is_a_clear_error(monkeypatch):
    """On a GPU, HybridAdam builds its kernels on first use; a machine that cannot gets the reason, not a
    traceback from ColossalAI's kernel loader."""
    from types import SimpleNamespace

    import colossalai.nn.optimizer as optimizers

    from colossal_llama.training.build import make_optimizer

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    config = SimpleNamespace(train_new_rows_only=0, weight_decay=0.1, lr=1e-3)
    for error, said in ((AssertionError("No usable kernel found for CPUAdamLoader on the current machine."),
                         "No usable kernel found"), (AssertionError(), "AssertionError")):
        def no_kernels(*args, **kwargs):
            raise error

        monkeypatch.setattr(optimizers, "HybridAdam", no_kernels)
        with pytest.raises(PluginError, match=f"HybridAdam .* could not load its kernels.*{said}.*"
                                              "nvcc matches torch's CUDA"):
            make_optimizer(config, torch.nn.Linear(2, 2))
