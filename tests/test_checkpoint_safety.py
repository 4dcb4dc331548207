"""Resuming runs no code from a checkpoint or model folder, and a changed byte is caught.

A planted file comes with a files.json updated to match it (size and hash),
as a malicious but consistent checkpoint would: only the refusal to unpickle
can stop it. The payload would create a marker folder; it must never appear.
"""

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from colossal_llama.ports import free_port
from helpers import run_train

RUN = ("--max_steps", "2")  # the checkpoint's run, which a resume must repeat


class Payload:
    """Unpickling this calls os.makedirs(marker): the stand-in for any code a pickle can run."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def raw_pickle(marker: str) -> bytes:
    return pickle.dumps({"state": Payload(marker)})


def torch_zip(marker: str) -> bytes:
    """A well-formed torch.save archive whose data.pkl holds the payload."""
    import io

    buffer = io.BytesIO()
    torch.save({"state": {}, "param_groups": [Payload(marker)]}, buffer)
    return buffer.getvalue()


def test_the_payload_runs_when_unpickled(tmp_path):
    """The control: unpickled without restriction, each payload does run."""
    pickle.loads(raw_pickle(str(tmp_path / "a")))
    torch.load(__import__("io").BytesIO(torch_zip(str(tmp_path / "b"))), weights_only=False)
    assert (tmp_path / "a").is_dir() and (tmp_path / "b").is_dir()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model_dir, pretrain_parts):
    out = tmp_path_factory.mktemp("safety_run")
    code, _ = run_train(tiny_model_dir, pretrain_parts, str(out), *RUN, "--save_interval", "1")
    assert code == 0
    return str(out / "ck" / "step-00000001")


def resume(model_dir: str, parts: list, out: str, folder: str, *extra: str) -> int:
    code, metrics = run_train(model_dir, parts, out, *RUN, "--load_checkpoint", folder, *extra)
    assert code != 0 or metrics
    return code


def plant(folder: str, name: str, data: bytes, drop: tuple = ()) -> None:
    """Write `data` as `name` (dropping the files `drop`) and update files.json to match."""
    from colossal_llama.training.state_files import hash_file

    index_path = os.path.join(folder, "files.json")
    with open(index_path) as f:
        index = json.load(f)
    path = os.path.join(folder, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if name == "files.json":
        return
    for gone in drop:
        os.remove(os.path.join(folder, gone))
        del index[gone]
    index[name] = {"size": len(data), "xxh3_64": hash_file(path)}
    with open(index_path, "w") as f:
        json.dump(index, f)


def bin_model(folder: str, marker: str) -> None:
    """Replace the safetensors model by a consistent .bin one (index + shard) whose shard carries the payload."""
    with open(os.path.join(folder, "model", "model.safetensors.index.json")) as f:
        keys = json.load(f)["weight_map"]
    index = {"metadata": {"total_size": 1}, "weight_map": {k: "pytorch_model-00001.bin" for k in keys}}
    drop = ("model/model.safetensors.index.json", "model/model-00001.safetensors")
    plant(folder, "model/pytorch_model-00001.bin", torch_zip(marker), drop=drop)
    plant(folder, "model/pytorch_model.bin.index.json", json.dumps(index).encode())


# (file replaced, what replaces it, what the refusal says)
PLANTED = {
    "files.json": ("files.json", raw_pickle, "files.json is unreadable or not valid JSON"),
    "state.json": ("state.json", raw_pickle, "state.json is not valid JSON"),
    "model-index": ("model/model.safetensors.index.json", raw_pickle,
                    "model/model.safetensors.index.json is not valid JSON"),
    "model-shard": ("model/model-00001.safetensors", raw_pickle,
                    "model/model-00001.safetensors is not a safetensors file"),
    "optimizer-raw": ("optimizer.pt", raw_pickle, "optimizer.pt: not a zip-format torch file"),
    "optimizer-zip": ("optimizer.pt", torch_zip, "optimizer.pt: holds pickled objects other than tensors and plain "
                      "data (Trying to load unsupported GLOBAL os.makedirs"),
    "scheduler": ("lr_scheduler.json", raw_pickle, "lr_scheduler.json is not valid JSON"),
    "rng": ("rng/rank-00000.safetensors", raw_pickle, "rng/rank-00000.safetensors is not a safetensors file"),
    "model-bin": (None, None, "model/pytorch_model-00001.bin: holds pickled objects other than tensors"),
}


@pytest.mark.parametrize("case", PLANTED)
def test_a_planted_pickle_never_runs(case, capsys, tiny_model_dir, pretrain_parts, checkpoint, tmp_path):
    name, payload, message = PLANTED[case]
    marker = str(tmp_path / "PAYLOAD_RAN")
    folder = shutil.copytree(checkpoint, str(tmp_path / "planted"))
    if name is None:
        bin_model(folder, marker)
    else:
        plant(folder, name, payload(marker))
    code = resume(tiny_model_dir, pretrain_parts, str(tmp_path / "out"), folder)
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert f"--load_checkpoint {folder}: {message}" in err, err[-2000:]
    assert not os.path.exists(marker)


def flip_byte(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))


@pytest.mark.parametrize("name", ["model/model-00001.safetensors", "optimizer.pt"])
def test_a_flipped_byte_is_refused(name, capsys, tiny_model_dir, pretrain_parts, checkpoint, tmp_path):
    folder = shutil.copytree(checkpoint, str(tmp_path / "flipped"))
    flip_byte(os.path.join(folder, name))
    code = resume(tiny_model_dir, pretrain_parts, str(tmp_path / "out"), folder)
    err = capsys.readouterr().err
    assert code == 2
    assert f"{name} does not match its hash in files.json (changed or corrupt)" in err, err[-2000:]


def test_weights_only_checks_what_it_loads(checkpoint, tmp_path):
    """A damaged optimizer state does not stop a new stage from the weights; a damaged weight file does."""
    from colossal_llama.errors import ConfigError
    from colossal_llama.training.resume import read_checkpoint_info

    folder = shutil.copytree(checkpoint, str(tmp_path / "flipped"))
    flip_byte(os.path.join(folder, "optimizer.pt"))
    with pytest.raises(ConfigError, match="optimizer.pt does not match its hash"):
        read_checkpoint_info(folder)
    assert read_checkpoint_info(folder, weights_only=True)["state"]["step"] == 1
    flip_byte(os.path.join(folder, "model", "model-00001.safetensors"))
    with pytest.raises(ConfigError, match="model/model-00001.safetensors does not match its hash"):
        read_checkpoint_info(folder, weights_only=True)


def test_files_json_records_every_file_with_its_hash(checkpoint):
    from colossal_llama.training.state_files import hash_file

    with open(os.path.join(checkpoint, "files.json")) as f:
        index = json.load(f)
    on_disk = {str(p.relative_to(checkpoint)) for p in Path(checkpoint).rglob("*") if p.is_file()}
    assert set(index) == on_disk - {"files.json"}
    assert {"lr_scheduler.json", "rng/rank-00000.safetensors", "optimizer.pt"} <= set(index)
    assert not [n for n in on_disk if n.endswith((".pt", ".bin")) and n != "optimizer.pt"]  # all else is data
    for name, entry in index.items():
        assert entry == {"size": os.path.getsize(os.path.join(checkpoint, name)),
                         "xxh3_64": hash_file(os.path.join(checkpoint, name))}


def test_older_and_inconsistent_checkpoints_are_refused(capsys, tiny_model_dir, pretrain_parts, checkpoint, tmp_path):
    old = shutil.copytree(checkpoint, str(tmp_path / "old"))
    with open(os.path.join(old, "files.json")) as f:
        sizes = {name: entry["size"] for name, entry in json.load(f).items()}
    with open(os.path.join(old, "files.json"), "w") as f:
        json.dump(sizes, f)
    code = resume(tiny_model_dir, pretrain_parts, str(tmp_path / "a"), old)
    err = capsys.readouterr().err
    assert code == 2 and "saved by an older version (files.json without content hashes)" in err, err[-2000:]
    assert resume(tiny_model_dir, pretrain_parts, str(tmp_path / "w"), old, "--weights_only") == 0  # safetensors
    other = shutil.copytree(checkpoint, str(tmp_path / "other"))
    plant(other, "lr_scheduler.json", json.dumps({"last_epoch": 2}).encode())
    code = resume(tiny_model_dir, pretrain_parts, str(tmp_path / "b"), other)
    assert code == 2 and "corrupt checkpoint, lr_scheduler.json (ValueError: not the state of this schedule" in \
        capsys.readouterr().err


def _verify_as_rank(rank: int, folder: str, port: int) -> None:
    """One of two gloo processes checking `folder`; writes the refusal it got to verdict-<rank>.txt."""
    import torch.distributed as dist

    from colossal_llama.errors import ConfigError
    from colossal_llama.training.state_files import verify_files

    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    with open(os.path.join(folder, "files.json")) as f:
        index = json.load(f)
    try:
        verify_files(folder, index, "X")
        verdict = "accepted"
    except ConfigError as exc:
        verdict = str(exc)
    Path(folder, f"../verdict-{rank}.tmp").write_text(verdict)
    os.replace(Path(folder, f"../verdict-{rank}.tmp"), Path(folder, f"../verdict-{rank}.txt"))
    # the test ends the processes once both wrote (gloo's teardown is not under test)


def test_two_processes_split_the_hashing_and_refuse_together(tmp_path):
    """Each process hashes its share; a file only the other one hashed is refused by both."""
    import multiprocessing
    import time

    from colossal_llama.training.state_files import index_files

    folder = tmp_path / "ck"
    folder.mkdir()
    for i in range(4):
        (folder / f"f{i}.bin").write_bytes(bytes([i]) * (100 * (i + 1)))  # by size: f3 rank 0, f2 rank 1, ...
    (folder / "files.json").write_text(json.dumps(index_files(str(folder))))
    flip_byte(str(folder / "f2.bin"))
    port = free_port()
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_verify_as_rank, args=(rank, str(folder), port), daemon=True)
                 for rank in (0, 1)]
    for p in processes:
        p.start()
    verdicts = [tmp_path / f"verdict-{rank}.txt" for rank in (0, 1)]
    deadline = time.monotonic() + 120
    while not all(v.exists() for v in verdicts) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in processes:
        p.kill()  # a hang fails the test instead of blocking it
    assert all(v.exists() for v in verdicts)
    verdicts = {v.read_text() for v in verdicts}
    assert verdicts == {"X: f2.bin does not match its hash in files.json (changed or corrupt); load another checkpoint"}


def test_rng_states_round_trip(tmp_path):
    """Every generator continues exactly, the cached Gaussians of numpy and Python included."""
    import random

    import numpy as np

    from colossal_llama.training.state_files import load_rng, save_rng

    np.random.normal(), random.gauss(0, 1)  # leave a cached second Gaussian in both
    save_rng(str(tmp_path / "rng.safetensors"))
    expected = (torch.rand(3), np.random.normal(size=3), np.random.normal(), random.gauss(0, 1), random.random())
    torch.rand(5), np.random.rand(7), random.random()
    load_rng(str(tmp_path / "rng.safetensors"))
    again = (torch.rand(3), np.random.normal(size=3), np.random.normal(), random.gauss(0, 1), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1])
    assert expected[2:] == again[2:]


# ---- every way ColossalAI 0.5.0 reads a torch.save file, under safe_loading() ----

def _colossal_loaders():
    from colossalai.checkpoint_io import utils

    def param_groups(path):
        model = torch.nn.Linear(2, 2)
        utils.load_param_groups_into_optimizer(torch.optim.AdamW(model.parameters()), path)

    return {
        "load_state_dict": utils.load_state_dict,  # unsharded model/optimizer (general, ddp, zero, 3d)
        "load_shard_state_dict": lambda p: utils.load_shard_state_dict(Path(p), use_safetensors=False),  # 3d shards
        "load_state_dict_shards": lambda p: list(utils.load_state_dict_shards([p], True, False)),  # gemini, zero
        "load_param_groups_into_optimizer": param_groups,  # general and zero sharded param groups
    }


PLUGIN_MODULES = ["colossalai.booster.plugin.gemini_plugin", "colossalai.checkpoint_io.hybrid_parallel_checkpoint_io",
                  "colossalai.checkpoint_io.checkpoint_io_base", "colossalai.booster.plugin.torch_fsdp_plugin"]


@pytest.mark.parametrize("loader", ["load_state_dict", "load_shard_state_dict", "load_state_dict_shards",
                                    "load_param_groups_into_optimizer", *PLUGIN_MODULES])
@pytest.mark.parametrize("payload", [raw_pickle, torch_zip])
def test_colossalai_loaders_refuse_payloads(loader, payload, tmp_path):
    """The GPU plugins' own torch.load calls (param groups, shards) go through the same guard."""
    import importlib

    from colossal_llama.safe_loading import safe_loading
    from colossal_llama.errors import UnsafeFileError

    marker, path = str(tmp_path / "PAYLOAD_RAN"), str(tmp_path / "optim.bin")
    with open(path, "wb") as f:
        f.write(payload(marker))
    load = _colossal_loaders().get(loader) or (lambda p: importlib.import_module(loader).torch.load(p))
    with safe_loading(), pytest.raises(UnsafeFileError, match="optim.bin"):
        load(path)
    assert not os.path.exists(marker)


