"""The README's data and tokenizer examples, run as a user would, print what the README shows.

Every `python ...` command block of the checked sections runs, in README
order, in a scratch folder that looks like the repository after `make demo`
(`applications/` and the top-level scripts linked in, `runs/demo/base/`
built by the demo's own code, so the tokenizer is the one the README's
figures come from). A command block followed by `<!-- output -->` and a
code block must print exactly that block; a line `...` in it stands for any
number of lines. On a mismatch the failure shows the whole output, ready to
paste into the README.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from helpers import REPO

CHECKED_SECTIONS = ("## Pretraining data", "## SFT data", "## Vocabulary expansion", "## Embedding rows")
OUTPUT_MARKER = "<!-- output -->"
LINKED = ("applications", "prepare_pretrain_dataset.py", "prepare_sft_dataset.py", "train.py")


def code_block(lines: list[str], start: int) -> tuple[list[str], int]:
    """The indented code block starting at `start` (dedented) and the index after it."""
    block, i = [], start
    while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
        block.append(lines[i][4:])
        i += 1
    while block and not block[-1].strip():
        block.pop()
    return block, i


def readme_examples(text: str) -> list[tuple[str, list[str] | None]]:
    """(command, expected output lines or None) of the checked sections, in order."""
    lines, section, examples, i = text.splitlines(), "", [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line
        checked = section.startswith(CHECKED_SECTIONS)
        if checked and line.startswith("    python ") and not lines[i - 1].strip():
            block, i = code_block(lines, i)
            j = i
            while j < len(lines) and not lines[j].strip():
                j += 1
            expected = None
            if j < len(lines) and lines[j].strip() == OUTPUT_MARKER:
                k = j + 1
                while not lines[k].strip():
                    k += 1
                expected, i = code_block(lines, k)
            examples.extend((command, None) for command in block[:-1])
            examples.append((block[-1], expected))
            continue
        i += 1
    return examples


def matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line equality where an expected `...` line matches any number of lines."""
    pattern = "".join(r"(?:[^\n]*\n)*?" if line == "..." else re.escape(line) + "\n" for line in expected)
    return re.fullmatch(pattern, "".join(line + "\n" for line in actual)) is not None


README = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
EXAMPLES = readme_examples(README)


@pytest.fixture(scope="module")
def after_demo(tmp_path_factory):
    """A scratch copy of the repository's top level with the demo's base tokenizer and model."""
    work = tmp_path_factory.mktemp("readme")
    for name in LINKED:
        os.symlink(os.path.join(REPO, name), work / name)
    build = ("import sys; sys.path.insert(0, 'applications/quickstart'); import demo; "
             "demo.base_model('runs/demo')")
    done = subprocess.run([sys.executable, "-c", build], cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {"work": work, "outputs": {}}


def test_the_checked_sections_have_examples_with_outputs():
    commands = [c for c, _ in EXAMPLES]
    for start in ("python prepare_pretrain_dataset.py", "python prepare_sft_dataset.py",
                  "python -m colossal_llama.data.inspect_rows", "python -m colossal_llama.tokenizer.init_tokenizer",
                  "python -m colossal_llama.model.init_model"):
        assert any(c.startswith(start) for c in commands), start
    assert sum(expected is not None for _, expected in EXAMPLES) >= 5


@pytest.mark.parametrize("index", range(len(EXAMPLES)), ids=[c.split(" --")[0] for c, _ in EXAMPLES])
def test_readme_example(after_demo, index):
    command, expected = EXAMPLES[index]
    for earlier in range(index):  # examples build on each other (the SFT data the inspector reads ...)
        if earlier not in after_demo["outputs"]:
            test_readme_example(after_demo, earlier)
    argv = shlex.split(command)
    assert argv[0] == "python"
    done = subprocess.run([sys.executable, *argv[1:]], cwd=after_demo["work"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "120"})
    after_demo["outputs"][index] = done.stdout
    assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
    if expected is not None:
        actual = [line.rstrip() for line in done.stdout.rstrip("\n").splitlines()]
        assert matches([line.rstrip() for line in expected], actual), (
            f"README shows for `{command}`:\n" + "\n".join(expected) + "\n\nbut it prints:\n" + "\n".join(actual))


def test_matches_with_ellipsis():
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"]) and matches(["a", "...", "d"], ["a", "d"])
    assert not matches(["a", "...", "d"], ["a", "b", "c"]) and not matches(["a", "b"], ["a", "b", "c"])
    assert matches(["...", "z"], ["x", "y", "z"]) and matches(["a", "..."], ["a"]) and matches(["...", "z"], ["z"])


def test_files_named_by_readme_commands_exist():
    """Every repository file a README command names (scripts, configs, prompt files) is shipped."""
    missing = []
    for command in re.findall(r"^ +((?:python|torchrun|colossalai) .*)$", README, re.M):
        for word in shlex.split(command.split("  #")[0]):
            if word.startswith(("applications/", "benchmarks/", "colossal_llama/")) or word in LINKED + ("hostfile",):
                if not os.path.exists(os.path.join(REPO, word)):
                    missing.append(f"{word} (in: {command[:80]})")
    assert not missing
