"""Attention paths: the collator's forms, FlexAttention's block mask against the 4-D mask (equal losses
and gradients, packed against one by one), the chunked cross entropy, and which path a machine takes."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from colossal_llama.data.loader import PackedCollator, block_causal_mask, document_ids, loss_categories
from colossal_llama.errors import ConfigError
from colossal_llama.model import attention
from colossal_llama.training import loss as loss_module
from colossal_llama.training.steps import model_inputs

cpu_flex = pytest.mark.skipif(not attention.flex_trains_on_cpu(),
                              reason=f"torch {torch.__version__} cannot train FlexAttention on the CPU")



def test_document_ids_positions_and_mask_for_a_small_batch():
    ids = document_ids([[3, 2], [2]], 6)
    assert ids.tolist() == [[0, 0, 0, 1, 1, -6], [0, 0, -3, -4, -5, -6]]
    mask = block_causal_mask(ids, torch.float32)[0, 0] == 0
    assert mask.int().tolist() == [[1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0],
                                   [0, 0, 0, 1, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1]]
    batch = PackedCollator(pad_token_id=0, form="documents", max_length=5)(
        [{"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "seq_lengths": [3, 2]}])
    assert "attention_mask" not in batch and batch["document_ids"].tolist() == [[0, 0, 0, 1, 1]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]] and batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]
    flash = PackedCollator(pad_token_id=0, form="positions")(
        [{"input_ids": [5, 6, 7], "labels": [5, 6, 7], "seq_lengths": [1, 2]}])
    assert "attention_mask" not in flash and "document_ids" not in flash
    with pytest.raises(ValueError, match="form must be"):
        PackedCollator(pad_token_id=0, form="blocks")


def test_loss_categories_follow_the_segments():
    columns = loss_categories([[("chat", 3), ("code", 2)], [("code", 2)]], {"chat": 0, "code": 1}, 6)
    assert columns.tolist() == [[0, 0, 1, 1, -1], [1, -1, -1, -1, -1]]
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "seq_lengths": [3, 2], "category": "<mixed>",
             "segment_categories": ["x", "y"]}, {"input_ids": [4, 4], "labels": [4, 4], "category": "y"}]
    batch = PackedCollator(pad_token_id=0, categories=["x", "y"])(rows)
    assert batch["loss_category"].tolist() == [[0, 0, 1, 1], [1, -1, -1, -1]]


def tiny_llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config).to(torch.float32)


def packed_rows(lengths_per_row, seed=0):
    rng = np.random.default_rng(seed)
    rows, docs = [], []
    for lengths in lengths_per_row:
        row_docs = [rng.integers(3, 64, size=n).tolist() for n in lengths]
        docs += row_docs
        rows.append({"input_ids": sum(row_docs, []), "labels": sum(row_docs, []), "seq_lengths": list(lengths)})
    return rows, docs


def loss_and_grads(model, implementation, batch):
    model.config._attn_implementation = implementation
    model.zero_grad()
    losses = loss_module.row_losses(model(**model_inputs(batch, "cpu")).logits, batch["labels"])
    mean = losses.sums.sum() / losses.counts.sum()
    mean.backward()
    return mean.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.fixture
def eager_flex():
    """What attention.run_flex_eagerly does on CPU, for one test."""
    with torch._dynamo.config.patch(disable=True):
        yield


@cpu_flex
def test_flex_block_mask_equals_the_4d_mask_and_documents_one_by_one(eager_flex):
    """Rows longer than one 128-token tile, padding included: same loss and gradients on both paths, and
    the packed loss equals the documents run alone."""
    model = tiny_llama()
    rows, docs = packed_rows([(100, 70, 30), (150,), (5, 120, 1)])
    sdpa_loss, sdpa_grads = loss_and_grads(model, "sdpa", PackedCollator(0, form="mask")(rows))
    flex_batch = PackedCollator(0, form="documents")(rows)
    assert flex_batch["input_ids"].shape == (3, 256)  # whole tiles; the sdpa batch is 200 long
    flex_loss, flex_grads = loss_and_grads(model, "flex_attention", flex_batch)
    torch.testing.assert_close(flex_loss, sdpa_loss, rtol=1e-5, atol=0)
    for name, grad in sdpa_grads.items():
        torch.testing.assert_close(flex_grads[name], grad, rtol=1e-4, atol=1e-6)
    model.config._attn_implementation = "sdpa"
    with torch.no_grad():
        sums = counts = 0
        for doc in docs:
            losses = loss_module.row_losses(model(input_ids=torch.tensor([doc])).logits, torch.tensor([doc]))
            sums, counts = sums + losses.sums.sum(), counts + losses.counts.sum()
    torch.testing.assert_close(flex_loss, sums / counts, rtol=1e-5, atol=0)
    cross = PackedCollator(0, isolate=False)(rows)
    cross_loss, _ = loss_and_grads(model, "sdpa", cross)
    assert not torch.allclose(cross_loss, flex_loss, rtol=1e-5)  # the documents do see each other there


def test_flex_under_bf16_autocast_takes_one_dtype(eager_flex, monkeypatch):
    """Under autocast the rotary embedding leaves query and key in float32 and value in bf16: FlexAttention
    refuses that unless the project casts them, as autocast does for SDPA."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._local_mapping, "flex_attention",
                        ALL_ATTENTION_FUNCTIONS._global_mapping["flex_attention"])
    model = tiny_llama()
    rows, _ = packed_rows([(100, 28), (60,)])
    losses = {}
    for implementation, form in (("sdpa", "mask"), ("flex_attention", "documents")):
        batch = PackedCollator(0, form=form, mask_dtype=torch.bfloat16)(rows)
        model.config._attn_implementation = implementation
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            if implementation == "flex_attention":  # torch 2.5 raises "same dtype" without it
                attention.flex_in_one_dtype()
                attention.flex_in_one_dtype()  # once is enough; twice wraps nothing more
            result = loss_module.row_losses(model(**model_inputs(batch, "cpu")).logits, batch["labels"])
        losses[implementation] = float(result.sums.sum() / result.counts.sum())
    assert losses["flex_attention"] == pytest.approx(losses["sdpa"], rel=1e-2)