def colossal_async_save(path: str, state_dict: dict) -> None:
    """ColossalAI's async optimizer format (`save_nested`, which needs tensornvme), written synchronously."""
    from colossalai.utils.safetensors import _flatten_optim_state_dict
    from safetensors.torch import save_file

    flat, metadata = _flatten_optim_state_dict(state_dict)
    save_file(flat, path, metadata={k: json.dumps(v) for k, v in (metadata or {}).items()})


def test_colossalai_safetensors_optimizer_loads_plain_groups_only(tmp_path):
    """ColossalAI's async format pickles the param groups into a byte tensor: plain data loads, code does not."""
    from colossalai.utils.safetensors import load_flat

    from colossal_llama.safe_loading import safe_loading

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), betas=(0.9, 0.95))
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    colossal_async_save(str(tmp_path / "good.safetensors"), optimizer.state_dict())
    with safe_loading():
        loaded = load_flat(str(tmp_path / "good.safetensors"))
    assert loaded["param_groups"] == optimizer.state_dict()["param_groups"]
    assert torch.equal(loaded["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])
    marker = str(tmp_path / "PAYLOAD_RAN")
    colossal_async_save(str(tmp_path / "bad.safetensors"), {"state": {}, "param_groups": [Payload(marker)]})
    with safe_loading(), pytest.raises(pickle.UnpicklingError, match="refused global"):
        load_flat(str(tmp_path / "bad.safetensors"))
    assert not os.path.exists(marker)


def test_real_optimizer_states_load_and_torchscript_is_refused(tmp_path):
    from colossal_llama.safe_loading import safe_loading
    from colossal_llama.errors import UnsafeFileError

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), tmp_path / "optimizer.pt")
    with safe_loading():
        loaded = torch.load(tmp_path / "optimizer.pt", weights_only=False)  # the caller's False is overridden
    assert loaded["param_groups"] == optimizer.state_dict()["param_groups"]
    torch.jit.save(torch.jit.script(model), str(tmp_path / "script.pt"))
    with safe_loading(), pytest.raises(UnsafeFileError, match="TorchScript archive"):
        torch.load(str(tmp_path / "script.pt"), weights_only=True)  # torch 2.5.1 would torch.jit.load it
    assert torch.load is torch.serialization.load and torch.load.__module__ == "torch.serialization"  # restored


