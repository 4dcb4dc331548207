"""Configuration dataclasses and the argparse parsers that fill them.

Every field has a docstring; validation happens in `__post_init__`, so a
config built in code is checked exactly like one built from the command line.
The command-line flags keep the names of the old Colossal-LLaMA scripts
(`--data_input_dirs`, `--tokenizer_dir`, ...) so existing launch scripts work.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field

from colossal_llama.errors import ConfigError

ON_ERROR_CHOICES = ("raise", "skip")
ENCODER_CHOICES = ("auto", "hf")


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
    """The docstring written under a dataclass field, as argparse --help text.

    argparse %-formats help strings (for `%(default)s`), so a literal `%` in a
    docstring ("2.5% of all steps") is doubled here, once for every parser.
    """
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name:
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                return str(nxt.value.value).replace("%", "%%")
    return ""


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    h = lambda name: field_help(DataConfig, name)  # noqa: E731
    p.add_argument("--data_input_dirs", required=True, help="Comma-separated list. " + h("data_input_dirs"))
    p.add_argument("--tokenizer_dir", required=True, help=h("tokenizer_dir"))
    p.add_argument("--data_output_dirs", default="data_output_dirs", help=h("data_output_dirs"))
    p.add_argument("--max_length", type=int, default=4096, help=h("max_length"))
    p.add_argument("--num_spliced_dataset_bins", type=int, default=10, help=h("num_spliced_dataset_bins"))
    p.add_argument("--num_workers", type=int, default=os.cpu_count() or 1, help=h("num_workers"))
    p.add_argument("--seed", type=int, default=42, help=h("seed"))
    p.add_argument("--on_error", choices=ON_ERROR_CHOICES, default="raise", help=h("on_error"))
    p.add_argument("--max_record_bytes", type=int, default=16 << 20, help=h("max_record_bytes"))
    p.add_argument("--recursive", action="store_true", help=h("recursive"))
    p.add_argument("--overwrite", action="store_true", help=h("overwrite"))
    p.add_argument("--encoder", choices=ENCODER_CHOICES, default="auto", help=h("encoder"))


def pretrain_data_parser() -> argparse.ArgumentParser:
    """The command line of `prepare_pretrain_dataset.py`."""
    p = argparse.ArgumentParser(
        prog="prepare_pretrain_dataset.py",
        description="Tokenize pretraining jsonl ({source, target, category}) into packed, bucketed Arrow shards.",
    )
    _add_data_arguments(p)
    return p


def sft_data_parser() -> argparse.ArgumentParser:
    """The command line of `prepare_sft_dataset.py`."""
    h = lambda name: field_help(SftDataConfig, name)  # noqa: E731
    p = argparse.ArgumentParser(
        prog="prepare_sft_dataset.py",
        description="Tokenize conversations ({messages: [{from, content}]}) into bucketed Arrow shards "
        "where only assistant replies carry labels.",
    )
    _add_data_arguments(p)
    p.add_argument("--llama_version", type=int, choices=LLAMA_VERSIONS, default=None, help=h("llama_version"))
    p.add_argument("--template", default="default", help=h("template"))
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=True, help=h("pack"))
    p.add_argument("--pack_within_category", action="store_true", help=h("pack_within_category"))
    p.add_argument("--category", default=None, help=h("category"))
    return p


def parse_pretrain_data_args(argv: list[str] | None = None) -> PretrainDataConfig:
    return PretrainDataConfig(**vars(pretrain_data_parser().parse_args(argv)))


def parse_sft_data_args(argv: list[str] | None = None) -> SftDataConfig:
    return SftDataConfig(**vars(sft_data_parser().parse_args(argv)))
