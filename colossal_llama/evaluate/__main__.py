"""Evaluate a model on multiple-choice tasks: a table on stdout, every score in results.json.

    python -m colossal_llama.evaluate --model runs/demo/stages/05-sft/model \\
        --tasks mmlu/data/test cmmlu/test quiz.jsonl --shots 5 --output runs/eval
    colossal-llama-evaluate ...      # the installed command

Task files: MMLU/CMMLU CSV (one file per subject) and JSONL
({question, choices, answer, subject}); a folder means every task file in it.
results.json holds, per question, the prompt and each continuation exactly as
scored with its log-probabilities, so a plain forward pass can check any of
them. Bad input: one line `error: FILE:LINE: reason`, exit status 2.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass

from colossal_llama.config import parser_for
from colossal_llama.errors import ConfigError, exit_status
from colossal_llama.evaluate.run import CHAT_CHOICES, evaluate_model, results_table
from colossal_llama.inference.generation import DTYPES
from colossal_llama.outputs import write_json


@dataclass
class EvaluateConfig:
    """Settings of `python -m colossal_llama.evaluate`."""

    model: str
    """HF model folder (an export of train.py) or a hub id in the local cache."""

    tasks: list[str]
    """Task files (.csv, .jsonl, .jsonl.gz) or folders of them."""

    shots: int = 0
    """Dev examples with their answers before each question (MMLU's few-shot: 5)."""

    batch_size: int = 16
    """Questions scored together in one forward pass."""

    row_tokens: int = 1024
    """Tokens per packed row: questions share a row up to it (a longer question gets a row alone)."""

    device: str | None = None
    """cpu or cuda; default cuda when available."""

    dtype: str | None = None
    """bf16, fp16 or fp32; default bf16 on cuda, fp32 on cpu."""

    chat: str = "auto"
    """Prompt as one user turn of the chat template: auto (when the tokenizer has one), on, off."""

    output: str | None = None
    """Folder for results.json (every question's prompt, continuations, scores, choices; the summaries)."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("--tasks: give at least one task file or folder")
        if self.shots < 0:
            raise ConfigError(f"--shots must be >= 0, got {self.shots}")
        if self.batch_size < 1 or self.row_tokens < 1:
            raise ConfigError(f"--batch_size and --row_tokens must be >= 1, got {self.batch_size}, {self.row_tokens}")


def parser():
    return parser_for(EvaluateConfig, "colossal-llama-evaluate", __doc__.split("\n\n")[0],
                      choices={"device": ("cpu", "cuda"), "dtype": tuple(sorted(DTYPES)), "chat": CHAT_CHOICES})


class Progress:
    """`scored N/M questions (R/s)` on stderr, at most every `every` seconds and at the end."""

    def __init__(self, every: float = 10.0):
        self.start = self.last = time.monotonic()
        self.every = every

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every or done == total:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            print(f"scored {done}/{total} questions ({rate:.1f}/s)", file=sys.stderr, flush=True)


def run(config: EvaluateConfig) -> int:
    results = evaluate_model(config.model, config.tasks, config.shots, config.batch_size, config.device,
                             config.dtype, config.chat, row_tokens=config.row_tokens, progress=Progress())
    print(results_table(results))
    if config.output:
        path = os.path.join(config.output, "results.json")
        write_json(path, {"config": asdict(config), **results}, indent=1, ensure_ascii=False)
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return exit_status(lambda: run(EvaluateConfig(**vars(args))))


if __name__ == "__main__":
    raise SystemExit(main())
