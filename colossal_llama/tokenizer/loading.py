"""Loading an HF tokenizer folder for data preparation, with clear errors.

Also computes what the manifest records about a tokenizer (name, vocab size,
fingerprint) and the set of special ids that must never come out of user text.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from colossal_llama.errors import TokenizerError
from colossal_llama.model.hub import resolve_model_dir
from colossal_llama.tokenizer.encoder import EncoderSpec
from colossal_llama.tokenizer.encoder_choice import choose_encoder


@dataclass(frozen=True)
class TokenizerInfo:
    """What data preparation needs to know about a tokenizer, picklable."""

    name_or_path: str
    class_name: str
    vocab_size: int
    fingerprint: str
    bos_token: str
    eos_token: str
    bos_id: int
    eos_id: int
    forbidden_tokens: tuple[tuple[int, str], ...]
    """Special ids other than `<unk>`: if one shows up inside a document's text,
    the text held special-token markup (it would inject control tokens). `<unk>`
    is left out because a tokenizer without byte fallback emits it for unseen
    characters in perfectly ordinary text (see `unk`)."""

    encoder: EncoderSpec
    """How workers compute `tok(s)` (see `encoder_choice.py`)."""

    unk: tuple[int, str] | None = None
    """(id, text) of `<unk>`, or None. The id alone proves nothing (see
    `forbidden_tokens`), so a document holding it is bad input only when its
    text also holds the unk text (which the tokenizer turns into that id)."""

    encoder_reason: str = ""
    """Why `encoder` was chosen (the manifest's `tokenizer.encoder.reason`)."""

    hf_encoder: EncoderSpec | None = None
    """The HF path (`fast` or `slow`), which replaces `encoder` if that differs from it on the input."""

    def to_manifest(self) -> dict:
        return {
            "name_or_path": self.name_or_path,
            "class": self.class_name,
            "vocab_size": self.vocab_size,
            "fingerprint": self.fingerprint,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "encoder": {"kind": self.encoder.kind, "reason": self.encoder_reason},
        }


def load_tokenizer(tokenizer_dir: str, option: str = "--tokenizer_dir", trust_remote_code: bool = False):
    """Load `tokenizer_dir` with `AutoTokenizer` (fast when available).

    Args:
        option: the flag that named the folder, for the error messages.
        trust_remote_code: run a tokenizer class shipped in the folder (off: transformers' own classes only).
    Raises:
        TokenizerError: the folder does not exist, holds no loadable tokenizer, or would load as a tokenizer
            other than the one it describes (`layout.folder_problem`).
    """
    tokenizer_dir = resolve_model_dir(tokenizer_dir, option, TokenizerError)  # a folder, or a hub id in the cache
    from transformers import AutoTokenizer

    from colossal_llama.tokenizer.layout import folder_problem, unloadable_reason

    problem = folder_problem(tokenizer_dir)
    if problem:
        raise TokenizerError(f"{option} {tokenizer_dir}: {problem}")
    try:
        return AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=trust_remote_code)
    except Exception as exc:  # HF raises many types here (OSError, ValueError, TypeError)
        reason = unloadable_reason(tokenizer_dir) or " ".join(str(exc).split())
        raise TokenizerError(
            f"{option} {tokenizer_dir}: no loadable tokenizer there "
            f"(expected tokenizer.json, or tokenizer.model with tokenizer_config.json): {reason}"
        ) from exc


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 over the vocabulary (piece -> id) and the special-token map.

    Two folders holding the same tokenizer in different files (slow-only vs
    with tokenizer.json) get the same fingerprint; any added, removed or
    renumbered piece changes it.
    """
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    payload = json.dumps({"vocab": vocab, "special": tokenizer.special_tokens_map}, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _single_id(tokenizer, token: str, role: str) -> int:
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise TokenizerError(f"{role} token {token!r} does not tokenize to one id (got {ids})")
    return ids[0]


def describe_tokenizer(tokenizer, tokenizer_dir: str, workdir: str, encoder: str = "auto") -> TokenizerInfo:
    """Check the tokenizer is usable for document packing and describe it.

    For a fast tokenizer, its backend (as configured by transformers at load
    time) is saved to `workdir/encoder.json` for worker processes; the
    encoder is the fastest exact one (`encoder_choice.choose_encoder`), or
    the HF path with `encoder="hf"`.

    Raises:
        TokenizerError: no BOS or EOS token, or one that is not a single id.
    """
    if tokenizer.bos_token is None or tokenizer.eos_token is None:
        raise TokenizerError(
            f"tokenizer in {tokenizer_dir} needs both a bos_token and an eos_token "
            f"(got bos={tokenizer.bos_token!r}, eos={tokenizer.eos_token!r}); set them in tokenizer_config.json"
        )
    bos_id = _single_id(tokenizer, tokenizer.bos_token, "bos")
    eos_id = _single_id(tokenizer, tokenizer.eos_token, "eos")
    special = set(tokenizer.all_special_ids)
    special.update(i for i, t in tokenizer.added_tokens_decoder.items() if t.special)
    special.discard(tokenizer.unk_token_id)
    if tokenizer.is_fast:
        path = os.path.join(workdir, "encoder.json")
        tokenizer.backend_tokenizer.save(path)
        spec = EncoderSpec("fast", path)
    else:
        spec = EncoderSpec("slow", tokenizer_dir)
    chosen, reason = choose_encoder(tokenizer, tokenizer_dir, workdir, spec, allow_sentencepiece=encoder == "auto")
    return TokenizerInfo(
        name_or_path=str(tokenizer.name_or_path),
        class_name=type(tokenizer).__name__,
        vocab_size=len(tokenizer),
        fingerprint=tokenizer_fingerprint(tokenizer),
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        bos_id=bos_id,
        eos_id=eos_id,
        forbidden_tokens=tuple((i, tokenizer.convert_ids_to_tokens(i)) for i in sorted(special)),
        encoder=chosen,
        unk=(tokenizer.unk_token_id, tokenizer.unk_token) if tokenizer.unk_token_id is not None else None,
        encoder_reason=reason,
        hf_encoder=spec,
    )
