"""The built wheel works without the checkout: a one-stage recipe runs from it alone.

The wheel is built from a copy of setup.py and colossal_llama/ (no build
isolation: nothing is downloaded) and installed with `pip install --target`
into a scratch folder, which is then the only colossal_llama the commands can
import: PYTHONPATH names it, they run from another scratch folder, and a
`sitecustomize` in it drops the editable install's import hook (the venv's
`__editable__` finder would otherwise still find the checkout). Every process
the runner starts inherits that environment, so the trainer it launches runs
from the wheel too.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from helpers import REPO, SAMPLE_PRETRAIN

# imported by `site` at start-up from PYTHONPATH: the editable install's finder goes, so the checkout is unreachable
NO_EDITABLE = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", "")]
"""


def run(command: list[str], cwd, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel_install(tmp_path_factory) -> dict:
    """{"site": the folder the wheel is installed in, "env": an environment that sees only it, "cwd": a scratch
    folder outside the checkout, "wheel": the wheel file}."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"  # a copy: building in the checkout would write build/ and egg-info there
    source.mkdir()
    shutil.copy(os.path.join(REPO, "setup.py"), source)
    shutil.copytree(os.path.join(REPO, "colossal_llama"), source / "colossal_llama",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"),
         str(source)], root, env)
    [wheel] = glob.glob(str(root / "dist" / "colossal_llama-*.whl"))
    site = root / "site"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel], root, env)
    (site / "sitecustomize.py").write_text(NO_EDITABLE)
    cwd = root / "work"
    cwd.mkdir()
    env = dict(env, PYTHONPATH=str(site), PATH=str(site / "bin") + os.pathsep + env.get("PATH", ""))
    return {"site": str(site), "env": env, "cwd": cwd, "wheel": wheel}


def test_the_wheel_holds_the_package_and_every_console_script(wheel_install):
    import zipfile

    names = zipfile.ZipFile(wheel_install["wheel"]).namelist()
    assert "colossal_llama/training/__main__.py" in names and "colossal_llama/inference/generate.py" in names
    assert not [n for n in names if n.startswith(("tests/", "applications/")) or n == "train.py"]
    from test_help import console_scripts

    for name in console_scripts():
        assert os.access(os.path.join(wheel_install["site"], "bin", name), os.X_OK), name


def test_only_the_wheel_is_importable(wheel_install):
    env, cwd, site = wheel_install["env"], wheel_install["cwd"], wheel_install["site"]
    where = run([sys.executable, "-c", "import colossal_llama; print(colossal_llama.__file__)"], cwd, env)
    assert where.stdout.strip() == os.path.join(site, "colossal_llama", "__init__.py")
    # the control: with the package gone from PYTHONPATH, nothing finds the checkout any more
    hook_only = cwd / "hook_only"
    hook_only.mkdir(exist_ok=True)
    (hook_only / "sitecustomize.py").write_text(NO_EDITABLE)
    done = subprocess.run([sys.executable, "-c", "import colossal_llama"], cwd=cwd, capture_output=True, text=True,
                          env=dict(env, PYTHONPATH=str(hook_only)))
    assert done.returncode == 1 and "No module named 'colossal_llama'" in done.stderr


def test_a_one_stage_recipe_runs_from_the_wheel(wheel_install, tiny_model_dir):
    env, cwd = wheel_install["env"], wheel_install["cwd"]
    recipe = {
        "launcher": {"command": "python"},
        "defaults": {"plugin": "ddp", "mixed_precision": "fp32", "batch_size": 2, "lr": 1e-3, "log_interval": 1,
                     "save_interval": 100, "seed": 3},
        "prepare": {"max_length": 64, "num_spliced_dataset_bins": 1, "num_workers": 1},
        "sources": {"qa": {"jsonl": [os.path.join(SAMPLE_PRETRAIN, "qa_en.jsonl")]}},
        "stages": [{"name": "only", "start": {"model": tiny_model_dir}, "data": {"qa": 1}, "buckets": 1,
                    "train": {"max_steps": 2}}],
    }
    with open(cwd / "recipe.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(recipe, f)
    started = time.time()
    done = run(["colossal-llama-run-recipe", "recipe.yaml", "--run_dir", "run", "--no-report"], cwd, env)
    assert f"{sys.executable} -m colossal_llama.training --config " in done.stdout  # the launch line it printed
    stage = cwd / "run" / "stages" / "01-only"
    with open(stage / "done.json", encoding="utf-8") as f:
        finished = json.load(f)
    assert finished["steps"] == 2 and finished["final_loss"] > 0
    assert os.path.isfile(stage / "model" / "config.json")
    print(f"one-stage recipe from the wheel: {time.time() - started:.1f} s")
