"""A hub id (`org/name`) instead of a folder resolves through the local Hugging Face cache, offline.

The cache is one the test lays out as huggingface_hub does:
`<HF_HUB_CACHE>/models--org--tiny/snapshots/<commit>/` with the files, and
`refs/main` holding the commit.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from colossal_llama.errors import ConfigError, InferenceError, TokenizerError
from colossal_llama.model.hub import hub_cache, resolve_model_dir
from helpers import SAMPLE_PRETRAIN, run_train

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def lay_out_cache(cache, repo_id: str, folder: str) -> str:
    """Put `folder`'s files in `cache` as the snapshot of `repo_id`'s main revision; returns the snapshot folder."""
    entry = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(entry, "snapshots", COMMIT)
    shutil.copytree(folder, snapshot)
    os.makedirs(os.path.join(entry, "refs"))
    with open(os.path.join(entry, "refs", "main"), "w") as f:
        f.write(COMMIT)
    return snapshot


@pytest.fixture
def cached_tiny(tmp_path, monkeypatch, tiny_model_dir) -> str:
    """HF_HUB_CACHE set to a fresh cache holding the tiny model as `org/tiny`; returns its snapshot folder."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    return lay_out_cache(tmp_path / "cache", "org/tiny", tiny_model_dir)


def test_a_folder_is_returned_as_it_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.mkdir("org")
    os.mkdir(os.path.join("org", "tiny"))  # a folder wins over an id of the same name
    assert resolve_model_dir("org/tiny", "--pretrained") == "org/tiny"


def test_an_id_resolves_to_its_cached_snapshot(cached_tiny):
    assert resolve_model_dir("org/tiny", "--pretrained") == cached_tiny


def test_the_cache_follows_the_environment(tmp_path, monkeypatch):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub_cache() == os.path.join(str(tmp_path), ".cache", "huggingface", "hub")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache() == str(tmp_path / "hf" / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hub_cache() == str(tmp_path / "hub")
    lay_out_cache(tmp_path / "hf" / "hub", "org/other", str(tmp_path))  # HF_HOME's cache, not HF_HUB_CACHE's
    with pytest.raises(ConfigError):
        resolve_model_dir("org/other", "--pretrained")
    monkeypatch.delenv("HF_HUB_CACHE")
    assert resolve_model_dir("org/other", "--pretrained").startswith(str(tmp_path / "hf" / "hub"))


def test_errors_name_the_flag_the_id_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(TokenizerError) as raised:
        resolve_model_dir("org/missing", "--tokenizer_dir", TokenizerError)
    message = str(raised.value)
    assert message.startswith("--tokenizer_dir org/missing: no such folder, and no snapshot of it in the Hugging "
                              f"Face cache {tmp_path / 'cache'} (models--org--missing;")
    assert "huggingface-cli download org/missing" in message
    for path in (str(tmp_path / "none"), "./none", "a/b/c"):  # paths, not ids: the cache is not mentioned
        with pytest.raises(ConfigError, match=r"^--pretrained .*: folder does not exist$"):
            resolve_model_dir(path, "--pretrained")


def test_data_preparation_takes_a_tokenizer_id(cached_tiny, tmp_path):
    from colossal_llama.config import PretrainDataConfig
    from colossal_llama.data.pretrain import prepare_pretrain_dataset

    config = PretrainDataConfig(data_input_dirs=[SAMPLE_PRETRAIN], tokenizer_dir="org/tiny",
                                data_output_dirs=str(tmp_path / "out"), max_length=64, num_spliced_dataset_bins=1,
                                num_workers=1)
    manifest = prepare_pretrain_dataset(config)
    assert manifest["tokenizer"]["name_or_path"] == cached_tiny  # what later commands (inspect) reload


def test_generation_loads_an_id_from_the_cache(cached_tiny):
    from colossal_llama.inference.generation import SamplingSettings, generate, load_for_inference

    model, tokenizer = load_for_inference("org/tiny", device="cpu")
    assert tokenizer.name_or_path == cached_tiny
    [completion] = generate(model, tokenizer, ["The island"], SamplingSettings(max_new_tokens=3, temperature=0),
                            chat=False)
    assert isinstance(completion, str)
    with pytest.raises(InferenceError, match="--model_dir org/missing: no such folder, and no snapshot"):
        load_for_inference("org/missing", device="cpu")


def test_training_starts_from_an_id_and_records_the_folder(cached_tiny, pretrain_parts, tmp_path, capsys):
    code, metrics = run_train("org/tiny", pretrain_parts, str(tmp_path / "run"), "--max_steps", "1")
    assert code == 0 and metrics[-1]["step"] == 1
    with open(tmp_path / "run" / "ck" / "train_config.json") as f:
        assert json.load(f)["pretrained"] == cached_tiny  # the folder the id stood for, as resolved once
    code, _ = run_train("org/missing", pretrain_parts, str(tmp_path / "bad"))
    assert code == 2
    assert "train.py: error: --pretrained org/missing: no such folder" in capsys.readouterr().err


def test_a_recipe_starts_from_an_id_in_the_cache(tmp_path, cached_tiny):
    from colossal_llama.errors import RecipeError
    from colossal_llama.stages.recipe import load_recipe
    from test_stages import base_recipe, write_recipe

    recipe = base_recipe("org/tiny")
    loaded = load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / "run"))
    assert loaded.stages[0].start.model == cached_tiny  # every stage and probe then sees the folder
    recipe["stages"][0]["start"]["model"] = "org/absent"
    with pytest.raises(RecipeError, match=r"stages\[0\] \(a\)\.start\.model: org/absent: no such folder, and no "
                                          r"snapshot of it in the Hugging Face cache"):
        load_recipe(write_recipe(tmp_path, recipe), str(tmp_path / "run"))


def test_a_recipe_id_is_not_a_folder_of_the_current_directory(tmp_path, monkeypatch, cached_tiny):
    """`start: {model: org/tiny}`: the recipe's folder, else the cache; a folder `org/tiny` under the current
    directory is neither (the trainer runs elsewhere)."""
    from colossal_llama.stages.recipe import load_recipe
    from test_stages import base_recipe, write_recipe

    elsewhere = tmp_path / "cwd"
    (elsewhere / "org" / "tiny").mkdir(parents=True)
    monkeypatch.chdir(elsewhere)
    recipe_dir = tmp_path / "recipes"
    recipe_dir.mkdir()
    loaded = load_recipe(write_recipe(recipe_dir, base_recipe("org/tiny")), str(tmp_path / "run"))
    assert loaded.stages[0].start.model == cached_tiny
