"""Stage recipes: one YAML file that lists the stages of a continual pre-training run.

    recipe = load_recipe("applications/quickstart/recipe.yaml", run_dir="runs/demo")

A recipe is checked whole before anything runs (the schema:
`recipe_schema.py`): an unknown key, a wrong type, missing data, a stage
that starts from (or replays) a stage not yet defined, or a train.py setting
that train.py itself would refuse are errors naming the file and the key
(`recipe.yaml: stages[2] (replay).train.lr: ...`), every one of them in one
RecipeError, a line each.
The format is documented in the README ("Stage recipes"); in short:

    launcher: {command: colossalai, nproc_per_node: 8, hostfile: null}   # master_addr, master_port: optional
    defaults: {plugin: gemini, lr: 1e-4}             # train.py settings of every stage
    prepare: {max_length: 4096}                      # preparation settings of every source
    probes: [probes/facts_en.jsonl]                  # held-out {source, target, category} records
    benchmarks: [mmlu/data/test, quiz.jsonl]         # multiple-choice task files or folders (colossal_llama.evaluate)
    benchmark_shots: 0                               # few-shot examples per benchmark question
    sources:
      wiki_zh: {jsonl: [corpus/wiki_zh], kind: pretrain, prepare: {num_spliced_dataset_bins: 10}}
      ready: {prepared: /data/prepared/books}        # a folder written by prepare_*_dataset.py
    stages:
      - name: injection
        start: {expand: {pieces: [pieces.jsonl]}}    # or: previous | {model: DIR} | {stage: NAME}
        data: {wiki_zh: 1.0, ready: 0.5}             # repeat factors: 2 = twice, 0.5 = a seeded half
        replay: [{stage: pretrain, percent: 20}]
        eval: [held_out]
        freeze: none                                 # none | embeddings | new_rows
        train: {lr: 5e-5, num_epochs: 1}

Relative paths are relative to the recipe file's folder; `{run_dir}` in a
path is the run folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pydantic import ValidationError

from colossal_llama.errors import RecipeError
from colossal_llama.stages.recipe_schema import (EXPAND_KEYS, FREEZE, KINDS, LAUNCHERS, RUNNER_PREPARE_KEYS,
                                                 RUNNER_TRAIN_KEYS, Launcher, RecipeSpec, validate_recipe)

__all__ = ["EXPAND_KEYS", "FREEZE", "KINDS", "LAUNCHERS", "RUNNER_PREPARE_KEYS", "RUNNER_TRAIN_KEYS", "Launcher",
           "Recipe", "Source", "Stage", "Start", "load_recipe"]


@dataclass
class Source:
    """A source as the runner prepares it (paths resolved, settings merged with the recipe's `prepare:`)."""

    name: str
    kind: str
    jsonl: list[str]
    """Input files or folders (files of one source are read in the given order)."""
    prepared: str | None
    """A folder already written by prepare_*_dataset.py (its manifest.json and arrow/ parts)."""
    prepare: dict


@dataclass
class Start:
    """Where a stage's weights come from: a model folder or an earlier stage's export, maybe expanded."""

    model: str | None
    stage: str | None
    expand: dict | None
    """ExpansionConfig settings (expand_tokens_file, train_from + new_pieces, ...)."""


@dataclass
class Stage:
    """A stage as the runner runs it; its fields (`dataclasses.asdict`) are part of the stage's resume key."""

    name: str
    index: int
    start: Start
    data: dict[str, float]
    replay: list[tuple[str, float]]
    """(stage name, percent of that stage's own rows)"""
    eval: list[str]
    buckets: int
    freeze: str
    train: dict
    """train.py settings: the recipe's defaults, then the stage's own."""

    @property
    def folder_name(self) -> str:
        return f"{self.index + 1:02d}-{self.name}"


@dataclass
class Recipe:
    """A checked recipe: what the runner follows."""

    path: str
    run_dir: str
    launcher: Launcher
    sources: dict[str, Source]
    stages: list[Stage]
    probes: list[str] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)
    """Multiple-choice task files or folders, evaluated before and after every stage (not part of stage keys)."""
    benchmark_shots: int = 0
    text: str = ""

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def load_recipe(path: str, run_dir: str | None = None, check_paths: bool = True) -> Recipe:
    """Read and check a recipe; `run_dir` defaults to `runs/<recipe file name>`.

    Args:
        check_paths: whether the files and folders the recipe names must exist.

    Raises:
        RecipeError: everything wrong with the recipe, a line `<file>: <key>: <reason>` each.
    """
    import yaml

    if not os.path.isfile(path):
        raise RecipeError(f"{path}: recipe file does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    run_dir = os.path.abspath(run_dir or os.path.join("runs", os.path.splitext(os.path.basename(path))[0]))
    try:
        spec = validate_recipe(raw, os.path.dirname(os.path.abspath(path)), run_dir, check_paths)
    except ValidationError as exc:
        names = _stage_names(raw)
        raise RecipeError("\n".join(f"{path}: {describe(error, names)}" for error in exc.errors())) from None
    return _plan(spec, path, run_dir, text)


def _plan(spec: RecipeSpec, path: str, run_dir: str, text: str) -> Recipe:
    """The checked spec as the records the runner uses."""
    sources = {name: Source(name=name, kind=s.kind, jsonl=s.jsonl, prepared=s.prepared, prepare=s.prepare)
               for name, s in spec.sources.items()}
    stages = []
    for index, s in enumerate(spec.stages):
        start = Start(model=s.start.model, stage=s.start.stage,
                      expand=s.start.expand.settings() if s.start.expand else None)
        stages.append(Stage(name=s.name, index=index, start=start, data=dict(s.data),
                            replay=[(r.stage, r.percent) for r in s.replay], eval=list(s.eval), buckets=s.buckets,
                            freeze=s.freeze, train=s.train))
    return Recipe(path=path, run_dir=run_dir, launcher=spec.launcher, sources=sources, stages=stages,
                  probes=list(spec.probes), benchmarks=list(spec.benchmarks), benchmark_shots=spec.benchmark_shots,
                  text=text)


def _stage_names(raw) -> dict[int, str]:
    stages = raw.get("stages") if isinstance(raw, dict) else None
    return {i: s["name"] for i, s in enumerate(stages if isinstance(stages, list) else [])
            if isinstance(s, dict) and isinstance(s.get("name"), str)}


# the words for pydantic's own type errors (`int_parsing` -> int); a mapping says what it got instead
_EXPECTED = {"int": "int", "float": "float", "string": "str", "bool": "bool", "list": "a list"}
_MAPPING_ERRORS = ("dict_type", "model_type", "model_attributes_type")


def describe(error: dict, stage_names: dict[int, str]) -> str:
    """One error of the recipe's validation as `<key path>: <reason>`, e.g. `stages[1] (b).train.lr: ...`."""
    loc = [part for part in error["loc"] if part != "[key]"]  # pydantic marks an invalid dict key so
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        loc, reason = loc[:-1], f"missing key {loc[-1]!r}"
    elif kind in _MAPPING_ERRORS:
        reason = f"expected a mapping, got {type(value).__name__}"
    elif kind.split("_")[0] in _EXPECTED and kind.endswith(("_type", "_parsing", "_from_float")):
        reason = f"expected {_EXPECTED[kind.split('_')[0]]}, got {value!r}"
    else:
        reason = error["msg"]
    return f"{_key_path(loc, stage_names, unknown=kind == 'unknown_key')}: {reason}"


def _key_path(loc: list, stage_names: dict[int, str], unknown: bool) -> str:
    """`stages[1] (b).train.lr`: the stage's name follows its index, except where the error is about the
    stage's own keys (its name, a key it should not have): those are read before the name is known good."""
    text = ""
    for i, part in enumerate(loc):
        text += f"[{part}]" if isinstance(part, int) else ("." if text else "") + str(part)
        if i == 1 and loc[0] == "stages" and part in stage_names and len(loc) > 2 and loc[2] != "name" \
                and not (unknown and len(loc) == 3):
            text += f" ({stage_names[part]})"
    return text or "recipe"
