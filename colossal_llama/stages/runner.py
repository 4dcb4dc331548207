"""Running a recipe: each stage's start model, data, the trainer through the launcher, probes, report.

    run_recipe(load_recipe("recipe.yaml", run_dir="runs/zh"))

Everything goes under the run folder:

    <run>/recipe.yaml                 the recipe as last run
    <run>/run.json                    stage order and folders (the report reads it)
    <run>/data/<source>-<key>/        prepared sources, cached by content (sources.py)
    <run>/stages/NN-<name>/start/     an `expand` start: expanded tokenizer + initialised model
                          data/       the stage's mixture (buckets + manifest)
                          train.json  the trainer's settings (`python -m colossal_llama.training --config`)
                          checkpoints/, model/ (the HF export), done.json
    <run>/tensorboard/NN-<name>/      one tensorboard root for all stages
    <run>/probes.json, benchmarks.json (benchmarks.py), report.md, plots/

Rerunning skips stages whose done.json matches their settings, and resumes an
unfinished stage from its last checkpoint (`--load_checkpoint latest`). A
stage that finished with other settings (or after an earlier stage that
changed) is an error before anything runs: delete its folder to redo it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
from dataclasses import asdict

from colossal_llama.data.manifest import json_digest, parts_of
from colossal_llama.data.mixtures import MixPart, build_mixture, print_mixture
from colossal_llama.errors import RecipeError, StageFailed
from colossal_llama.outputs import replace_file, write_json
from colossal_llama.stages.launch import TRAINER, check_launcher, launch_command, launch_env, run_launcher
from colossal_llama.stages.recipe import Recipe, Stage
from colossal_llama.stages.sources import FileHashes, prepare_source


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def stage_dir(recipe: Recipe, stage: Stage) -> str:
    return os.path.join(recipe.run_dir, "stages", stage.folder_name)


def stage_keys(recipe: Recipe) -> dict[str, str]:
    """A key per stage over its settings, its sources and the keys of the stages it builds on."""
    keys: dict[str, str] = {}
    for stage in recipe.stages:
        used = sorted(set(stage.data) | set(stage.eval) | {s for name, _ in stage.replay
                                                           for s in recipe.stage(name).data})
        depends = [keys[name] for name, _ in stage.replay] + ([keys[stage.start.stage]] if stage.start.stage else [])
        blob = json.dumps({"stage": asdict(stage), "sources": {s: asdict(recipe.sources[s]) for s in used},
                           "depends": depends}, sort_keys=True, default=str)
        keys[stage.name] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return keys


def read_done(recipe: Recipe, stage: Stage) -> dict | None:
    path = os.path.join(stage_dir(recipe, stage), "done.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_finished(recipe: Recipe, keys: dict[str, str]) -> None:
    """Finished stages must match the recipe; checked before anything runs."""
    for stage in recipe.stages:
        done = read_done(recipe, stage)
        if done and done["key"] != keys[stage.name]:
            raise RecipeError(f"{recipe.path}: stage {stage.name!r} finished in {stage_dir(recipe, stage)} with other "
                              "settings (or after an earlier stage that changed); delete that folder (and those of "
                              "the stages after it) to run it again, or use another --run_dir")


def export_of(recipe: Recipe, name: str) -> str:
    return os.path.join(stage_dir(recipe, recipe.stage(name)), "model")


def start_model(recipe: Recipe, stage: Stage) -> str:
    """The HF folder the stage starts from; an `expand` start is built here (tokenizer, then embeddings)."""
    start = stage.start
    base = start.model or export_of(recipe, start.stage)
    if not start.expand:
        return base
    from colossal_llama.model.init_model import init_model
    from colossal_llama.tokenizer.init_tokenizer import ExpansionConfig, init_tokenizer
    from colossal_llama.tokenizer.report import print_report

    folder = os.path.join(stage_dir(recipe, stage), "start")
    tokenizer, model = os.path.join(folder, "tokenizer"), os.path.join(folder, "model")
    if not os.path.isdir(tokenizer):
        print(f"vocabulary expansion of {base}", flush=True)
        print_report(init_tokenizer(ExpansionConfig(source_tokenizer_dir=base, target_tokenizer_dir=tokenizer,
                                                    **start.expand)))
    if not os.path.isdir(model):
        report = init_model(base, tokenizer, model)
        print(f"embedding initialisation: {report['rows_initialised']} new rows, each the mean of "
              f"{report['mean_parts_per_new_row']} old rows on average; {report['rows_copied']} rows copied", flush=True)
    return model


def stage_data(recipe: Recipe, stage: Stage, tokenizer_dir: str, hashes: FileHashes) -> tuple[list[str], list[str]]:
    """(training parts, eval parts); sources are prepared with the stage's tokenizer."""
    cache = os.path.join(recipe.run_dir, "data")
    prepared = lambda name: prepare_source(recipe.sources[name], tokenizer_dir, cache, hashes)  # noqa: E731
    mix = [MixPart(name, prepared(name), weight) for name, weight in stage.data.items()]
    for other, percent in stage.replay:
        mix += [MixPart(f"{name} (replay {other} {percent:g}%)", prepared(name), weight * percent / 100)
                for name, weight in recipe.stage(other).data.items()]
    evals = [p for name in stage.eval for p in parts_of(prepared(name))]
    seed = int(stage.train.get("seed", 42))
    manifest = build_mixture(os.path.join(stage_dir(recipe, stage), "data"), mix, stage.buckets, seed)
    print_mixture(stage.name, manifest)
    return parts_of(os.path.join(stage_dir(recipe, stage), "data")), evals


