"""The schema of a stage recipe: pydantic models that check a parsed recipe whole and report every error.

    spec = validate_recipe(yaml.safe_load(text), base="applications/quickstart", run_dir="runs/demo")

The models mirror the YAML (the format: `recipe.py`; the building blocks:
`recipe_checks.py`). Besides `base`, `run_dir`, `check_paths` and `sources`,
the validation context holds `defaults` and `prepare` (the recipe-wide
settings merged into each stage and source) and, per stage, `earlier`: the
names of the stages before it, the only ones its `start` and `replay` may name.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictBool, StrictInt, StrictStr, field_validator, model_validator

from colossal_llama.config import PretrainDataConfig, SftDataConfig, field_types
from colossal_llama.errors import ConfigError
from colossal_llama.stages.recipe_checks import (Folder, ModelDir, Number, Path, Paths, Problems, SourceKey, SourceRef,
                                                 Spec, Weight, check_settings, named, one_of, one_or_many, problem)
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
RUNNER_PREPARE_KEYS = {"data_input_dirs": "the source's `jsonl`", "tokenizer_dir": "the stage's `start`",
                       "data_output_dirs": "the run folder", "overwrite": "the run folder"}
# `start.expand` key -> ExpansionConfig field (the recipe's names are shorter than the flags)
EXPAND_KEYS = {"pieces": "expand_tokens_file", "from_spm": "expand_from_spm", "learn_from": "train_from",
               "new_pieces": "new_pieces", "report_corpus": "report_corpus",
               "allow_ascii_pieces": "allow_ascii_pieces"}


class Launcher(Spec):
    """How the trainer is started (`launcher:`); flags of `python -m colossal_llama.stages` override it."""

    command: Annotated[StrictStr, one_of(LAUNCHERS)] = "colossalai"
    """colossalai (colossalai run), torchrun, or python (one process on this machine)."""
    nproc_per_node: Annotated[StrictInt, Field(ge=1)] = 1
    """Processes per node."""
    hostfile: Path | None = None
    """Hostfile of the nodes, for colossalai run."""
    master_addr: StrictStr | None = None
    """Address of the first node."""
    master_port: Annotated[StrictInt, Field(ge=1, le=65535)] | None = None
    """None: a port free on this machine, picked for each stage (ports.free_port)."""

    @field_validator("hostfile", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return value or None

    @model_validator(mode="after")
    def _python_is_one_process(self):
        if self.command == "python" and (self.nproc_per_node != 1 or self.hostfile):
            problems = Problems()
            problems.add(("command",), "python starts one process on this machine; use colossalai or torchrun for "
                         "more processes or a hostfile", self.command)
            problems.raise_if_any()
        return self


class SourceSpec(Spec):
    """One entry of `sources:`: files to prepare, or a folder prepared before."""

    jsonl: Paths = []
    """Input files or folders (files of one source are read in the given order)."""
    prepared: Folder | None = None
    """A folder already written by prepare_*_dataset.py (its manifest.json and arrow/ parts)."""
    kind: Annotated[StrictStr, one_of(KINDS)] = "pretrain"
    """`pretrain` ({source, target, category} records) or `sft` (conversations)."""
    prepare: dict[str, Any] | None = Field(None, validate_default=True)
    """Preparation settings (prepare_*_dataset.py flags), over the recipe's `prepare:`."""

    @field_validator("prepare")
    @classmethod
    def _prepare_settings(cls, value, info):
        if info.data.get("prepared") is not None:
            if value is not None:
                raise problem("a `prepared` folder is used as it is; preparation settings do not apply")
            return {}
        config = KINDS.get(info.data.get("kind"))
        if config is None:  # the kind is wrong (reported there): nothing to check against
            return value or {}
        known = field_types(config)
        defaults = {k: v for k, v in info.context["prepare"].items() if k in known}
        return check_settings({**defaults, **(value or {})}, config, RUNNER_PREPARE_KEYS,
                              data_input_dirs=["x"], tokenizer_dir="x")

    @model_validator(mode="after")
    def _one_origin(self, info):
        if ("jsonl" in self.model_fields_set) == ("prepared" in self.model_fields_set):
            raise problem("give exactly one of `jsonl` (files or folders to prepare) and `prepared` (a prepared folder)")
        manifest = os.path.join(self.prepared or "", "manifest.json")
        if self.prepared and info.context["check_paths"] and not os.path.isfile(manifest):
            problems = Problems()
            problems.add(("prepared",), f"{manifest} does not exist (not a folder written by prepare_*_dataset.py)")
            problems.raise_if_any()
        return self


