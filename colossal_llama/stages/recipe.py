"""Stage recipes: one YAML file that lists the stages of a continual pre-training run.

    recipe = load_recipe("applications/quickstart/recipe.yaml", run_dir="runs/demo")

A recipe is checked whole before anything runs: an unknown key, a wrong
type, missing data, a stage that starts from (or replays) a stage not yet
defined, or a train.py setting that train.py itself would refuse are errors
naming the file and the key (`recipe.yaml: stages[2] (replay).train.lr: ...`).
The format is documented in the README ("Stage recipes"); in short:

    launcher: {command: colossalai, nproc_per_node: 8, hostfile: null}   # master_addr, master_port: optional
    defaults: {plugin: gemini, lr: 1e-4}             # train.py settings of every stage
    prepare: {max_length: 4096}                      # preparation settings of every source
    probes: [probes/facts_en.jsonl]                  # held-out {source, target, category} records
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

import dataclasses
import os
import re
from dataclasses import dataclass, field

from colossal_llama.config import PretrainDataConfig, SftDataConfig
from colossal_llama.errors import ConfigError, RecipeError
from colossal_llama.training.config import TrainConfig


LAUNCHERS = ("colossalai", "torchrun", "python")
FREEZE = ("none", "embeddings", "new_rows")
KINDS = {"pretrain": PretrainDataConfig, "sft": SftDataConfig}
# train.py settings the runner sets itself, with what to use instead
RUNNER_TRAIN_KEYS = {
    "pretrained": "the stage's `start`", "dataset": "the stage's `data`", "eval_dataset": "the stage's `eval`",
    "save_dir": "the run folder", "tensorboard_dir": "the run folder", "export_dir": "the run folder",
    "load_checkpoint": "rerunning the recipe (it resumes)", "config_file": "the run folder",
    "weights_only": "the stage's `start`", "freeze_non_embeds_params": "`freeze: embeddings`",
    "train_new_rows_only": "`freeze: new_rows`", "benchmark": "train.py directly",
}
RUNNER_PREPARE_KEYS = ("data_input_dirs", "tokenizer_dir", "data_output_dirs", "overwrite")
EXPAND_KEYS = {"pieces": "expand_tokens_file", "from_spm": "expand_from_spm", "learn_from": "train_from",
               "new_pieces": "new_pieces", "report_corpus": "report_corpus",
               "allow_ascii_pieces": "allow_ascii_pieces"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Launcher:
    command: str = "colossalai"
    nproc_per_node: int = 1
    hostfile: str | None = None
    master_addr: str | None = None
    master_port: int | None = None
    """None: a port free on this machine, picked for each stage (ports.free_port)."""


@dataclass
class Source:
    name: str
    kind: str = "pretrain"
    jsonl: list[str] = field(default_factory=list)
    """Input files or folders (files of one source are read in the given order)."""
    prepared: str | None = None
    """A folder already written by prepare_*_dataset.py (its manifest.json and arrow/ parts)."""
    prepare: dict = field(default_factory=dict)


@dataclass
class Start:
    """Where a stage's weights come from: a model folder or an earlier stage's export, maybe expanded."""

    model: str | None = None
    stage: str | None = None
    expand: dict | None = None
    """ExpansionConfig settings (pieces, learn_from + new_pieces, from_spm, report_corpus, ...)."""


@dataclass
class Stage:
    name: str
    index: int
    start: Start
    data: dict[str, float]
    replay: list[tuple[str, float]] = field(default_factory=list)
    """(stage name, percent of that stage's own rows)"""
    eval: list[str] = field(default_factory=list)
    buckets: int = 4
    freeze: str = "none"
    train: dict = field(default_factory=dict)
    """train.py settings: the recipe's defaults, then the stage's own."""

    @property
    def folder_name(self) -> str:
        return f"{self.index + 1:02d}-{self.name}"


@dataclass
class Recipe:
    path: str
    run_dir: str
    launcher: Launcher
    sources: dict[str, Source]
    stages: list[Stage]
    probes: list[str] = field(default_factory=list)
    text: str = ""

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


class _Reader:
    """Walks the YAML tree; every error names the file and the key path."""

    def __init__(self, path: str, run_dir: str):
        self.path, self.run_dir = path, run_dir
        self.base = os.path.dirname(os.path.abspath(path))

    def fail(self, key: str, message: str):
        raise RecipeError(f"{self.path}: {key}: {message}")

    def mapping(self, value, key: str, allowed: tuple, required: tuple = ()) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping, got {type(value).__name__}")
        for k in value:
            if k not in allowed:
                self.fail(f"{key}.{k}" if key else str(k), f"unknown key (allowed: {', '.join(allowed)})")
        for k in required:
            if k not in value:
                self.fail(key or "recipe", f"missing key {k!r}")
        return value

    def typed(self, value, key: str, kind: type):
        if kind is float and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                return float(value)
            except ValueError:
                pass
        elif isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        self.fail(key, f"expected {kind.__name__}, got {value!r}")

    def str_list(self, value, key: str) -> list[str]:
        items = value if isinstance(value, list) else [value]
        return [self.typed(v, f"{key}[{i}]", str) for i, v in enumerate(items)]

    def path_of(self, value, key: str, must_exist: bool = True, folder: bool = False) -> str:
        text = self.typed(value, key, str).replace("{run_dir}", self.run_dir)
        resolved = text if os.path.isabs(text) else os.path.normpath(os.path.join(self.base, text))
        if must_exist and not (os.path.isdir(resolved) if folder else os.path.exists(resolved)):
            self.fail(key, f"{resolved} does not exist" if not os.path.exists(resolved) else f"{resolved} is not a folder")
        return resolved

    def paths(self, value, key: str, **kw) -> list[str]:
        return [self.path_of(v, f"{key}[{i}]", **kw) for i, v in enumerate(self.str_list(value, key))]


def _check_settings(reader: _Reader, key: str, settings: dict, cls, owned: dict | tuple, **dummies) -> dict:
    """Settings of a config dataclass: known keys, right types, and accepted by the dataclass itself."""
    from colossal_llama.training.cli import _coerce

    types = {f.name: f.type for f in dataclasses.fields(cls)}
    out = {}
    for name, value in reader.mapping(settings, key, tuple(types)).items():
        if name in owned:
            reason = owned[name] if isinstance(owned, dict) else "the runner"
            reader.fail(f"{key}.{name}", f"set by the runner; use {reason}")
        try:
            out[name] = _coerce("", name, value, types[name])
        except ConfigError:
            reader.fail(f"{key}.{name}", f"expected {types[name]}, got {value!r}")
    try:
        cls(**{**dummies, **out})
    except (ConfigError, TypeError, ValueError) as exc:
        reader.fail(key, str(exc))
    return out


def _read_source(reader: _Reader, name: str, value, prepare_defaults: dict, check_paths: bool) -> Source:
    key = f"sources.{name}"
    if not NAME.match(str(name)):
        reader.fail(key, "a source name is letters, digits, '_', '-' or '.'")
    value = reader.mapping(value, key, ("jsonl", "prepared", "kind", "prepare"))
    if ("jsonl" in value) == ("prepared" in value):
        reader.fail(key, "give exactly one of `jsonl` (files or folders to prepare) and `prepared` (a prepared folder)")
    kind = reader.typed(value.get("kind", "pretrain"), f"{key}.kind", str)
    if kind not in KINDS:
        reader.fail(f"{key}.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    source = Source(name=name, kind=kind)
    if "prepared" in value:
        if "prepare" in value:
            reader.fail(f"{key}.prepare", "a `prepared` folder is used as it is; preparation settings do not apply")
        source.prepared = reader.path_of(value["prepared"], f"{key}.prepared", check_paths, folder=True)
        manifest = os.path.join(source.prepared, "manifest.json")
        if check_paths and not os.path.isfile(manifest):
            reader.fail(f"{key}.prepared", f"{manifest} does not exist (not a folder written by prepare_*_dataset.py)")
        return source
    source.jsonl = reader.paths(value["jsonl"], f"{key}.jsonl", must_exist=check_paths)
    known = {f.name for f in dataclasses.fields(KINDS[kind])}
    settings = {**{k: v for k, v in prepare_defaults.items() if k in known}, **(value.get("prepare") or {})}
    source.prepare = _check_settings(reader, f"{key}.prepare", settings, KINDS[kind], RUNNER_PREPARE_KEYS,
                                     data_input_dirs=["x"], tokenizer_dir="x")
    return source


def _read_start(reader: _Reader, key: str, value, index: int, earlier: list[str], check_paths: bool) -> Start:
    if value == "previous" or value is None:
        if index == 0:
            reader.fail(key, "the first stage must start from a model: `start: {model: DIR}`")
        return Start(stage=earlier[-1])
    value = reader.mapping(value, key, ("model", "stage", "expand"))
    if "model" in value and "stage" in value:
        reader.fail(key, "give `model` (a folder) or `stage` (an earlier stage's export), not both")
    start = Start(stage=reader.typed(value["stage"], f"{key}.stage", str) if "stage" in value else None)
    if "model" in value:
        start.model = reader.path_of(value["model"], f"{key}.model", check_paths, folder=True)
    elif start.stage is None:
        if index == 0:
            reader.fail(key, "the first stage must start from a model: `start: {model: DIR}`")
        start.stage = earlier[-1]
    elif start.stage not in earlier:
        reader.fail(f"{key}.stage", f"no stage {start.stage!r} runs before this one (earlier: {earlier or 'none'})")
    if "expand" in value:
        expand = reader.mapping(value["expand"], f"{key}.expand", tuple(EXPAND_KEYS))
        settings = {}
        for name, raw in expand.items():
            k = f"{key}.expand.{name}"
            if name in ("pieces", "from_spm", "learn_from", "report_corpus"):
                settings[EXPAND_KEYS[name]] = reader.paths(raw, k, must_exist=check_paths)
            else:
                settings[EXPAND_KEYS[name]] = reader.typed(raw, k, bool if name == "allow_ascii_pieces" else int)
        from colossal_llama.tokenizer.init_tokenizer import ExpansionConfig

        try:
            ExpansionConfig(source_tokenizer_dir="x", target_tokenizer_dir="x", **settings)
        except ConfigError as exc:
            reader.fail(f"{key}.expand", str(exc).replace("--expand_tokens_file", "pieces")
                        .replace("--train_from", "learn_from").replace("--new_pieces", "new_pieces")
                        .replace("--expand_from_spm", "from_spm"))
        start.expand = settings
    return start


def _read_stage(reader: _Reader, raw, index: int, recipe: Recipe, defaults: dict, check_paths: bool) -> Stage:
    key = f"stages[{index}]"
    raw = reader.mapping(raw, key, ("name", "start", "data", "replay", "eval", "buckets", "freeze", "train"),
                         required=("name", "data"))
    name = reader.typed(raw["name"], f"{key}.name", str)
    if not NAME.match(name):
        reader.fail(f"{key}.name", "a stage name is letters, digits, '_', '-' or '.'")
    earlier = [s.name for s in recipe.stages]
    if name in earlier:
        reader.fail(f"{key}.name", f"stage {name!r} is defined twice")
    key = f"stages[{index}] ({name})"
    start = _read_start(reader, f"{key}.start", raw.get("start"), index, earlier, check_paths)
    data = {}
    for source, weight in reader.mapping(raw["data"], f"{key}.data", tuple(recipe.sources)).items():
        data[source] = reader.typed(weight, f"{key}.data.{source}", float)
        if data[source] <= 0:
            reader.fail(f"{key}.data.{source}", f"a weight must be positive, got {weight}")
    replay = []
    entries = raw.get("replay") or []
    for i, entry in enumerate(entries if isinstance(entries, list) else [entries]):
        k = f"{key}.replay[{i}]"
        entry = reader.mapping(entry, k, ("stage", "percent"), required=("stage", "percent"))
        other = reader.typed(entry["stage"], f"{k}.stage", str)
        if other not in earlier:
            reader.fail(f"{k}.stage", f"no stage {other!r} runs before this one (earlier: {earlier or 'none'})")
        percent = reader.typed(entry["percent"], f"{k}.percent", float)
        if not 0 < percent <= 100:
            reader.fail(f"{k}.percent", f"must be in (0, 100], got {entry['percent']}")
        replay.append((other, percent))
    evals = reader.str_list(raw.get("eval") or [], f"{key}.eval")
    for i, source in enumerate(evals):
        if source not in recipe.sources:
            reader.fail(f"{key}.eval[{i}]", f"no source {source!r} (sources: {', '.join(recipe.sources)})")
    freeze = reader.typed(raw.get("freeze", "none"), f"{key}.freeze", str)
    if freeze not in FREEZE:
        reader.fail(f"{key}.freeze", f"must be one of {', '.join(FREEZE)}, got {freeze!r}")
    if freeze == "new_rows" and not start.expand:
        reader.fail(f"{key}.freeze", "new_rows needs a stage that starts with `expand` (the new rows are its tokens)")
    buckets = reader.typed(raw.get("buckets", 4), f"{key}.buckets", int)
    if buckets < 1:
        reader.fail(f"{key}.buckets", f"must be at least 1, got {buckets}")
    train = {**defaults, **(raw.get("train") or {})}
    dummies = {"pretrained": "x", "dataset": ["x"], "eval_dataset": ["x"] if evals else []}
    train = _check_settings(reader, f"{key}.train", train, TrainConfig, RUNNER_TRAIN_KEYS, **dummies)
    return Stage(name=name, index=index, start=start, data=data, replay=replay, eval=evals, buckets=buckets,
                 freeze=freeze, train=train)


def load_recipe(path: str, run_dir: str | None = None, check_paths: bool = True) -> Recipe:
    """Read and check a recipe; `run_dir` defaults to `runs/<recipe file name>`.

    Raises:
        RecipeError: anything wrong with the recipe, naming the file and key.
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
    reader = _Reader(path, run_dir)
    raw = reader.mapping(raw or {}, "", ("launcher", "defaults", "prepare", "probes", "sources", "stages"),
                         required=("sources", "stages"))
    launcher = Launcher()
    for name, value in reader.mapping(raw.get("launcher") or {}, "launcher",
                                      tuple(f.name for f in dataclasses.fields(Launcher))).items():
        kind = {"nproc_per_node": int, "master_port": int}.get(name, str)
        setattr(launcher, name, None if value is None else reader.typed(value, f"launcher.{name}", kind))
    if launcher.command not in LAUNCHERS:
        reader.fail("launcher.command", f"must be one of {', '.join(LAUNCHERS)}, got {launcher.command!r}")
    if launcher.command == "python" and (launcher.nproc_per_node != 1 or launcher.hostfile):
        reader.fail("launcher.command", "python starts one process on this machine; use colossalai or torchrun for "
                    "more processes or a hostfile")
    if launcher.hostfile:
        launcher.hostfile = reader.path_of(launcher.hostfile, "launcher.hostfile", check_paths)
    recipe = Recipe(path=path, run_dir=run_dir, launcher=launcher, sources={}, stages=[], text=text)
    prepare_defaults = reader.mapping(raw.get("prepare") or {}, "prepare",
                                      tuple(f.name for f in dataclasses.fields(SftDataConfig)))
    for name, value in reader.mapping(raw["sources"], "sources", tuple(raw["sources"] or {})).items():
        recipe.sources[name] = _read_source(reader, name, value, prepare_defaults, check_paths)
    recipe.probes = reader.paths(raw.get("probes") or [], "probes", must_exist=check_paths)
    defaults = reader.mapping(raw.get("defaults") or {}, "defaults", tuple(f.name for f in dataclasses.fields(TrainConfig)))
    stages = raw["stages"]
    if not isinstance(stages, list) or not stages:
        reader.fail("stages", "expected a non-empty list of stages")
    for index, stage in enumerate(stages):
        recipe.stages.append(_read_stage(reader, stage, index, recipe, defaults, check_paths))
    return recipe
