"""Loading prepared buckets for training, checked against the model before any step.

    buckets = load_buckets(["out/arrow/part-00000", "out/arrow/part-00001"], tokenizer, max_positions=4096)

Each part folder sits in `<out>/arrow/`, beside `<out>/manifest.json`; the
manifest says which tokenizer made the data and its max_length. Data made
with another tokenizer (other ids) or with rows longer than the model's
positions would train silently on garbage, so both are errors here.
"""

from __future__ import annotations

import json
import os

from colossal_llama.errors import DataError
from colossal_llama.tokenizer.loading import tokenizer_fingerprint

REQUIRED_COLUMNS = ("input_ids", "labels", "seq_lengths", "category")


def manifest_of(part: str) -> dict | None:
    """The manifest of the preparation that wrote `part`, if it is there."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(part))), "manifest.json")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_manifest(part: str, manifest: dict, fingerprint: str, max_positions: int) -> None:
    """Raises DataError when the data's tokenizer or max_length does not fit the model."""
    made_with = manifest["tokenizer"]
    if made_with["fingerprint"] != fingerprint:
        raise DataError(f"--dataset {part}: prepared with another tokenizer ({made_with['name_or_path']}, "
                        f"{made_with['vocab_size']} tokens) than the model's; prepare it again with the model's tokenizer")
    if manifest["max_length"] > max_positions:
        raise DataError(f"--dataset {part}: rows of up to {manifest['max_length']} tokens, but the model has "
                        f"{max_positions} positions; prepare it again with --max_length {max_positions} or less")


def load_buckets(paths: list[str], tokenizer, max_positions: int) -> list:
    """The buckets, in the given order, each a `datasets.Dataset`.

    Raises:
        DataError: a missing folder, a folder that is not a prepared part,
            or data that does not fit the tokenizer or the model.
    """
    import datasets

    fingerprint = tokenizer_fingerprint(tokenizer)
    buckets = []
    for part in paths:
        if not os.path.isdir(part):
            raise DataError(f"--dataset {part}: folder does not exist")
        manifest = manifest_of(part)
        if manifest is not None:
            check_manifest(part, manifest, fingerprint, max_positions)
        try:
            data = datasets.load_from_disk(part)
        except Exception as exc:  # datasets raises FileNotFoundError, ValueError ... for a wrong folder
            raise DataError(f"--dataset {part}: not a prepared part ({exc})") from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in data.column_names]
        if missing:
            raise DataError(f"--dataset {part}: missing columns {missing}; prepare it with this project's commands")
        buckets.append(data)
    return buckets
