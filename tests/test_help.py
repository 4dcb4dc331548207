"""`--help` of every shipped command exits 0 and prints a usage line.

The commands are found, not listed by hand, so a new one cannot be missed:
every file outside tests/ with a `__main__` guard (top-level scripts,
applications/, benchmarks/ and `python -m colossal_llama...` modules) and
every console script in setup.py. All run in-process, without paying for a
fresh interpreter and torch import each time: scripts through
`runpy.run_path` with their folder first on sys.path (what `python script`
does), modules through `runpy.run_module` (what `python -m` does), console
scripts by calling their entry function with the same argv. Each command's
own tests run it in a subprocess as a user does, and test_wheel runs the
installed console scripts.
"""

import ast
import importlib
import os
import re
import runpy
import sys

import pytest

from helpers import REPO

# loaded before any script runs here: a prepare script's `skip_torch_import` (USE_TORCH=0) then leaves this
# process alone, instead of transformers marking torch unavailable for every test after it
importlib.import_module("transformers")

SKIP_DIRS = {"tests", ".venv", ".git", "runs", "build"}
MAIN_GUARD = re.compile(r"^if __name__ == [\"']__main__[\"']:", re.M)


def _python_files():
    for root, dirs, files in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".") and "egg-info" not in d)
        for name in sorted(files):
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(root, name), REPO)


def shipped_commands() -> tuple[list[str], list[str]]:
    """(scripts run by path, modules run with -m): files with a main guard, and package `__main__.py`s."""
    scripts, modules = [], []
    for path in _python_files():
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            source = f.read()
        if path.startswith("colossal_llama" + os.sep):
            module = path[:-3].replace(os.sep, ".")
            if path.endswith("__main__.py"):
                modules.append(module.rsplit(".", 1)[0])
            elif MAIN_GUARD.search(source):
                modules.append(module)
        elif MAIN_GUARD.search(source):
            scripts.append(path)
    return scripts, modules


def console_scripts() -> dict[str, str]:
    """name -> "module:function" of every console script in setup.py."""
    with open(os.path.join(REPO, "setup.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return dict(entry.split("=", 1) for entry in ast.literal_eval(value))
    raise AssertionError("setup.py declares no console_scripts")


SCRIPTS, MODULES = shipped_commands()


# every command a user runs, installed as `colossal-llama-<verb>` (an installed package has no checkout scripts)
COMMANDS = {"prepare-pretrain": "colossal_llama.data.pretrain", "prepare-sft": "colossal_llama.data.sft",
            "inspect": "colossal_llama.data.inspect_rows", "init-tokenizer": "colossal_llama.tokenizer.init_tokenizer",
            "expand-tokenizer": "colossal_llama.tokenizer.init_tokenizer",  # the earlier name of init-tokenizer
            "init-model": "colossal_llama.model.init_model", "train": "colossal_llama.training.cli",
            "run-recipe": "colossal_llama.stages.__main__", "report": "colossal_llama.stages.report",
            "generate": "colossal_llama.inference.generate", "chat": "colossal_llama.inference.chat",
            "evaluate": "colossal_llama.evaluate.__main__"}


def test_every_command_of_the_brief_is_found():
    """Discovery itself works (a broken walk would make the tests below vacuous)."""
    for script in ["train.py", "prepare_pretrain_dataset.py", "prepare_sft_dataset.py",
                   "applications/inference/generate.py", "applications/inference/chat.py",
                   "applications/quickstart/demo.py", "benchmarks/prepare_pretrain.py", "benchmarks/prepare_sft.py",
                   "benchmarks/init_embeddings.py", "benchmarks/train_throughput.py"]:
        assert script.replace("/", os.sep) in SCRIPTS, script
    for module in ["colossal_llama.stages", "colossal_llama.stages.report", "colossal_llama.model.init_model",
                   "colossal_llama.tokenizer.init_tokenizer", "colossal_llama.training",
                   "colossal_llama.inference.generate", "colossal_llama.inference.chat", "colossal_llama.evaluate"]:
        assert module in MODULES, module
    assert set(console_scripts()) == {f"colossal-llama-{verb}" for verb in COMMANDS}


def test_console_scripts_point_at_the_package_commands():
    """Each console script runs the package module of its command (not a copy in applications/)."""
    for verb, module in COMMANDS.items():
        assert console_scripts()[f"colossal-llama-{verb}"] == f"{module}:main", verb


# what a script's help must mention besides "usage:" (a spot check that the right parser answered)
EXPECTED = {
    "prepare_pretrain_dataset.py": ["--num_spliced_dataset_bins", "--on_error {raise,skip}"],
    "prepare_sft_dataset.py": ["--llama_version", "--template"],
    "train.py": ["--warmup_steps", "(default: 2.5%", "--zero_stage"],  # a literal % in help renders
}


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_help(script, monkeypatch, capsys):
    path = os.path.join(REPO, script)
    monkeypatch.syspath_prepend(os.path.dirname(path))  # as `python script` puts the script's folder first
    monkeypatch.chdir(REPO)
    environ = dict(os.environ)  # a script may set variables for itself (the preparation's USE_TORCH)
    try:
        out = _help_in_process(lambda: runpy.run_path(path, run_name="__main__"), script, monkeypatch, capsys)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    assert out.startswith("usage:")
    for text in EXPECTED.get(script, []):
        assert text in out, text


def _help_in_process(run, argv0: str, monkeypatch, capsys) -> str:
    """Run `run()` with argv [argv0, --help]; it must exit 0. Returns what it printed."""
    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit) as exited:
        run()
    assert exited.value.code in (0, None)
    return capsys.readouterr().out


@pytest.mark.parametrize("module", MODULES)
def test_module_help(module, monkeypatch, capsys):
    out = _help_in_process(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True), module,
                           monkeypatch, capsys)
    assert out.startswith("usage:")


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_console_script_help(name, monkeypatch, capsys):
    """The entry function, in-process (test_wheel runs the installed scripts themselves)."""
    module, function = console_scripts()[name].split(":")
    out = _help_in_process(getattr(importlib.import_module(module), function), name, monkeypatch, capsys)
    assert out.startswith("usage:")
