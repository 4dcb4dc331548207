"""Plots and a Markdown report of a run folder, from its tensorboard logs.

    python -m colossal_llama.stages.report runs/demo     # writes runs/demo/plots/*.png and runs/demo/report.md

Reads `<run>/run.json` (stage order), `<run>/tensorboard/<stage>/` (event
files written by train.py), each stage's `done.json`, `<run>/probes.json` and
`<run>/benchmarks.json`.
Every stage is drawn on one token axis: a stage's x is its label tokens seen
plus all label tokens of the stages before it, so stages sit side by side.
A resumed stage logs some steps twice; the later record of a step wins.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from colossal_llama.errors import ConfigError, exit_status
from colossal_llama.outputs import replace_file


def read_scalars(log_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tag -> (steps, values), one value per step (the last one written)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not os.path.isdir(log_dir):
        return {}
    accumulator = EventAccumulator(log_dir, size_guidance={"scalars": 0}, purge_orphaned_data=False)
    accumulator.Reload()
    out = {}
    for tag in accumulator.Tags().get("scalars", []):
        latest: dict[int, tuple[float, float]] = {}
        for event in accumulator.Scalars(tag):
            if event.step not in latest or event.wall_time >= latest[event.step][0]:
                latest[event.step] = (event.wall_time, event.value)
        steps = np.array(sorted(latest))
        out[tag] = (steps, np.array([latest[s][1] for s in steps]))
    return out


def load_run(run_dir: str) -> list[dict]:
    """Per stage in order: name, folder, scalars, done.json (or None), token offset on the shared axis."""
    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        raise ConfigError(f"{run_dir}: no run.json (not a run folder of `python -m colossal_llama.stages`)")
    with open(path, encoding="utf-8") as f:
        stages = json.load(f)["stages"]
    offset = 0.0
    for stage in stages:
        stage["scalars"] = read_scalars(os.path.join(run_dir, "tensorboard", stage["folder"]))
        done = os.path.join(run_dir, "stages", stage["folder"], "done.json")
        stage["done"] = json.load(open(done, encoding="utf-8")) if os.path.isfile(done) else None
        stage["offset"] = offset
        tokens = stage["scalars"].get("train/label_tokens_seen")
        offset += float(tokens[1].max()) if tokens is not None and len(tokens[1]) else 0.0
    return stages


def token_axis(stage: dict, steps: np.ndarray) -> np.ndarray:
    """Shared-axis x of the given steps of a stage (eval steps fall between logged train steps)."""
    seen = stage["scalars"].get("train/label_tokens_seen")
    if seen is None or not len(seen[0]):
        return steps.astype(float) + stage["offset"]
    return np.interp(steps, seen[0], seen[1]) + stage["offset"]


def _stage_bands(ax, stages: list[dict]) -> None:
    """Stage boundaries as dashed lines, stage names along the top."""
    for stage in stages:
        ax.axvline(stage["offset"], color="grey", linestyle="--", linewidth=0.8)
        ax.text(stage["offset"], 0.98, stage["name"] + " ", transform=ax.get_xaxis_transform(), va="top",
                ha="right", rotation=90, fontsize=8, color="dimgrey")


def plot_loss(stages: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for i, stage in enumerate(stages):
        color = f"C{i}"
        for tag, style, label in (("train/loss", "-", "train"), ("eval/loss", "o--", "eval")):
            if tag in stage["scalars"]:
                steps, values = stage["scalars"][tag]
                ax.plot(token_axis(stage, steps), values, style, color=color, markersize=3,
                        label=f"{stage['name']} ({label})", linewidth=1.2 if label == "train" else 0.8)
    _stage_bands(ax, stages)
    ax.set_xlabel("label tokens trained on (all stages, one axis)")
    ax.set_ylabel("loss (nats per token)")
    if ax.get_legend_handles_labels()[0]:  # a run whose stages logged nothing yet has no lines
        ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_categories(stages: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 1, figsize=(10, 8), sharex=True)
    for ax, prefix, title in ((axes[0], "train/loss/", "train loss per category"),
                              (axes[1], "eval/loss/", "eval loss per category")):
        categories = sorted({t[len(prefix):] for s in stages for t in s["scalars"] if t.startswith(prefix)})
        for j, category in enumerate(categories):
            first = True
            for stage in stages:
                if prefix + category in stage["scalars"]:
                    steps, values = stage["scalars"][prefix + category]
                    ax.plot(token_axis(stage, steps), values, "-" if prefix.startswith("train") else "o-",
                            color=f"C{j % 10}", markersize=3, linewidth=1, label=category if first else None)
                    first = False
        _stage_bands(ax, stages)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("loss (nats per token)")
        ax.grid(alpha=0.3)
        if categories:
            ax.legend(fontsize=7, ncol=3)
        else:
            ax.text(0.5, 0.5, "no per-category values logged", transform=ax.transAxes, ha="center")
    axes[1].set_xlabel("label tokens trained on (all stages, one axis)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_benchmarks(benchmarks: dict[str, dict], path: str) -> None:
    """Overall accuracy per label (start, then each stage), one line per metric; chance level dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from colossal_llama.stages.benchmarks import METRICS

    labels = list(benchmarks)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels)), 4))
    for i, (metric, style) in enumerate(zip(METRICS, ("o-", "s--", "^-."))):  # styles: equal values stay visible
        ax.plot(x, [benchmarks[label]["overall"][metric] for label in labels], style, color=f"C{i}", label=metric)
    ax.plot(x, [benchmarks[label]["chance"] for label in labels], ":", color="dimgrey", label="chance")
    ax.set_xticks(x, labels, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(f"benchmarks: {max(b['overall']['questions'] for b in benchmarks.values())} multiple-choice "
                 "questions", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def benchmark_lines(run_dir: str) -> list[str]:
    """The report's Benchmarks section, and plots/benchmarks.png; nothing where the run has no benchmarks."""
    from colossal_llama.stages.benchmarks import benchmark_table, file_table, load_benchmarks

    benchmarks = load_benchmarks(run_dir)
    if not benchmarks:
        return []
    plot_benchmarks(benchmarks, os.path.join(run_dir, "plots", "benchmarks.png"))
    chance = sorted({b["chance"] for b in benchmarks.values()})
    lines = ["## Benchmarks", "", "Accuracy on multiple-choice questions (acc: the choice the model finds likeliest; "
             "acc_norm: likeliest per character; acc_letter: the likeliest answer letter). Chance: "
             + ", ".join(f"{c:.3f}" for c in chance) + ".", "", benchmark_table(benchmarks), ""]
    if len({f for b in benchmarks.values() for f in b["files"]}) > 1:
        lines += ["acc per task file:", "", file_table(benchmarks), ""]
    return lines + ["![benchmark accuracy per stage](plots/benchmarks.png)", ""]


def _last(stage: dict, tag: str) -> str:
    values = stage["scalars"].get(tag)
    return f"{values[1][-1]:.3f}" if values is not None and len(values[1]) else ""


def write_report(run_dir: str) -> str:
    """plots/loss.png, plots/category_loss.png (plots/benchmarks.png where the run has benchmarks) and report.md
    in the run folder; returns report.md's path."""
    from colossal_llama.stages.probes import probe_table

    stages = load_run(run_dir)
    os.makedirs(os.path.join(run_dir, "plots"), exist_ok=True)
    plot_loss(stages, os.path.join(run_dir, "plots", "loss.png"))
    plot_categories(stages, os.path.join(run_dir, "plots", "category_loss.png"))
    lines = [f"# Run {os.path.basename(os.path.abspath(run_dir))}", "",
             "| stage | status | steps | label tokens | last train loss | last eval loss | minutes |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for stage in stages:
        done, steps = stage["done"], stage["scalars"].get("train/loss")
        tokens = stage["scalars"].get("train/label_tokens_seen")
        cells = [stage["name"], "done" if done else "not finished",
                 str(int(steps[0][-1])) if steps is not None and len(steps[0]) else "",
                 f"{int(tokens[1][-1]):,}" if tokens is not None and len(tokens[1]) else "",
                 _last(stage, "train/loss"), _last(stage, "eval/loss"), f"{done['seconds'] / 60:.1f}" if done else ""]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Loss", "", "All stages on one axis of label tokens; dashed lines mark where a stage starts.", "",
              "![loss per stage](plots/loss.png)", "", "## Loss per category", "",
              "![loss per category](plots/category_loss.png)", ""]
    probes_path = os.path.join(run_dir, "probes.json")
    if os.path.isfile(probes_path):
        with open(probes_path, encoding="utf-8") as f:
            probes = json.load(f)
        lines += ["## Held-out probes", "", "Loss on answers never trained on, in nats per character (lower is "
                  "better; per character, so tokenizers of different stages compare).", "", probe_table(probes), ""]
    lines += benchmark_lines(run_dir)
    notes = os.path.join(run_dir, "notes.md")
    if os.path.isfile(notes):
        with open(notes, encoding="utf-8") as f:
            lines += [f.read().rstrip(), ""]
    path = os.path.join(run_dir, "report.md")
    replace_file(path, "\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m colossal_llama.stages.report",
                                     description="Render the loss plots and report.md of a run folder from its "
                                                 "tensorboard logs.")
    parser.add_argument("run_dir", help="a run folder of `python -m colossal_llama.stages`")
    args = parser.parse_args(argv)

    def run() -> int:
        path = write_report(args.run_dir)
        plots = os.path.join(args.run_dir, "plots")
        print(f"wrote {path}, " + ", ".join(os.path.join(plots, name) for name in sorted(os.listdir(plots))))
        return 0
    return exit_status(run)


if __name__ == "__main__":
    raise SystemExit(main())
