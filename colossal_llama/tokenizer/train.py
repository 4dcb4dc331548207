"""Train a LLaMA-style SentencePiece tokenizer and save it as an HF folder.

    from colossal_llama.tokenizer.train import train_llama_tokenizer
    train_llama_tokenizer(texts, "out/tokenizer", vocab_size=2000)

The model follows LLaMA-2's SentencePiece settings: BPE with byte fallback
(characters outside the vocabulary become <0xNN> byte pieces, never <unk>),
`<unk>`=0, `<s>`=1, `</s>`=2, no pad piece, digits split, identity
normalisation, a dummy prefix space. The folder holds `tokenizer.model` plus
the HF files of both the slow and the fast tokenizer, so `AutoTokenizer`
loads it without a conversion step.

Used by the quickstart (a base tokenizer from the bundled corpus) and by the
tests (a throwaway tokenizer); vocabulary expansion will reuse it to learn
new pieces from a corpus.
"""

from __future__ import annotations

import io
import os
from typing import Iterable, Iterator

MAX_SENTENCE_CHARS = 1000  # SentencePiece skips training sentences over 4192 bytes; 1000 CJK chars = 3000 bytes


def training_sentences(texts: Iterable[str]) -> Iterator[str]:
    """Lines of the texts, long lines cut into pieces SentencePiece accepts."""
    for text in texts:
        for line in text.split("\n"):
            for start in range(0, len(line), MAX_SENTENCE_CHARS):
                piece = line[start : start + MAX_SENTENCE_CHARS]
                if piece.strip():
                    yield piece


def train_sentencepiece_model(texts: Iterable[str], vocab_size: int, character_coverage: float = 0.9995,
                              model_type: str = "bpe", **options) -> bytes:
    """Train a LLaMA-style SentencePiece model; returns the serialized model proto.

    Deterministic for the same texts (one training thread, input in order).
    `options` go to the trainer as they are (e.g. hard_vocab_limit=False).
    """
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=training_sentences(texts),
        model_writer=model,
        model_type=model_type,
        vocab_size=vocab_size,
        character_coverage=character_coverage,
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        add_dummy_prefix=True,
        shuffle_input_sentence=False,
        num_threads=1,
        minloglevel=2,
        **options,
    )
    return model.getvalue()


def save_llama_tokenizer(model_proto: bytes, out_dir: str) -> str:
    """Write `tokenizer.model` and the HF slow + fast tokenizer files to `out_dir`."""
    from transformers import AutoTokenizer, LlamaTokenizer

    os.makedirs(out_dir, exist_ok=True)
    model_path = os.path.join(out_dir, "tokenizer.model")
    with open(model_path, "wb") as f:
        f.write(model_proto)
    # legacy=True is LLaMA-2's own behaviour (and the default); passing it
    # explicitly only silences transformers' warning about the choice.
    LlamaTokenizer(vocab_file=model_path, legacy=True).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(out_dir, trust_remote_code=False).save_pretrained(out_dir)  # adds tokenizer.json
    drop_add_prefix_space(out_dir)
    return out_dir


def drop_add_prefix_space(tokenizer_dir: str) -> None:
    """Remove `add_prefix_space` from tokenizer_config.json, as LLaMA-2's own folders have it.

    The slow LlamaTokenizer writes the key; with it present, LlamaTokenizerFast
    rebuilds itself from the SentencePiece model on every load (0.5 s for
    32,000 pieces) instead of reading tokenizer.json, which that same
    conversion already produced.
    """
    import json

    path = os.path.join(tokenizer_dir, "tokenizer_config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    if "add_prefix_space" in config:  # true, false or null: LLaMA-2's folders have no such key
        del config["add_prefix_space"]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)


def train_llama_tokenizer(texts: Iterable[str], out_dir: str, vocab_size: int,
                          character_coverage: float = 0.9995) -> str:
    """Train a LLaMA-style tokenizer on `texts` and save it as an HF folder; returns `out_dir`."""
    return save_llama_tokenizer(train_sentencepiece_model(texts, vocab_size, character_coverage), out_dir)
