"""The manifest (data-spec section 6) and the summary table printed at the end.

    manifest = read_manifest("runs/data/pretrain"); parts_of("runs/data/pretrain")  # arrow/part-00000 ...

The manifest is deterministic (no timestamps, no temporary paths) so that two
runs on the same input can be compared byte for byte, shards and manifest.
Prepared data and stage mixtures (mixtures.py) write it here, as `<out>/manifest.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

from colossal_llama import __version__
from colossal_llama.data.buckets import DROP_ALL_MASKED
from colossal_llama.data.mapstep import ChunkResult
from colossal_llama.errors import DataError
from colossal_llama.outputs import write_json

MANIFEST = "manifest.json"
COUNT_KEYS = ("records", "documents", "rows", "segments", "tokens", "label_tokens", "chunks")


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_digest(value) -> str:
    """16 hex digits naming a JSON-serialisable value (keys sorted): cache and mixture keys."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def read_manifest(folder: str) -> dict:
    """The manifest of a prepared folder (data or mixture)."""
    with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
        return json.load(f)


def write_manifest(folder: str, manifest: dict) -> None:
    """Write `<folder>/manifest.json` (UTF-8 as is, indented: people read it)."""
    write_json(os.path.join(folder, MANIFEST), manifest, indent=2, ensure_ascii=False)


def parts_of(folder: str) -> list[str]:
    """The bucket folders of a prepared folder, in order (`--dataset` takes them so).

    Raises:
        DataError: `folder` has no arrow/ folder.
    """
    arrow = os.path.join(folder, "arrow")
    if not os.path.isdir(arrow):
        raise DataError(f"{folder}: no arrow/ folder (not written by prepare_*_dataset.py)")
    return [os.path.join(arrow, p) for p in sorted(os.listdir(arrow)) if p.startswith("part-")]


def _shape(counts: Counter) -> dict:
    """Flat counters -> manifest entry: counts, then dropped tokens by reason."""
    entry = {k: int(counts.get(k, 0)) for k in COUNT_KEYS}
    entry["dropped_tokens"] = {DROP_ALL_MASKED: int(counts.get("dropped_" + DROP_ALL_MASKED, 0))}
    return entry


def fill_ratio(tokens: int, rows: int, max_length: int) -> float:
    """How full `rows` rows of `max_length` tokens are with `tokens` tokens (6 decimals)."""
    return round(tokens / (rows * max_length), 6) if rows else 0.0


def input_files(paths: list[str]) -> list[dict]:
    """Path, size and sha256 of every input file."""
    return [{"path": p, "bytes": os.path.getsize(p), "sha256": file_sha256(p)} for p in paths]


def count_per_input(files: list[dict], results: list[ChunkResult], chunk_paths: dict[int, str]) -> list[dict]:
    """`files` with the lines, records and rejects read from each."""
    per_file: dict[str, Counter] = {f["path"]: Counter(lines=0, records=0, rejected=0) for f in files}
    for r in results:
        c = per_file[chunk_paths[r.index]]
        c["lines"] += r.lines
        c["records"] += r.records
        c["rejected"] += sum(r.rejected.values())
    return [{**f, **{k: int(v) for k, v in per_file[f["path"]].items()}} for f in files]


def _category_entries(category_inputs: dict[str, tuple[int, int]], parts: list[dict], results: list[ChunkResult],
                      max_length: int) -> dict:
    """Per category: counts over all buckets, tokens in, fill, rejects by reason.

    Counts are per segment (a row may hold several categories); `rows` are
    the rows holding the category and `fill` is theirs (all their tokens).
    Also reshapes every part's per-category counters into manifest entries.
    """
    categories: dict[str, Counter] = {name: Counter(records=records, tokens_in=tokens)
                                      for name, (records, tokens) in category_inputs.items()}
    for part in parts:
        for name, counts in part["categories"].items():
            categories[name].update(counts)
        part["categories"] = {name: _shape(Counter(counts, records=counts["documents"]))
                              for name, counts in sorted(part["categories"].items())}
        rows = part.pop("rows")  # a row holding two categories counts once here
        for key in COUNT_KEYS:
            part[key] = rows if key == "rows" else sum(entry[key] for entry in part["categories"].values())
        part["fill"] = fill_ratio(part["tokens"], part["rows"], max_length)
    rejected: dict[str, Counter] = {}
    dropped: dict[str, Counter] = {}
    for r in results:
        for (category, reason), n in r.rejected.items():
            rejected.setdefault(category, Counter())[reason] += n
        for (category, reason), n in r.dropped.items():
            dropped.setdefault(category, Counter())[reason] += n
    entries = {}
    for name in sorted(set(categories) | set(rejected) | set(dropped)):
        counts = categories.get(name, Counter())
        entry = _shape(counts)
        entry["tokens_in"] = int(counts.get("tokens_in", 0))
        entry["fill"] = fill_ratio(int(counts.get("row_tokens", 0)), entry["rows"], max_length)
        entry["rejected"] = dict(sorted(rejected.get(name, Counter()).items()))
        entry["dropped_records"] = dict(sorted(dropped.get(name, Counter()).items()))
        entries[name] = entry
    return entries


