"""`python -m colossal_llama.stages RECIPE`: run (or resume) a multi-stage recipe.

    python -m colossal_llama.stages applications/recipes/llama2_7b_zh.yaml --run_dir runs/zh
    python -m colossal_llama.stages recipe.yaml --hostfile hostfile --nproc_per_node 8   # several nodes
    python -m colossal_llama.stages recipe.yaml --check                                  # validate, print the plan

Launcher flags given here override the recipe's `launcher:` block. Exit
status: 0 done, 2 a bad recipe (file and key named) or bad data, 1 a stage
that failed (rerun to resume it from its last checkpoint).
"""

from __future__ import annotations

import argparse
import sys

from colossal_llama.errors import USER_ERRORS
from colossal_llama.stages.recipe import LAUNCHERS, Recipe, load_recipe


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m colossal_llama.stages", description=__doc__.split("\n\n")[0])
    p.add_argument("recipe", help="the recipe YAML file")
    p.add_argument("--run_dir", help="where everything is written (default: runs/<recipe file name>)")
    p.add_argument("--launcher", choices=LAUNCHERS,
                   help="how the trainer (python -m colossal_llama.training) is started (recipe: launcher.command)")
    p.add_argument("--nproc_per_node", type=int, help="processes per node (recipe: launcher.nproc_per_node)")
    p.add_argument("--hostfile", help="hostfile of the nodes, for colossalai run (recipe: launcher.hostfile)")
    p.add_argument("--master_addr", help="address of the first node (recipe: launcher.master_addr)")
    p.add_argument("--master_port", type=int,
                   help="port of the first node (recipe: launcher.master_port; default: a free port here)")
    p.add_argument("--check", action="store_true", help="check the recipe and print the plan; run nothing")
    p.add_argument("--no-report", dest="report", action="store_false", help="do not render plots and report.md")
    return p


def print_plan(recipe: Recipe) -> None:
    launcher = recipe.launcher
    print(f"recipe {recipe.path}: {len(recipe.stages)} stage(s), run folder {recipe.run_dir}, launcher "
          f"{launcher.command} x {launcher.nproc_per_node}" + (f" on {launcher.hostfile}" if launcher.hostfile else ""))
    for stage in recipe.stages:
        start = stage.start
        origin = (start.model or f"stage {start.stage}") + (" + vocabulary expansion" if start.expand else "")
        data = ", ".join(f"{name} x{weight:g}" for name, weight in stage.data.items())
        replay = "".join(f", replay {p:g}% of {name}" for name, p in stage.replay)
        print(f"  {stage.folder_name}: from {origin}; data {data}{replay}; freeze {stage.freeze}")
    for what, paths in (("probes", recipe.probes), ("benchmarks", recipe.benchmarks)):
        if paths:  # scored on the start model and after every stage
            shots = f", {recipe.benchmark_shots}-shot" if what == "benchmarks" else ""
            print(f"  {what}{shots}, before the first stage and after each: {', '.join(paths)}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.run_dir)
        for name in ("nproc_per_node", "hostfile", "master_addr", "master_port"):
            if getattr(args, name) is not None:
                setattr(recipe.launcher, name, getattr(args, name))
        if args.launcher:
            recipe.launcher.command = args.launcher
        print_plan(recipe)
        if args.check:
            return 0
        from colossal_llama.stages.runner import run_recipe
        from colossal_llama.errors import StageFailed

        try:
            run_recipe(recipe)
        except StageFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.report:
        from colossal_llama.stages.report import write_report

        print(f"report: {write_report(recipe.run_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
