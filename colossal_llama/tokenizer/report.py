"""Compression reports for a tokenizer expansion: tokens per character and per record, per category.

The corpus can be pretraining jsonl ({source, target, category}), SFT jsonl
({messages}), {"text"} jsonl, gzipped jsonl, or txt (one text per line).
"""

from __future__ import annotations

import os
from collections import Counter

from colossal_llama.errors import DataError
from colossal_llama.jsonl import line_error, read_jsonl, read_lines

CORPUS_SUFFIXES = (".jsonl", ".jsonl.gz", ".txt")


def corpus_texts(paths: list[str]):
    """(category, text) of every record of jsonl(.gz)/txt files or folders of them.

    jsonl: pretraining records (source + target), conversations (all
    contents) or {"text": ...}; category from the record, else the file name.
    txt: one text per non-blank line, category = file name. Read by
    `colossal_llama.jsonl` (blank lines skipped, lines of 16 MiB at most).

    Raises:
        DataError: a missing file or folder, or a bad line (`FILE:LINE: reason`).
    """
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(CORPUS_SUFFIXES))
            if not found:
                raise DataError(f"{path}: no {', '.join(CORPUS_SUFFIXES)} files in this folder")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    for path in files:
        name = os.path.basename(path).split(".")[0]
        if ".jsonl" not in path:
            yield from ((name, text) for _, text in read_lines(path))
            continue
        for number, obj in read_jsonl(path):
            yield _record_text(path, number, obj, name)


def _record_text(path: str, number: int, obj: dict, default_category: str) -> tuple[str, str]:
    """(category, text) of one jsonl record: pretraining, conversation or {"text"} record.

    Raises:
        DataError: the record lacks string texts (file and line named).
    """
    try:
        if "messages" in obj:
            text = "\n".join(m["content"] for m in obj["messages"])
        else:
            text = obj.get("source", "") + obj.get("target", obj.get("text", ""))
        category = obj.get("category", default_category)
        if not isinstance(text, str) or not isinstance(category, str):
            raise TypeError("texts and category must be strings")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise line_error(path, number, f"not a record this report can read ({exc})") from None
    return category, text


def compression(old, new, records) -> dict:
    """Per category and in total: characters, tokens (old/new), tokens per character, tokens per record."""
    counts: dict[str, Counter] = {}
    by_category: dict[str, list[str]] = {}
    for category, text in records:
        by_category.setdefault(category, []).append(text)
    for category, texts in sorted(by_category.items()):
        c = counts.setdefault(category, Counter())
        c["records"] = len(texts)
        c["chars"] = sum(len(t) for t in texts)
        c["old_tokens"] = sum(len(x) for x in old(texts, add_special_tokens=False)["input_ids"])
        c["new_tokens"] = sum(len(x) for x in new(texts, add_special_tokens=False)["input_ids"])
    report = {}
    for category, c in list(counts.items()) + [("total", sum(counts.values(), Counter()))]:
        report[category] = {
            "records": c["records"], "chars": c["chars"], "old_tokens": c["old_tokens"], "new_tokens": c["new_tokens"],
            "old_tokens_per_char": round(c["old_tokens"] / max(c["chars"], 1), 4),
            "new_tokens_per_char": round(c["new_tokens"] / max(c["chars"], 1), 4),
            "old_tokens_per_record": round(c["old_tokens"] / max(c["records"], 1), 2),
            "new_tokens_per_record": round(c["new_tokens"] / max(c["records"], 1), 2),
            "new_over_old": round(c["new_tokens"] / max(c["old_tokens"], 1), 4),
        }
    return report


def print_report(report: dict) -> None:
    print(f"vocabulary {report['old_vocab_size']:,} -> {report['new_vocab_size']:,}: {report['added']:,} pieces added, "
          f"skipped {report['skipped']}, {report['unreachable']:,} unreachable (left out)")
    if "compression" in report:
        print(f"{'category':<24}{'records':>9}{'tok/char old':>14}{'new':>8}{'tok/rec old':>13}{'new':>9}{'new/old':>9}")
        for category, c in report["compression"].items():
            print(f"{category:<24}{c['records']:>9,}{c['old_tokens_per_char']:>14.3f}{c['new_tokens_per_char']:>8.3f}"
                  f"{c['old_tokens_per_record']:>13.1f}{c['new_tokens_per_record']:>9.1f}{c['new_over_old']:>9.1%}")