def test_block_mask_skips_the_tiles_between_documents():
    mask = attention.document_block_mask(document_ids([[128, 128, 128]], 384))
    # 3 x 3 tiles: the causal half is 6 tiles, of which only the 3 diagonal ones hold any allowed pair
    assert int(mask.kv_num_blocks.sum() + mask.full_kv_num_blocks.sum()) == 3
    causal = attention.document_block_mask(document_ids([[384]], 384))
    assert int(causal.kv_num_blocks.sum() + causal.full_kv_num_blocks.sum()) == 6


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_cross_entropy_equals_the_plain_one(monkeypatch, dtype):
    monkeypatch.setattr(loss_module, "CHUNK_BYTES", 4 * 50 * 3)  # 3 positions a chunk: 21 positions, 7 chunks
    torch.manual_seed(0)
    logits = torch.randn(3, 7, 50, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, 50, (3, 7))
    labels[0, :3], labels[2, 5] = -100, -100
    weights = torch.randn(3)
    losses = loss_module.row_losses(logits, labels)
    (losses.sums * weights).sum().backward()
    chunked = logits.grad.clone()
    logits.grad = None
    plain = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels[:, 1:],
                                              ignore_index=-100, reduction="none")
    (plain.sum(1) * weights).sum().backward()
    assert chunked.dtype == dtype
    torch.testing.assert_close(losses.tokens, plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked, logits.grad, rtol=0, atol=1e-6 if dtype == torch.float32 else 0)
    assert losses.counts.tolist() == [4, 6, 5]
    assert float(losses.tokens[0, :2].abs().sum()) == 0.0  # untrained columns add nothing


@pytest.mark.parametrize("requested, isolate, cuda, expected", [
    ("auto", True, False, "sdpa"), ("auto", True, True, "flex"), ("auto", False, True, "sdpa"),
    ("sdpa", True, True, "sdpa"), pytest.param("flex", True, False, "flex", marks=cpu_flex),
    ("flex", False, True, "flex"),
])
def test_which_path_a_machine_takes(requested, isolate, cuda, expected):
    assert attention.resolve_attention(requested, isolate, cuda) == expected


