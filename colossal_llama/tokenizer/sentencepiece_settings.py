"""Whether `sentencepiece` can stand in for a fast tokenizer (sentencepiece_encoder.py), and its files.

    settings, why_not = sentencepiece_settings(tokenizer, "model_dir")   # None and the reason when it cannot
    path = write_sentencepiece_encoder(settings, workdir)                # the EncoderSpec payload

It can when the backend is BPE converted from the folder's SentencePiece
model (`tokenizer.model`: same vocabulary, byte fallback, no normalization)
with a LLaMA pre-tokenization (`PREPEND`), and its added tokens are matched
as plain text. `encoder_choice` then still compares the ids with the HF call.
"""

from __future__ import annotations

import json
import os

from colossal_llama.tokenizer.sentencepiece_encoder import SPACE


def _prepend_rule(normalizer: dict | None, pre_tokenizer: dict | None) -> str | None:
    """The PREPEND entry that the backend's normalizer and pre-tokenizer amount to, or None."""
    replace = {"type": "Replace", "pattern": {"String": " "}, "content": SPACE}
    steps = [] if normalizer is None else normalizer.get("normalizers", [normalizer])
    if pre_tokenizer is None:
        if steps == [{"type": "Prepend", "prepend": SPACE}, replace]:
            return "every"
        if steps == [replace]:
            return "never"
        return None
    if steps or pre_tokenizer.get("type") != "Metaspace" or pre_tokenizer.get("replacement") != SPACE:
        return None
    if pre_tokenizer.get("split"):
        return None
    scheme = pre_tokenizer.get("prepend_scheme")
    return {"always": "metaspace-always", "first": "metaspace-first", "never": "never"}.get(scheme)


def sentencepiece_settings(tokenizer, tokenizer_dir: str) -> tuple[dict | None, str]:
    """What `SentencePieceEncoder` needs to reproduce `tokenizer`, or None and why it cannot.

    Returns:
        (settings, "") or (None, reason). `settings["model_proto"]` is the
        folder's SentencePiece model with its dummy prefix switched off.
    """
    if not tokenizer.is_fast:
        return None, "a slow tokenizer (no fast version)"
    backend = tokenizer.backend_tokenizer
    model = backend.model
    if type(model).__name__ != "BPE":
        return None, f"the tokenizer's model is {type(model).__name__}, not BPE converted from SentencePiece"
    state = lambda part: None if part is None else json.loads(part.__getstate__())  # noqa: E731
    rule = _prepend_rule(state(backend.normalizer), state(backend.pre_tokenizer))
    if rule is None:
        return None, ("its normalizer and pre-tokenizer are not those of a LLaMA SentencePiece tokenizer "
                      "(byte-level BPE, or another kind)")
    if model.dropout or model.continuing_subword_prefix or model.end_of_word_suffix or model.ignore_merges:
        return None, "its BPE model has dropout, subword affixes or ignore_merges, which SentencePiece lacks"
    if not model.byte_fallback:
        return None, "no byte fallback: unseen characters would go through unk handling, which differs"
    proto, problem = _sentencepiece_model(os.path.join(tokenizer_dir, "tokenizer.model"))
    if proto is None:
        return None, problem
    added = backend.get_added_tokens_decoder()
    problem = _model_problem(proto, backend.get_vocab(with_added_tokens=False), added) or _added_problem(backend, added)
    if problem:
        return None, problem
    proto.normalizer_spec.add_dummy_prefix = False  # the "▁" is put in by SentencePieceEncoder
    tokens = [[t.content, i, t.lstrip, t.rstrip] for i, t in sorted(added.items())]
    return {"model_proto": proto.SerializeToString(), "added": tokens, "prepend": rule}, ""


def _sentencepiece_model(path: str):
    """(ModelProto, "") of a SentencePiece model file, or (None, why not)."""
    from colossal_llama.tokenizer.layout import sentencepiece_proto

    if not os.path.isfile(path):
        return None, "no tokenizer.model (SentencePiece model) in the folder"
    found = sentencepiece_proto(os.path.dirname(path))
    if found is None:  # e.g. LLaMA-3's tiktoken ranks file, named tokenizer.model too
        return None, "tokenizer.model is not a SentencePiece model (tiktoken ranks, or another format)"
    return found[1], ""


def _model_problem(proto, vocab: dict[str, int], added: dict) -> str:
    """Why the SentencePiece model cannot stand in for the fast tokenizer's model ("" if it can)."""
    normalizer, trainer = proto.normalizer_spec, proto.trainer_spec
    if trainer.model_type != trainer.BPE:
        return "tokenizer.model is not a BPE model"
    if not trainer.byte_fallback:
        return "tokenizer.model has no byte fallback"
    if normalizer.precompiled_charsmap or normalizer.remove_extra_whitespaces or not normalizer.escape_whitespaces:
        return "tokenizer.model normalizes text (the fast tokenizer does not)"
    if trainer.treat_whitespace_as_suffix:
        return "tokenizer.model puts the whitespace after words"
    if {p.piece: i for i, p in enumerate(proto.pieces)} != vocab:
        return "tokenizer.model and tokenizer.json have different vocabularies"
    plain = {t.content for t in added.values() if not t.normalized}
    if any(p.type == p.USER_DEFINED and p.piece not in plain for p in proto.pieces):
        return "tokenizer.model has user-defined pieces that the fast tokenizer does not split out"
    return ""


def _added_problem(backend, added: dict) -> str:
    if getattr(backend, "encode_special_tokens", False):
        return "the tokenizer encodes special-token text as plain text (encode_special_tokens)"
    for token in added.values():
        if token.normalized:
            return f"added token {token.content!r} is matched after normalization (normalized=True)"
        if token.single_word:
            return f"added token {token.content!r} is single_word"
    return ""


def write_sentencepiece_encoder(settings: dict, workdir: str) -> str:
    """Write the encoder's files to `workdir`; returns the settings path (the EncoderSpec payload)."""
    with open(os.path.join(workdir, "spm_encoder.model"), "wb") as f:
        f.write(settings["model_proto"])
    path = os.path.join(workdir, "spm_encoder.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"model": "spm_encoder.model", "added": settings["added"], "prepend": settings["prepend"]}, f,
                  ensure_ascii=False)
    return path
