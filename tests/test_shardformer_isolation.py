"""Document isolation under ColossalAI's ShardFormer (what --plugin 3d does to LlamaForCausalLM), on CPU.

A packed row with isolation must give every document the logits it gets when run alone. ShardFormer
replaces LlamaModel.forward (always) and, with enable_flash_attention (or sequence parallelism),
LlamaAttention.forward. These tests pin what survives the replacement:

- enable_flash_attention=False, with or without pipeline stages: the caller's 4-D mask, a FlexAttention
  BlockMask and (for FlashAttention-2's variable-length path) the restarting position ids all reach the
  attention: isolation holds.
- enable_flash_attention=True: ColoAttention builds its own causal mask from a 2-D padding mask; a 4-D
  mask is refused (AssertionError), a BlockMask crashes, and restarting positions alone attend across
  documents. If one of these starts to pass, ColossalAI changed and the refusal can be revisited.
- the pipeline schedule slices tensors into micro-batches but hands a BlockMask (not a tensor) unsliced to
  every micro-batch: each micro-batch then uses the first rows' documents.

ShardFormer is applied directly (HybridParallelPlugin asserts CUDA), in a gloo group of one process.
ColoAttention's fp32 kernel is torch SDPA that reports itself unavailable without CUDA; it is let run here.
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("colossalai")

DOCS = [[5, 7, 4], [9, 6]]  # two rows, different layouts; row 0 ends in 2 padding tokens
LENGTH = 18


@pytest.fixture(scope="module")
def group():
    import torch.distributed as dist

    from colossal_llama.ports import free_port

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    yield dist.group.WORLD
    if created:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def base():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def batch():
    from colossal_llama.data.loader import document_ids, positions_and_mask

    torch.manual_seed(1)
    ids = torch.randint(3, 100, (len(DOCS), LENGTH))
    positions, mask = positions_and_mask(DOCS, LENGTH, torch.float32)
    documents = document_ids(DOCS, LENGTH)
    return SimpleNamespace(ids=ids, positions=positions, mask=mask, documents=documents)


def block_mask(documents: torch.Tensor):
    from colossal_llama.model.attention import document_block_mask

    return document_block_mask(documents)


def isolation_error(model, batch, hidden_states=None, **inputs) -> float:
    """Largest logit difference between each document in the packed rows and the same document alone."""
    with torch.no_grad():
        if hidden_states is None:
            packed = model(input_ids=batch.ids, **inputs).logits
        else:
            packed = model(hidden_states=hidden_states, **inputs).logits
        alone_model = batch.reference
        worst = 0.0
        for b, lengths in enumerate(DOCS):
            start = 0
            for n in lengths:
                alone = alone_model(input_ids=batch.ids[b : b + 1, start : start + n]).logits[0]
                worst = max(worst, float((packed[b, start : start + n] - alone).abs().max()))
                start += n
    return worst


@pytest.fixture
def shard(group, base, batch, monkeypatch):
    from colossalai.kernel.extensions.pybind.flash_attention.flash_attention_sdpa_cuda import (
        FlashAttentionSdpaCudaExtension)
    from colossalai.shardformer import ShardConfig, ShardFormer
    from colossalai.shardformer.layer import ColoAttention

    monkeypatch.setattr(FlashAttentionSdpaCudaExtension, "is_available", lambda self: True)
    monkeypatch.setattr(ColoAttention, "_kernel_dispatch_map", None)  # loaded kernels are cached per class
    monkeypatch.setattr(ColoAttention, "_flash_kernel_dispatch", None)
    batch.reference = base

    def make(flash: bool, implementation: str = "sdpa", stage_manager=None):
        model = copy.deepcopy(base)
        model.config._attn_implementation = implementation
        config = ShardConfig(tensor_parallel_process_group=group, enable_tensor_parallelism=False,
                             enable_flash_attention=flash, pipeline_stage_manager=stage_manager,
                             parallel_output=False)
        return ShardFormer(config).optimize(model)[0]
    return make


def two_stages():
    """Stage managers of a 2-stage pipeline, both in this one process (layer 0 | layer 1 and the head)."""
    from colossalai.cluster import ProcessGroupMesh
    from colossalai.pipeline.stage_manager import PipelineStageManager

    class Stage(PipelineStageManager):
        num_stages = property(lambda self: 2)
        stage = property(lambda self: self._stage)

    mesh = ProcessGroupMesh(1, 1, 1)
    stages = []
    for s in (0, 1):
        manager = Stage(mesh, pipeline_axis=1)
        manager._stage = s
        stages.append(manager)
    return stages


def test_reference_isolates(base, batch):
    batch.reference = base
    assert isolation_error(base, batch, attention_mask=batch.mask, position_ids=batch.positions) < 1e-4
    # and the check can fail: one causal row mixes the documents
    assert isolation_error(base, batch, position_ids=batch.positions) > 1e-3


def test_replaced_forwards(shard):
    plain = shard(False)
    assert "colossalai" in plain.model.forward.func.__module__  # LlamaModel.forward: always replaced
    assert plain.model.layers[0].self_attn.forward.__func__.__module__.startswith("transformers")
    flash = shard(True)
    assert "colossalai" in flash.model.layers[0].self_attn.forward.__module__  # ColoAttention


def test_4d_mask_and_positions_survive_without_colo_attention(shard, batch):
    model = shard(False)
    assert isolation_error(model, batch, attention_mask=batch.mask, position_ids=batch.positions) < 1e-4


def test_4d_mask_and_positions_survive_pipeline_stages(shard, batch):
    first, last = (shard(False, stage_manager=s) for s in two_stages())
    with torch.no_grad():
        hidden = first(input_ids=batch.ids, attention_mask=batch.mask, position_ids=batch.positions)["hidden_states"]
    assert isolation_error(last, batch, hidden_states=hidden, attention_mask=batch.mask,
                           position_ids=batch.positions) < 1e-4


def test_block_mask_survives_without_colo_attention(shard, batch, monkeypatch):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo.config, "disable", True)  # flex runs eagerly: torch 2.5 cannot compile it here
    model = shard(False, "flex_attention")
    assert isolation_error(model, batch, attention_mask=block_mask(batch.documents),
                           position_ids=batch.positions) < 1e-4


def test_positions_reach_flash_attention_2_without_colo_attention(shard, batch, monkeypatch):
    """FlashAttention-2 isolates by the restarting position ids (variable-length kernel); a CPU stand-in
    splits the rows where transformers' FA2 path would, so it isolates only if the ids reach it."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    def varlen_by_positions(module, q, k, v, attention_mask, dropout=0.0, scaling=None, **kwargs):
        positions = kwargs.get("position_ids")
        assert attention_mask is None
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], 1) for t in (k, v))
        causal = torch.ones(q.shape[2], q.shape[2], dtype=torch.bool).tril()
        if positions is None:
            allowed = causal
        else:
            document = torch.cumsum((positions == 0).long(), -1)
            allowed = (document[:, None, :, None] == document[:, None, None, :]) & causal
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scaling)
        return out.transpose(1, 2).contiguous(), None

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS, "flash_attention_2", varlen_by_positions)
    model = shard(False, "flash_attention_2")
    assert isolation_error(model, batch, position_ids=batch.positions) < 1e-4


