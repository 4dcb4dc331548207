"""Training on ColossalAI: config and command line, plugin table, data feeds, the loop, checkpoints, export.

    from colossal_llama.training.build import train     # train(config) -> the exported HF model folder

build.py sets a run up, loop.py trains it (steps.py, loss.py), resume.py and
export.py write what it produced; `python train.py --help` lists every flag.
"""
