"""What the files of a tokenizer folder are, decided by their content, never by their names.

    from colossal_llama.tokenizer.layout import sentencepiece_model, folder_problem
    sentencepiece_model("llama3/")  # None: its tokenizer.model is tiktoken's ranks file
    folder_problem("llama2-saved/")  # None, or why the folder would load as another tokenizer

Published folders describe one tokenizer in several files, and one name
covers two formats:

    folder                       tokenizer.json     tokenizer.model
    LLaMA-2 (SentencePiece)      optional           SentencePiece model proto
    LLaMA-3 (byte-level BPE)     the tokenizer      absent, or Meta's tiktoken ranks
                                                    (base64 token, space, rank; one a line)

`AutoTokenizer` loads the fast tokenizer from `tokenizer.json` and never
reads a tiktoken `tokenizer.model` next to it, so neither do the commands
here: a `tokenizer.model` counts only when it parses as a SentencePiece
model. Which kind a byte-level `tokenizer.json` is comes from its model and
pre-tokenizer (`expand_bpe.is_byte_level_bpe`).
"""

from __future__ import annotations

import json
import os

PREFIX_SPACE_PROBLEM = (
    'tokenizer_config.json sets "add_prefix_space": null and there is no tokenizer.json, so transformers would '
    'convert tokenizer.model into a fast tokenizer without the "\u2581" before the first word (the slow one keeps '
    "it): delete that key from tokenizer_config.json"
)


def sentencepiece_proto(folder: str):
    """(bytes, parsed ModelProto) of `folder/tokenizer.model` when it is a SentencePiece model with pieces, else None."""
    path = os.path.join(folder, "tokenizer.model")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    from google.protobuf.message import DecodeError
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    try:
        model.ParseFromString(data)
    except DecodeError:  # tiktoken's text ranks: "Wire format was corrupt" or similar
        return None
    # a text file can parse as a proto of unknown fields only: a model has pieces
    return (data, model) if len(model.pieces) else None


def sentencepiece_model(folder: str) -> bytes | None:
    """The bytes of `folder/tokenizer.model` when it is a SentencePiece model proto with pieces, else None."""
    found = sentencepiece_proto(folder)
    return found[0] if found else None


def tokenizer_json(folder: str) -> dict | None:
    """`folder/tokenizer.json` parsed, or None when the folder has none."""
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _config(folder: str) -> dict:
    path = os.path.join(folder, "tokenizer_config.json")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):  # missing or unreadable: transformers reports it when loading
        return {}
    return config if isinstance(config, dict) else {}


def folder_problem(folder: str) -> str | None:
    """Why `AutoTokenizer` would load `folder` as a tokenizer other than the one it describes; None if it would not.

    The one case: `"add_prefix_space": null` (transformers 4.51 writes it into
    every LLaMA folder it saves) with no `tokenizer.json`. The converter from
    `tokenizer.model` reads the null as "no prefix space", so the fast
    tokenizer tokenizes "What is" as `W h at ▁is` where LLaMA (and the slow
    tokenizer) read `▁W h at ▁is`. Next to a `tokenizer.json` the key is not
    read and does no harm.
    """
    config = _config(folder)
    if ("add_prefix_space" in config and config["add_prefix_space"] is None
            and not os.path.isfile(os.path.join(folder, "tokenizer.json")) and sentencepiece_model(folder) is not None):
        return PREFIX_SPACE_PROBLEM
    return None


def unloadable_reason(folder: str) -> str | None:
    """A plain reason for a folder `AutoTokenizer` failed to load, when its files show one."""
    if os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return None
    if os.path.isfile(os.path.join(folder, "tokenizer.model")) and sentencepiece_model(folder) is None:
        return ("tokenizer.model is not a SentencePiece model (LLaMA-3's original tiktoken ranks file?) and there is "
                "no tokenizer.json to define the tokenizer: add the tokenizer.json published with the model")
    return None