def test_paths_a_machine_cannot_run_are_refused(monkeypatch):
    with pytest.raises(ConfigError, match="--attention flash needs CUDA"):
        attention.resolve_attention("flash", True, cuda=False)
    monkeypatch.setattr(attention.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match="needs the flash-attn package; use --attention flex"):
        attention.resolve_attention("flash", True, cuda=True)
    with pytest.raises(ConfigError, match="FlexAttention"):
        attention.resolve_attention("flex", True, cuda=True)
    assert attention.resolve_attention("auto", True, cuda=True) == "sdpa"  # an old torch: no flex
    monkeypatch.undo()
    monkeypatch.setattr(attention, "flex_trains_on_cpu", lambda: False)  # torch 2.11 on CPU
    with pytest.raises(ConfigError, match="cannot train FlexAttention on the CPU; use --attention sdpa"):
        attention.resolve_attention("flex", True, cuda=False)
    assert attention.resolve_attention("flex", True, cuda=True) == "flex"


def test_this_torch_trains_flex_on_cpu():
    """The probe itself, where it must say yes (torch 2.5, which CI runs)."""
    if not torch.__version__.startswith("2.5."):
        pytest.skip(f"torch {torch.__version__}: the probe's answer is not known in advance")
    assert attention.flex_trains_on_cpu()


def train_three_steps(model_dir, parts, out, *extra):
    from helpers import run_train

    code, metrics = run_train(model_dir, parts, str(out), "--max_steps", "3", "--save_interval", "0", *extra)
    assert code == 0 and len(metrics) == 3
    return metrics


@pytest.fixture(scope="module")
def sdpa_run(tiny_model_dir, pretrain_parts, tmp_path_factory):
    return train_three_steps(tiny_model_dir, pretrain_parts, tmp_path_factory.mktemp("sdpa"), "--attention", "sdpa")


def test_loader_workers_change_no_number(tiny_model_dir, pretrain_parts, tmp_path, sdpa_run):
    workers = train_three_steps(tiny_model_dir, pretrain_parts, tmp_path, "--attention", "sdpa",
                                "--dataloader_workers", "2")
    for a, b in zip(sdpa_run, workers):
        assert b["train/loss"] == a["train/loss"] and b["train/grad_norm"] == a["train/grad_norm"]
        assert 0 <= b["train/data_wait_share"] < 1


@cpu_flex
def test_flex_training_on_cpu_matches_sdpa(tiny_model_dir, pretrain_parts, tmp_path, sdpa_run):
    flex = train_three_steps(tiny_model_dir, pretrain_parts, tmp_path, "--attention", "flex")
    for a, b in zip(sdpa_run, flex):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)
        assert b["train/grad_norm"] == pytest.approx(a["train/grad_norm"], rel=1e-4)


def test_3d_layouts_that_keep_documents_apart_with_the_4d_mask_only():
    from colossal_llama.training.config import TrainConfig, attention_of

    def config(**values):
        return TrainConfig(pretrained="m", dataset=["d"], plugin="3d", **values)

    assert attention_of(config(), cuda_available=True) == "flex"
    assert attention_of(config(pp=2, batch_size=4), cuda_available=True) == "sdpa"  # 4 micro-batches
    assert attention_of(config(pp=2, batch_size=1), cuda_available=True) == "flex"  # one: nothing to cut
    with pytest.raises(ConfigError, match="cannot cut the block mask into its micro-batches"):
        attention_of(config(pp=2, batch_size=4, attention="flex"), cuda_available=True)
    sequence = {"enable_sequence_parallelism": True, "sp": 2, "sp_mode": "all_to_all"}
    assert attention_of(config(**sequence), cuda_available=True) == "sdpa"
    for other in ({"attention": "flex"}, {"packed_attention": "cross"}):
        with pytest.raises(ConfigError, match="only with the 4-D mask: use --packed_attention isolate"):
            attention_of(config(**sequence, **other), cuda_available=True)


def test_document_ids_batches_fill_whole_flex_tiles():
    rows = [{"input_ids": [5] * n, "labels": [5] * n, "seq_lengths": [n]} for n in (130, 20)]
    assert PackedCollator(0, form="documents")(rows)["input_ids"].shape == (2, 256)
    assert PackedCollator(0, form="documents", max_length=200)(rows)["input_ids"].shape == (2, 200)  # no further
    assert PackedCollator(0, form="mask")(rows)["input_ids"].shape == (2, 130)
    assert PackedCollator(0, form="documents", isolate=False)(rows)["input_ids"].shape == (2, 130)
