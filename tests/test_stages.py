"""Stage recipes: checking, cached preparation, mixtures and replay, the runner's resume, the report."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from colossal_llama.errors import DataError, RecipeError
from colossal_llama.stages.recipe import load_recipe
from colossal_llama.data.manifest import parts_of
from colossal_llama.data.mixtures import MixPart, build_mixture, chosen_rows
from colossal_llama.stages.sources import FileHashes, prepare_source
from helpers import REPO, SAMPLE_PRETRAIN

STORY_EN = os.path.join(SAMPLE_PRETRAIN, "story_en.jsonl.gz")
QA_EN = os.path.join(SAMPLE_PRETRAIN, "qa_en.jsonl")
QA_ZH = os.path.join(SAMPLE_PRETRAIN, "qa_zh.jsonl")


def base_recipe(model_dir: str) -> dict:
    """Two stages on small bundled files; stage b replays half of stage a."""
    return {
        "launcher": {"command": "python"},
        "defaults": {"plugin": "ddp", "mixed_precision": "fp32", "batch_size": 2, "lr": 1e-3, "log_interval": 1,
                     "save_interval": 3, "seed": 3},
        "prepare": {"max_length": 128, "num_spliced_dataset_bins": 2, "num_workers": 1},
        "probes": [QA_ZH],
        "sources": {"story": {"jsonl": [STORY_EN]}, "qa": {"jsonl": [QA_EN]}},
        "stages": [
            {"name": "a", "start": {"model": model_dir}, "data": {"story": 1}, "train": {"max_steps": 4}},
            {"name": "b", "data": {"qa": 2}, "replay": [{"stage": "a", "percent": 50}], "buckets": 2,
             "train": {"max_steps": 12, "use_neft": True}},
        ],
    }


def write_recipe(folder, recipe: dict) -> str:
    path = os.path.join(folder, "recipe.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(recipe, f, allow_unicode=True)
    return path


def _set(recipe: dict, dotted: str, value):
    keys = dotted.split(".")
    node = recipe
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value


BAD = [
    ("launcher.command", None, "launcher.command: expected str, got None"),
    ("launcher.nproc_per_node", 0, "launcher.nproc_per_node: Input should be greater than or equal to 1"),
    ("stages.0.data", {}, "stages[0] (a).data: Dictionary should have at least 1 item"),
    ("stagez", [], "recipe.yaml: stagez: unknown key"),
    ("stages.0.epochs", 3, "stages[0].epochs: unknown key"),
    ("stages.1.train.lrr", 1.0, "stages[1] (b).train.lrr: unknown key"),
    ("stages.1.train.lr", "fast", "stages[1] (b).train.lr: expected float, got 'fast'"),
    ("stages.1.train.save_dir", "x", "stages[1] (b).train.save_dir: set by the runner; use the run folder"),
    ("stages.1.train.freeze_non_embeds_params", True, "use `freeze: embeddings`"),
    ("stages.1.train.eval_interval", 5, "stages[1] (b).train: --eval_interval"),
    ("stages.1.data.nope", 1, "stages[1] (b).data.nope: unknown key"),
    ("stages.1.data.qa", 0, "stages[1] (b).data.qa: a weight must be positive"),
    ("stages.1.replay.0.stage", "c", "stages[1] (b).replay[0].stage: no stage 'c' runs before this one"),
    ("stages.1.replay.0.percent", 150, "stages[1] (b).replay[0].percent: must be in (0, 100]"),
    ("stages.0.start", {"stage": "b"}, "stages[0] (a).start.stage: no stage 'b' runs before this one"),
    ("stages.1.start", {"stage": "b"}, "stages[1] (b).start.stage: no stage 'b' runs before this one"),
    ("stages.0.start", "previous", "stages[0] (a).start: the first stage must start from a model"),
    ("stages.0.start.model", "/no/such/model", "stages[0] (a).start.model: /no/such/model does not exist"),
    ("stages.1.freeze", "new_rows", "stages[1] (b).freeze: new_rows needs a stage that starts with `expand`"),
    ("stages.1.freeze", "all", "stages[1] (b).freeze: must be one of none, embeddings, new_rows"),
    ("stages.1.name", "a", "stages[1].name: stage 'a' is defined twice"),
    ("stages.1.start", {"expand": {"learn_from": [QA_ZH]}}, "stages[1] (b).start.expand: learn_from needs"),
    ("sources.qa.jsonl", ["/no/such.jsonl"], "sources.qa.jsonl[0]: /no/such.jsonl does not exist"),
    ("sources.qa.prepare", {"max_len": 3}, "sources.qa.prepare.max_len: unknown key"),
    ("sources.qa.prepare", {"tokenizer_dir": "x"}, "sources.qa.prepare.tokenizer_dir: set by the runner"),
    ("sources.qa.kind", "chat", "sources.qa.kind: must be one of pretrain, sft"),
    ("sources.qa.prepared", "/tmp", "sources.qa: give exactly one of `jsonl`"),
    ("probes", ["/no/probes.jsonl"], "probes[0]: /no/probes.jsonl does not exist"),
    ("benchmarks", ["/no/quiz.jsonl"], "benchmarks[0]: /no/quiz.jsonl does not exist"),
    ("benchmarks", [QA_EN], f"benchmarks[0]: {QA_EN}:1: expected a non-empty list \"choices\""),
    ("benchmarks", [SAMPLE_PRETRAIN], f"benchmarks[0]: {SAMPLE_PRETRAIN}/encyclopedia_en.jsonl:1: expected a non-empty"),
    ("benchmark_shots", -1, "benchmark_shots: must be at least 0, got -1"),
    ("benchmark_shots", "five", "benchmark_shots: expected int, got 'five'"),
    ("benchmark_shots", 5, "benchmark_shots: few-shot examples of `benchmarks:`, which names no task files"),
    ("launcher.command", "mpirun", "launcher.command: must be one of colossalai, torchrun, python"),
    ("launcher.nproc_per_node", "two", "launcher.nproc_per_node: expected int, got 'two'"),
    ("launcher.nproc_per_node", 2, "launcher.command: python starts one process on this machine"),
]


@pytest.mark.parametrize("dotted, value, message", BAD, ids=[b[0] + "=" + str(b[1])[:12] for b in BAD])
def test_bad_recipes_name_the_file_and_key(tmp_path, dotted, value, message):
    recipe = base_recipe(str(tmp_path))
    _set(recipe, dotted, value)
    path = write_recipe(tmp_path, recipe)
    with pytest.raises(RecipeError) as error:
        load_recipe(path, run_dir=str(tmp_path / "run"))
    assert str(error.value).startswith(path + ": ") and message in str(error.value)


def test_every_error_of_a_recipe_is_reported_at_once(tmp_path):
    recipe = base_recipe(str(tmp_path))
    recipe["launcher"]["nproc_per_node"] = "two"  # a wrong type
    recipe["stages"][0]["train"]["lr"] = "fast"  # a train.py setting of the wrong type, in another stage
    recipe["stages"][1]["replay"][0]["stage"] = "later"  # a reference to a stage that does not run before
    path = write_recipe(tmp_path, recipe)
    with pytest.raises(RecipeError) as error:
        load_recipe(path, run_dir=str(tmp_path / "run"))
    assert str(error.value).splitlines() == [
        f"{path}: launcher.nproc_per_node: expected int, got 'two'",
        f"{path}: stages[0] (a).train.lr: expected float, got 'fast'",
        f"{path}: stages[1] (b).replay[0].stage: no stage 'later' runs before this one (earlier: ['a'])",
    ]


def test_unknown_keys_are_refused_with_their_path(tmp_path):
    recipe = base_recipe(str(tmp_path))
    recipe["sources"]["qa"]["weight"] = 2
    recipe["stages"][1]["start"] = {"expand": {"pieces": [QA_ZH], "piece_count": 3}}
    path = write_recipe(tmp_path, recipe)
    with pytest.raises(RecipeError) as error:
        load_recipe(path, run_dir=str(tmp_path / "run"))
    lines = str(error.value).splitlines()
    assert len(lines) == 2
    assert lines[0] == f"{path}: sources.qa.weight: unknown key (allowed: jsonl, prepared, kind, prepare)"
    assert lines[1].startswith(f"{path}: stages[1] (b).start.expand.piece_count: unknown key (allowed: pieces, ")


def test_bad_recipe_from_the_command_line_runs_nothing(tmp_path, capsys):
    from colossal_llama.stages.__main__ import main

    recipe = base_recipe(str(tmp_path))
    recipe["stages"][1]["train"]["lr"] = "fast"
    assert main([write_recipe(tmp_path, recipe), "--run_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "stages[1] (b).train.lr" in err
    assert not (tmp_path / "run").exists()


def test_shipped_recipes_check(tmp_path):
    demo = load_recipe(os.path.join(REPO, "applications", "quickstart", "recipe.yaml"), run_dir=str(tmp_path),
                       check_paths=False)
    assert [s.name for s in demo.stages] == ["pretrain", "embeddings", "injection", "replay", "sft"]
    real = load_recipe(os.path.join(REPO, "applications", "recipes", "llama2_7b_zh.yaml"), check_paths=False)
    assert real.launcher.nproc_per_node == 8 and real.stages[0].start.expand
    assert [s.name for s in real.stages][-1] == "sft" and all(s.train["plugin"] for s in real.stages)
    assert real.stages[0].freeze == "new_rows"


def test_check_prints_the_plan_and_runs_nothing(tmp_path, tiny_model_dir, capsys):
    from colossal_llama.stages.__main__ import main

    recipe = base_recipe(tiny_model_dir)
    recipe["benchmarks"] = [os.path.join(REPO, "applications", "quickstart", "data", "quiz")]
    run = tmp_path / "run"
    assert main([write_recipe(tmp_path, recipe), "--run_dir", str(run), "--check"]) == 0
    out = capsys.readouterr().out
    assert "2 stage(s)" in out and "  02-b: from stage a; data qa x2, replay 50% of a; freeze none" in out
    assert f"  benchmarks, 0-shot, before the first stage and after each: {recipe['benchmarks'][0]}" in out
    assert f"  probes, before the first stage and after each: {QA_ZH}" in out
    assert not run.exists()


def test_chosen_rows_repeat_factor():
    rows = chosen_rows(10, 2.5, seed=0, label="x")
    counts = np.bincount(rows, minlength=10)
    assert len(rows) == 25 and sorted(set(counts.tolist())) == [2, 3] and (counts == 3).sum() == 5
    assert (rows == chosen_rows(10, 2.5, seed=0, label="x")).all()
    assert not (rows == chosen_rows(10, 2.5, seed=1, label="x")).all()
    assert not (rows == chosen_rows(10, 2.5, seed=0, label="y")).all()  # each source draws its own sample
    assert len(chosen_rows(10, 0.04, 0, "x")) == 0
    for count, factor in [(7, 1.3), (10, 0.5), (3, 2.0), (1000, 0.37)]:  # accounting: round(count * factor) rows
        rows = chosen_rows(count, factor, 5, "x")
        assert len(rows) == round(count * factor) and (np.bincount(rows, minlength=count) >= int(factor)).all()


def fake_source(folder, rows: int, category: str, per_segment: bool = False, fingerprint: str = "tok-a") -> str:
    """A prepared folder written with the data path's writer, in two parts; row r holds ids r*100+1.. so
    rows can be told apart. Per-segment rows hold a `qa` and a `chat` segment, the first masked."""
    from colossal_llama.data.manifest import write_manifest
    from colossal_llama.data.segments import row_category
    from colossal_llama.data.shards import RowWriter

    for part, members in enumerate(np.array_split(np.arange(rows), 2)):
        writer = RowWriter(os.path.join(folder, "arrow", f"part-{part:05d}"), f"fp{part}", segment_categories=per_segment)
        seq = [[1 + r % 3, 2] for r in members.tolist()]
        ids = np.concatenate([r * 100 + 1 + np.arange(sum(s)) for r, s in zip(members.tolist(), seq)])
        labels = np.concatenate([[-100] * s[0] + [5] * s[1] for s in seq])
        names = [category, "chat"] * len(seq) if per_segment else [category] * 2 * len(seq)
        writer.write(ids, labels, [sum(s) for s in seq], np.concatenate(seq), [2] * len(seq),
                     [row_category(names[2 * i : 2 * i + 2]) for i in range(len(seq))], names if per_segment else None)
        writer.close()
    write_manifest(folder, {"tool": "colossal_llama", "kind": "pretrain", "max_length": 16,
                            "tokenizer": {"fingerprint": fingerprint, "name_or_path": "tok", "vocab_size": 9999},
                            "inputs": [{"path": f"{category}.jsonl", "bytes": 1, "sha256": category}]})
    return str(folder)


def mixture_rows(folder) -> list:
    import datasets

    return [list(datasets.load_from_disk(p)) for p in parts_of(str(folder))]


def test_mixture_accounting_proportions_and_training_checks(tmp_path):
    from colossal_llama.data.segments import segment_categories_of
    from colossal_llama.training.prepared import check_manifest, manifest_of

    story = fake_source(tmp_path / "story", 7, "story")
    qa = fake_source(tmp_path / "qa", 10, "qa", per_segment=True)
    manifest = build_mixture(str(tmp_path / "mix"), [MixPart("story", story, 2.0), MixPart("qa", qa, 0.5)], 3, seed=1)
    buckets = mixture_rows(tmp_path / "mix")
    assert {t["source"]: t["rows"] for t in manifest["sources"]} == {"story": 14, "qa": 5}  # round(count * weight)
    # bucket k holds slice k of every source's rows: story 14 -> 5 5 4, qa 5 -> 2 2 1
    from_story = [[r["category"] == "story" for r in rows] for rows in buckets]
    assert [(sum(b), len(b) - sum(b)) for b in from_story] == [(5, 2), (5, 2), (4, 1)]
    assert [b["rows"] for b in manifest["buckets"]] == [len(rows) for rows in buckets]
    rows = [r for b in buckets for r in b]
    story_ids = Counter(r["input_ids"][0] for r in rows if r["category"] == "story")
    assert story_ids == {i * 100 + 1: 2 for i in range(7)}  # every story row exactly twice
    assert len({r["input_ids"][0] for r in rows if r["category"] != "story"}) == 5  # five qa rows, no repeats
    # the counts are those of the rows written, per segment
    segments = Counter(c for r in rows for c in segment_categories_of(r))
    assert {n: e["segments"] for n, e in manifest["categories"].items()} == segments == {"story": 28, "qa": 5, "chat": 5}
    assert manifest["totals"]["tokens_out"] == sum(len(r["input_ids"]) for r in rows)
    assert manifest["totals"]["label_tokens"] == sum(x != -100 for r in rows for x in r["labels"]) == 2 * 19
    assert all(len(segment_categories_of(r)) == len(r["seq_lengths"]) for r in rows)
    for part in parts_of(str(tmp_path / "mix")):  # training reads it as it reads prepared data
        check_manifest(part, manifest_of(part), "tok-a", max_positions=16)
    assert manifest["kind"] == "mixture" and [i["path"] for i in manifest["inputs"]] == ["story.jsonl", "qa.jsonl"]


def test_mixture_same_seed_same_bytes_and_reused(tmp_path, monkeypatch):
    from colossal_llama.data import mixtures

    story = fake_source(tmp_path / "story", 9, "story")
    qa = fake_source(tmp_path / "qa", 12, "qa", per_segment=True)

    def build(name, seed=1, weight=0.5):
        return build_mixture(str(tmp_path / name), [MixPart("story", story, 1.0), MixPart("qa", qa, weight)], 2, seed)

    def files(name):
        root = tmp_path / name
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first, again = build("a"), build("b")
    assert first == again and files("a") == files("b")
    other = build("c", seed=2)
    assert {t["source"]: t["rows"] for t in other["sources"]} == {"story": 9, "qa": 6}
    assert mixture_rows(tmp_path / "c") != mixture_rows(tmp_path / "a")  # another sample of qa
    monkeypatch.setattr(mixtures, "staged_output", None)  # the same mixture again: nothing is written
    assert build("a") == first
    monkeypatch.undo()
    assert {t["source"]: t["rows"] for t in build("a", weight=0.25)["sources"]}["qa"] == 3  # another one: replaced


def test_mixture_refuses_other_tokenizers_and_empty_weights(tmp_path):
    story = fake_source(tmp_path / "story", 4, "story")
    other = fake_source(tmp_path / "other", 4, "qa", fingerprint="tok-b")
    with pytest.raises(DataError, match="prepared with different tokenizers: story \\(tok\\), qa \\(tok\\)"):
        build_mixture(str(tmp_path / "mix"), [MixPart("story", story, 1.0), MixPart("qa", other, 1.0)], 2, seed=1)
    with pytest.raises(DataError, match="story with weight 0.1 selects none of its 4 rows"):
        build_mixture(str(tmp_path / "mix"), [MixPart("story", story, 0.1)], 2, seed=1)
    assert sorted(os.listdir(tmp_path)) == ["other", "story"]


def test_prepared_once_per_content_and_tokenizer(tmp_path, sp_tokenizer_dir, llama3_tokenizer_dir, capsys):
    recipe = base_recipe(str(tmp_path))
    copy = tmp_path / "qa.jsonl"
    copy.write_bytes(open(QA_EN, "rb").read())
    recipe["sources"]["qa"]["jsonl"] = [str(copy)]
    source = load_recipe(write_recipe(tmp_path, recipe), run_dir=str(tmp_path / "run")).sources["qa"]
    cache, hashes = str(tmp_path / "cache"), FileHashes(str(tmp_path / "cache"))
    first = prepare_source(source, sp_tokenizer_dir, cache, hashes)
    assert prepare_source(source, sp_tokenizer_dir, cache, hashes) == first
    assert "prepared before" in capsys.readouterr().out
    assert prepare_source(source, llama3_tokenizer_dir, cache, hashes) != first  # another tokenizer
    copy.write_bytes(copy.read_bytes() + open(QA_ZH, "rb").read().replace(b'"qa_zh"', b'"qa_en"'))
    changed = prepare_source(source, sp_tokenizer_dir, cache, hashes)
    assert changed != first
    with open(os.path.join(changed, "manifest.json")) as f:
        assert json.load(f)["totals"]["records"] == 100


def test_mixture_weights_buckets_and_sft_template(tmp_path, sp_tokenizer_dir):
    from helpers import prepare_parts

    story = os.path.dirname(os.path.dirname(prepare_parts("pretrain", sp_tokenizer_dir, str(tmp_path / "p"), 128, 2)[0]))
    chat = os.path.dirname(os.path.dirname(prepare_parts("sft", sp_tokenizer_dir, str(tmp_path / "s"), 256, 2,
                                                         ["--llama_version", "2"])[0]))
    import datasets

    size = lambda folder: sum(len(datasets.load_from_disk(p)) for p in parts_of(folder))  # noqa: E731
    n_story, n_chat = size(story), size(chat)
    manifest = build_mixture(str(tmp_path / "mix"), [MixPart("story", story, 2.0), MixPart("chat", chat, 0.5)],
                             buckets=3, seed=1)
    rows = {t["source"]: t["rows"] for t in manifest["sources"]}
    assert rows == {"story": 2 * n_story, "chat": round(0.5 * n_chat)}
    bucket_rows = [b["rows"] for b in manifest["buckets"]]
    assert sum(bucket_rows) == 2 * n_story + round(0.5 * n_chat) == size(str(tmp_path / "mix"))
    assert max(bucket_rows) - min(bucket_rows) <= 2  # every bucket has the proportions
    assert abs(sum(t["share"] for t in manifest["sources"]) - 1) < 1e-3
    assert os.path.isfile(tmp_path / "mix" / "tokenizer" / "tokenizer_config.json")  # the chat template travels
    # SFT rows (packed across categories: per-segment categories) next to pretraining rows (one category each)
    from colossal_llama.data.loader import PackedCollator
    from colossal_llama.data.segments import categories_in, segment_categories_of

    mixed = datasets.concatenate_datasets([datasets.load_from_disk(p) for p in parts_of(str(tmp_path / "mix"))])
    sources = [datasets.concatenate_datasets([datasets.load_from_disk(p) for p in parts_of(f)]) for f in (story, chat)]
    assert [("segment_categories" in s.column_names) for s in (sources[0], mixed, sources[1])] == [False, True, True]
    assert categories_in(mixed) == sorted(set(categories_in(sources[0])) | set(categories_in(sources[1])))
    rows = list(mixed)
    batch = PackedCollator(pad_token_id=0)(rows)
    assert [[c for c, _ in s] for s in batch["segments"]] == [segment_categories_of(r) for r in rows]
    assert all(len(segment_categories_of(r)) == len(r["seq_lengths"]) for r in rows)
    first = [datasets.load_from_disk(p)["input_ids"] for p in parts_of(str(tmp_path / "mix"))]
    build_mixture(str(tmp_path / "mix2"), [MixPart("story", story, 2.0), MixPart("chat", chat, 0.5)], 3, seed=1)
    assert first == [datasets.load_from_disk(p)["input_ids"] for p in parts_of(str(tmp_path / "mix2"))]


def _runner(recipe_path: str, run_dir: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "colossal_llama.stages", recipe_path, "--run_dir", run_dir, *extra]


def _weights(run_dir: str, stage: str) -> dict:
    folder = os.path.join(run_dir, "stages", stage, "model")
    tensors = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            tensors.update(load_file(os.path.join(folder, name)))
    return tensors


ODD = "r$(touch X) 'q' ;x"  # a name a shell would run `touch X` for, and split in three


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of the live processes that contain `text`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in line:
            found.append(f"{pid}: {line}")
    return found


def test_launcher_port_is_a_free_one_unless_given(tmp_path):
    from colossal_llama.stages.launch import launch_command

    recipe = base_recipe(str(tmp_path))
    for command in ("colossalai", "torchrun"):
        recipe["launcher"] = {"command": command}
        launch = launch_command(load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / "run")), "t.json")
        port = int(launch[launch.index("--master_port") + 1])
        assert port != 29500  # torchrun's usual port is not the default
        with socket.socket() as s:
            s.bind(("", port))  # free
        recipe["launcher"]["master_port"] = 29400  # given: used as it is (never bound here)
        launch = launch_command(load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / "run")), "t.json")
        assert launch[launch.index("--master_port") + 1] == "29400"


def test_colossalai_run_hands_each_argument_and_variable_to_its_shell_intact(tmp_path, capfd, monkeypatch):
    """`colossalai run` joins its arguments with spaces and exports the environment in double quotes for a shell."""
    from multiprocessing import Pipe

    from colossalai.cli.launcher import run
    from colossalai.cli.launcher.hostinfo import HostInfo
    from colossalai.cli.launcher.multinode_runner import run_on_host
    from colossalai.cli.launcher.run import get_launch_command

    from colossal_llama.stages.launch import launch_command, launch_env

    recipe = base_recipe(str(tmp_path))
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("node$(touch X)\nother\n")  # colossalai run's rendezvous address: the first host
    config = str(tmp_path / ODD / "train.json")
    for launcher, address in [({"master_addr": "node $(touch X)"}, "node $(touch X)"),
                              ({"hostfile": str(hostfile)}, "node$(touch X)")]:
        recipe["launcher"] = {"command": "colossalai", **launcher}
        loaded = load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / ODD))
        launch = launch_command(loaded, config)
        assert launch[1] == "run"
        parsed = []  # what colossalai run makes of its command line (with -m, its words after it go to the module)
        monkeypatch.setattr("colossalai.cli.launcher.launch_multi_processes", parsed.append)
        run.main(launch[2:], standalone_mode=False)
        args = parsed.pop()
        line = get_launch_command(args.master_addr, args.master_port, args.nproc_per_node, args.user_script,
                                  args.user_args, 0, 2, args.m)
        words = shlex.split(line)  # what the shell runs
        assert words[-4:] == ["-m", "colossal_llama.training", "--config", config]
        assert f"--master_addr={address}" in words

    odd = f"{ODD} \"$HOME\" `touch X` \\"
    env = launch_env(loaded.launcher, dict(os.environ, ODD_VALUE=odd, PWD=str(tmp_path / ODD)))
    env = {k: v for k, v in env.items() if v and "\n" not in v}  # what `colossalai run` passes on
    ours, theirs = Pipe()
    shown, show = Pipe()
    ours.send(shlex.join([sys.executable, "-c", "import os; print(repr((os.environ['ODD_VALUE'], os.getcwd())))"]))
    ours.send("exit")
    with open(os.devnull) as nothing:  # the runner gives the launcher no stdin either
        monkeypatch.setattr(sys, "stdin", nothing)
        run_on_host(HostInfo("127.0.0.1", None), REPO, theirs, show, env)
    assert shown.recv() == "success"
    assert repr((odd, REPO)) in capfd.readouterr().out
    assert not [d for d, _, files in os.walk(tmp_path) if "X" in files] and not os.path.exists(os.path.join(REPO, "X"))

    from colossal_llama.stages import launch

    launch.check_launcher(loaded)
    monkeypatch.setattr(launch, "PACKAGE_ROOT", "/src/co$(touch X)")  # the one path colossalai run's `cd` gets unquoted
    with pytest.raises(RecipeError, match=r"launcher.command: colossalai run changes to /src/co\$\(touch X\)"):
        launch.check_launcher(loaded)


def test_finished_stages_are_skipped_and_changed_ones_refused(tmp_path, tiny_model_dir):
    """The runner's decision, without training: a stage's key covers its settings and those of the stages it
    builds on; a done.json with the same key is skipped, another key refused before anything runs."""
    from colossal_llama.stages.runner import check_finished, stage_dir, stage_keys

    recipe = base_recipe(tiny_model_dir)
    loaded = load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / "run"))
    keys = stage_keys(loaded)
    for stage in loaded.stages:
        os.makedirs(stage_dir(loaded, stage))
        with open(os.path.join(stage_dir(loaded, stage), "done.json"), "w") as f:
            json.dump({"key": keys[stage.name]}, f)
    check_finished(loaded, keys)  # the same recipe: both skipped

    recipe["stages"][0]["train"]["lr"] = 5e-4  # stage a changed: b, which replays a, changes with it
    changed = load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / "run"))
    changed_keys = stage_keys(changed)
    assert changed_keys["a"] != keys["a"] and changed_keys["b"] != keys["b"]
    with pytest.raises(RecipeError, match=r"stage 'a' finished in .*01-a with other settings"):
        check_finished(changed, changed_keys)
    recipe["stages"][0]["train"]["lr"] = 1e-3
    recipe["stages"][1]["train"]["max_steps"] = 13  # b alone changed: a still matches
    changed = load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / "run"))
    assert stage_keys(changed)["a"] == keys["a"]
    with pytest.raises(RecipeError, match=r"stage 'b' finished in .*02-b with other settings"):
        check_finished(changed, stage_keys(changed))


QUIZ = os.path.join(os.path.dirname(SAMPLE_PRETRAIN), "quiz")


def test_benchmarks_are_filled_in_where_missing_and_reported(tmp_path, tiny_model_dir, monkeypatch):
    """Benchmarks added to a finished run: the start model and each export are evaluated once, without rerunning
    a stage (the stage keys do not change); a rerun evaluates only what is missing; the report shows them."""
    import colossal_llama.evaluate as evaluate
    from colossal_llama.stages.report import write_report
    from colossal_llama.stages.runner import run_recipe, stage_dir, stage_keys

    recipe = base_recipe(tiny_model_dir)
    del recipe["probes"]
    run = str(tmp_path / "run")
    plain = load_recipe(write_recipe(tmp_path, recipe), run)
    for stage in plain.stages:  # both stages finished before: done.json and an export (the tiny model)
        shutil.copytree(tiny_model_dir, os.path.join(stage_dir(plain, stage), "model"))
        with open(os.path.join(stage_dir(plain, stage), "done.json"), "w") as f:
            json.dump({"key": stage_keys(plain)[stage.name], "seconds": 1.0}, f)
    two_choices = tmp_path / "two.jsonl"
    two_choices.write_text('{"question": "Is the sea salty?", "choices": ["yes", "no"], "answer": 0}\n'
                           '{"question": "Is fire cold?", "choices": ["yes", "no"], "answer": "B"}\n')
    recipe["benchmarks"] = [os.path.join(QUIZ, "quiz_en.jsonl"), str(two_choices)]
    loaded = load_recipe(write_recipe(tmp_path, recipe), run)
    assert stage_keys(loaded) == stage_keys(plain)  # benchmarks never make a finished stage run again

    calls = []
    real = evaluate.evaluate_model
    monkeypatch.setattr(evaluate, "evaluate_model", lambda model, tasks, **kw: calls.append(model) or
                        real(model, tasks, **kw))
    run_recipe(loaded)
    assert calls == [tiny_model_dir] + [os.path.join(stage_dir(loaded, s), "model") for s in loaded.stages]
    benchmarks = json.loads(open(os.path.join(run, "benchmarks.json")).read())
    assert list(benchmarks) == ["start", "a", "b"]
    for label, summary in benchmarks.items():
        assert summary["overall"]["questions"] == 37 and summary["chance"] == round((35 / 4 + 2 / 2) / 37, 4)
        assert [v["questions"] for v in summary["files"].values()] == [35, 2]
        assert all(0 <= summary[k][m] <= 1 for k in ("overall",) for m in ("acc", "acc_norm", "acc_letter"))
        full = json.loads(open(os.path.join(run, summary["results"])).read())
        assert len(full["questions"]) == 37 and full["overall"] == summary["overall"]
    assert benchmarks["start"]["results"] == os.path.join("stages", "01-a", "benchmarks", "start-results.json")
    assert benchmarks["b"]["results"] == os.path.join("stages", "02-b", "benchmarks", "results.json")

    run_recipe(loaded)  # nothing missing: nothing evaluated
    del benchmarks["a"]
    with open(os.path.join(run, "benchmarks.json"), "w") as f:
        json.dump(benchmarks, f)
    run_recipe(loaded)  # only the missing label, put back in run order
    assert len(calls) == 4 and calls[-1].endswith(os.path.join("01-a", "model"))
    assert list(json.loads(open(os.path.join(run, "benchmarks.json")).read())) == ["start", "a", "b"]
    recipe["benchmarks"] = [str(two_choices)]  # other questions: every label again
    run_recipe(load_recipe(write_recipe(tmp_path, recipe), run))
    assert len(calls) == 7
    recipe["stages"][1]["train"]["max_steps"] = 13  # stage b trained again with other settings: its export is
    retrained = load_recipe(write_recipe(tmp_path, recipe), run)  # another model, evaluated again (b alone)
    with open(os.path.join(stage_dir(retrained, retrained.stages[1]), "done.json"), "w") as f:
        json.dump({"key": stage_keys(retrained)["b"], "seconds": 1.0}, f)
    run_recipe(retrained)
    assert len(calls) == 8 and calls[-1].endswith(os.path.join("02-b", "model"))

    report = open(write_report(run)).read()
    assert "## Benchmarks" in report and "| b | 2 | " in report and "![benchmark accuracy per stage]" in report
    assert open(os.path.join(run, "plots", "benchmarks.png"), "rb").read()[:4] == b"\x89PNG"


def test_runner_resumes_after_a_kill_with_the_same_final_weights(tmp_path, tiny_model_dir, capsys):
    """One stage run whole, and the same stage killed at its first checkpoint and rerun: the same weights."""
    recipe = base_recipe(tiny_model_dir)
    del recipe["probes"]
    recipe["stages"] = [{"name": "a", "start": {"model": tiny_model_dir}, "data": {"qa": 2},
                         "train": {"max_steps": 12, "use_neft": True}}]
    path = write_recipe(tmp_path, recipe)
    whole = str(tmp_path / "whole")
    done = subprocess.run(_runner(path, whole, "--no-report"), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    # the killed run goes through `colossalai run` (which hands the trainer's command line to a shell), started in
    # a folder and from a recipe file named like shell code; the run folder is runs/<recipe file name>
    work = tmp_path / ODD
    work.mkdir()
    odd_recipe = str(tmp_path / f"{ODD}.yaml")
    shutil.copy(path, odd_recipe)
    killed = str(work / "runs" / ODD)
    command = [sys.executable, "-m", "colossal_llama.stages", odd_recipe, "--launcher", "colossalai", "--no-report"]
    env = dict(os.environ, PWD=str(work))  # as a shell in that folder sets it
    process = subprocess.Popen(command, cwd=work, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    checkpoint = os.path.join(killed, "stages", "01-a", "checkpoints", "step-00000003")
    deadline = time.time() + 300
    while not os.path.isdir(checkpoint) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # the runner alone: its launcher and the trainers must follow it
    process.wait()
    assert os.path.isdir(checkpoint) and not os.path.exists(os.path.join(killed, "stages", "01-a", "done.json"))
    deadline = time.time() + 10
    while _processes_mentioning(str(tmp_path)) and time.time() < deadline:
        time.sleep(0.2)
    assert not _processes_mentioning(str(tmp_path))
    assert not os.path.exists(os.path.join(killed, "stages", "01-a", "model"))  # no orphan trained it to its end

    again = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from " + os.path.join(killed, "stages", "01-a", "checkpoints", "step-") in again.stdout
    assert not [d for d, _, files in os.walk(tmp_path) if "X" in files] and not os.path.exists(os.path.join(REPO, "X"))
    expected, got = _weights(whole, "01-a"), _weights(killed, "01-a")
    # the trainer's own resume is bit-identical (test_train_loop); across processes, CPU matrix kernels have once
    # given last-bit differences (5.8e-7 at most), so the two runs are compared to 1e-5
    assert expected.keys() == got.keys()
    assert max(float((expected[k] - got[k]).abs().max()) for k in expected) < 1e-5

    from colossal_llama.stages.__main__ import main

    assert main([path, "--run_dir", killed, "--no-report"]) == 0  # finished: nothing runs again
    assert "finished before" in capsys.readouterr().out
    recipe["stages"][0]["train"]["lr"] = 5e-4  # finished with other settings: refused before anything runs
    assert main([write_recipe(tmp_path, recipe), "--run_dir", killed, "--no-report"]) == 2
    assert "stage 'a' finished in" in capsys.readouterr().err


def test_report_command_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    from colossal_llama.stages.report import main

    assert main([str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: {tmp_path}: no run.json (not a run folder of "
                                       "`python -m colossal_llama.stages`)\n")


def test_probe_score_is_answer_nll_per_character(tmp_path, tiny_model_dir):
    """Same figure as transformers' own mean loss over the answer tokens, times their count, over the characters."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from colossal_llama.stages.probes import probe_model

    records = [{"source": "What is 2 plus 2?", "target": "It is 4.", "category": "a"},
               {"source": "", "target": "The sea is wide.", "category": "b"}]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    scores = probe_model(tiny_model_dir, [str(path)])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for record in records:
        prefix = tokenizer("<s>" + record["source"], add_special_tokens=False)["input_ids"]
        ids = tokenizer("<s>" + record["source"] + record["target"] + "</s>", add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prefix) + ids[len(prefix):]
        with torch.no_grad():
            loss = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()
        expected = loss * (len(ids) - len(prefix)) / len(record["target"])
        assert scores[record["category"]]["nats_per_char"] == pytest.approx(expected, abs=1e-4)
        assert scores[record["category"]]["chars"] == len(record["target"])
    path.write_text('{"source": "x", "target": ""}\n')
    with pytest.raises(Exception, match=r"p.jsonl:1: expected"):
        probe_model(tiny_model_dir, [str(path)])
    # tokenized as the data path does: special-token text is refused there, so here too
    path.write_text(json.dumps({"source": "x", "target": "a </s> b", "category": "c"}) + "\n")
    with pytest.raises(DataError, match=r"probe record 1 \(c\): .*</s>"):
        probe_model(tiny_model_dir, [str(path)])
