"""Print one packed row with its trained-on spans marked and its document boundaries.

    python -m colossal_llama.data.inspect_rows OUT/arrow/part-00000 --index 3

Trained-on tokens (labels != -100) are shown in green on a terminal, or
between [[ and ]] otherwise (`--color` chooses). The tokenizer is found next
to the data (`OUT/tokenizer`, written by SFT preparation) or through the
manifest; `--tokenizer_dir` overrides both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from colossal_llama.data.segments import MIXED_CATEGORY, SEGMENT_CATEGORIES
from colossal_llama.data.tokenize import IGNORE_INDEX

GREEN, RESET = "\033[42;30m", "\033[0m"


def find_tokenizer(part: str) -> str:
    """The tokenizer folder for a part: OUT/tokenizer, else the manifest's tokenizer."""
    out = os.path.dirname(os.path.dirname(os.path.abspath(part)))
    if os.path.isdir(os.path.join(out, "tokenizer")):
        return os.path.join(out, "tokenizer")
    manifest = os.path.join(out, "manifest.json")
    if os.path.exists(manifest):
        with open(manifest, encoding="utf-8") as f:
            return json.load(f)["tokenizer"]["name_or_path"]
    raise SystemExit(f"error: no tokenizer found for {part}; pass --tokenizer_dir")


def spans(labels: list[int]) -> list[tuple[int, int, bool]]:
    """Runs of consecutive positions that are all trained on or all masked: (start, end, trained)."""
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or (labels[i] != IGNORE_INDEX) != (labels[start] != IGNORE_INDEX):
            runs.append((start, i, labels[start] != IGNORE_INDEX))
            start = i
    return runs


def render_row(row: dict, tokenizer, color: bool) -> str:
    """The row as text: a header per document, trained-on runs marked."""
    ids, labels, lengths = row["input_ids"], row["labels"], row["seq_lengths"]
    trained = sum(x != IGNORE_INDEX for x in labels)
    lines = [f"category {row['category']}, {len(ids)} tokens in {len(lengths)} document(s), {trained} trained on"]
    # rows packed across categories name each document's category
    categories = row.get(SEGMENT_CATEGORIES) or [None] * len(lengths)
    start = 0
    for n, (length, category) in enumerate(zip(lengths, categories), start=1):
        doc_labels = labels[start : start + length]
        doc_trained = sum(x != IGNORE_INDEX for x in doc_labels)
        where = f" ({category})" if category and row["category"] == MIXED_CATEGORY else ""
        lines.append(f"--- document {n}{where}: tokens {start}-{start + length - 1} "
                     f"({length} tokens, {doc_trained} trained on)")
        text = []
        for a, b, on in spans(doc_labels):
            piece = tokenizer.decode(ids[start + a : start + b], skip_special_tokens=False,
                                     clean_up_tokenization_spaces=False)
            text.append((GREEN + piece + RESET if color else "[[" + piece + "]]") if on else piece)
        lines.append("".join(text))
        start += length
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m colossal_llama.data.inspect_rows", description=__doc__.split("\n\n")[0])
    p.add_argument("part", help="a prepared bucket, e.g. OUT/arrow/part-00000")
    p.add_argument("--index", type=int, default=0, help="row number in the part (default 0)")
    p.add_argument("--tokenizer_dir", default=None, help="tokenizer to decode with (default: found next to the data)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="mark trained-on spans with colour (auto: when printing to a terminal) or [[brackets]]")
    args = p.parse_args(argv)
    import datasets
    from transformers import AutoTokenizer

    if not os.path.isdir(args.part):
        print(f"error: {args.part} is not a prepared part folder", file=sys.stderr)
        return 2
    data = datasets.load_from_disk(args.part)
    if not 0 <= args.index < len(data):
        print(f"error: --index {args.index} is outside 0..{len(data) - 1}", file=sys.stderr)
        return 2
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer_dir or find_tokenizer(args.part), trust_remote_code=False)
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    print(f"row {args.index} of {args.part}: " + render_row(data[args.index], tokenizer, color))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