class ExpandSpec(Spec):
    """`start.expand`: add pieces to the tokenizer (and rows to the model) before the stage trains."""

    pieces: Paths = []
    """jsonl files of new pieces, `{"piece": ...}` per line."""
    from_spm: Paths = []
    """SentencePiece models whose pieces are the new pieces."""
    learn_from: Paths = []
    """jsonl or txt files to learn `new_pieces` pieces from."""
    new_pieces: StrictInt = 0
    """How many pieces to learn from `learn_from`."""
    report_corpus: Paths = []
    """Files or folders to measure compression on, old vs new."""
    allow_ascii_pieces: StrictBool = False
    """Also add pieces made only of ASCII."""

    def settings(self) -> dict:
        """The keys given, as ExpansionConfig fields."""
        return {EXPAND_KEYS[k]: getattr(self, k) for k in type(self).model_fields if k in self.model_fields_set}

    @model_validator(mode="after")
    def _expansion_config(self):
        from colossal_llama.tokenizer.init_tokenizer import ExpansionConfig

        try:
            ExpansionConfig(source_tokenizer_dir="x", target_tokenizer_dir="x", **self.settings())
        except ConfigError as exc:
            message = str(exc)
            for key, flag in EXPAND_KEYS.items():  # name the recipe's keys, not init_tokenizer's flags
                message = message.replace(f"--{flag}", key)
            raise problem(message) from None
        return self


class StartSpec(Spec):
    """`start:` where a stage's weights come from. Empty (or `previous`): the previous stage's export."""

    model: ModelDir | None = None
    """An HF model folder, or the id of a model in the local Hugging Face cache (`meta-llama/Llama-2-7b-hf`)."""
    stage: StrictStr | None = None
    """An earlier stage, whose export to start from."""
    expand: ExpandSpec | None = None
    """Expand the vocabulary first."""


class ReplaySpec(Spec):
    """One entry of a stage's `replay:`: part of an earlier stage's rows, mixed in again."""

    stage: StrictStr
    """An earlier stage."""
    percent: Number
    """Percent of that stage's own rows, in (0, 100]."""

    @field_validator("stage")
    @classmethod
    def _earlier(cls, value, info):
        earlier = info.context["earlier"]
        if value not in earlier:
            raise problem(f"no stage {value!r} runs before this one (earlier: {earlier or 'none'})")
        return value

    @field_validator("percent")
    @classmethod
    def _percent(cls, value):
        if not 0 < value <= 100:
            raise problem(f"must be in (0, 100], got {value:g}")
        return value


def _none_is_empty(value):
    return {} if value is None else value


def _previous(value):
    """`start: previous` (or no start) is an empty start: the previous stage's export."""
    return {} if value in ("previous", None) else value


class StageSpec(Spec):
    """One entry of `stages:`."""

    name: Annotated[StrictStr, named("stage")]
    """The stage's name (its folder is `NN-<name>`)."""
    start: Annotated[StartSpec, BeforeValidator(_previous)] = Field(None, validate_default=True)
    """Where the weights come from (see StartSpec)."""
    data: Annotated[dict[SourceKey, Weight], Field(min_length=1)]
    """Source -> repeat factor (2 = twice, 0.5 = a seeded half)."""
    replay: Annotated[list[ReplaySpec], BeforeValidator(one_or_many)] = []
    """Earlier stages' rows to mix in again."""
    eval: Annotated[list[SourceRef], BeforeValidator(one_or_many)] = []
    """Sources to evaluate on (loss per category)."""
    buckets: StrictInt = 4
    """Buckets the stage's mixture is written into."""
    freeze: Annotated[StrictStr, one_of(FREEZE)] = "none"
    """none, embeddings (train only the embeddings) or new_rows (only the rows `expand` added)."""
    train: dict[str, Any] | None = Field(None, validate_default=True)
    """train.py settings, over the recipe's `defaults:`."""

    @field_validator("name")
    @classmethod
    def _once(cls, value, info):
        if value in info.context["earlier"]:
            raise problem(f"stage {value!r} is defined twice")
        return value

    @field_validator("start")
    @classmethod
    def _from_before(cls, start: StartSpec, info):
        earlier = info.context["earlier"]
        if start.model is not None and start.stage is not None:
            raise problem("give `model` (a folder) or `stage` (an earlier stage's export), not both")
        if start.model is None and start.stage is None:
            if not earlier:
                raise problem("the first stage must start from a model: `start: {model: DIR}`")
            return start.model_copy(update={"stage": earlier[-1]})
        if start.stage is not None and start.stage not in earlier:
            problems = Problems()
            problems.add(("stage",), f"no stage {start.stage!r} runs before this one (earlier: {earlier or 'none'})")
            problems.raise_if_any()
        return start

    @field_validator("buckets")
    @classmethod
    def _some_buckets(cls, value):
        if value < 1:
            raise problem(f"must be at least 1, got {value}")
        return value

    @field_validator("freeze")
    @classmethod
    def _freeze(cls, value, info):
        start = info.data.get("start")
        if value == "new_rows" and start is not None and start.expand is None:
            raise problem("new_rows needs a stage that starts with `expand` (the new rows are its tokens)")
        return value

    @field_validator("train")
    @classmethod
    def _train_settings(cls, value, info):
        known = field_types(TrainConfig)
        defaults = {k: v for k, v in info.context["defaults"].items() if k in known}  # unknown ones: at `defaults`
        dummies = {"pretrained": "x", "dataset": ["x"], "eval_dataset": ["x"] if info.data.get("eval") else []}
        return check_settings({**defaults, **(value or {})}, TrainConfig, RUNNER_TRAIN_KEYS, **dummies)


