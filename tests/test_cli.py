"""Command lines: every command shipped in the README parses, the quick ones run for real."""

import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from colossal_llama.config import (PretrainDataConfig, parse_pretrain_data_args, parse_sft_data_args, pretrain_data_parser, sft_data_parser)
from colossal_llama.errors import ConfigError
from colossal_llama.tokenizer.init_tokenizer import parser as expansion_parser
from helpers import REPO, SAMPLE_PRETRAIN, SAMPLE_SFT, sample_records

README = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()


def readme_commands(script: str) -> list[list[str]]:
    return [shlex.split(m) for m in re.findall(rf"^ +python {re.escape(script)}(.*)$", README, re.M)]


@pytest.mark.parametrize("parser", [pretrain_data_parser, sft_data_parser, expansion_parser])
def test_readme_documents_every_flag(parser):
    for action in parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}`" in README, f"{flag} is not documented in the README"


def test_readme_prepare_commands_parse():
    commands = readme_commands("prepare_pretrain_dataset.py")
    assert commands
    for argv in commands:
        config = parse_pretrain_data_args(argv)
        assert config.data_input_dirs == ["applications/quickstart/data/pretrain"]


def test_readme_sft_commands_parse():
    commands = readme_commands("prepare_sft_dataset.py")
    assert commands
    for argv in commands:
        config = parse_sft_data_args(argv)
        assert config.data_input_dirs == ["applications/quickstart/data/sft"] and config.llama_version == 2


def test_old_sft_command_line_is_accepted():
    config = parse_sft_data_args(["--data_input_dirs", "a,b", "--tokenizer_dir", "t", "--data_output_dirs", "o",
                                  "--max_length", "2048", "--num_spliced_dataset_bins", "5", "--llama_version", "2"])
    assert (config.max_length, config.num_spliced_dataset_bins, config.llama_version) == (2048, 5, 2)
    defaults = parse_sft_data_args(["--data_input_dirs", "a", "--tokenizer_dir", "t"])
    assert (defaults.llama_version, defaults.template, defaults.pack) == (None, "default", True)  # detected
    assert parse_sft_data_args(["--data_input_dirs", "a", "--tokenizer_dir", "t", "--no-pack"]).pack is False


def test_old_colossal_llama_command_line_is_accepted():
    config = parse_pretrain_data_args(["--data_input_dirs", "a,b", "--tokenizer_dir", "t",
                                       "--data_output_dirs", "o", "--max_length", "8192",
                                       "--num_spliced_dataset_bins", "20"])
    assert (config.data_input_dirs, config.max_length, config.num_spliced_dataset_bins) == (["a", "b"], 8192, 20)
    defaults = parse_pretrain_data_args(["--data_input_dirs", "a", "--tokenizer_dir", "t"])
    assert (defaults.max_length, defaults.num_spliced_dataset_bins, defaults.seed) == (4096, 10, 42)
    assert (defaults.on_error, defaults.recursive, defaults.overwrite) == ("raise", False, False)
    assert defaults.num_workers == (os.cpu_count() or 1)


@pytest.mark.parametrize("bad, words", [
    (dict(max_length=1), "--max_length must be at least 2"),
    (dict(num_spliced_dataset_bins=0), "--num_spliced_dataset_bins must be at least 1"),
    (dict(num_workers=0), "--num_workers must be at least 1"),
    (dict(on_error="ignore"), "--on_error must be one of"),
    (dict(data_input_dirs=""), "give at least one folder"),
])
def test_invalid_settings(bad, words):
    kw = dict(data_input_dirs="a", tokenizer_dir="t") | bad
    with pytest.raises(ConfigError, match=words):
        PretrainDataConfig(**kw)


def test_readme_sft_command_runs(sp_tokenizer_dir, tmp_path):
    argv = readme_commands("prepare_sft_dataset.py")[0]
    argv[argv.index("--tokenizer_dir") + 1] = sp_tokenizer_dir
    argv[argv.index("--data_output_dirs") + 1] = str(tmp_path / "out")
    done = subprocess.run([sys.executable, "prepare_sft_dataset.py", *argv], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^total +160 +0 ", done.stdout, re.M)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["kind"] == "sft" and manifest["chat_template"]["round_trip"] is True


def test_shim_reports_bad_input(tmp_path):
    done = subprocess.run([sys.executable, "prepare_pretrain_dataset.py", "--data_input_dirs", str(tmp_path / "x"),
                           "--tokenizer_dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: --data_input_dirs: folder {tmp_path / 'x'} does not exist"


def test_train_without_a_model_is_refused():
    done = subprocess.run([sys.executable, "train.py"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2
    assert "train.py: error: --pretrained: give the HF model folder to start from" in done.stderr


def test_demo_runs(tmp_path):
    """`make demo`'s job: the whole recipe, the knowledge check moving the right way, the quiz evaluated before and
    after every stage, plots, report, a chat."""
    done = subprocess.run([sys.executable, "applications/quickstart/demo.py", "--run_dir", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for stage in ("pretrain", "embeddings", "injection", "replay", "sft"):
        assert f": {stage}\n" in out and len(list((tmp_path / "stages").glob(f"*-{stage}/done.json"))) == 1
    added = re.search(r"vocabulary 1,200 -> ([\d,]+): ([\d,]+) pieces added", out)  # the compression report
    assert added and int(added.group(1).replace(",", "")) == 1200 + int(added.group(2).replace(",", "")) > 1600
    assert re.search(r"^encyclopedia_zh +65 +\d\.\d+ +0\.\d+ .*%$", out, re.M)  # under 1 token per character
    assert "The knowledge stages lowered the loss in both languages." in out
    mixture = json.loads((tmp_path / "stages" / "03-injection" / "data" / "manifest.json").read_text())
    replayed = {t["source"]: t["weight"] for t in mixture["sources"] if t["source"].endswith("(replay pretrain 25%)")}
    assert replayed == {"story_en (replay pretrain 25%)": 0.75, "story_zh (replay pretrain 25%)": 0.25,
                        "riddle_zh (replay pretrain 25%)": 0.25}  # 25% of each weight of the pretrain stage
    assert all(t["rows"] == round(t["source_rows"] * t["weight"]) for t in mixture["sources"])
    probes = json.loads((tmp_path / "probes.json").read_text())
    for category in ("fact_en", "fact_zh"):
        assert probes["replay"][category]["nats_per_char"] < probes["pretrain"][category]["nats_per_char"]
    assert out.count("assistant> ") == 2
    benchmarks = json.loads((tmp_path / "benchmarks.json").read_text())  # the quiz: a tiny model may stay near chance
    assert list(benchmarks) == ["start", "pretrain", "embeddings", "injection", "replay", "sft"]
    for summary in benchmarks.values():
        assert summary["overall"]["questions"] == 70 and summary["chance"] == 0.25
        assert {os.path.basename(f): s["questions"] for f, s in summary["files"].items()} == {"quiz_en.jsonl": 35,
                                                                                            "quiz_zh.jsonl": 35}
        for scores in [summary["overall"], *summary["files"].values(), *summary["subjects"].values()]:
            assert all(0 <= scores[m] <= 1 for m in ("acc", "acc_norm", "acc_letter"))
        assert len(json.loads((tmp_path / summary["results"]).read_text())["questions"]) == 70
    assert "Accuracy on the held-out multiple-choice quiz (70 questions" in out
    report = (tmp_path / "report.md").read_text()
    assert "![loss per stage](plots/loss.png)" in report and "## Knowledge check" in report
    assert "## Benchmarks" in report and "| start | 70 | " in report and "| sft | 70 | " in report
    assert "| after injection + replay | " in report  # the demo's quiz table, from notes.md
    for png in ("loss.png", "category_loss.png", "benchmarks.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    tokenizer = json.loads((tmp_path / "stages" / "05-sft" / "model" / "tokenizer_config.json").read_text())
    assert "Assistant: " in tokenizer["chat_template"]  # the export carries the SFT data's template
    assert_tokenizers_of_the_chain(tmp_path)


def assert_tokenizers_of_the_chain(run_dir):
    """Every tokenizer folder of the run (prepared data, expansion, checkpoints, exports): fast == slow ids on
    the bundled corpora; English text keeps the base tokenizer's ids through expansion and every stage."""
    from transformers import AutoTokenizer

    from colossal_llama.tokenizer.folder import fast_slow_mismatch
    from helpers import read_jsonl

    texts = [r["source"] + r["target"] for r in sample_records()]
    texts += [m["content"] for name in sorted(os.listdir(SAMPLE_SFT))
              for r in read_jsonl(os.path.join(SAMPLE_SFT, name)) for m in r["messages"]]
    folders = sorted({os.path.dirname(p) for p in glob.glob(f"{run_dir}/**/tokenizer_config.json", recursive=True)})
    assert len(folders) >= 10  # base, pretrain data + export, expansion, the later stages' data, checkpoints, exports
    for folder in folders:
        assert fast_slow_mismatch(folder, texts) is None, folder
    english = [t for t in texts if t.isascii()]
    base = AutoTokenizer.from_pretrained(os.path.join(run_dir, "base", "tokenizer"))(english, add_special_tokens=False)
    final = AutoTokenizer.from_pretrained(os.path.join(run_dir, "stages", "05-sft", "model"))
    assert final(english, add_special_tokens=False)["input_ids"] == base["input_ids"]


@pytest.mark.parametrize("script, folder", [("make_sample_data.py", SAMPLE_PRETRAIN),
                                            ("make_sample_sft_data.py", SAMPLE_SFT)])
def test_sample_data_regenerates_identically(tmp_path, script, folder):
    out = tmp_path / "data"
    done = subprocess.run([sys.executable, f"applications/quickstart/{script}", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    names = sorted(os.listdir(folder))
    assert sorted(os.listdir(out)) == names
    for name in names:
        assert (out / name).read_bytes() == open(os.path.join(folder, name), "rb").read(), name
    if script == "make_sample_data.py":  # the held-out probes and the quiz are written beside the corpus
        for held_out in ("probes", "quiz"):
            shipped = os.path.join(os.path.dirname(folder), held_out)
            names = sorted(os.listdir(shipped))
            assert names and sorted(os.listdir(tmp_path / held_out)) == names
            for name in names:
                assert (tmp_path / held_out / name).read_bytes() == open(os.path.join(shipped, name), "rb").read(), name


def test_sample_quiz_is_held_out_and_parallel():
    """The bundled quiz: questions the training Q&A never asks (in either language), four distinct choices, the
    English and Chinese files asking the same facts with the right answer at the same letter."""
    from helpers import read_jsonl

    quiz = os.path.join(os.path.dirname(SAMPLE_PRETRAIN), "quiz")
    en, zh = (read_jsonl(os.path.join(quiz, f"quiz_{lang}.jsonl")) for lang in ("en", "zh"))
    assert 30 <= len(en) == len(zh) <= 60
    trained = {r["source"] for r in sample_records()} | {r["target"] for r in sample_records()}
    for a, b in zip(en, zh):
        assert a["answer"] == b["answer"] in "ABCD" and a["subject"] == b["subject"]
        for r in (a, b):
            assert set(r) == {"question", "choices", "answer", "subject"} and len(set(r["choices"])) == 4
            assert r["question"] not in trained
    assert re.search(r"[\u4e00-\u9fff]", zh[0]["question"]) and en[0]["question"].isascii()
    assert len({r["answer"] for r in en}) == 4  # the right answer is not always at one letter


def test_sample_corpus_shape():
    from helpers import sample_records

    records = sample_records()
    categories = {r["category"] for r in records}
    assert 300 <= len(records) <= 500 and len(categories) >= 5
    assert sum(r["source"] != "" for r in records) >= 50  # some records carry a masked source
    text = "".join(r["target"] for r in records)
    assert re.search(r"[\u4e00-\u9fff]", text) and re.search(r"[A-Za-z]{4}", text)  # Chinese and English


def test_readme_init_model_command_parses():
    from colossal_llama.model.init_model import parser as init_parser

    line = re.search(r"^ +python -m colossal_llama.model.init_model (.*)$", README, re.M).group(1)
    args = init_parser().parse_args(shlex.split(line))
    assert args.target_tokenizer_path == "runs/demo/tokenizer-zh" and not args.replace_vocab
    for action in init_parser()._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help":
                assert f"`{flag}`" in README, flag


def test_benchmarks_run_on_bundled_data(sp_tokenizer_dir):
    """The data benchmarks for real, on the small bundled corpora (the figures come from ../shared/realdata)."""
    common = ["--tokenizer_dir", sp_tokenizer_dir, "--repeat", "1", "--runs", "1", "--max_length", "512"]
    done = subprocess.run([sys.executable, "benchmarks/prepare_pretrain.py", "--input_dir", SAMPLE_PRETRAIN, *common],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "362 records" in done.stdout and "(100.00% accounted for)" in done.stdout
    assert "encoder sentencepiece: SentencePiece BPE" in done.stdout and "phases (medians)  tokenize" in done.stdout
    assert "byte-identical with the default encoder and with --encoder hf" in done.stdout  # one --encoder hf run
    done = subprocess.run([sys.executable, "benchmarks/prepare_sft.py", "--input_dir", SAMPLE_SFT,
                           "--llama_version", "2", *common, "--hf_runs", "0"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "conversations     kept 160" in done.stdout and "fill no-pack (--no-pack)" in done.stdout
    assert "fill within (--pack_within_category)" in done.stdout
