"""Multi-stage recipes: a YAML file of stages run in order, resumable, under one run folder.

    python -m colossal_llama.stages applications/quickstart/recipe.yaml --run_dir runs/demo
    python -m colossal_llama.stages.report runs/demo          # plots + report.md from the logs

`recipe.py` reads and checks a recipe, `sources.py` prepares its data
(`colossal_llama.data.mixtures` mixes it), `runner.py` runs the stages through the launcher, `probes.py` scores
held-out answers, `report.py` draws the plots and writes the report.
"""
