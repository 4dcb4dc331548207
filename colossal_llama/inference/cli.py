"""What the command lines in applications/inference/ share: model and sampling options, one-line errors."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Callable

from colossal_llama.errors import InferenceError
from colossal_llama.inference.generation import DTYPES, SamplingSettings


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def cli_parser(description: str) -> argparse.ArgumentParser:
    """--model_dir, --device, --dtype and the sampling options; bad arguments: one line `error: ...`, exit 2."""
    parser = _OneLineErrorParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="HF model folder (an export of train.py)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="default: bf16 on cuda, fp32 on cpu")
    sampling, d = parser.add_argument_group("sampling"), SamplingSettings()
    sampling.add_argument("--max_new_tokens", type=int, default=d.max_new_tokens, help="default: %(default)s")
    sampling.add_argument("--temperature", type=float, default=d.temperature, help="0 = greedy; default: %(default)s")
    sampling.add_argument("--top_k", type=int, default=d.top_k, help="0 = off; default: %(default)s")
    sampling.add_argument("--top_p", type=float, default=d.top_p, help="in (0, 1]; default: %(default)s")
    sampling.add_argument("--repetition_penalty", type=float, default=d.repetition_penalty,
                          help="1 = off; default: %(default)s")
    sampling.add_argument("--seed", type=int, help="seed torch for reproducible sampling")
    return parser


def settings_from_args(args: argparse.Namespace) -> SamplingSettings:
    return SamplingSettings(**{f.name: getattr(args, f.name) for f in fields(SamplingSettings)})


def run_cli(main: Callable[[], int]) -> int:
    """main()'s exit status; an InferenceError is printed as one line `error: ...` and gives 2."""
    try:
        return main()
    except InferenceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
