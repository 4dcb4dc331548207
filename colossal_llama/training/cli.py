"""`train.py`'s command line: one flag per TrainConfig field, `--config FILE`, and main().

    python train.py --config stage1.yaml --lr 1e-4          # the file's settings, lr overridden
    colossalai run --nproc_per_node 2 train.py --plugin ddp --pretrained model --dataset out/arrow/part-*

Precedence: TrainConfig defaults < the --config file (YAML or JSON, keys
are the flag names) < flags given on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from colossal_llama.config import add_dataclass_arguments, coerce, field_types
from colossal_llama.errors import USER_ERRORS, ConfigError
from colossal_llama.training.config import CHOICES, TrainConfig


def train_parser() -> argparse.ArgumentParser:
    """The command line of `train.py`: one flag per TrainConfig field, plus --config.

    No flag has a default in the namespace (SUPPRESS): a flag not given must
    not hide the --config file's value; TrainConfig fills in the rest. Bool
    flags take `--no-<name>`, to turn off what a --config file turned on.
    """
    p = argparse.ArgumentParser(prog="train.py", argument_default=argparse.SUPPRESS,
                                description="Train a LLaMA-family model on prepared buckets with ColossalAI.")
    p.add_argument("--config", help="YAML or JSON file with any of the settings below (flags override it)")
    add_dataclass_arguments(p, TrainConfig, choices=CHOICES, negatable=True)
    return p


def read_config_file(path: str) -> dict:
    """Settings from a YAML or JSON file; unknown keys are errors naming the file and the key."""
    import yaml

    if not os.path.isfile(path):
        raise ConfigError(f"--config {path}: file does not exist")
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"--config {path}: not valid {'JSON' if path.endswith('.json') else 'YAML'}: {exc}")
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of setting: value, got {type(data).__name__}")
    types = field_types(TrainConfig)
    for key, value in data.items():
        if key not in types:
            raise ConfigError(f"--config {path}: unknown key {key!r} (the keys are the flag names without --)")
        try:
            data[key] = coerce(value, types[key])
        except ConfigError as exc:
            raise ConfigError(f"--config {path}: {key}: {exc}") from None
    return data


def parse_train_args(argv: list[str] | None = None) -> TrainConfig:
    """The command line as a checked TrainConfig: defaults < --config file < flags.

    Raises:
        ConfigError: an unreadable --config file, an unknown key or a value TrainConfig refuses.
    """
    given = vars(train_parser().parse_args(argv))
    settings = read_config_file(given.pop("config")) if "config" in given else {}
    settings.update(given)
    try:
        return TrainConfig(**settings)
    except TypeError as exc:  # a file value of the wrong shape
        raise ConfigError(f"config: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Parse, set up, train, export. User errors print one line and exit with status 2."""
    from colossal_llama.lifeline import die_with_launcher

    die_with_launcher()  # before the slow imports: the sooner, the smaller the window for an unnoticed death
    import torch.distributed as dist

    from colossal_llama.outputs import describe_os_error

    config = None
    try:
        config = parse_train_args(argv)
        from colossal_llama.training.build import train

        train(config)
    except USER_ERRORS + (OSError,) as exc:
        if isinstance(exc, OSError):  # a file the run reads or writes: `path: reason`
            exc = describe_os_error(exc, config.save_dir if config else "train.py")
        if not dist.is_initialized() or dist.get_rank() == 0:
            print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
