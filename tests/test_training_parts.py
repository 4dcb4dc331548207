"""Learning-rate schedule and the plugin table."""

import math

import pytest
import torch

from colossal_llama.errors import PluginError
from colossal_llama.training.plugins import PLUGINS, PluginSettings, make_plugin
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
        assert make_plugin("ddp", PluginSettings(), cuda_available=False).__class__.__name__ == "TorchDDPPlugin"
    finally:
        dist.destroy_process_group()
    for name in ("gemini", "gemini_auto", "zero2", "zero2_cpu", "3d"):
        with pytest.raises(PluginError, match=f"--plugin {name} needs CUDA"):
            make_plugin(name, PluginSettings(), cuda_available=False)
    with pytest.raises(PluginError, match="must be one of"):
        make_plugin("fsdp", PluginSettings(), cuda_available=False)
    assert sorted(PLUGINS) == ["3d", "ddp", "gemini", "gemini_auto", "zero2", "zero2_cpu"]


def test_token_weighted_accumulation_equals_one_big_batch():
    from transformers import LlamaConfig, LlamaForCausalLM

    from colossal_llama.training.loss import loss_sum, step_tokens

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