def old_vocab_size(recipe: Recipe, stage: Stage) -> int:
    from colossal_llama.tokenizer.loading import load_tokenizer

    return len(load_tokenizer(stage.start.model or export_of(recipe, stage.start.stage)))


def train_settings(recipe: Recipe, stage: Stage, model: str, parts: list[str], evals: list[str]) -> dict:
    folder = stage_dir(recipe, stage)
    settings = {**stage.train, "pretrained": model, "dataset": parts, "eval_dataset": evals,
                "save_dir": os.path.join(folder, "checkpoints"),
                "tensorboard_dir": os.path.join(recipe.run_dir, "tensorboard", stage.folder_name),
                "export_dir": os.path.join(folder, "model"), "load_checkpoint": "latest"}
    if stage.freeze == "embeddings":
        settings["freeze_non_embeds_params"] = True
    elif stage.freeze == "new_rows":
        settings["train_new_rows_only"] = old_vocab_size(recipe, stage)
    return settings


def last_metrics(tensorboard_dir: str) -> dict:
    path = os.path.join(tensorboard_dir, "metrics.jsonl")
    last = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if "train/loss" in row:
                    last = row
    return last


def run_stage(recipe: Recipe, stage: Stage, key: str, hashes: FileHashes, probes: dict) -> None:
    folder = stage_dir(recipe, stage)
    os.makedirs(folder, exist_ok=True)
    started = time.time()
    model = start_model(recipe, stage)
    if stage.start.expand and recipe.probes:
        record_probes(recipe, probes, f"{stage.name} (start)", model)
    parts, evals = stage_data(recipe, stage, model, hashes)
    settings = train_settings(recipe, stage, model, parts, evals)
    config_path = os.path.join(folder, "train.json")
    write_json(config_path, settings, indent=2)
    from colossal_llama.training.checkpoint import latest_checkpoint

    resumed = latest_checkpoint(settings["save_dir"])
    command = launch_command(recipe, config_path)
    print(("resuming from " + resumed if resumed else "training") + ": " + shlex.join(command), flush=True)
    code = run_launcher(command, launch_env(recipe.launcher, os.environ))
    if code != 0 or not os.path.isfile(os.path.join(settings["export_dir"], "config.json")):
        raise StageFailed(f"stage {stage.name}: the trainer (python -m {TRAINER}) exited with status "
                          f"{code}; fix the cause and rerun the recipe to resume from the stage's last checkpoint")
    if recipe.probes:
        record_probes(recipe, probes, stage.name, settings["export_dir"])
    last = last_metrics(settings["tensorboard_dir"])
    done = {"key": key, "stage": stage.name, "export": settings["export_dir"], "steps": last.get("step"),
            "label_tokens": last.get("train/label_tokens_seen"), "final_loss": last.get("train/loss"),
            "seconds": round(time.time() - started, 1)}
    write_json(os.path.join(folder, "done.json"), done, indent=2)


