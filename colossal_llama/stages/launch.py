"""The trainer through a recipe's launcher: the command line, its environment, and the process that runs it.

    code = run_launcher(launch_command(recipe, config_path), launch_env(recipe.launcher, os.environ))

Every launcher starts the trainer as a module, `-m colossal_llama.training
--config FILE` (python and torchrun take `-m`; so does `colossalai run`,
which hands `-m` on to the torchrun it starts), never the checkout's
train.py by path: an installed package (a wheel, `pip install .`) has no
train.py, and `-m` runs the package the runner itself is part of.

`colossalai run` is the one launcher that goes through a shell, locally and
over ssh (colossalai/cli/launcher/run.py and multinode_runner.py): it joins
the trainer's command line with spaces, exports every environment variable as
`NAME="value"` and changes to its working folder with only spaces escaped.
So for it each argument bound for that command line is quoted with
`shlex.quote`, each exported value is escaped for double quotes, and the
working folder is PACKAGE_ROOT (checked once by `check_launcher`): a run
folder named `r$(touch X) 'q' ;x` stays a name. torchrun and python take an
argument list; nothing is quoted for them.

Every launcher runs in PACKAGE_ROOT, the folder that holds this colossal_llama
package (the repository for a checkout, site-packages for an install), so
that `-m` finds this very package first; it runs under a lifeline
(colossal_llama.lifeline) that ends it and its trainers when the runner dies.
torchrun and colossalai run get a free rendezvous port unless the recipe
names one, so two runs on one machine do not meet on torchrun's usual 29500.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

from colossal_llama.errors import RecipeError
from colossal_llama.ports import free_port
from colossal_llama.stages.recipe import Launcher, Recipe

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAINER = "colossal_llama.training"  # run with -m: its __main__ is train.py's command line
SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SHELL_WORD_WITH_SPACES = re.compile(r"[\w@%+=:,./ -]+")  # what fabric's `cd` keeps literal (it escapes spaces)


def check_launcher(recipe: Recipe) -> None:
    """Raises RecipeError if `colossalai run` could not change to PACKAGE_ROOT without a shell reading it."""
    if recipe.launcher.command == "colossalai" and not SHELL_WORD_WITH_SPACES.fullmatch(PACKAGE_ROOT):
        raise RecipeError(f"{recipe.path}: launcher.command: colossalai run changes to {PACKAGE_ROOT} (where "
                          "colossal_llama is installed) through a shell without quoting it, and that path has "
                          "characters a shell reads; install the package under a plainer path, or use "
                          "`launcher: {command: torchrun}` on one node")


def master_addr(launcher: Launcher) -> str | None:
    """The address given, or the first host of a hostfile of several: what `colossalai run` would pick itself, and
    then put on its command line unquoted."""
    given = launcher.master_addr
    if given not in (None, "127.0.0.1") or not launcher.hostfile or not os.path.isfile(launcher.hostfile):
        return given
    with open(launcher.hostfile, encoding="utf-8") as f:
        hosts = [line.strip() for line in f if line.strip()]
    return hosts[0] if len(hosts) > 1 else given


def launch_command(recipe: Recipe, config_path: str) -> list[str]:
    """`-m colossal_llama.training --config FILE` through the recipe's launcher (same flags for one node or a
    hostfile of many), run from PACKAGE_ROOT."""
    launcher, bin_dir = recipe.launcher, os.path.dirname(sys.executable)
    trainer = ["-m", TRAINER, "--config", config_path]
    if launcher.command == "python":
        return [sys.executable, *trainer]
    port = ["--master_port", str(launcher.master_port or free_port(""))]
    if launcher.command == "torchrun":
        return [os.path.join(bin_dir, "torchrun"), "--nproc_per_node", str(launcher.nproc_per_node), *port, *trainer]
    command = [os.path.join(bin_dir, "colossalai"), "run", "--nproc_per_node", str(launcher.nproc_per_node), *port]
    if launcher.hostfile:  # read by colossalai run itself: a plain path
        command += ["--hostfile", os.path.abspath(launcher.hostfile)]
    address = master_addr(launcher)
    if address:
        command += ["--master_addr", shlex.quote(address)]
    # `-m` ends colossalai run's own options: it takes `--config FILE` (an option it does not know) for the module's
    return command + ["-m", TRAINER, "--config", shlex.quote(config_path)]


def launch_env(launcher: Launcher, environ) -> dict[str, str]:
    """The launcher's environment: this interpreter's scripts first on PATH (colossalai run starts `torchrun` by
    name), PWD the launcher's folder; for colossalai run, values escaped for the double quotes it exports them in."""
    env = dict(environ, PATH=os.path.dirname(sys.executable) + os.pathsep + environ.get("PATH", ""), PWD=PACKAGE_ROOT)
    if launcher.command != "colossalai":
        return env
    # a name that is no shell identifier would fail colossalai run's `export` (and with it the launch)
    return {name: re.sub(r'([\\$`"])', r"\\\1", value) for name, value in env.items() if SHELL_NAME.fullmatch(name)}


def run_launcher(command: list[str], env: dict[str, str]) -> int:
    """Run `command` from PACKAGE_ROOT under a lifeline that ends it, and the trainers, if this process dies."""
    process = subprocess.Popen([sys.executable, "-m", "colossal_llama.lifeline", str(os.getpid()), *command],
                               cwd=PACKAGE_ROOT, env=env)
    try:
        return process.wait()
    finally:
        if process.poll() is None:  # interrupted (Ctrl-C): the lifeline ends the launcher's processes
            process.terminate()
            process.wait()
