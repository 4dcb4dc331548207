"""Every user error of train.py is one clear line and exit status 2, before any training step."""

import dataclasses
import json
import os
import shutil


from helpers import prepare_parts, read_metrics, run_train, save_tiny_model


def refused(capsys, model_dir, parts, out, *extra) -> str:
    code, metrics = run_train(model_dir, parts, str(out), *extra)
    err = capsys.readouterr().err
    assert code == 2 and metrics == [], err[-2000:]
    assert not os.path.exists(os.path.join(out, "ck", "final"))
    return err


def test_missing_paths(capsys, tiny_model_dir, pretrain_parts, tmp_path):
    err = refused(capsys, tiny_model_dir, [str(tmp_path / "nope")], tmp_path / "a")
    assert f"--dataset {tmp_path / 'nope'}: folder does not exist" in err
    err = refused(capsys, str(tmp_path / "no_model"), pretrain_parts, tmp_path / "b")
    assert "--pretrained" in err and "does not exist" in err
    err = refused(capsys, tiny_model_dir, pretrain_parts, tmp_path / "c", "--eval_dataset", str(tmp_path / "x"))
    assert "--eval_dataset" in err


def test_data_of_another_tokenizer_or_length(capsys, tiny_model_dir, llama3_tokenizer_dir, pretrain_parts, tmp_path):
    other = prepare_parts("pretrain", llama3_tokenizer_dir, str(tmp_path / "other"), 128, 1)
    err = refused(capsys, tiny_model_dir, other, tmp_path / "a")
    assert "prepared with another tokenizer" in err
    short = save_tiny_model(tiny_model_dir, str(tmp_path / "short_model"))
    with open(os.path.join(short, "config.json")) as f:
        config = json.load(f)
    config["max_position_embeddings"] = 64
    with open(os.path.join(short, "config.json"), "w") as f:
        json.dump(config, f)
    err = refused(capsys, short, pretrain_parts, tmp_path / "b")
    assert "rows of up to 128 tokens, but the model has 64 positions" in err
    err = refused(capsys, tiny_model_dir, pretrain_parts, tmp_path / "c", "--max_length", "100")
    assert "prepared with max_length 128, longer than --max_length 100" in err


def test_cuda_plugins_and_fp16_on_cpu(capsys, tiny_model_dir, pretrain_parts, tmp_path):
    for plugin in ("gemini", "gemini_auto", "zero2", "zero2_cpu", "3d"):
        code, _ = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--plugin", plugin, "--mixed_precision",
                            "bf16")
        assert code == 2 and f"--plugin {plugin} needs CUDA GPUs" in capsys.readouterr().err
    err = refused(capsys, tiny_model_dir, pretrain_parts, tmp_path, "--mixed_precision", "fp16")
    assert "fp16 needs CUDA" in err


def test_batch_that_does_not_fit(capsys, tiny_model_dir, pretrain_parts, tmp_path):
    err = refused(capsys, tiny_model_dir, pretrain_parts, tmp_path, "--batch_size", "400", "--accumulation_steps", "2")
    assert "fewer than one global batch of 800" in err


def damaged(checkpoint: str, tmp_path, name: str) -> str:
    copy = str(tmp_path / name)
    shutil.copytree(checkpoint, copy)
    return copy


def test_bad_checkpoints(capsys, tiny_model_dir, pretrain_parts, checkpoint, tmp_path):
    partial = damaged(checkpoint, tmp_path, "partial")
    os.remove(os.path.join(partial, "files.json"))
    err = refused(capsys, tiny_model_dir, pretrain_parts, tmp_path / "a", "--load_checkpoint", partial)
    assert "not a complete checkpoint" in err
    truncated = damaged(checkpoint, tmp_path, "truncated")
    with open(os.path.join(truncated, "optimizer.pt"), "r+b") as f:
        f.truncate(100)
    err = refused(capsys, tiny_model_dir, pretrain_parts, tmp_path / "b", "--load_checkpoint", truncated)
    assert "optimizer.pt is truncated or changed" in err
    corrupt = damaged(checkpoint, tmp_path, "corrupt")
    path = os.path.join(corrupt, "optimizer.pt")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.write(b"\0" * size)  # same size, garbage inside: caught by the content hash
    err = refused(capsys, tiny_model_dir, pretrain_parts, tmp_path / "c", "--load_checkpoint", corrupt)
    assert "optimizer.pt does not match its hash in files.json (changed or corrupt)" in err
    err = refused(capsys, tiny_model_dir, pretrain_parts, tmp_path / "d", "--load_checkpoint", checkpoint,
                  "--batch_size", "2")
    assert "global batch of 4 rows per step" in err and "this run has 2" in err


