"""One case of the GPU check: train a plugin with an attention path for a few steps, time it, check isolation.

    python benchmarks/gpu/case.py CASE_JSON RESULT_JSON      # check.py runs this, one process per case

CASE_JSON holds the model folder, the prepared parts, the plugin, the attention path and the step
settings. The run is the project's own: `build.setup` builds the plugin, booster, data feed and model
exactly as `train.py` does, and every step is `run.step_fn` (steps.accumulate_step). Only the outer
loop is this file's: it times each step (the GPU synchronised), measures how long the step waited for
its micro-batches, and saves nothing (a 1.1B checkpoint would cost more than the steps). Every batch is
padded to max_length: one shape, so the compiled kernels (FlexAttention) are compiled once.

Isolation, under the plugin's own forward (model in eval mode), for rows holding two or more documents:
- leak: the largest change of a later document's logits when the row's first document is replaced by
  other tokens; 0 (up to kernel noise) when documents cannot see each other;
- packed vs alone: the row's summed loss against its documents run one by one (relative difference).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_config(case: dict):
    from colossal_llama.training.config import TrainConfig

    work = case["work_dir"]
    return TrainConfig(pretrained=case["model_dir"], dataset=case["parts"], plugin=case["plugin"],
                       attention=case["attention"], mixed_precision="bf16", batch_size=case["batch_size"],
                       accumulation_steps=case["accumulation_steps"], max_steps=case["steps"], lr=3e-4,
                       warmup_steps=2, max_length=case["max_length"], padding_mode="max_length",
                       zero_stage=1 if case["plugin"] == "3d" else 0,
                       save_interval=0, skip_save_each_epoch=True, save_dir=os.path.join(work, "ck"),
                       tensorboard_dir=os.path.join(work, "tb"), log_interval=1, seed=42,
                       use_grad_checkpoint=case.get("grad_checkpoint", False))


def train_steps(run, steps: int) -> list[dict]:
    """`steps` optimizer steps through the project's step function; one record per step."""
    from colossal_llama.training.loop import advance

    run.train.sampler.set_epoch(0, 0)
    batches = iter(run.train.loader)
    records = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        micro_batches = [next(batches) for _ in range(run.config.accumulation_steps)]
        waited = time.perf_counter() - start
        result = run.step_fn(run, micro_batches)
        sync()
        records.append({"loss": result.loss, "seconds": time.perf_counter() - start, "wait": waited,
                        "input_tokens": result.input_tokens, "padded_tokens": result.padded_tokens,
                        "row_length": result.row_length, "grad_norm": result.grad_norm})
        advance(run, result)
    return records


def rows_with_documents(data, count: int) -> list[dict]:
    """The first `count` rows of `data` that pack two or more documents, each with a trained later document."""
    found = []
    for i in range(len(data)):
        row = data[i]
        lengths = row.get("seq_lengths") or []
        if len(lengths) >= 2 and any(label != -100 for label in row["labels"][lengths[0] + 1 :]):
            found.append(row)
            if len(found) == count:
                break
    return found