def test_pretrained_bin_folders_load_no_code(capsys, tiny_model_dir, pretrain_parts, tmp_path):
    """A --pretrained folder with pytorch_model.bin: tensors only; a TorchScript archive there is refused."""
    from safetensors.torch import load_file

    folder = tmp_path / "bin_model"
    shutil.copytree(tiny_model_dir, folder)
    os.remove(folder / "model.safetensors")
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(folder / "pytorch_model.bin"))
    code, _ = run_train(str(folder), pretrain_parts, str(tmp_path / "a"), "--max_steps", "1")
    err = capsys.readouterr().err
    assert code == 2 and "pytorch_model.bin: a TorchScript archive" in err, err[-2000:]
    torch.save(load_file(os.path.join(tiny_model_dir, "model.safetensors")), folder / "pytorch_model.bin")
    code, _ = run_train(str(folder), pretrain_parts, str(tmp_path / "b"), "--max_steps", "1", "--save_interval", "0")
    assert code == 0


def test_colossalai_reads_files_only_through_guarded_loaders():
    """A ColossalAI upgrade that reads checkpoints another way (pickle, jit, numpy) must come through here."""
    import re

    import colossalai

    root = os.path.dirname(colossalai.__file__)
    unguarded = re.compile(r"pickle\.load|pickle\.Unpickler|from torch import .*\bload\b|torch\.jit\.load|np\.load|"
                           r"from torch\.serialization import|_unpickler\b")
    found = []
    for package in ("checkpoint_io", "booster", "zero", "utils"):
        for path in Path(root, package).rglob("*.py"):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if unguarded.search(line):
                    found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    # the only unpickler is the one safe_loading() replaces (utils/safetensors.py's `_unpickler`)
    assert all(f.startswith("utils/safetensors.py") for f in found), found


def test_every_from_pretrained_says_whether_to_trust_remote_code():
    """An implicit trust_remote_code lets transformers prompt (or fail) on a folder that ships code; every call
    in the shipped code passes it explicitly (False unless --trust_remote_code says otherwise)."""
    import ast

    from helpers import REPO

    paths = [p for d in ("colossal_llama", "applications", "benchmarks") for p in Path(REPO, d).rglob("*.py")]
    paths += list(Path(REPO).glob("*.py"))
    lacking = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "from_pretrained" and "trust_remote_code" not in {k.arg for k in node.keywords}:
                lacking.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert len(paths) > 50 and lacking == []