def _known_keys(value: dict | None, cls) -> dict:
    """A recipe-wide settings block: each key must be a field of `cls` (values are checked where they apply)."""
    known, problems = field_types(cls), Problems()
    for key in value or {}:
        if key not in known:
            problems.add((key,), f"unknown key (allowed: {', '.join(known)})", value[key], "unknown_key")
    problems.raise_if_any()
    return value or {}


class RecipeSpec(Spec):
    """A whole recipe file."""

    launcher: Annotated[Launcher, BeforeValidator(_none_is_empty)] = Field(default_factory=Launcher)
    """How train.py is started."""
    defaults: dict[str, Any] | None = None
    """train.py settings of every stage."""
    prepare: dict[str, Any] | None = None
    """Preparation settings of every source (each takes those of its kind)."""
    probes: Paths = []
    """Held-out {source, target, category} records, scored before and after every stage."""
    benchmarks: Paths = []
    """Multiple-choice task files or folders (`colossal_llama.evaluate`), evaluated before and after every stage."""
    benchmark_shots: StrictInt = 0
    """Few-shot examples before each benchmark question."""
    sources: dict[Annotated[StrictStr, named("source")], SourceSpec]
    """Name -> source."""
    stages: list[StageSpec]
    """The stages, in the order they run."""

    @field_validator("benchmarks")
    @classmethod
    def _task_files(cls, value, info):
        """Each task file is read now, so that a bad one fails before the first stage, not after it."""
        from colossal_llama.errors import DataError
        from colossal_llama.evaluate import read_tasks

        problems = Problems()
        for index, path in enumerate(value if info.context["check_paths"] else []):
            try:
                read_tasks([path])
            except DataError as exc:
                problems.add((index,), str(exc), path)
        problems.raise_if_any()
        return value

    @field_validator("benchmark_shots")
    @classmethod
    def _shots(cls, value, info):
        if value < 0:
            raise problem(f"must be at least 0, got {value}")
        if value and "benchmarks" in info.data and not info.data["benchmarks"]:
            raise problem("few-shot examples of `benchmarks:`, which names no task files")
        return value

    @field_validator("defaults")
    @classmethod
    def _train_keys(cls, value):
        return _known_keys(value, TrainConfig)

    @field_validator("prepare")
    @classmethod
    def _prepare_keys(cls, value):
        return _known_keys(value, SftDataConfig)  # SftDataConfig's fields are a superset of pretraining's

    @field_validator("stages", mode="wrap")
    @classmethod
    def _in_order(cls, raw, handler, info):
        """Each stage is checked knowing the names of the stages before it."""
        if not isinstance(raw, list) or not raw:
            raise problem("expected a non-empty list of stages")
        problems, stages, names = Problems(), [], []
        for index, item in enumerate(raw):
            context = {**info.context, "index": index, "earlier": list(names)}
            stages.append(problems.check((index,), StageSpec.model_validate, item, context=context))
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                names.append(item["name"])
        problems.raise_if_any()
        return stages


def validate_recipe(raw, base: str, run_dir: str, check_paths: bool = True) -> RecipeSpec:
    """The parsed YAML of a recipe as a RecipeSpec, paths resolved against `base` (the recipe's folder).

    Raises:
        ValidationError: every error of the recipe, each at its key.
    """
    mapping = raw if isinstance(raw, dict) else {}
    sources, defaults, prepare = (mapping.get(k) for k in ("sources", "defaults", "prepare"))
    # what is not a mapping here is reported by the model; the checks that use it then check nothing
    context = {"base": base, "run_dir": run_dir, "check_paths": check_paths,
               "sources": [str(k) for k in sources] if isinstance(sources, dict) else None,
               "defaults": defaults if isinstance(defaults, dict) else {},
               "prepare": prepare if isinstance(prepare, dict) else {}}
    return RecipeSpec.model_validate({} if raw is None else raw, context=context)