def isolation(run, rows: list[dict], vocab_size: int) -> dict:
    """Leak and packed-vs-alone figures over `rows` (see the module docstring).

    Everything is run in batches of --batch_size rows (the last one filled up with copies), the training
    batches' shape: a compiled attention kernel is not compiled again for another shape.
    """
    from colossal_llama.training.loss import row_losses
    from colossal_llama.training.steps import model_inputs

    generator = torch.Generator().manual_seed(0)
    items = []  # (row index, what, the row to run); no categories: a batch mixes packed rows and documents
    for i, row in enumerate(rows):
        row = {key: row[key] for key in ("input_ids", "labels", "seq_lengths")}
        first = row["seq_lengths"][0]
        other = torch.randint(3, vocab_size, (first,), generator=generator).tolist()
        items += [(i, "packed", row), (i, "changed", {**row, "input_ids": other + list(row["input_ids"][first:])})]
        start = 0
        for n in row["seq_lengths"]:
            items.append((i, "alone", {"input_ids": row["input_ids"][start : start + n],
                                       "labels": row["labels"][start : start + n], "seq_lengths": [n]}))
            start += n
    size = run.config.batch_size
    later = {}  # (row, what) -> logits of the row's later documents
    sums = {}  # (row, what) -> [summed loss, label tokens]
    run.model.eval()
    with torch.no_grad(), run.autocast():
        for begin in range(0, len(items), size):
            chunk = items[begin : begin + size]
            batch = run.train.loader.collate_fn([r for _, _, r in chunk] + [chunk[0][2]] * (size - len(chunk)))
            logits = run.model(**model_inputs(batch, run.device)).logits
            losses = row_losses(logits, batch["labels"].to(run.device))
            for k, (i, what, _) in enumerate(chunk):
                total = sums.setdefault((i, what), [0.0, 0.0])
                total[0] += float(losses.sums[k])
                total[1] += float(losses.counts[k])
                if what != "alone":
                    later[i, what] = logits[k, rows[i]["seq_lengths"][0] : len(rows[i]["input_ids"])].float()
    run.model.train()
    leak = max((float((later[i, "packed"] - later[i, "changed"]).abs().max()) for i in range(len(rows))),
               default=0.0)
    worst = 0.0
    for i in range(len(rows)):
        (packed, packed_count), (alone, alone_count) = sums[i, "packed"], sums[i, "alone"]
        assert packed_count == alone_count, (packed_count, alone_count)  # the same label tokens, or the check is wrong
        worst = max(worst, abs(packed - alone) / max(abs(alone), 1e-9))
    return {"rows": len(rows), "leak": leak, "packed_vs_alone": worst}


def trust_prebuilt_kernels() -> bool:
    """Where the kit's prebuilt HybridAdam kernels import, skip colossalai's toolkit check before loading them.

    colossalai asks for a CUDA toolkit whose nvcc has torch's CUDA major before it loads any CUDA kernel,
    even one it will import ready-made (kernel_loader.py, cuda_extension.py: assert_compatible); the check
    machine's toolkit is not known in advance. Check only: the project itself never patches colossalai.
    """
    import importlib

    try:
        for name in ("cpu_adam_x86", "fused_optim_cuda"):
            importlib.import_module(f"colossalai._C.{name}")
    except ImportError:
        return False
    from colossalai.kernel.extensions.cuda_extension import _CudaExtension

    _CudaExtension.assert_compatible = lambda self: None
    return True


def run_case(case: dict) -> dict:
    """Set up with the project's `setup`, train, check isolation; the figures check.py reports."""
    from colossal_llama.training.build import check_config, init_distributed, setup
    from colossal_llama.training.config import attention_of, loader_workers

    if torch.cuda.is_available():
        trust_prebuilt_kernels()
    config = train_config(case)
    check_config(config)
    init_distributed(config.seed)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    run = setup(config)
    setup_seconds = time.perf_counter() - started
    records = train_steps(run, case["steps"])
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    checked = isolation(run, rows_with_documents(run.train.loader.dataset, case.get("isolation_rows", 2)),
                        case["vocab_size"])
    cuda = torch.cuda.is_available()
    return {"case": case["name"], "plugin": case["plugin"], "attention": attention_of(config, cuda),
            "loader_workers": loader_workers(config, cuda), "parameters": run.signature["parameters"],
            "setup_seconds": setup_seconds, "peak_gib": peak, "steps": records, "isolation": checked}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("case", help="the case's JSON (check.py writes it)")
    p.add_argument("result", help="where to write the result's JSON")
    args = p.parse_args(argv)
    with open(args.case, encoding="utf-8") as f:
        case = json.load(f)
    result = run_case(case)
    with open(args.result + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    os.replace(args.result + ".tmp", args.result)
    # done: no process-group teardown or loader-worker shutdown that could hang on the check's time
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
