"""What the inference commands (generate.py, chat.py) share: model and sampling options, one-line errors."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Callable

from colossal_llama.config import add_dataclass_arguments
from colossal_llama.errors import exit_status
from colossal_llama.inference.generation import DTYPES, SamplingSettings


SAMPLING_HELP = {
    "max_new_tokens": "default: %(default)s",
    "temperature": "0 = greedy; default: %(default)s",
    "top_k": "0 = off; default: %(default)s",
    "top_p": "in (0, 1]; default: %(default)s",
    "repetition_penalty": "1 = off; default: %(default)s",
    "seed": "seed torch for reproducible sampling",
}


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def cli_parser(description: str) -> argparse.ArgumentParser:
    """--model_dir, --device, --dtype and the sampling options; bad arguments: one line `error: ...`, exit 2."""
    parser = _OneLineErrorParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="HF model folder (an export of train.py)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="default: bf16 on cuda, fp32 on cpu")
    # SamplingSettings gives the flags and their defaults; the help says what the values mean
    add_dataclass_arguments(parser.add_argument_group("sampling"), SamplingSettings, overrides={
        name: {"help": text} for name, text in SAMPLING_HELP.items()})
    return parser


def settings_from_args(args: argparse.Namespace) -> SamplingSettings:
    return SamplingSettings(**{f.name: getattr(args, f.name) for f in fields(SamplingSettings)})


def run_cli(main: Callable[[], int]) -> int:
    """main()'s exit status; a user error is printed as one line `error: ...` and gives 2."""
    return exit_status(main)
