"""A recipe's benchmarks: multiple-choice accuracy of the start model and of every stage's export.

    benchmarks: [mmlu/data/test, quiz/quiz_zh.jsonl]     # in a recipe, beside `probes:`
    benchmark_shots: 5                                   # optional; default 0

The runner evaluates the model a run starts from (label `start`) before the
first stage and each stage's export after it (label: the stage's name) with
`colossal_llama.evaluate.evaluate_model`, and keeps

    <run>/benchmarks.json                               label -> summary (overall, files, subjects, chance, ...)
    <run>/stages/NN-<name>/benchmarks/results.json      the full results of the stage's export, every question
    <run>/stages/<first>/benchmarks/start-results.json  ... of the start model

A summary carries the key of what was asked (the questions, their few-shot
examples and the number of shots), so a rerun evaluates only the labels that
are missing or were asked something else (a benchmark added to a finished
run, a task file changed). Benchmarks are no part of the stage keys: adding
them never reruns a stage.
"""

from __future__ import annotations

import json
import os
import time

from colossal_llama.data.manifest import json_digest
from colossal_llama.outputs import write_json
from colossal_llama.stages.recipe import Recipe

METRICS = ("acc", "acc_norm", "acc_letter")
"""acc: the choice of highest summed log-likelihood; acc_norm: per character; acc_letter: the answer letter's."""
SUMMARY_KEYS = ("overall", "files", "subjects")


def task_key(paths: list[str], shots: int) -> tuple[str, float]:
    """(key of the questions asked, chance accuracy: the mean of 1 / number of choices).

    Raises:
        DataError: a bad task file (`FILE:LINE: reason`).
    """
    from colossal_llama.evaluate import read_tasks

    questions = read_tasks(paths)
    asked = [(q.file, q.subject, q.question, q.choices, q.answer,
              [(d.question, d.choices, d.answer) for d in q.dev[:shots]]) for q in questions]
    chance = sum(1 / len(q.choices) for q in questions) / len(questions)
    return json_digest({"shots": shots, "questions": asked}), round(chance, 4)


def load_benchmarks(run_dir: str) -> dict:
    path = os.path.join(run_dir, "benchmarks.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {}


def is_missing(benchmarks: dict, label: str, key: str) -> bool:
    """Whether `label` has no summary of these questions yet."""
    return benchmarks.get(label, {}).get("key") != key


def record_benchmarks(recipe: Recipe, benchmarks: dict, label: str, model_dir: str, results_path: str,
                      key: tuple[str, float]) -> None:
    """Evaluate `model_dir` on the recipe's benchmarks: the full results to `results_path`, the summary into
    benchmarks.json (labels in run order), printed as a table.

    Args:
        key: `task_key(recipe.benchmarks, recipe.benchmark_shots)`.
    """
    from colossal_llama.evaluate import evaluate_model

    started, shots = time.time(), recipe.benchmark_shots
    results = evaluate_model(model_dir, recipe.benchmarks, shots=shots)
    _release_gpu_memory()  # the next stage's trainer may need all of it
    write_json(results_path, results, indent=2, ensure_ascii=False)
    benchmarks[label] = {"model": model_dir, "tasks": recipe.benchmarks, "shots": shots, "key": key[0],
                         "chance": key[1], **{k: results[k] for k in SUMMARY_KEYS},
                         "results": os.path.relpath(results_path, recipe.run_dir),
                         "seconds": round(time.time() - started, 1)}
    order = ["start"] + [s.name for s in recipe.stages]
    ordered = {name: benchmarks[name] for name in order if name in benchmarks}
    ordered.update({name: value for name, value in benchmarks.items() if name not in ordered})
    benchmarks.clear()
    benchmarks.update(ordered)
    write_json(os.path.join(recipe.run_dir, "benchmarks.json"), benchmarks, indent=2, ensure_ascii=False)
    print(f"benchmarks (accuracy on {results['overall']['questions']} multiple-choice questions, {shots}-shot; "
          f"chance {key[1]:.3f}):\n{benchmark_table({label: benchmarks[label]})}", flush=True)


def _release_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def benchmark_table(benchmarks: dict[str, dict]) -> str:
    """Markdown table: one row per label, the overall accuracy by each metric and the number of questions."""
    lines = ["| model | questions | " + " | ".join(METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for label, summary in benchmarks.items():
        overall = summary["overall"]
        lines.append(f"| {label} | {overall['questions']} | " + " | ".join(f"{overall[m]:.3f}" for m in METRICS) + " |")
    return "\n".join(lines)


def file_table(benchmarks: dict[str, dict], metric: str = "acc") -> str:
    """Markdown table: one row per label, one column per task file (its name), the accuracy by `metric`."""
    files = list(dict.fromkeys(f for summary in benchmarks.values() for f in summary["files"]))
    names = [os.path.basename(f) for f in files]
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(files)]
    for label, summary in benchmarks.items():
        cells = [f"{summary['files'][f][metric]:.3f}" if f in summary["files"] else "" for f in files]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
