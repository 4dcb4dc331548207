"""Pretraining data preparation: jsonl {source, target, category} -> packed, bucketed Arrow shards.

    python prepare_pretrain_dataset.py --data_input_dirs data/a,data/b \\
        --tokenizer_dir tokenizer/ --data_output_dirs out/ --max_length 4096

The driver is `prepare.prepare_dataset`; this module names the pretraining
record kind (data-spec section 1) and the command line.
"""

from __future__ import annotations

from colossal_llama.config import PretrainDataConfig, parse_pretrain_data_args
from colossal_llama.data.prepare import prepare_dataset, run_cli, with_tokenizer_folder
from colossal_llama.data.tokenize import PretrainRecords


class PretrainJob:
    name = "pretrain"

    @staticmethod
    def prepare_tokenizer(tokenizer) -> None:
        """Used as loaded."""

    @staticmethod
    def make_kind(tokenizer, info) -> PretrainRecords:
        return PretrainRecords()

    @staticmethod
    def finish(folder: str, tokenizer, kind) -> dict:
        """Pretraining output holds only shards and manifest."""
        return {}


def prepare_pretrain_dataset(config: PretrainDataConfig) -> dict:
    """Prepare pretraining data (see `prepare.prepare_dataset`); returns the manifest."""
    return prepare_dataset(with_tokenizer_folder(config), PretrainJob)


def main(argv: list[str] | None = None) -> int:
    return run_cli(parse_pretrain_data_args, prepare_pretrain_dataset, argv)