def build_manifest(config, tokenizer_info, inputs: list[dict], results: list[ChunkResult],
                   category_inputs: dict[str, tuple[int, int]], parts: list[dict], empty_files: list[str],
                   kind: str) -> dict:
    """Assemble the manifest and check token accounting.

    Args:
        category_inputs: category -> (records, tokens) accepted by the map step.

    Raises:
        AssertionError: tokens in != tokens out + tokens dropped (a bug, never bad input).
    """
    categories = _category_entries(category_inputs, parts, results, config.max_length)
    tokens_in = sum(tokens for _, tokens in category_inputs.values())
    tokens_out = sum(e["tokens"] for e in categories.values())
    dropped = sum(sum(e["dropped_tokens"].values()) for e in categories.values())
    assert tokens_in == tokens_out + dropped, f"token accounting broken: {tokens_in} != {tokens_out} + {dropped}"
    rows = sum(part["rows"] for part in parts)
    rejected, dropped_records, stats = Counter(), Counter(), Counter()
    for e in categories.values():
        rejected.update(e["rejected"])
        dropped_records.update(e["dropped_records"])
    for r in results:
        stats.update(r.stats)
    return {
        "tool": "colossal_llama",
        "version": __version__,
        "kind": kind,
        "tokenizer": tokenizer_info.to_manifest(),
        "max_length": config.max_length,
        "num_bins": config.num_spliced_dataset_bins,
        "seed": config.seed,
        "config": config.to_dict(),
        "inputs": inputs,
        "empty_files": empty_files,
        "totals": {
            "records": sum(r.records for r in results),
            "rejected": int(sum(rejected.values())),
            "rejected_by_reason": dict(sorted(rejected.items())),
            "dropped_records": dict(sorted(dropped_records.items())),
            "blank_lines": sum(r.blank_lines for r in results),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "tokens_dropped": dropped,
            "rows": rows,
            "fill": fill_ratio(tokens_out, rows, config.max_length),
            "label_tokens": sum(e["label_tokens"] for e in categories.values()),
            "parts": len(parts),
            **{k: int(v) for k, v in sorted(stats.items())},
        },
        "buckets": parts,
        "categories": categories,
    }


DROPPED_TOKENS = {"pretrain": "all-masked chunks of over-long documents"}
"""What the footer's dropped tokens are, per kind of data (SFT drops whole conversations, counted apart)."""


def summary_table(manifest: dict) -> str:
    """Per category: records, tokens, label tokens, rows, fill; then totals."""
    head = f"{'category':<24}{'records':>10}{'rejected':>10}{'tokens':>13}{'label tok':>13}{'rows':>8}{'fill':>9}"
    lines = [head, "-" * len(head)]

    def line(name, e, rejected):
        return (f"{name:<24}{e['records']:>10,}{rejected:>10,}{e['tokens']:>13,}{e['label_tokens']:>13,}"
                f"{e['rows']:>8,}{e['fill']:>9.2%}")

    for name, e in manifest["categories"].items():
        lines.append(line(name, e, sum(e["rejected"].values())))
    t = manifest["totals"]
    lines.append("-" * len(head))
    lines.append(line("total", {**t, "tokens": t["tokens_out"]}, t["rejected"]))
    why = DROPPED_TOKENS.get(manifest.get("kind"), "")
    lines.append(f"tokens in {t['tokens_in']:,} = out {t['tokens_out']:,} + dropped {t['tokens_dropped']:,}"
                 f"{f' ({why})' if why else ''}; {t['parts']} bucket(s) of {manifest['num_bins']} requested")
    if manifest.get("kind") == "sft":
        lines.append(f"conversations dropped (first turn over max_length): {t['dropped_records'].get('too_long', 0):,}; "
                     f"turns kept {t.get('turns_kept', 0):,}, turns cut off {t.get('turns_truncated', 0):,}")
    if sum(e["rows"] for e in manifest["categories"].values()) > t["rows"]:
        lines.append("rows hold several categories: a category's rows and fill are those of the rows holding it")
    return "\n".join(lines)
