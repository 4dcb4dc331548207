"""The dataclass-to-argparse generator (`config.add_dataclass_arguments`) and `config.coerce`.

Every command with a config dataclass builds its flags with the generator, so
a flag's default and help come from the dataclass field and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

import pytest

from colossal_llama.config import (DataConfig, PretrainDataConfig, SftDataConfig, add_dataclass_arguments, coerce,
                                   field_help, pretrain_data_parser, sft_data_parser)
from colossal_llama.errors import ConfigError
from colossal_llama.inference.cli import cli_parser
from colossal_llama.inference.generation import SamplingSettings
from colossal_llama.tokenizer.init_tokenizer import ExpansionConfig
from colossal_llama.tokenizer.init_tokenizer import parser as expansion_parser


@dataclass
class Base:
    folder: str
    """Where things go (100% of them)."""

    size: int = 3
    """How many."""


@dataclass
class Example(Base):
    ratio: float | None = None
    """A ratio."""

    mode: str = "a"
    """The mode."""

    files: list[str] = field(default_factory=list)
    """Input files."""

    fast: bool = False
    """Go fast."""

    pack: bool = True
    """Pack rows."""

    internal: int = 7
    """Set by code only."""


def example_parser(**options) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(**options.pop("parser", {}))
    add_dataclass_arguments(parser, Example, choices={"mode": ("a", "b")}, exclude=("internal",), **options)
    return parser


def test_flags_follow_the_fields():
    args = example_parser().parse_args(["--folder", "f"])
    assert vars(args) == {"folder": "f", "size": 3, "ratio": None, "mode": "a", "files": [], "fast": False,
                          "pack": True}
    args = example_parser().parse_args(["--folder", "f", "--size", "5", "--ratio", "0.5", "--mode", "b",
                                        "--files", "x", "y", "--fast", "--no-pack"])
    assert (args.size, args.ratio, args.mode, args.files, args.fast, args.pack) == (5, 0.5, "b", ["x", "y"], True, False)
    with pytest.raises(SystemExit):
        example_parser().parse_args([])  # --folder has no default: required
    with pytest.raises(SystemExit):
        example_parser().parse_args(["--folder", "f", "--mode", "c"])  # not a choice
    with pytest.raises(SystemExit):
        example_parser().parse_args(["--folder", "f", "--internal", "1"])  # excluded
    with pytest.raises(SystemExit):
        example_parser().parse_args(["--folder", "f", "--no-fast"])  # store_true: no negative form


def test_help_is_the_field_docstring_inherited_ones_too():
    actions = {a.dest: a for a in example_parser()._actions}
    assert actions["folder"].help == "Where things go (100%% of them)."  # % doubled for argparse
    assert actions["fast"].help == "Go fast." and field_help(SftDataConfig, "max_length") == field_help(
        DataConfig, "max_length") != ""
    assert "100% of them" in example_parser().format_help()


def test_suppress_leaves_out_what_was_not_given_and_overrides_win():
    parser = example_parser(parser={"argument_default": argparse.SUPPRESS}, negatable=True,
                            overrides={"size": {"help": "other"}})
    assert vars(parser.parse_args(["--folder", "f", "--no-fast"])) == {"folder": "f", "fast": False}
    assert {a.dest: a for a in parser._actions}["size"].help == "other"


@pytest.mark.parametrize("value, annotation, expected", [
    ("3e-4", float, 3e-4), (1, float, 1.0), ("8", int, 8), (5, str, "5"), ("8", int | None, 8), (None, int, None),
    ("x", list[str], ["x"]), (["a", 1], list[str], ["a", "1"]), (True, bool, True),
])
def test_coerce(value, annotation, expected):
    result = coerce(value, annotation)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize("value, annotation, message", [
    ("many", int, "expected int, got 'many'"), ("yes", bool, "expected bool, got 'yes'"),
    ("fast", float | None, "expected float | None, got 'fast'"),
])
def test_coerce_refuses(value, annotation, message):
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        coerce(value, annotation)


@pytest.mark.parametrize("make_parser, cls, skip", [
    (pretrain_data_parser, PretrainDataConfig, {"chunk_bytes"}),
    (sft_data_parser, SftDataConfig, {"chunk_bytes"}),
    (expansion_parser, ExpansionConfig, set()),
    (lambda: cli_parser("x"), SamplingSettings, set()),
])
def test_each_command_takes_its_defaults_from_the_dataclass(make_parser, cls, skip):
    actions = {a.dest: a for a in make_parser()._actions}
    for f in dataclasses.fields(cls):
        if f.name in skip:
            assert f.name not in actions
            continue
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            assert actions[f.name].required, f.name
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            assert actions[f.name].default == default, f.name
        assert actions[f.name].help, f.name
