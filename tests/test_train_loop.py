"""The training loop end to end on CPU (ddp, one process, fp32): exact resume, export, freezing, LoRA."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from helpers import run_train

LOSS_KEYS = ("train/loss", "train/lr", "train/grad_norm", "train/label_tokens_seen")


def weights(folder: str) -> dict:
    files = [f for f in os.listdir(folder) if f.endswith(".safetensors")]
    out = {}
    for name in files:
        out.update(load_file(os.path.join(folder, name)))
    return out


def test_resume_is_bit_identical(tiny_model_dir, pretrain_parts, tmp_path):
    common = ["--accumulation_steps", "2", "--max_steps", "8", "--save_interval", "3", "--use_neft"]
    code, full = run_train(tiny_model_dir, pretrain_parts, str(tmp_path / "full"), *common)
    assert code == 0 and [m["step"] for m in full] == list(range(1, 9))
    checkpoint = str(tmp_path / "full" / "ck" / "step-00000003")
    code, resumed = run_train(tiny_model_dir, pretrain_parts, str(tmp_path / "resumed"), *common,
                              "--load_checkpoint", checkpoint)
    assert code == 0 and [m["step"] for m in resumed] == list(range(4, 9))
    for a, b in zip(full[3:], resumed):
        assert {k: a[k] for k in LOSS_KEYS} == {k: b[k] for k in LOSS_KEYS}  # exactly equal floats
    final_a, final_b = weights(str(tmp_path / "full" / "ck" / "final")), weights(str(tmp_path / "resumed" / "ck" / "final"))
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    # the loss went down and the schedule warmed up then decayed to lr * 0.1
    assert full[-1]["train/loss"] < full[0]["train/loss"]
    assert full[-1]["train/lr"] == pytest.approx(1e-4)


def test_micro_batches_and_accumulation_give_the_same_steps(tiny_model_dir, pretrain_parts, tmp_path):
    """Token-weighted loss: 1 x 8 rows, 2 x 4 rows and 4 x 2 rows per step are the same optimizer step."""
    runs = {}
    for batch, accumulation in ((8, 1), (4, 2), (2, 4)):
        out = str(tmp_path / f"b{batch}")
        code, metrics = run_train(tiny_model_dir, pretrain_parts, out, "--max_steps", "3", "--batch_size", str(batch),
                                  "--accumulation_steps", str(accumulation), "--save_interval", "0")
        assert code == 0
        runs[batch] = metrics
    for other in (4, 2):
        for a, b in zip(runs[8], runs[other]):
            assert b["train/label_tokens_seen"] == a["train/label_tokens_seen"]
            assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)
            assert b["train/grad_norm"] == pytest.approx(a["train/grad_norm"], rel=1e-4)


def test_export_loads_alone_and_matches_the_last_checkpoint(tiny_model_dir, pretrain_parts, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    code, _ = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--max_steps", "2",
                        "--export_dir", str(tmp_path / "hf"))
    assert code == 0
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"))
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert tokenizer.get_vocab() == AutoTokenizer.from_pretrained(tiny_model_dir).get_vocab()
    saved = weights(str(tmp_path / "ck" / "step-00000002" / "model"))
    state = model.state_dict()
    assert saved.keys() == state.keys()
    assert all(torch.equal(saved[k], state[k]) for k in saved)
    start = weights(tiny_model_dir)
    assert not torch.equal(start["model.embed_tokens.weight"], state["model.embed_tokens.weight"])


def test_epochs_checkpoints_and_pruning(tiny_model_dir, pretrain_parts, tmp_path):
    """Each epoch ends on a whole global batch, saves, and the next starts at position 0."""
    import datasets

    rows = sum(len(datasets.load_from_disk(p)) for p in pretrain_parts)
    steps_per_epoch = rows // 32
    code, metrics = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--batch_size", "16",
                              "--accumulation_steps", "2", "--num_epochs", "2", "--save_interval", "0",
                              "--keep_last_n_checkpoints", "1")
    assert code == 0 and len(metrics) == 2 * steps_per_epoch
    assert [m["train/epoch"] for m in metrics] == [0] * steps_per_epoch + [1] * steps_per_epoch
    found = sorted(d for d in os.listdir(tmp_path / "ck") if d.startswith("step-"))
    assert found == [f"step-{2 * steps_per_epoch:08d}"]  # the epoch-1 checkpoint was pruned
    with open(tmp_path / "ck" / found[0] / "state.json") as f:
        state = json.load(f)["state"]
    assert state["epoch"] == 2 and state["position"] == 0 and state["step"] == 2 * steps_per_epoch
    with open(tmp_path / "ck" / "train_config.json") as f:
        assert json.load(f)["num_epochs"] == 2


def test_eval_loss_per_category(tiny_model_dir, pretrain_parts, tmp_path):
    code, metrics = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--max_steps", "4", "--eval_dataset",
                              pretrain_parts[1], "--eval_interval", "2", "--save_interval", "0")
    assert code == 0
    evals = [m for m in metrics if "eval/loss" in m]
    assert [m["step"] for m in evals] == [2, 4]
    per_category = [k for k in evals[0] if k.startswith("eval/loss/")]
    assert len(per_category) >= 3
    train_categories = [k for k in metrics[0] if k.startswith("train/loss/")]
    assert train_categories


def test_freezing_and_new_rows(tiny_model_dir, pretrain_parts, tmp_path):
    start = weights(tiny_model_dir)
    code, _ = run_train(tiny_model_dir, pretrain_parts, str(tmp_path / "new"), "--max_steps", "2",
                        "--train_new_rows_only", "900", "--save_interval", "0")
    assert code == 0
    after = weights(str(tmp_path / "new" / "ck" / "final"))
    for name, tensor in start.items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(after[name][:900], tensor[:900])  # old rows untouched (no decay either)
            assert not torch.equal(after[name][900:], tensor[900:])
        else:
            assert torch.equal(after[name], tensor), name
    code, _ = run_train(tiny_model_dir, pretrain_parts, str(tmp_path / "emb"), "--max_steps", "2",
                        "--freeze_non_embeds_params", "--save_interval", "0")
    after = weights(str(tmp_path / "emb" / "ck" / "final"))
    assert code == 0 and not torch.equal(after["model.embed_tokens.weight"], start["model.embed_tokens.weight"])
    assert torch.equal(after["model.layers.0.mlp.up_proj.weight"], start["model.layers.0.mlp.up_proj.weight"])


def test_lora_exports_merged_weights(tiny_model_dir, pretrain_parts, tmp_path):
    from transformers import AutoModelForCausalLM

    code, metrics = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--max_steps", "3", "--lora_rank", "4",
                              "--lr", "1e-2", "--save_interval", "0")
    assert code == 0 and metrics[-1]["train/loss"] < metrics[0]["train/loss"]
    start = weights(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "ck" / "final"))  # no peft needed
    after = model.state_dict()
    assert after.keys() == start.keys()
    assert torch.equal(after["model.embed_tokens.weight"], start["model.embed_tokens.weight"])
    assert not torch.equal(after["model.layers.0.self_attn.q_proj.weight"], start["model.layers.0.self_attn.q_proj.weight"])


def test_gradient_checkpointing_and_bf16(tiny_model_dir, pretrain_parts, tmp_path):
    _, plain = run_train(tiny_model_dir, pretrain_parts, str(tmp_path / "plain"), "--max_steps", "2",
                         "--save_interval", "0")
    code, recomputed = run_train(tiny_model_dir, pretrain_parts, str(tmp_path / "ckpt"), "--max_steps", "2",
                                 "--save_interval", "0", "--use_grad_checkpoint")
    assert code == 0
    for a, b in zip(plain, recomputed):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-6)
    code, bf16 = run_train(tiny_model_dir, pretrain_parts, str(tmp_path / "bf16"), "--max_steps", "2",
                           "--save_interval", "0", "--mixed_precision", "bf16")
    assert code == 0 and bf16[0]["train/loss"] == pytest.approx(plain[0]["train/loss"], rel=2e-2)


def test_weights_only_starts_a_new_stage(tiny_model_dir, pretrain_parts, tmp_path):
    code, _ = run_train(tiny_model_dir, pretrain_parts, str(tmp_path / "a"), "--max_steps", "2")
    assert code == 0
    for source in ("ck/step-00000002", "ck/final"):
        out = tmp_path / source.replace("/", "_")
        code, metrics = run_train(tiny_model_dir, pretrain_parts, str(out), "--max_steps", "1", "--load_checkpoint",
                                  str(tmp_path / "a" / source), "--weights_only", "--save_interval", "0")
        assert code == 0 and [m["step"] for m in metrics] == [1]  # fresh step count, schedule and data position
        assert metrics[0]["train/lr"] == pytest.approx(1e-4)  # a one-step schedule: warmup 0, ends at the floor
