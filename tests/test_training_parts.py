"""Learning-rate schedule and the plugin table."""

import math

import pytest
import torch

from colossal_llama.training.plugins import PLUGINS, PluginError, PluginSettings, make_plugin
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
    import socket

    import torch.distributed as dist

    with socket.socket() as s:  # a free port for a one-process gloo group (plugins need one)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
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