def test_colo_attention_cannot_isolate(shard, batch):
    """enable_flash_attention=True: the mask is rebuilt from a 2-D padding mask (modeling/llama.py:132-141)."""
    model = shard(True)
    with pytest.raises(AssertionError, match="Padding mask shape"):
        isolation_error(model, batch, attention_mask=batch.mask, position_ids=batch.positions)
    with pytest.raises(AttributeError):
        isolation_error(shard(True, "flex_attention"), batch, attention_mask=block_mask(batch.documents),
                        position_ids=batch.positions)
    # positions alone (the collator's form for FlashAttention-2): one causal mask over the whole row
    assert isolation_error(model, batch, position_ids=batch.positions) > 1e-3


def test_pipeline_micro_batches_share_the_first_block_mask(batch):
    from colossalai.pipeline.schedule._utils import get_micro_batch

    mask = block_mask(batch.documents)
    whole = {"input_ids": batch.ids, "attention_mask": mask, "position_ids": batch.positions}
    second = get_micro_batch(whole, 1, 1)
    assert second["input_ids"].shape[0] == 1 and second["position_ids"].shape[0] == 1
    assert second["attention_mask"] is mask  # not sliced: row 1's micro-batch is masked with row 0's documents
    assert get_micro_batch({"attention_mask": batch.mask}, 1, 1)["attention_mask"].equal(batch.mask[1:2])


def test_3d_never_enables_colo_attention_with_isolation():
    from colossal_llama.training.plugins import settings_from

    for attention in ("sdpa", "flex", "flash"):
        config = SimpleNamespace(mixed_precision="bf16", tp=1, pp=1, sp=1, zero_stage=1, sp_mode="split_gather",
                                 enable_sequence_parallelism=False, zero_cpu_offload=False, microbatch_size=1,
                                 grad_clip=1.0, attention=attention, use_flash_attn=attention == "flash",
                                 packed_attention="isolate", accumulation_steps=1)
        assert not settings_from(config).enable_flash_attention, attention
    cross = SimpleNamespace(**{**vars(config), "packed_attention": "cross"})
    assert settings_from(cross).enable_flash_attention  # one causal mask over the row: ColoAttention's own
