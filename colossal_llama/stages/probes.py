"""Held-out probes: a model's loss on answers it was never trained on, per category.

    scores = probe_model("runs/demo/stages/02-injection/model", ["probes/facts_en.jsonl"])
    # {"fact_en": {"nats_per_char": 1.93, "records": 30, "chars": 1410}, ...}

A probe file holds pretraining records `{source, target, category}`: the
source (a question) is context, the target (its answer) is scored, exactly as
training would mask them (BOS + source + target + EOS). The score is the
summed negative log-likelihood of the target tokens divided by the number of
characters of the target, so it stays comparable when the tokenizer changes
between stages (vocabulary expansion splits the same answer into fewer,
harder tokens; per-token loss would rise although the model got better).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict

import numpy as np
import torch

from colossal_llama.data.loader import PackedCollator
from colossal_llama.data.tokenize import tokenize_pretrain_batch
from colossal_llama.errors import DataError
from colossal_llama.jsonl import line_error, read_jsonl
from colossal_llama.tokenizer.encoder import SlowEncoder
from colossal_llama.tokenizer.loading import describe_tokenizer, load_tokenizer
from colossal_llama.training.loss import row_losses


def read_probes(path: str) -> list[dict]:
    """Records of a probe file (`.jsonl` or `.jsonl.gz`, blank lines skipped).

    Raises:
        DataError: a bad line (`FILE:LINE: reason`), or a file without records.
    """
    records = []
    for number, record in read_jsonl(path):
        if not isinstance(record.get("target"), str) or not record["target"]:
            raise line_error(path, number, "expected {source, target, category} with a non-empty target")
        records.append({"source": str(record.get("source", "")), "target": record["target"],
                        "category": str(record.get("category") or "probe")})
    if not records:
        raise DataError(f"{path}: no probe records")
    return records


def tokenize_probes(records: list[dict], tokenizer, tokenizer_dir: str) -> list[dict]:
    """Rows {input_ids, labels} of the probe records, tokenized as data preparation does (BOS + source +
    target + EOS, the source masked: `tokenize_pretrain_batch`) with the tokenizer's own HF call.

    Raises:
        DataError: a record holding special-token text (it would be rejected from training data too).
    """
    with tempfile.TemporaryDirectory() as workdir:
        info = describe_tokenizer(tokenizer, tokenizer_dir, workdir, encoder="hf")
    batch = tokenize_pretrain_batch([(r["source"], r["target"]) for r in records], SlowEncoder(tokenizer=tokenizer),
                                    info)
    if batch.rejected:
        index, bad = next(iter(batch.rejected.items()))
        raise DataError(f"probe record {index + 1} ({records[index]['category']}): {bad.message}")
    ends = np.cumsum(batch.lengths)
    return [{"input_ids": batch.ids[end - n:end].tolist(), "labels": batch.labels[end - n:end].tolist()}
            for n, end in zip(batch.lengths.tolist(), ends.tolist())]


@torch.no_grad()
def probe_model(model_dir: str, paths: list[str], batch_size: int = 16) -> dict:
    """Per category: nats per character of the targets, and how many records and characters were scored."""
    from transformers import AutoModelForCausalLM

    from colossal_llama.safe_loading import safe_loading

    records = [r for p in paths for r in read_probes(p)]  # a bad probe file fails before the model loads
    tokenizer = load_tokenizer(model_dir)
    rows = tokenize_probes(records, tokenizer, model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # bf16 on a GPU, so a 7B model fits one
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with safe_loading():  # .bin weights: plain tensors only, never a TorchScript archive
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype, attn_implementation="sdpa",
                                                     trust_remote_code=False)
    model = model.to(device).eval()
    collate = PackedCollator(tokenizer.eos_token_id or 0, isolate=False)  # one document a row: a padding mask
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for start in range(0, len(records), batch_size):
        batch = collate(rows[start:start + batch_size])
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
        # the loss training computes, summed per answer where the logits are (no (B, L, V) copy to the host)
        nll = row_losses(logits, batch["labels"].to(device)).sums
        for record, row in zip(records[start:start + batch_size], nll.tolist()):
            entry = totals[record["category"]]
            entry[0] += row
            entry[1] += 1
            entry[2] += len(record["target"])
    return {category: {"nats_per_char": round(nll / chars, 4), "records": n, "chars": chars}
            for category, (nll, n, chars) in sorted(totals.items())}


def probe_table(results: dict[str, dict]) -> str:
    """Markdown table: one row per checkpoint label, one column per category (nats per character)."""
    categories = sorted({c for scores in results.values() for c in scores})
    lines = ["| model | " + " | ".join(categories) + " |", "|---|" + "---:|" * len(categories)]
    for label, scores in results.items():
        cells = [f"{scores[c]['nats_per_char']:.3f}" if c in scores else "" for c in categories]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
