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

from collections import defaultdict

import torch

from colossal_llama.data.tokenize import IGNORE_INDEX
from colossal_llama.errors import DataError
from colossal_llama.jsonl import line_error, read_jsonl
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


@torch.no_grad()
def probe_model(model_dir: str, paths: list[str], batch_size: int = 16) -> dict:
    """Per category: nats per character of the targets, and how many records and characters were scored."""
    from transformers import AutoModelForCausalLM

    from colossal_llama.safe_loading import safe_loading
    from colossal_llama.tokenizer.loading import load_tokenizer

    tokenizer = load_tokenizer(model_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # bf16 on a GPU, so a 7B model fits one
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with safe_loading():  # .bin weights: plain tensors only, never a TorchScript archive
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype, trust_remote_code=False)
    model = model.to(device).eval()
    records = [r for p in paths for r in read_probes(p)]
    bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        prefixes = tokenizer([bos + r["source"] for r in batch], add_special_tokens=False)["input_ids"]
        fulls = tokenizer([bos + r["source"] + r["target"] + eos for r in batch], add_special_tokens=False)["input_ids"]
        width = max(map(len, fulls))
        ids = torch.full((len(batch), width), tokenizer.eos_token_id or 0, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (prefix, full) in enumerate(zip(prefixes, fulls)):
            ids[i, : len(full)] = torch.tensor(full)
            labels[i, len(prefix): len(full)] = torch.tensor(full[len(prefix):])
            mask[i, : len(full)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        # the loss training computes, summed per answer where the logits are (no (B, L, V) copy to the host)
        nll = row_losses(logits, labels.to(device)).sums
        for record, row in zip(batch, nll.tolist()):
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
