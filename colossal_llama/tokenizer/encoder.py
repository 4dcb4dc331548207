"""Encoders: the one operation data preparation needs, `tok(s)` on a batch.

`tok(s)` is the tokenizer applied with `add_special_tokens=False` (data-spec
section 1). Worker processes must not pay for importing transformers, so an
`EncoderSpec` is a small picklable description that each worker turns into an
encoder:

- fast tokenizers: the backend `tokenizers.Tokenizer` saved as a JSON file
  (a path is cheap to send with every task; the JSON is megabytes).
  `PreTrainedTokenizerFast.__call__` ends in `backend.encode_batch(texts,
  add_special_tokens=...)` after switching truncation and padding off, so
  calling the backend directly with both off gives the same ids, minus the
  Python overhead (tests check this against the HF call).
- slow tokenizers: the folder, loaded again in the worker with transformers.
- `sentencepiece`: LLaMA-2 style folders, where `sentencepiece` itself gives
  the same ids 1.7x faster (`sentencepiece_encoder.py`; which kind a run
  uses, and why, is decided by `encoder_choice.py`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class EncoderSpec:
    kind: str
    """`fast` (payload: backend tokenizer JSON file), `slow` (payload: tokenizer folder) or
    `sentencepiece` (payload: the settings file of `SentencePieceEncoder`)."""

    payload: str

    def build(self):
        return ENCODERS[self.kind](self.payload)


class FastEncoder:
    def __init__(self, tokenizer_json_path: str | None = None, backend=None):
        from tokenizers import Tokenizer

        self._tk = backend if backend is not None else Tokenizer.from_file(tokenizer_json_path)
        self._tk.no_truncation()
        self._tk.no_padding()

        # encode_batch_fast (tokenizers >= 0.20) skips computing character
        # offsets, which nothing here uses: about 20% faster, same ids.
        self._encode = getattr(self._tk, "encode_batch_fast", self._tk.encode_batch)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self._encode(texts, add_special_tokens=False)]

    def encode_with_offsets(self, texts: list[str]) -> list:
        """`tokenizers.Encoding`s with character offsets (`.ids`, `.token_to_chars(i)`)."""
        return self._tk.encode_batch(texts, add_special_tokens=False)


@contextlib.contextmanager
def single_threaded():
    """TOKENIZERS_PARALLELISM=false inside: no Rayon thread pool for `tokenizers` calls (the parent's checks
    before forking workers stay in one thread: a pool started there cost the SFT run 29 MB in the parent), and
    processes started inside (a forked pool, Ray's) neither warn nor start threads of their own."""
    previous = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = previous


class SlowEncoder:
    """The plain HF call: a slow tokenizer loaded from a folder, or any tokenizer object given."""

    def __init__(self, tokenizer_dir: str | None = None, tokenizer=None):
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, use_fast=False, trust_remote_code=False)
        self._tk = tokenizer

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self._tk(texts, add_special_tokens=False)["input_ids"]


def _sentencepiece_encoder(settings_path: str):
    from colossal_llama.tokenizer.sentencepiece_encoder import SentencePieceEncoder

    return SentencePieceEncoder(settings_path)


ENCODERS = {"fast": FastEncoder, "slow": SlowEncoder, "sentencepiece": _sentencepiece_encoder}
