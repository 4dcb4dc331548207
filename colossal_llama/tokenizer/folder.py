"""Writing tokenizer folders whose fast and slow tokenizers agree, and checking that they do.

Every tokenizer folder the project writes (prepared SFT data, expansions,
checkpoints, exports, the stage runner's start models) goes through
`save_tokenizer`, which

- writes the tokenizer with `save_pretrained`;
- drops `"add_prefix_space": null` from `tokenizer_config.json`. transformers
  4.51 writes that key for LLaMA tokenizers; when the fast tokenizer is later
  rebuilt from `tokenizer.model` (a vocabulary expansion does that), the
  converter reads the null as "no prefix space" and the fast tokenizer stops
  putting "▁" before the first word (`What is` -> `W h at ▁is`), while the slow
  tokenizer keeps it. LLaMA-2's own folders have no such key;
- makes sure the chat template is in `tokenizer_config.json`, where every
  transformers version reads it (newer ones can write `chat_template.jinja`
  instead);
- loads the folder back, fast and slow, and checks that both give the same ids
  on `AGREEMENT_PROBES` (plus any texts given).

A folder with only a fast tokenizer (byte-level BPE, no `tokenizer.model`) has
no slow tokenizer to disagree with; it is checked for loading only. So has a
LLaMA-3 folder whose `tokenizer.model` is Meta's tiktoken ranks file: no
slow tokenizer is built from it (`AutoTokenizer(use_fast=False)`, transformers
4.51, returns the fast tokenizer for a `PreTrainedTokenizerFast` folder and
fails with an AttributeError for a `PreTrainedTokenizer` or `LlamaTokenizer`
one); see `layout.py`.
"""

from __future__ import annotations

import json
import os

from colossal_llama.errors import TokenizerError
from colossal_llama.tokenizer.layout import sentencepiece_model

AGREEMENT_PROBES = (
    "What is the capital of the Calvessa Islands?",
    "The quick brown fox jumps over the lazy dog.",
    " leading space, then  two spaces and a tab\tbefore the end",
    "Line one\nLine two\n\nafter a blank line",
    "Numbers 1234567 and 3.14159, dates 2026-12-01.",
    "人工智能是计算机科学的一个分支。",
    "卡尔维萨群岛位于塞林海，共有六个岛。",
    "Mixed 中文 and English, 第2章 ok.",
    "emoji 🙂 and accents: café, naïve, Zürich",
    "x",
)


def clean_tokenizer_config(folder: str, chat_template: str | None = None) -> None:
    """Drop a null `add_prefix_space`; write `chat_template` into tokenizer_config.json when given."""
    path = os.path.join(folder, "tokenizer_config.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    changed = False
    if "add_prefix_space" in config and config["add_prefix_space"] is None:
        del config["add_prefix_space"]
        changed = True
    if chat_template and config.get("chat_template") != chat_template:
        config["chat_template"] = chat_template
        changed = True
    if changed:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, ensure_ascii=False)


def has_slow_tokenizer(folder: str) -> bool:
    """Does the folder hold a SentencePiece model to build a slow tokenizer from (not a tiktoken file so named)?"""
    return sentencepiece_model(folder) is not None


def fast_slow_mismatch(folder: str, texts=(), fast=None, trust_remote_code: bool = False) -> str | None:
    """The first text on which the folder's fast and slow tokenizers give different ids, described; else None.

    Args:
        texts: checked after `AGREEMENT_PROBES`.
        fast: the folder's fast tokenizer when already loaded (loaded here when None).
        trust_remote_code: as the folder was loaded by its user (a custom tokenizer class).
    """
    if not has_slow_tokenizer(folder):
        return None
    from transformers import AutoTokenizer

    if fast is None:
        fast = AutoTokenizer.from_pretrained(folder, use_fast=True, trust_remote_code=trust_remote_code)
    slow = AutoTokenizer.from_pretrained(folder, use_fast=False, trust_remote_code=trust_remote_code)
    if not fast.is_fast or slow.is_fast:
        return None
    texts = list(AGREEMENT_PROBES) + [t for t in texts if t]
    fast_ids = fast(texts, add_special_tokens=False)["input_ids"]
    slow_ids = slow(texts, add_special_tokens=False)["input_ids"]
    for text, a, b in zip(texts, fast_ids, slow_ids):
        if a != b:
            return (f"{text[:60]!r}: fast {fast.convert_ids_to_tokens(a[:8])} vs slow "
                    f"{slow.convert_ids_to_tokens(b[:8])}")
    return None


def check_fast_slow(folder: str, texts=(), what: str = "tokenizer", fast=None, trust_remote_code: bool = False) -> None:
    """Raise TokenizerError when the folder's fast and slow tokenizers disagree (see `fast_slow_mismatch`).

    Raises:
        TokenizerError: naming the folder, the text and both tokenizations.
    """
    mismatch = fast_slow_mismatch(folder, texts, fast, trust_remote_code)
    if mismatch:
        hint = ""
        config = os.path.join(folder, "tokenizer_config.json")
        if os.path.isfile(config):
            with open(config, encoding="utf-8") as f:
                if "add_prefix_space" in json.load(f):
                    hint = " (its tokenizer_config.json sets add_prefix_space: remove the key and tokenizer.json)"
        raise TokenizerError(f"{what} {folder}: the fast and slow tokenizers give different ids on {mismatch}{hint}")


def save_tokenizer(tokenizer, folder: str, chat_template: str | None = None, texts=(), check: bool = True,
                   trust_remote_code: bool = False) -> None:
    """`tokenizer.save_pretrained(folder)` with a clean config, checked for fast/slow agreement.

    Args:
        check: load the written folder back and compare fast and slow (off for a tokenizer already
            written and checked once, e.g. the same tokenizer in every checkpoint of a run).
        trust_remote_code: how the tokenizer was loaded (a custom class needs it to load back).
    Raises:
        TokenizerError: the written folder's fast and slow tokenizers disagree.
    """
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    clean_tokenizer_config(folder, tokenizer.chat_template)
    if check:
        check_fast_slow(folder, texts, what="written tokenizer", trust_remote_code=trust_remote_code)
