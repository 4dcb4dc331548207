"""Before the map step: the chosen encoder must give the HF ids on a sample of this very input.

    info = check_encoder_on_input(info, tokenizer, kind, paths)

`tokenizer/encoder_choice.py` accepts the `sentencepiece` encoder on built-in
probes; this adds the texts the run itself tokenizes: the first records of up
to `SAMPLE_FILES` input files spread over the list, `SAMPLE_BYTES` in all,
tokenized by the record kind (so with BOS/EOS, masked prefixes, rendered
conversations and separator offsets, exactly as in the workers) once with
each encoder. Any difference in ids, labels, accepted, rejected or dropped
records, and the run uses the HF path instead, with the record named in the
manifest (`tokenizer.encoder.reason`). Cost: about 0.1 s (the HF tokenizer on
256 KB of text).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from colossal_llama.errors import BadRecord, DataError
from colossal_llama.jsonl import decode_json_line, open_input
from colossal_llama.tokenizer.encoder import FastEncoder, single_threaded

SAMPLE_BYTES = 256 << 10
SAMPLE_FILES = 16
FIRST_RECORD_BYTES = 1 << 20
"""The first record of a sampled file is read whole up to this size, whatever its share of the budget, so
files of long documents are sampled too."""


def _spread(paths: list[str], count: int) -> list[str]:
    """`count` paths evenly spread over the list (first and last included)."""
    if len(paths) <= count:
        return list(paths)
    return [paths[i] for i in sorted({round(k * (len(paths) - 1) / (count - 1)) for k in range(count)})]


def _first_lines(path: str, budget: int):
    """(line number, raw line) of the first whole lines of `path` within `budget` bytes (the first line:
    within `FIRST_RECORD_BYTES`). A line that does not fit ends the sample without being read through."""
    budget, used = max(budget, 1), 0
    try:
        with open_input(path) as f:
            for number in itertools.count(1):
                limit = max(budget, FIRST_RECORD_BYTES) if number == 1 else budget
                raw = f.readline(limit - used + 1)
                used += len(raw)
                if not raw or used > limit or not raw.endswith(b"\n"):
                    return
                yield number, raw.rstrip(b"\r\n")
    except DataError:  # unreadable or corrupt: the map step reports it
        return


def read_sample(paths: list[str], kind, budget: int = SAMPLE_BYTES, files: int = SAMPLE_FILES) -> list:
    """[(path, line, payload)] of valid records from the start of up to `files` input files."""
    chosen = _spread(paths, files)
    sample = []
    for path in chosen:
        for number, raw in _first_lines(path, budget // len(chosen)):
            if not raw.strip():
                continue
            try:
                payload, _ = kind.parse(decode_json_line(raw, first_in_file=number == 1))
            except BadRecord:
                continue
            sample.append((path, number, payload))
    return sample


def _same(a, b) -> bool:
    return (a.kept == b.kept and a.dropped == b.dropped and a.stats == b.stats
            and {k: (v.reason, v.message) for k, v in a.rejected.items()}
            == {k: (v.reason, v.message) for k, v in b.rejected.items()}
            and all(np.array_equal(x, y) for x, y in ((a.ids, b.ids), (a.labels, b.labels), (a.lengths, b.lengths))))


def check_encoder_on_input(info, tokenizer, kind, paths: list[str]):
    """`info` with its encoder confirmed on a sample of the input, or replaced by the HF path.

    Runs in the parent before the workers are forked: single-threaded (see `single_threaded`).

    Returns:
        a `TokenizerInfo`: the same encoder (the reason names the sample), or
        `info.hf_encoder` and the first record on which the ids differ.
    """
    if info.encoder.kind != "sentencepiece":
        return info
    sample = read_sample(paths, kind)
    if not sample:  # no valid record at the start of any file (the map step reports bad input)
        return dataclasses.replace(info, encoder_reason=f"{info.encoder_reason}; the input sample held no whole "
                                   "valid record, so only the probes were compared")
    with single_threaded():
        return _confirmed(info, tokenizer, kind, sample)


def _confirmed(info, tokenizer, kind, sample: list):
    candidate, reference = info.encoder.build(), FastEncoder(backend=tokenizer.backend_tokenizer)
    payloads = [p for _, _, p in sample]
    if _same(kind.tokenize(payloads, candidate, info), kind.tokenize(payloads, reference, info)):
        return dataclasses.replace(info, encoder_reason=f"{info.encoder_reason} and on {len(sample)} records "
                                   f"from {len({p for p, _, _ in sample})} input file(s)")
    where = next((f"{path}:{line}" for path, line, payload in sample
                  if not _same(kind.tokenize([payload], candidate, info), kind.tokenize([payload], reference, info))),
                 "the input sample")
    return dataclasses.replace(info, encoder=info.hf_encoder, encoder_reason=(
        f"sentencepiece differs from the HF tokenizer on {where}: the HF tokenizer's Rust backend"))
