"""The GPU check's Python part (benchmarks/gpu/check.py) rehearsed on CPU: ddp with sdpa and flex on the
test fixtures, in this process; and its verdicts on figures that break the limits."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks", "gpu"))

import check  # noqa: E402


def test_rehearsal_reports_both_paths_equal_and_isolated(tiny_model_dir, pretrain_parts, tmp_path):
    out = str(tmp_path / "out")
    code = check.main(["--rehearse", "--in_process", "--tokenizer", tiny_model_dir, "--data", *pretrain_parts,
                       "--out", out, "--steps", "4", "--timed", "2", "--batch_size", "3"])
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        results = json.load(f)["results"]
    from colossal_llama.model.attention import flex_trains_on_cpu

    if not flex_trains_on_cpu():  # torch 2.11: the case is left out, with the reason
        assert code == 0 and list(results) == ["ddp:sdpa"]
        assert "ddp:flex (this torch cannot train FlexAttention on the CPU)" in json.load(
            open(os.path.join(out, "results.json"), encoding="utf-8"))["meta"]["skipped"]
        return
    assert code == 0 and list(results) == ["ddp:sdpa", "ddp:flex"]
    for name, r in results.items():
        assert r["attention"] == name.split(":")[1] and len(r["losses"]) == 4 and r["failed"] == []
        assert r["isolation"]["rows"] == 2 and r["isolation"]["leak"] == 0.0
        assert r["isolation"]["packed_vs_alone"] < 1e-5
        assert r["tokens_per_s"] > 0 and 0 <= r["data_wait"] < 1
    assert results["ddp:flex"]["loss_vs_ddp"] < 1e-2  # flex against sdpa, the same run in bf16
    report = open(os.path.join(out, "RESULTS.md"), encoding="utf-8").read()
    assert "| ddp | sdpa |" in report and "| ddp | flex |" in report and "FAILED" not in report


def test_verdicts_name_each_broken_limit():
    def case(leak, alone, losses, rows=2):
        return {"attention_requested": "flex", "losses": losses,
                "isolation": {"rows": rows, "leak": leak, "packed_vs_alone": alone}}

    results = {"ddp:flex": case(0.0, 1e-4, [10.0, 9.0]), "gemini:flex": case(0.5, 1e-4, [10.0, 9.0]),
               "zero2:flex": case(0.0, 0.2, [10.0, 9.5]), "3d:flex": case(0.0, 0.0, [10.0, 9.0], rows=0),
               "3d:sdpa": {"error": "boom", "attention_requested": "sdpa"},
               "gemini:sdpa": {**case(float("nan"), 1e-4, [10.0, float("nan")]), "attention_requested": "sdpa"}}
    check.compare(results)
    assert results["gemini:sdpa"]["failed"] == ["leak", "a loss is not finite"]  # NaN is never within a limit
    assert results["ddp:flex"]["failed"] == [] and "loss_vs_ddp" not in results["ddp:flex"]
    assert results["gemini:flex"]["failed"] == ["leak"]
    assert results["zero2:flex"]["failed"] == ["packed_vs_alone", "loss_vs_ddp"]
    assert results["zero2:flex"]["loss_vs_ddp"] == pytest.approx(0.5 / 9)
    assert results["3d:flex"]["failed"] == ["no packed row to check"]


def test_a_leaking_mask_fails_the_check(tiny_model_dir, pretrain_parts, tmp_path, monkeypatch):
    """The isolation figures can fail: with a plain causal mask over the row, the documents see each other."""
    import torch

    from colossal_llama.data import loader

    def causal_only(ids, dtype):
        length = ids.shape[1]
        blocked = torch.ones(length, length, dtype=torch.bool).triu(1)
        return torch.zeros(ids.shape[0], 1, length, length, dtype=dtype).masked_fill_(blocked, torch.finfo(dtype).min)

    monkeypatch.setattr(loader, "block_causal_mask", causal_only)
    out = str(tmp_path / "out")
    code = check.main(["--rehearse", "--in_process", "--tokenizer", tiny_model_dir, "--data", *pretrain_parts,
                       "--out", out, "--steps", "2", "--timed", "1", "--cases", "ddp:sdpa"])
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        result = json.load(f)["results"]["ddp:sdpa"]
    assert code == 1 and result["failed"] == ["leak"]
    assert result["isolation"]["leak"] > 1e-3


def test_a_path_that_fails_under_ddp_is_not_tried_elsewhere(tiny_model_dir, pretrain_parts, tmp_path, monkeypatch):
    import case

    def fake(spec):
        if spec["attention"] == "flex":
            raise RuntimeError("flex cannot compile here")
        steps = [{"loss": 10.0 - i, "seconds": 1.0, "wait": 0.0, "input_tokens": 100, "padded_tokens": 128,
                  "row_length": 128, "grad_norm": 1.0} for i in range(4)]
        return {"case": spec["name"], "plugin": spec["plugin"], "attention": "sdpa", "loader_workers": 0,
                "parameters": 1000, "setup_seconds": 1.0, "peak_gib": None, "steps": steps,
                "isolation": {"rows": 2, "leak": 0.0, "packed_vs_alone": 0.0}}

    monkeypatch.setattr(case, "run_case", fake)
    monkeypatch.setattr(check, "flex_trains_on_cpu", lambda: True)  # whatever this torch can do
    out = str(tmp_path / "out")
    code = check.main(["--rehearse", "--in_process", "--tokenizer", tiny_model_dir, "--data", *pretrain_parts,
                       "--out", out, "--steps", "4", "--timed", "2",
                       "--cases", "ddp:sdpa,ddp:flex,gemini:flex,gemini:sdpa"])
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        saved = json.load(f)
    assert code == 1 and list(saved["results"]) == ["ddp:sdpa", "ddp:flex", "gemini:sdpa"]
    assert "flex cannot compile here" in saved["results"]["ddp:flex"]["error"]
    assert saved["results"]["gemini:sdpa"]["loss_vs_ddp"] == 0.0
    assert [s for s in saved["meta"]["skipped"] if "gemini:flex" in s] == ["gemini:flex (ddp:flex failed)"]
    assert "| gemini | sdpa |" in open(os.path.join(out, "RESULTS.md"), encoding="utf-8").read()


def test_the_kit_scripts_say_how_they_are_used(tmp_path):
    """check.sh without arguments shows its use and exits 2, and says to build the kit when it is missing;
    make_kit.sh --help exits 0 (neither downloads, installs or builds anything here)."""
    import subprocess

    scripts = os.path.join(ROOT, "benchmarks", "gpu")
    usage = subprocess.run(["bash", os.path.join(scripts, "check.sh")], capture_output=True, text=True)
    assert usage.returncode == 2 and "bash benchmarks/gpu/check.sh OUT_DIR [--rehearse]" in usage.stderr
    missing = subprocess.run(["bash", os.path.join(scripts, "check.sh"), str(tmp_path / "out")], capture_output=True,
                             text=True, env={**os.environ, "KIT": str(tmp_path / "no-kit")})
    assert missing.returncode == 2 and "build the kit first with  bash benchmarks/gpu/make_kit.sh" in missing.stderr
    helped = subprocess.run(["bash", os.path.join(scripts, "make_kit.sh"), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "Builds the GPU check kit in .gpukit/" in helped.stdout
