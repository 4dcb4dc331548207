"""The GPU check: each Booster plugin with each attention path, timed, compared with ddp, isolation checked.

    bash benchmarks/gpu/check.sh OUT                # on the lent GPU machine: installs the kit, runs this
    python benchmarks/gpu/check.py --kit .gpukit --out OUT --rehearse    # the same on CPU, tiny model, ddp

On the GPU: a LLaMA of TinyLlama's shape (1.1B parameters: hidden 2048, 22 layers, 32 heads, 4 KV
heads, FFN 5632, the LLaMA-2 vocabulary of 32,000), random weights, bf16, rows of 4,096 tokens packed
from the real corpus with document isolation. For each case (plugin x attention path, see CASES) one
process (case.py) trains `--steps` steps with the project's own setup and step function and checks
isolation; the last `--timed` steps are timed. Cases run in order until `--budget_s` is spent, so a
short lease still ends with a report. Written to OUT after every case: results.json (everything),
RESULTS.md (the tables; copy it to benchmarks/gpu/RESULTS.md and commit it) and cases.log (the end of
each case's output); the model and the cases' files go to a temporary folder (--work).

Figures per case:
- tokens/s per GPU: non-padding input tokens of the timed steps / their time (GPU synchronised);
- MFU: tokens/s x FLOPs per token / 989 TFLOP/s (the H200's dense bf16 peak). FLOPs per token are the
  training monitor's (metrics.flops_per_token): 6 N + 12 x layers x hidden x row length, N every
  parameter; the attention term counts the whole row, an upper bound with isolated documents, so
  "MFU 6N" (the 6 N term alone) is given beside it as the lower bound;
- peak memory (torch.cuda.max_memory_allocated), data wait (share of the step time spent waiting for
  micro-batches);
- loss vs ddp: the largest relative difference of a step's loss from ddp's with the same attention
  path (the same weights, data order and steps: bf16 rounding apart they are the same run); ddp's
  flex and flash rows against ddp with sdpa;
- isolation (case.py): leak, and packed vs alone.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [p for p in (REPO, HERE) if p not in sys.path]

PEAK_BF16 = 989e12  # H200 SXM dense bf16, NVIDIA's data sheet
# ddp's two first: the references of the others; sdpa before flex, which compiles (the first case to pay for it).
# A path that fails under ddp is not tried under the other plugins.
CASES = ["ddp:sdpa", "ddp:flex", "gemini:flex", "zero2:flex", "3d:flex", "gemini:sdpa", "zero2:sdpa", "3d:sdpa"]
REHEARSAL_CASES = ["ddp:sdpa", "ddp:flex"]
SHAPES = {  # LlamaConfig fields
    "tinyllama-1.1b": dict(hidden_size=2048, num_hidden_layers=22, num_attention_heads=32, num_key_value_heads=4,
                           intermediate_size=5632, max_position_embeddings=4096),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, max_position_embeddings=256),
}
CASE_LIMIT_S = 240  # the first case compiles FlexAttention and the block mask: about a minute or two
MIN_CASE_S = 45  # no case is started with less left of the budget
LIMITS = {"leak": 1e-3, "packed_vs_alone": 1e-2, "loss_vs_ddp": 2e-2, "data_wait": 0.02}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kit", default=os.path.join(REPO, ".gpukit"), help="the kit folder (make_kit.sh)")
    p.add_argument("--out", required=True, help="folder for results.json, RESULTS.md and the cases' logs")
    p.add_argument("--rehearse", action="store_true", help="CPU rehearsal: tiny model, rows of 256, ddp only")
    p.add_argument("--tokenizer", help="tokenizer folder (default: KIT/data/tokenizer)")
    p.add_argument("--data", nargs="+", help="prepared parts (default: KIT/data/pretrain-4096 or -256)")
    p.add_argument("--cases", help="comma-separated plugin:attention (default: all, or the rehearsal's)")
    p.add_argument("--steps", type=int, help="steps per case (default 20; rehearsal 6)")
    p.add_argument("--timed", type=int, help="the last this many steps are timed (default 10; rehearsal 3)")
    p.add_argument("--batch_size", type=int, help="rows per micro-batch (default 4; rehearsal 2)")
    p.add_argument("--accumulation_steps", type=int, default=None, help="default 1; rehearsal 2")
    p.add_argument("--max_length", type=int, help="row length (default 4096; rehearsal 256)")
    p.add_argument("--budget_s", type=float, default=330.0,
                   help="seconds for the whole check; no case starts with under 45 s left (default: two runs "
                        "and a machine start fit in 15 minutes)")
    p.add_argument("--in_process", action="store_true", help="run the cases in this process (tests)")
    p.add_argument("--work", help="folder for the model and the cases' files (default: a new temporary one)")
    args = p.parse_args(argv)
    gpu = not args.rehearse
    args.shape = "tinyllama-1.1b" if gpu else "tiny"
    args.max_length = args.max_length or (4096 if gpu else 256)
    args.cases = (args.cases.split(",") if args.cases else CASES if gpu else REHEARSAL_CASES)
    args.steps = args.steps or (20 if gpu else 6)
    args.timed = args.timed or (10 if gpu else 3)
    args.batch_size = args.batch_size or (4 if gpu else 2)
    args.accumulation_steps = args.accumulation_steps or (1 if gpu else 2)
    args.tokenizer = args.tokenizer or os.path.join(args.kit, "data", "tokenizer")
    if not args.data:
        arrow = os.path.join(args.kit, "data", f"pretrain-{args.max_length}", "arrow")
        args.data = [os.path.join(arrow, p) for p in sorted(os.listdir(arrow))] if os.path.isdir(arrow) else []
    if not args.data or not os.path.isdir(args.tokenizer):
        p.error(f"no prepared data or tokenizer under {args.kit}/data: run benchmarks/gpu/make_kit.sh")
    return args


def flex_trains_on_cpu() -> bool:
    from colossal_llama.model.attention import flex_trains_on_cpu as probe

    return probe()


def facts() -> dict:
    import torch
    import transformers

    try:
        import colossalai
        colossal = colossalai.__version__
    except ImportError:
        colossal = None
    cuda = torch.cuda.is_available()
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "device": torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)",
            "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "transformers": transformers.__version__, "colossalai": colossal,
            "flash_attn": importlib.util.find_spec("flash_attn") is not None, "cuda_device": cuda}


def adam_kernels() -> dict:
    """HybridAdam (ColossalAI's, fused CUDA kernel on GPU tensors) against torch's AdamW: 3 steps on the same
    parameters and gradients; the largest difference of the parameters, and how long its construction took
    (its kernels are the kit's prebuilt ones, else built just in time)."""
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "no GPU"}
    from case import trust_prebuilt_kernels

    try:
        prebuilt = trust_prebuilt_kernels()
        from colossalai.nn.optimizer import HybridAdam

        torch.manual_seed(0)
        start = torch.randn(4099, device="cuda")
        ours, reference = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
        began = time.perf_counter()
        hybrid = HybridAdam([ours], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1, adamw_mode=True)
        built = time.perf_counter() - began
        plain = torch.optim.AdamW([reference], lr=1e-2, betas=(0.9, 0.95), weight_decay=0.1)
        for _ in range(3):
            gradient = torch.randn_like(start)
            for parameter, optimizer in ((ours, hybrid), (reference, plain)):
                parameter.grad = gradient.clone()
                optimizer.step()
        return {"prebuilt": prebuilt, "construct_s": round(built, 2),
                "max_difference": float((ours - reference).abs().max())}
    except Exception as exc:  # noqa: BLE001 - reported; the cases then show what it costs them
        return {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}


def build_model(shape: str, tokenizer_dir: str, out_dir: str, max_length: int) -> dict:
    """A random LLaMA of `shape` for the tokenizer and rows of `max_length`, saved in bf16 with the tokenizer;
    returns its config."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from colossal_llama.tokenizer.folder import save_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False, torch_dtype="bfloat16",
                         **{**SHAPES[shape], "max_position_embeddings": max(SHAPES[shape]["max_position_embeddings"],
                                                                              max_length)})
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):  # initialising 1.1B on CPU takes minutes
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the cases' processes get the whole GPU
    return config.to_dict()


def run_one(case: dict, work: str, in_process: bool, timeout: float) -> tuple[dict | None, str]:
    """(result, log tail) of one case, in its own process unless `in_process`."""
    path = os.path.join(work, f"{case['name']}.json")
    if os.path.exists(path):  # a result of an earlier check in the same --work
        os.remove(path)
    with open(path + ".case", "w", encoding="utf-8") as f:
        json.dump(case, f)
    if in_process:
        import traceback

        from case import run_case
        try:
            return run_case(case), ""
        except Exception:  # noqa: BLE001 - a failed case is reported, as in its own process
            return None, traceback.format_exc()
    log = os.path.join(work, f"{case['name']}.log")
    with open(log, "w", encoding="utf-8") as out:
        try:
            done = subprocess.run([sys.executable, os.path.join(HERE, "case.py"), path + ".case", path],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            status = f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            status = f"stopped after {timeout:.0f} s (the budget)"
    with open(log, encoding="utf-8", errors="replace") as f:
        tail = f.read()[-6000:]
    if not os.path.exists(path):
        return None, f"{status}\n{tail}"
    with open(path, encoding="utf-8") as f:
        return json.load(f), tail


def summarise(result: dict, model: dict, timed: int) -> dict:
    from colossal_llama.training.metrics import flops_per_token

    steps = result["steps"][-timed:]
    seconds = sum(s["seconds"] for s in steps)
    tokens_per_s = sum(s["input_tokens"] for s in steps) / seconds
    length = sum(s["row_length"] for s in steps) / len(steps)
    n = result["parameters"]
    return {"tokens_per_s": tokens_per_s, "step_s": seconds / len(steps),
            "mfu": tokens_per_s * flops_per_token(n, model["num_hidden_layers"], model["hidden_size"], length)
            / PEAK_BF16, "mfu_6n": tokens_per_s * 6 * n / PEAK_BF16,
            "data_wait": sum(s["wait"] for s in steps) / seconds, "losses": [s["loss"] for s in result["steps"]]}


def reference_of(name: str) -> str | None:
    """The case whose losses `name`'s are held against: ddp with the same attention path; ddp's other paths
    against ddp with sdpa."""
    plugin, attention = name.split(":")
    if plugin != "ddp":
        return f"ddp:{attention}"
    return None if attention == "sdpa" else "ddp:sdpa"


def compare(results: dict) -> None:
    """Loss vs ddp (same attention path) and pass/fail of each check, added to each summary."""
    for name, r in results.items():
        if r.get("error"):
            continue
        reference = results.get(reference_of(name))
        if reference and not reference.get("error"):
            r["loss_vs_ddp"] = max(abs(a - b) / abs(b) for a, b in zip(r["losses"], reference["losses"]))
        iso = r["isolation"]
        # `not value <= limit`: a NaN fails too
        r["failed"] = [what for what, value in (("leak", iso["leak"]), ("packed_vs_alone", iso["packed_vs_alone"]),
                                                ("loss_vs_ddp", r.get("loss_vs_ddp", 0.0)))
                       if not value <= LIMITS[what]] + ([] if iso["rows"] else ["no packed row to check"])
        if not all(math.isfinite(loss) for loss in r["losses"]):
            r["failed"].append("a loss is not finite")


def report(meta: dict, results: dict) -> str:
    f = meta["facts"]
    head = [f"# GPU check: {f['device']}", "",
            f"{f['date']}; python {f['python']}, torch {f['torch']} (CUDA {f['cuda']}), transformers "
            f"{f['transformers']}, colossalai {f['colossalai']}, flash-attn {'yes' if f['flash_attn'] else 'no'}.", ""]
    if "model" not in meta:
        return "\n".join(head + [meta.get("error", "Building the model.")]) + "\n"
    m = meta["model"]
    lines = [*head, f"Model: {meta['shape']} ({meta.get('parameters', 0):,} parameters: hidden {m['hidden_size']}, "
             f"{m['num_hidden_layers']} layers, {m['num_attention_heads']} heads, {m['num_key_value_heads']} KV heads, "
             f"FFN {m['intermediate_size']}, vocabulary {m['vocab_size']}), random weights, bf16. Rows of "
             f"{meta['max_length']} tokens packed from the real corpus, documents isolated; "
             f"{meta['batch_size']} rows x {meta['accumulation_steps']} micro-batches a step, {meta['steps']} "
             f"steps, the last {meta['timed']} timed. MFU: tokens/s x (6 N + 12 x layers x hidden x row length) "
             f"/ {PEAK_BF16 / 1e12:.0f} TFLOP/s; MFU 6N: the 6 N term alone.", "",
             f"HybridAdam against torch AdamW (3 steps on the GPU): {meta['adam']}.", "",
             "| plugin | attention | tokens/s/GPU | step s | MFU | MFU 6N | peak GiB | data wait | loss vs ddp "
             "| leak | packed vs alone | checks |", "|" + "---|" * 12]
    for name, r in results.items():
        plugin = name.split(":")[0]
        if r.get("error"):
            lines.append(f"| {plugin} | {r['attention_requested']} | | | | | | | | | | failed: see cases.log |")
            continue
        peak = "" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}"
        vs = f"{r['loss_vs_ddp']:.1e}" if "loss_vs_ddp" in r else "(reference)" if reference_of(name) is None else ""
        iso = r["isolation"]
        lines.append(f"| {plugin} | {r['attention']} | {r['tokens_per_s']:,.0f} | {r['step_s']:.3f} | "
                     f"{r['mfu']:.1%} | {r['mfu_6n']:.1%} | {peak} | {r['data_wait']:.1%} | {vs} | "
                     f"{iso['leak']:.1e} | {iso['packed_vs_alone']:.1e} | "
                     f"{'ok' if not r['failed'] else 'FAILED: ' + ', '.join(r['failed'])} |")
    lines += ["", f"Limits: leak <= {LIMITS['leak']}, packed vs alone <= {LIMITS['packed_vs_alone']} (relative), "
              f"loss vs ddp <= {LIMITS['loss_vs_ddp']} (relative, any step); data wait target < "
              f"{LIMITS['data_wait']:.0%}.", ""]
    done = [n for n, r in results.items() if not r.get("error")]
    if done:
        lines += ["Loss per step:", "", "| step | " + " | ".join(done) + " |", "|---|" + "---|" * len(done)]
        for i in range(max(len(results[n]["losses"]) for n in done)):
            cells = [f"{results[n]['losses'][i]:.4f}" if i < len(results[n]["losses"]) else "" for n in done]
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    skipped = meta.get("skipped") or []
    if skipped:
        lines += ["", "Not run: " + ", ".join(skipped) + "."]
    return "\n".join(lines) + "\n"


def publish(out: str, meta: dict, results: dict) -> None:
    from colossal_llama.outputs import replace_file

    replace_file(os.path.join(out, "results.json"), json.dumps({"meta": meta, "results": results}, indent=1))
    replace_file(os.path.join(out, "RESULTS.md"), report(meta, results))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    os.makedirs(args.out, exist_ok=True)
    # the model (2.2 GB at 1.1B) and the cases' folders stay out of OUT, which comes back from the GPU machine
    work = args.work or tempfile.mkdtemp(prefix="gpucheck-")
    os.makedirs(work, exist_ok=True)
    try:
        return check(args, work, started)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def check(args, work: str, started: float) -> int:
    """Build the model, run the cases within the budget, publish after each; 0 when every case passed."""
    model_dir = os.path.join(work, "model")
    meta = {"facts": facts(), "shape": args.shape, "max_length": args.max_length, "batch_size": args.batch_size,
            "accumulation_steps": args.accumulation_steps, "steps": args.steps, "timed": args.timed, "skipped": []}
    results = {}
    publish(args.out, meta, results)  # something comes back, whatever happens next
    meta["adam"] = adam_kernels()
    try:
        model = meta["model"] = build_model(args.shape, args.tokenizer, model_dir, args.max_length)
    except Exception as exc:  # noqa: BLE001 - reported: without a model no case can run
        meta["error"] = f"building the model failed: {type(exc).__name__}: {str(exc)[:1000]}"
        publish(args.out, meta, results)
        print(f"[check] {meta['error']}", flush=True)
        return 1
    print(f"[check] {meta['facts']}; model built in {time.perf_counter() - started:.0f} s", flush=True)
    for name in args.cases:
        plugin, attention = name.split(":")
        left = args.budget_s - (time.perf_counter() - started)
        if left < MIN_CASE_S:  # the first case (compiling) says little of how long the others take
            meta["skipped"].append(f"{name} (the time budget)")
            continue
        if attention == "flex" and not meta["facts"]["cuda_device"] and not flex_trains_on_cpu():
            meta["skipped"].append(f"{name} (this torch cannot train FlexAttention on the CPU)")
            continue
        if plugin != "ddp" and results.get(f"ddp:{attention}", {}).get("error"):
            meta["skipped"].append(f"{name} (ddp:{attention} failed)")
            continue
        case = {"name": name.replace(":", "-"), "plugin": plugin, "attention": attention, "model_dir": model_dir,
                "parts": args.data, "steps": args.steps, "batch_size": args.batch_size,
                "accumulation_steps": args.accumulation_steps, "max_length": args.max_length,
                "vocab_size": model["vocab_size"], "work_dir": os.path.join(work, name.replace(":", "-"))}
        began = time.perf_counter()
        # one stuck case (a compile that never ends) must not take the others' time
        result, tail = run_one(case, work, args.in_process, timeout=min(left, CASE_LIMIT_S))
        took = time.perf_counter() - began
        if result is None:
            results[name] = {"error": tail[-1500:], "attention_requested": attention}
            print(f"[check] {name}: FAILED after {took:.0f} s\n{tail[-1500:]}", flush=True)
        else:
            meta["parameters"] = result["parameters"]
            results[name] = {**result, **summarise(result, model, args.timed), "attention_requested": attention}
            print(f"[check] {name}: {results[name]['tokens_per_s']:,.0f} tokens/s, MFU {results[name]['mfu']:.1%}, "
                  f"isolation {result['isolation']} ({took:.0f} s)", flush=True)
        with open(os.path.join(args.out, "cases.log"), "a", encoding="utf-8") as log:
            log.write(f"===== {name} ({took:.0f} s)\n{tail}\n")
        compare(results)
        publish(args.out, meta, results)
    publish(args.out, meta, results)
    print(open(os.path.join(args.out, "RESULTS.md"), encoding="utf-8").read(), flush=True)
    ok = all(not r.get("error") and not r["failed"] for r in results.values())
    return 0 if ok and results else 1


if __name__ == "__main__":
    sys.exit(main())