def test_checkpoint_of_another_model(capsys, tiny_model_dir, pretrain_parts, checkpoint, tmp_path):
    bigger = save_tiny_model(tiny_model_dir, str(tmp_path / "three_layers"), layers=3)
    err = refused(capsys, bigger, pretrain_parts, tmp_path / "a", "--load_checkpoint", checkpoint)
    assert "saved from a different model (num_hidden_layers 2 vs 3" in err
    err = refused(capsys, bigger, pretrain_parts, tmp_path / "b", "--load_checkpoint", checkpoint, "--weights_only")
    assert "different model" in err


def test_latest_checkpoint(tiny_model_dir, pretrain_parts, tmp_path):
    """`--load_checkpoint latest` starts fresh when there is none, and resumes from the newest one."""
    args = ("--max_steps", "3", "--save_interval", "1", "--load_checkpoint", "latest")
    code, metrics = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), *args)
    assert code == 0 and [m["step"] for m in metrics] == [1, 2, 3]
    shutil.rmtree(tmp_path / "ck" / "step-00000003")
    os.makedirs(tmp_path / "ck" / ".step-00000003.partial")  # a crash during the last save
    code, _ = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), *args)
    # the resumed run's step 3 replaces the first run's in metrics.jsonl
    assert code == 0 and [m["step"] for m in read_metrics(str(tmp_path / "tb"))] == [1, 2, 3]


def test_every_setting_has_a_resume_rule():
    """A new TrainConfig field must be classified: compared on resume, or free to change."""
    from colossal_llama.training.config import TrainConfig
    from colossal_llama.training.identity import RESUME_RULES

    assert set(RESUME_RULES) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(RESUME_RULES.values()) == {"same", "content", "schedule", "batch", "free"}


def test_resume_refuses_other_data_or_settings(capsys, tiny_model_dir, pretrain_parts, checkpoint, tmp_path):
    """The checkpoint was trained on both parts with --lr 1e-3 for 2 steps."""
    resume = ("--load_checkpoint", checkpoint, "--max_steps", "2")
    first, second = pretrain_parts
    err = refused(capsys, tiny_model_dir, [first], tmp_path / "a", *resume)
    assert f"--load_checkpoint {checkpoint}: saved with --dataset {first} {second}, this run has {first}." in err
    err = refused(capsys, tiny_model_dir, [second, first], tmp_path / "b", *resume)
    assert f"saved with --dataset {first}, this run has {second} (other data)" in err
    err = refused(capsys, tiny_model_dir, pretrain_parts, tmp_path / "c", *resume, "--lr", "2e-3", "--seed", "7",
                  "--eval_dataset", second, "--max_steps", "3")
    for difference in ("saved with --lr 0.001, this run has 0.002", "saved with --seed 42, this run has 7",
                       f"saved with --eval_dataset (none), this run has {second}",
                       "saved with a schedule of 2 steps (0 warmup), this run has 3 (0 warmup)"):
        assert difference in err
    assert not os.path.exists(tmp_path / "c" / "ck" / "train_config.json")
    # the same data at another path, and settings that do not change the result
    moved = [shutil.copytree(p, tmp_path / "moved" / os.path.basename(p)) for p in pretrain_parts]
    code, _ = run_train(tiny_model_dir, [str(p) for p in moved], str(tmp_path / "d"), *resume, "--save_interval",
                        "5000", "--log_interval", "3", "--keep_last_n_checkpoints", "1", "--num_epochs", "2")
    assert code == 0 and os.path.isfile(tmp_path / "d" / "ck" / "final" / "config.json")
