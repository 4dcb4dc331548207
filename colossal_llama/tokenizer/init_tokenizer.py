"""Expand a tokenizer's vocabulary with new pieces and report the compression gained.

    python -m colossal_llama.tokenizer.init_tokenizer --source_tokenizer_dir llama2/ \\
        --target_tokenizer_dir llama2-zh/ --expand_tokens_file pieces.jsonl \\
        [--train_from corpus.jsonl --new_pieces 20000] [--report_corpus data/]

The old Colossal-LLaMA command line (the first three flags) works unchanged.
Pieces come from jsonl files (`{"piece": "人工智能"}` per line) and/or are
learned from a corpus (a SentencePiece BPE model trained on it, as
Chinese-LLaMA did; its pieces the source lacks, best first). The expanded
tokenizer is written to a temporary folder and renamed, with `report.json`
beside it.

SentencePiece tokenizers (LLaMA-2 family, `tokenizer.model`) are expanded
with real pieces (`expand.py`); byte-level BPE tokenizers (LLaMA-3 family,
`tokenizer.json`) with vocabulary entries and the merges that form them
(`expand_bpe.py`). The kind is read from the files' content (`expand_source`),
not their names: LLaMA-3 folders often hold Meta's tiktoken ranks file as
`tokenizer.model`, which is no SentencePiece model; it is ignored, and left
out of the expanded folder (it would no longer match the vocabulary).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict, dataclass, field, replace

from colossal_llama.config import add_dataclass_arguments
from colossal_llama.errors import ConfigError, DataError, TokenizerError, exit_status
from colossal_llama.jsonl import line_error, read_jsonl
from colossal_llama.model.hub import resolve_model_dir
from colossal_llama.outputs import staged_output
from colossal_llama.tokenizer.expand import expand_sentencepiece
from colossal_llama.tokenizer.expand_bpe import expand_byte_level_bpe, is_byte_level_bpe, not_single_tokens
from colossal_llama.tokenizer.folder import AGREEMENT_PROBES, check_fast_slow, clean_tokenizer_config
from colossal_llama.tokenizer.layout import sentencepiece_model, tokenizer_json
from colossal_llama.tokenizer.loading import load_tokenizer
from colossal_llama.tokenizer.report import compression, corpus_texts, print_report


@dataclass
class ExpansionConfig:
    """Settings of `python -m colossal_llama.tokenizer.init_tokenizer`."""

    source_tokenizer_dir: str
    """HF tokenizer folder to expand (SentencePiece: holds tokenizer.model)."""

    target_tokenizer_dir: str
    """Where the expanded tokenizer is written (refused if it exists, unless overwrite)."""

    expand_tokens_file: list[str] = field(default_factory=list)
    """jsonl files of new pieces, `{"piece": "你好"}` per line."""

    expand_from_spm: list[str] = field(default_factory=list)
    """SentencePiece models whose pieces are the new pieces (e.g. Chinese-LLaMA's chinese_sp.model)."""

    train_from: list[str] = field(default_factory=list)
    """jsonl or txt files to learn new pieces from (with new_pieces)."""

    new_pieces: int = 0
    """How many pieces to learn from `train_from` (those the source lacks, best first)."""

    report_corpus: list[str] = field(default_factory=list)
    """jsonl/txt files or folders to measure compression on, old vs new, per category."""

    allow_ascii_pieces: bool = False
    """Also add pieces made only of ASCII (they re-tokenize English text and numbers)."""

    overwrite: bool = False
    """Replace an existing target folder."""

    def __post_init__(self) -> None:
        if not self.expand_tokens_file and not self.train_from and not self.expand_from_spm:
            raise ConfigError("give new pieces: --expand_tokens_file, --expand_from_spm and/or --train_from "
                              "with --new_pieces")
        if self.train_from and self.new_pieces < 1:
            raise ConfigError("--train_from needs --new_pieces N (N >= 1)")
        if self.new_pieces and not self.train_from:
            raise ConfigError("--new_pieces needs --train_from FILES to learn them from")


def read_piece_files(paths: list[str]) -> list[str]:
    """New pieces from jsonl files, in file order.

    Raises:
        DataError: a missing file, a line that is not a JSON object with a
            non-empty, non-whitespace string "piece" (file and line named).
    """
    pieces = []
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"--expand_tokens_file {path}: file does not exist")
        for number, obj in read_jsonl(path):
            piece = obj.get("piece")
            if not isinstance(piece, str):
                raise line_error(path, number, f'needs a string field "piece", got {piece!r}')
            if piece == "":
                raise line_error(path, number, "empty piece")
            if not piece.strip():
                raise line_error(path, number, f"the piece is only whitespace ({piece!r})")
            pieces.append(piece)
    return pieces


