"""Configuration dataclasses and the argparse parsers that fill them.

Every field has a docstring; validation happens in `__post_init__`, so a
config built in code is checked exactly like one built from the command line.
The command-line flags keep the names of the old Colossal-LLaMA scripts
(`--data_input_dirs`, `--tokenizer_dir`, ...) so existing launch scripts work.

Every command with a config dataclass builds its flags from the fields with
`add_dataclass_arguments` (a flag's default and --help are its field's, so no
command repeats them), and `coerce` converts a value read from a settings file
(train.py --config, a stage recipe) to its field's type.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import os
import textwrap
import types
import typing
from dataclasses import dataclass, field

from colossal_llama.errors import ConfigError

ON_ERROR_CHOICES = ("raise", "skip")
ENCODER_CHOICES = ("auto", "hf")
ENGINE_CHOICES = ("local", "ray")
HOW_IT_RUNS = ("num_workers", "chunk_bytes", "encoder", "engine", "ray_address", "overwrite")
"""Preparation settings that never change a byte of the output (where and how the work runs; `encoder`
is only chosen when its ids equal the HF tokenizer's): left out of the parts' identity and of cache keys."""


@dataclass
class DataConfig:
    """Settings shared by `prepare_pretrain_dataset.py` and `prepare_sft_dataset.py`."""

    data_input_dirs: list[str]
    """Folders holding `*.jsonl` / `*.jsonl.gz` files, read in the given order."""

    tokenizer_dir: str
    """HF tokenizer folder (`AutoTokenizer.from_pretrained` must load it)."""

    data_output_dirs: str = "data_output_dirs"
    """Output folder: `arrow/part-XXXXX` buckets, `manifest.json`, `rejected.jsonl`."""

    max_length: int = 4096
    """Capacity of a packed row in tokens (pretraining: longer documents are split
    into chunks; SFT: conversations are cut to whole turns that fit)."""

    num_spliced_dataset_bins: int = 10
    """Number of bins per category, and so of buckets (data-spec section 3)."""

    num_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Processes that tokenize input chunks in parallel (default: the number of cores)."""

    seed: int = 42
    """Seed of every random choice (tie-breaks in packing, bin and bucket order)."""

    on_error: str = "raise"
    """`raise`: stop at the first bad record; `skip`: write it to rejected.jsonl and go on."""

    max_record_bytes: int = 16 << 20
    """Longest record (input line) accepted, in bytes; a longer one is bad input
    (`too_large`), read through without being held in memory. Tokenizing a
    record costs memory in proportion to its size (about 150 bytes per byte of
    text, measured with a small SentencePiece BPE tokenizer), so this bounds
    what one record can cost a worker. Default 16 MiB."""

    recursive: bool = False
    """Also read `*.jsonl(.gz)` files in sub-folders of the input folders."""

    overwrite: bool = False
    """Replace an existing, non-empty output folder (refused otherwise)."""

    chunk_bytes: int = 8 << 20
    """Upper bound of the size of one map-step input chunk (bounds worker memory)."""

    engine: str = "local"
    """Where the tasks run: `local` (--num_workers processes of this machine) or `ray` (the Ray cluster at
    --ray_address; every node must see the input files and the output folder's parent). Both write the
    same bytes."""

    ray_address: str = "auto"
    """With --engine ray: the cluster to join (`auto`: the one running on this machine, else a local one
    started for this run with --num_workers cores; or `HOST:PORT` of its head node)."""

    encoder: str = "auto"
    """How token ids are computed. `auto`: the fastest way that gives the HF tokenizer's ids (for LLaMA-2
    style SentencePiece tokenizers, `sentencepiece` itself, 1.7x faster, after its ids are compared with
    the HF tokenizer's on edge cases and on a sample of the input; the manifest's `tokenizer.encoder` says
    which and why). `hf`: always the HF tokenizer. Both give the same shards."""

    def __post_init__(self) -> None:
        if isinstance(self.data_input_dirs, str):
            self.data_input_dirs = [d for d in self.data_input_dirs.split(",") if d.strip()]
        if not self.data_input_dirs:
            raise ConfigError("--data_input_dirs: give at least one folder")
        if self.max_length < 2:
            raise ConfigError(f"--max_length must be at least 2 (BOS + EOS), got {self.max_length}")
        if self.num_spliced_dataset_bins < 1:
            raise ConfigError(f"--num_spliced_dataset_bins must be at least 1, got {self.num_spliced_dataset_bins}")
        if self.num_workers < 1:
            raise ConfigError(f"--num_workers must be at least 1, got {self.num_workers}")
        if self.on_error not in ON_ERROR_CHOICES:
            raise ConfigError(f"--on_error must be one of {ON_ERROR_CHOICES}, got {self.on_error!r}")
        if self.max_record_bytes < 1:
            raise ConfigError(f"--max_record_bytes must be positive, got {self.max_record_bytes}")
        if self.engine not in ENGINE_CHOICES:
            raise ConfigError(f"--engine must be one of {ENGINE_CHOICES}, got {self.engine!r}")
        if self.ray_address != "auto" and self.engine != "ray":
            raise ConfigError("--ray_address needs --engine ray")
        if self.encoder not in ENCODER_CHOICES:
            raise ConfigError(f"--encoder must be one of {ENCODER_CHOICES}, got {self.encoder!r}")
        if self.chunk_bytes < 1:
            raise ConfigError(f"chunk_bytes must be positive, got {self.chunk_bytes}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class PretrainDataConfig(DataConfig):
    """Settings of `prepare_pretrain_dataset.py`."""


LLAMA_VERSIONS = (2, 3)


@dataclass
class SftDataConfig(DataConfig):
    """Settings of `prepare_sft_dataset.py`."""

    llama_version: int | None = None
    """Separators of the default template: 2 = `<s>`/`</s>`, 3 = `<|begin_of_text|>`/`<|eot_id|>` (the old
    script's flag). Default: detected from the tokenizer (3 if it has both LLaMA-3 tokens, 2 if its bos/eos
    are `<s>`/`</s>`); the old script's default was 3, which failed on LLaMA-2 tokenizers."""

    template: str = "default"
    """Conversation template: `default` (Human/Assistant) or `hf` (the tokenizer's own chat_template)."""

    pack: bool = True
    """Pack several conversations into a row (kept apart by seq_lengths); off: one per row."""

    pack_within_category: bool = False
    """Keep each row to one category. Default: a row may hold conversations of several
    categories (bins and buckets still per category; each segment keeps its category in
    `segment_categories`), which fills rows better when conversations are long."""

    category: str | None = None
    """File every conversation under this category, whatever its record says (one
    category for bins, buckets, statistics and per-category loss)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.category == "":
            raise ConfigError("--category must not be empty")
        if self.llama_version is not None and self.llama_version not in LLAMA_VERSIONS:
            raise ConfigError(f"--llama_version must be one of {LLAMA_VERSIONS}, got {self.llama_version}")


def field_help(cls, name: str) -> str:
    """The docstring written under a dataclass field (inherited fields included), as argparse --help text.

    argparse %-formats help strings (for `%(default)s`), so a literal `%` in a
    docstring ("2.5% of all steps") is doubled here, once for every parser.
    """
    return _field_docs(cls).get(name, "").replace("%", "%%")


@functools.lru_cache(maxsize=None)
def _field_docs(cls) -> dict[str, str]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):  # base classes first (not `object`): a subclass's docstring wins
        try:
            body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body
        except (OSError, TypeError):  # built-ins and classes made at run time have no source to read
            continue
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = str(nxt.value.value)
    return docs


def field_types(cls) -> dict[str, object]:
    """Each field's type, resolved from its annotation (`int | None`, `list[str]`), by field name."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _without_none(annotation):
    """`int` for `int | None`; any other annotation as it is."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _type_name(annotation) -> str:
    return annotation.__name__ if isinstance(annotation, type) and not typing.get_args(annotation) else str(annotation)


def coerce(value, annotation):
    """A value read from a settings file (YAML, JSON) as a field of type `annotation`.

    YAML 1.1 reads `3e-4` as a string and JSON writes `1.0` as `1`, so numbers
    are converted with `int()` / `float()`; a bool must be a bool (`"no"` is not
    False); a single value for a list field is a one-item list; None is kept
    (the dataclass itself says whether it may be None).

    Raises:
        ConfigError: `expected <type>, got <value>`.
    """
    base = _without_none(annotation)
    if value is None or base is bool and isinstance(value, bool):
        return value
    try:
        if typing.get_origin(base) is list:
            item = (typing.get_args(base) or (str,))[0]
            return [item(v) for v in value] if isinstance(value, list) else [item(value)]
        if base in (int, float, str):
            return base(value)
        if base is not bool:  # a type no flag has (dict, ...): the dataclass checks it
            return value
    except (TypeError, ValueError):
        pass
    raise ConfigError(f"expected {_type_name(annotation)}, got {value!r}")


def add_dataclass_arguments(parser, cls, *, choices: dict | None = None, exclude: tuple = (),
                            negatable: bool = False, overrides: dict | None = None) -> None:
    """Add one `--<field>` flag per field of the dataclass `cls` to `parser` (a parser or an argument group).

    The help of a flag is the docstring under its field; its default is the
    field's, except where the parser's `argument_default` is SUPPRESS (a flag
    not given then stays out of the namespace: how train.py lays flags over a
    --config file). A field without a default is a required flag. By type:
    `bool` -> `--name` (store_true), `list[T]` -> `--name a b`, others -> `--name value`.

    Args:
        choices: field name -> the values its flag accepts.
        exclude: fields that are no flags (set by code or files only).
        negatable: every bool flag also takes `--no-<name>`; without it only
            bools that default to True do (store_true could not turn them off).
        overrides: field name -> `add_argument` keyword arguments that replace
            the generated ones (a different help, nargs, ...).
    """
    choices, overrides = choices or {}, overrides or {}
    suppress = parser.argument_default == argparse.SUPPRESS
    hints = field_types(cls)
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        kwargs = _flag_kwargs(f, _without_none(hints[f.name]), suppress, negatable)
        kwargs["help"] = field_help(cls, f.name)
        if f.name in choices:
            kwargs["choices"] = choices[f.name]
        kwargs.update(overrides.get(f.name, {}))
        parser.add_argument(f"--{f.name}", **kwargs)


def _flag_kwargs(f: dataclasses.Field, base, suppress: bool, negatable: bool) -> dict:
    """`add_argument` keyword arguments for one field: action or type, default, required."""
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = dataclasses.MISSING
    kwargs: dict = {}
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    elif not suppress:
        kwargs["default"] = default
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction if negatable or default is True else "store_true"
    elif typing.get_origin(base) is list:
        kwargs.update(nargs="+", type=(typing.get_args(base) or (str,))[0])
    else:
        kwargs["type"] = base
    return kwargs


def parser_for(cls, prog: str, description: str, **options) -> argparse.ArgumentParser:
    """A parser whose flags are the fields of `cls` (`options`: those of `add_dataclass_arguments`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_dataclass_arguments(parser, cls, **options)
    return parser


# what both prepare commands take differently from the generated flags
_DATA_FLAGS = dict(
    choices={"on_error": ON_ERROR_CHOICES, "encoder": ENCODER_CHOICES, "engine": ENGINE_CHOICES,
             "llama_version": LLAMA_VERSIONS},
    exclude=("chunk_bytes",),  # a memory bound for tests and benchmarks, not a flag of the old scripts
    # the old scripts' syntax: one comma-separated string (`__post_init__` splits it)
    overrides={"data_input_dirs": {"nargs": None,
                                   "help": "Comma-separated list. " + field_help(DataConfig, "data_input_dirs")}},
)


def pretrain_data_parser() -> argparse.ArgumentParser:
    """The command line of `prepare_pretrain_dataset.py`."""
    return parser_for(PretrainDataConfig, "prepare_pretrain_dataset.py",
                      "Tokenize pretraining jsonl ({source, target, category}) into packed, bucketed Arrow shards.",
                      **_DATA_FLAGS)


def sft_data_parser() -> argparse.ArgumentParser:
    """The command line of `prepare_sft_dataset.py`."""
    return parser_for(SftDataConfig, "prepare_sft_dataset.py",
                      "Tokenize conversations ({messages: [{from, content}]}) into bucketed Arrow shards "
                      "where only assistant replies carry labels.", **_DATA_FLAGS)


def parse_pretrain_data_args(argv: list[str] | None = None) -> PretrainDataConfig:
    """`prepare_pretrain_dataset.py`'s command line as a checked config."""
    return PretrainDataConfig(**vars(pretrain_data_parser().parse_args(argv)))


def parse_sft_data_args(argv: list[str] | None = None) -> SftDataConfig:
    """`prepare_sft_dataset.py`'s command line as a checked config."""
    return SftDataConfig(**vars(sft_data_parser().parse_args(argv)))