def load_probes(recipe: Recipe) -> dict:
    path = os.path.join(recipe.run_dir, "probes.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {}


def record_probes(recipe: Recipe, probes: dict, label: str, model_dir: str) -> None:
    from colossal_llama.stages.probes import probe_model, probe_table

    probes[label] = probe_model(model_dir, recipe.probes)
    write_json(os.path.join(recipe.run_dir, "probes.json"), probes, indent=2)
    print(f"probes (nats per character of held-out answers, lower is better):\n{probe_table({label: probes[label]})}",
          flush=True)


def benchmark(recipe: Recipe, stage: Stage | None, key: tuple[str, float]) -> None:
    """The recipe's benchmarks on the start model (`stage` None) or on a finished stage's export, unless
    benchmarks.json holds them for these questions and this model already (`key`: benchmarks.task_key; the
    model: the stage's key, which changes when the stage would train otherwise, or the start's settings)."""
    from colossal_llama.stages.benchmarks import is_missing, load_benchmarks, record_benchmarks

    benchmarks, label = load_benchmarks(recipe.run_dir), "start" if stage is None else stage.name
    model_key = stage_keys(recipe)[stage.name] if stage is not None else json_digest(asdict(recipe.stages[0].start))
    key = (f"{key[0]}/{model_key}", key[1])
    if is_missing(benchmarks, label, key[0]):
        first = recipe.stages[0]
        model = start_model(recipe, first) if stage is None else export_of(recipe, stage.name)
        results = os.path.join(stage_dir(recipe, stage or first), "benchmarks",
                               "start-results.json" if stage is None else "results.json")
        record_benchmarks(recipe, benchmarks, label, model, results, key)


def run_recipe(recipe: Recipe) -> dict:
    """Run every stage not finished yet, in order; returns the probe results.

    The benchmarks (if any) of the start model and of every finished stage are evaluated where missing: after a
    stage that ran, and, for a run finished before the benchmarks were added, when it is rerun.
    """
    keys = stage_keys(recipe)
    check_finished(recipe, keys)
    check_launcher(recipe)
    os.makedirs(recipe.run_dir, exist_ok=True)
    replace_file(os.path.join(recipe.run_dir, "recipe.yaml"), recipe.text)
    write_json(os.path.join(recipe.run_dir, "run.json"), {
        "recipe": os.path.abspath(recipe.path),
        "stages": [{"name": s.name, "folder": s.folder_name} for s in recipe.stages]}, indent=2)
    hashes, probes = FileHashes(os.path.join(recipe.run_dir, "data")), load_probes(recipe)
    first = recipe.stages[0]
    if recipe.probes and "start" not in probes:
        record_probes(recipe, probes, "start", start_model(recipe, first))
    if recipe.benchmarks:
        from colossal_llama.stages.benchmarks import task_key

        key = task_key(recipe.benchmarks, recipe.benchmark_shots)
        benchmark(recipe, None, key)
    for i, stage in enumerate(recipe.stages):
        banner(f"stage {i + 1}/{len(recipe.stages)}: {stage.name}")
        if read_done(recipe, stage):
            print(f"finished before ({stage_dir(recipe, stage)}/done.json); skipped", flush=True)
        else:
            run_stage(recipe, stage, keys[stage.name], hashes, probes)
        if recipe.benchmarks:
            benchmark(recipe, stage, key)
    return probes