def pieces_of_models(paths: list[str]) -> list[str]:
    """The normal pieces of SentencePiece model files, best score first."""
    from colossal_llama.tokenizer.expand import _proto

    pieces = []
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"--expand_from_spm {path}: file does not exist")
        with open(path, "rb") as f:
            model = _proto(f.read())
        pieces += [p.piece for p in sorted(model.pieces, key=lambda p: -p.score) if p.type == p.NORMAL]
    return pieces


def pieces_from_corpus(paths: list[str], count: int, source_vocab: set[str]) -> list[str]:
    """Train a SentencePiece BPE model on the corpus; its `count` best pieces the source lacks."""
    from colossal_llama.tokenizer.expand import _proto
    from colossal_llama.tokenizer.train import train_sentencepiece_model

    texts = [text for _, text in corpus_texts(paths)]
    # room for every character (each is a piece of its own) plus the merges wanted and
    # the ones the source has already; hard_vocab_limit=False lets a small corpus stop early
    characters = len(set().union(*map(set, texts))) if texts else 0
    vocab_size = characters + count + min(len(source_vocab), 4 * count) + 300
    proto = _proto(train_sentencepiece_model(texts, vocab_size=vocab_size, hard_vocab_limit=False))
    learned = sorted((p for p in proto.pieces if p.type == p.NORMAL), key=lambda p: -p.score)
    return [p.piece for p in learned if p.piece not in source_vocab][:count]


TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                   "tokenizer.json", "tokenizer.model")
"""The files of an HF tokenizer; a model folder's weights and config stay out of the expanded tokenizer."""


def copy_tokenizer_files(source_dir: str, target: str, rewritten: tuple[str, ...]) -> None:
    """Copy the source's tokenizer files, except those the expansion writes anew."""
    for name in TOKENIZER_FILES:
        if name not in rewritten and os.path.isfile(os.path.join(source_dir, name)):
            shutil.copy2(os.path.join(source_dir, name), os.path.join(target, name))


def save_sentencepiece_tokenizer(source_dir: str, model_proto: bytes, target: str) -> None:
    """The source folder's files with the expanded tokenizer.model; slow and fast HF files rebuilt."""
    from transformers import AutoTokenizer

    from colossal_llama.tokenizer.train import drop_add_prefix_space

    os.makedirs(target, exist_ok=True)
    copy_tokenizer_files(source_dir, target, ("tokenizer.json", "tokenizer.model"))
    with open(os.path.join(target, "tokenizer.model"), "wb") as f:
        f.write(model_proto)
    # a null add_prefix_space (transformers writes one into every folder it saves) makes the
    # converter below build a fast tokenizer without the word-boundary "▁" the slow one adds
    clean_tokenizer_config(target)
    with open(os.path.join(target, "tokenizer_config.json"), encoding="utf-8") as f:
        had_prefix_flag = "add_prefix_space" in json.load(f)
    # the fast tokenizer, converted from the slow one: tokenizer.json (init_tokenizer then compares the two)
    AutoTokenizer.from_pretrained(target, trust_remote_code=False).save_pretrained(target)
    if not had_prefix_flag:
        drop_add_prefix_space(target)


def save_byte_level_tokenizer(source_dir: str, expanded_json: bytes, target: str) -> None:
    """The source folder's files with the expanded tokenizer.json.

    A `tokenizer.model` of the source (LLaMA-3's tiktoken ranks) is not copied: it lacks the new tokens.
    """
    os.makedirs(target, exist_ok=True)
    copy_tokenizer_files(source_dir, target, ("tokenizer.json", "tokenizer.model"))
    with open(os.path.join(target, "tokenizer.json"), "wb") as f:
        f.write(expanded_json)


SAVERS = {"sentencepiece": save_sentencepiece_tokenizer, "byte_level_bpe": save_byte_level_tokenizer}


def expand_source(source_dir: str, candidates: list[str], allow_ascii: bool):
    """("sentencepiece" | "byte_level_bpe", Expansion) for the tokenizer in `source_dir`.

    The kind is what the tokenizer is, as AutoTokenizer loads it: a
    `tokenizer.json` whose model and pre-tokenizer are byte-level BPE defines
    the tokenizer (a `tokenizer.model` beside it, LLaMA-3's tiktoken ranks, is
    ignored); otherwise a `tokenizer.model` that parses as a SentencePiece
    model (a SentencePiece `tokenizer.json` is its conversion, rebuilt).

    Raises:
        TokenizerError: neither a SentencePiece model nor a byte-level BPE tokenizer.json.
    """
    data = tokenizer_json(source_dir)
    if data is not None and is_byte_level_bpe(data):
        expansion = expand_byte_level_bpe(data, candidates, allow_ascii)
        lost = not_single_tokens(expansion.model_proto, expansion.added)
        if lost:  # the simulation disagreed with the library: leave those out, report them
            expansion = expand_byte_level_bpe(data, [c for c in candidates if c not in set(lost)], allow_ascii)
            expansion.unreachable += lost
        return "byte_level_bpe", expansion
    model = sentencepiece_model(source_dir)
    if model is not None:
        return "sentencepiece", expand_sentencepiece(model, candidates, allow_ascii)
    model_type = (data or {}).get("model", {}).get("type")
    found = [f"a tokenizer.json of model {model_type!r}" if data is not None else "no tokenizer.json"]
    if os.path.isfile(os.path.join(source_dir, "tokenizer.model")):
        found.append("a tokenizer.model that is not a SentencePiece model")
    raise TokenizerError(f"--source_tokenizer_dir {source_dir}: neither a SentencePiece tokenizer.model nor a "
                         f"byte-level BPE tokenizer.json ({', '.join(found)}); cannot expand it")


