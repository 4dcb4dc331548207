"""The files of a checkpoint this project writes itself, as data only: safetensors and JSON, never pickle.

    rng/rank-00000.safetensors   torch CPU state (uint8), CUDA states (`cuda.<i>`, uint8), numpy's MT19937
                                 key (`numpy`, 624 words) and Python's (`python`, 625 words) as int64 tensors;
                                 the scalars of the numpy and Python states in the header metadata (JSON)
    lr_scheduler.json            the scheduler's state_dict (numbers and lists)
    files.json                   {"<relative path>": {"size": bytes, "xxh3_64": "<16 hex digits>"}}

JSON writes floats as their shortest repr, which reads back to the same
double, so a resumed run stays bit-identical. The content hash is xxHash's
XXH3-64: not cryptographic (files.json sits in the same folder, so it could
only ever catch damage, not an attacker), but it runs at memory speed, so
hashing a checkpoint costs about what reading it back does. On resume the
hashing is split over the processes (largest files first, round robin) and
the verdicts are gathered, so every process refuses together.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import torch
import torch.distributed as dist

from colossal_llama.errors import ConfigError
from colossal_llama.outputs import LOCK_NAME

HASH = "xxh3_64"
CHUNK = 16 << 20


def hash_file(path: str) -> str:
    import xxhash

    digest = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def index_files(folder: str) -> dict:
    """{relative path: {"size", "xxh3_64"}} of every file under `folder`, for files.json."""
    index = {}
    for root, _, names in os.walk(folder):
        for name in sorted(names):
            if root == folder and name == LOCK_NAME:  # the staging folder's lock, removed when it is published
                continue
            path = os.path.join(root, name)
            index[os.path.relpath(path, folder)] = {"size": os.path.getsize(path), HASH: hash_file(path)}
    return index


def verify_files(folder: str, index, label: str, sizes_only_ok: bool = False) -> None:
    """Check every file of files.json: present, its size (cheap, all first), then its content hash.

    Args:
        index: files.json as read; label: how the folder is named in errors (`--load_checkpoint X`).
        sizes_only_ok: accept an older files.json of sizes only (checking sizes), for reading the
            weights alone (safetensors, whose loading runs no code).
    Raises:
        ConfigError: an old-format index, a missing, truncated or changed file (named).
    """
    if not isinstance(index, dict) or not index:
        raise ConfigError(f"{label}: files.json lists no files")
    old = all(isinstance(e, int) for e in index.values())
    if old and sizes_only_ok:
        index = {name: {"size": size} for name, size in index.items()}
    elif not all(isinstance(e, dict) and {"size", HASH} <= e.keys() for e in index.values()):
        raise ConfigError(f"{label}: saved by an older version (files.json without content hashes), which a "
                          "resume no longer reads; start a new stage from its weights with --weights_only")
    for name, entry in index.items():
        path = os.path.join(folder, name)
        if os.path.isabs(name) or os.path.normpath(name).startswith(".."):
            raise ConfigError(f"{label}: files.json lists {name}, outside the checkpoint folder")
        if not os.path.isfile(path):
            raise ConfigError(f"{label}: {name} is missing")
        if os.path.getsize(path) != entry["size"]:
            raise ConfigError(f"{label}: {name} is truncated or changed ({os.path.getsize(path)} bytes, "
                              f"{entry['size']} when saved)")
    if old:
        return
    changed = _changed_files(folder, index)
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ConfigError(f"{label}: {changed[0]} does not match its hash in files.json (changed or corrupt){more}; "
                          "load another checkpoint")


def _changed_files(folder: str, index: dict) -> list[str]:
    """Files whose hash differs, each hashed by one process; every process gets the whole list."""
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    by_size = sorted(index, key=lambda n: (-index[n]["size"], n))
    changed = []
    for name in by_size[rank::world]:
        try:
            if hash_file(os.path.join(folder, name)) != index[name][HASH]:
                changed.append(name)
        except OSError as exc:  # reported by all processes together, never raised by one alone
            changed.append(f"{name} (unreadable: {exc.strerror})")
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, changed)
        changed = [name for part in gathered for name in part]
    return sorted(changed)


def check_formats(folder: str, names, label: str) -> None:
    """Every .json parses and every .safetensors has a valid header, before anything loads them.

    Raises:
        ConfigError: naming the first file that is not what its name says.
    """
    from safetensors import safe_open

    for name in sorted(names):
        path = os.path.join(folder, name)
        try:
            if name.endswith(".json"):
                with open(path, encoding="utf-8") as f:
                    json.load(f)
            elif name.endswith(".safetensors"):
                with safe_open(path, framework="pt") as f:
                    f.keys()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{label}: {name} is not valid JSON ({exc})") from None
        except Exception as exc:  # safetensors raises its own SafetensorError
            raise ConfigError(f"{label}: {name} is not a safetensors file ({exc})") from None


def save_rng(path: str) -> None:
    """This process's torch, CUDA, numpy and Python generator states, as safetensors."""
    from safetensors.torch import save_file

    name, key, pos, has_gauss, cached = np.random.get_state()
    version, words, gauss_next = random.getstate()
    tensors = {"torch": torch.get_rng_state(), "numpy": torch.from_numpy(key.astype(np.int64)),
               "python": torch.tensor(words, dtype=torch.int64)}
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    tensors.update({f"cuda.{i}": state for i, state in enumerate(cuda)})
    metadata = {"numpy": json.dumps([name, int(pos), int(has_gauss), float(cached)]),
                "python": json.dumps([version, gauss_next]), "cuda_devices": str(len(cuda))}
    save_file(tensors, path, metadata=metadata)


def load_rng(path: str) -> None:
    """Set the generators from `save_rng`'s file (CUDA states only where CUDA is).

    Raises:
        ValueError: a file of another shape (caught and named by the caller).
    """
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    name, pos, has_gauss, cached = json.loads(metadata["numpy"])
    version, gauss_next = json.loads(metadata["python"])
    words = tensors["python"].tolist()
    if tensors["torch"].dtype != torch.uint8 or len(words) != 625 or tensors["numpy"].numel() != 624:
        raise ValueError("not the generator states this version writes")
    torch.set_rng_state(tensors["torch"])
    np.random.set_state((name, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate((version, tuple(words), gauss_next))
    if torch.cuda.is_available():
        cuda = [tensors[f"cuda.{i}"] for i in range(int(metadata["cuda_devices"]))]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)


def save_scheduler(path: str, scheduler) -> None:
    """The scheduler's state_dict as JSON (LambdaLR of plain functions: numbers, lists, None)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(scheduler.state_dict(), f, indent=2)


def load_scheduler(path: str, scheduler) -> None:
    """Load `save_scheduler`'s file into a scheduler of the same kind.

    Raises:
        ValueError: other keys or list lengths than this scheduler's state (caught and named by the caller).
    """
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    own = scheduler.state_dict()
    same_shape = isinstance(state, dict) and state.keys() == own.keys() and all(
        isinstance(state[k], list) and len(state[k]) == len(v) for k, v in own.items() if isinstance(v, list))
    if not same_shape:
        raise ValueError(f"not the state of this schedule (keys {sorted(state) if isinstance(state, dict) else state})")
    if any(lam is not None for lam in state.get("lr_lambdas", [])):
        raise ValueError("lr_lambdas hold state; this schedule's are plain functions")
    scheduler.load_state_dict(state)