def check_ascii_unchanged(old, new, texts: list[str], limit: int = 5000) -> None:
    """The expansion's promise: text made only of ASCII tokenizes to the same ids as before.

    Checked on up to `limit` ASCII-only texts (the probes and the report corpus).

    Raises:
        TokenizerError: a text whose ids changed (a defect of the expansion, never of the input).
    """
    texts = [t for t in texts if t.isascii()][:limit]
    before = old(texts, add_special_tokens=False)["input_ids"]
    after = new(texts, add_special_tokens=False)["input_ids"]
    for text, a, b in zip(texts, before, after):
        if a != b:
            raise TokenizerError(f"the expansion changed the ids of English text {text[:60]!r}: "
                                 f"{old.convert_ids_to_tokens(a[:8])} -> {new.convert_ids_to_tokens(b[:8])}")


def init_tokenizer(config: ExpansionConfig) -> dict:
    """Expand, save, report; returns the report.

    Raises:
        TokenizerError: the source has no (SentencePiece) tokenizer.
        DataError: bad piece files or corpus, or the target exists.
    """
    if os.path.exists(config.target_tokenizer_dir) and not config.overwrite:
        raise DataError(f"--target_tokenizer_dir {config.target_tokenizer_dir}: exists (add --overwrite to replace it)")
    # a hub id becomes its cached folder: the expansion reads the folder's files (tokenizer.model) directly
    config = replace(config, source_tokenizer_dir=resolve_model_dir(config.source_tokenizer_dir,
                                                                    "--source_tokenizer_dir", TokenizerError))
    old = load_tokenizer(config.source_tokenizer_dir, "--source_tokenizer_dir")
    # a disagreement would be carried into the expansion, whose fast tokenizer is rebuilt from the slow one
    check_fast_slow(config.source_tokenizer_dir, what="--source_tokenizer_dir", fast=old)
    candidates = read_piece_files(config.expand_tokens_file) + pieces_of_models(config.expand_from_spm)
    if config.train_from:
        candidates += pieces_from_corpus(config.train_from, config.new_pieces, set(old.get_vocab()))
    kind, expansion = expand_source(config.source_tokenizer_dir, candidates, config.allow_ascii_pieces)
    from transformers import AutoTokenizer

    with staged_output(config.target_tokenizer_dir, config.overwrite, "--target_tokenizer_dir") as tmp:
        SAVERS[kind](config.source_tokenizer_dir, expansion.model_proto, tmp)
        new = AutoTokenizer.from_pretrained(tmp, trust_remote_code=False)
        check_fast_slow(tmp, what="the expanded tokenizer", fast=new)
        corpus = list(corpus_texts(config.report_corpus)) if config.report_corpus else []
        if not config.allow_ascii_pieces:
            check_ascii_unchanged(old, new, list(AGREEMENT_PROBES) + [text for _, text in corpus])
        report = {"source": config.source_tokenizer_dir, "target": config.target_tokenizer_dir, "kind": kind,
                  "old_vocab_size": len(old), "new_vocab_size": len(new), "candidates": len(candidates),
                  **expansion.report(), "config": asdict(config)}
        if config.report_corpus:
            report["compression"] = compression(old, new, corpus)
        with open(os.path.join(tmp, "report.json"), "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, ensure_ascii=False)
    return report


def parser() -> argparse.ArgumentParser:
    """The command line: one flag per ExpansionConfig field."""
    p = argparse.ArgumentParser(prog="python -m colossal_llama.tokenizer.init_tokenizer",
                                description="Expand a tokenizer's vocabulary with real pieces.")
    add_dataclass_arguments(p, ExpansionConfig)  # one flag per field, its help the field's docstring
    return p


def main(argv: list[str] | None = None) -> int:
    config = parser().parse_args(argv)
    return exit_status(lambda: _expand_and_report(ExpansionConfig(**vars(config))))


def _expand_and_report(config: ExpansionConfig) -> int:
    report = init_tokenizer(config)
    print_report(report)
    print(f"wrote {report['target']} (report.json inside)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
