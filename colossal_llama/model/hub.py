"""A model named by folder or by Hugging Face id, as a folder: the id is looked up in the local HF cache.

    resolve_model_dir("runs/demo/stages/05-sft/model", "--model_dir")   # a folder: returned as it is
    resolve_model_dir("meta-llama/Llama-2-7b-hf", "--pretrained")       # <HF_HUB_CACHE>/models--meta-llama--...
                                                                        #   /snapshots/<commit of refs/main>

Users of transformers expect `from_pretrained("org/name")` to work, so every
command that takes a model or tokenizer folder takes an id too. The lookup
never downloads (training nodes are often offline, and a download in the
middle of a multi-process launch would race): fetch the model first with
`huggingface-cli download org/name`. The cache is the one huggingface_hub
uses, read from the environment at call time (HF_HUB_CACHE, else
HUGGINGFACE_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub,
else ~/.cache/huggingface/hub).
"""

from __future__ import annotations

import os

from colossal_llama.errors import ConfigError


def hub_cache() -> str:
    """The Hugging Face hub cache folder, from the environment as huggingface_hub reads it."""
    env = os.environ
    cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if not cache:
        home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"),
                                                  "huggingface")
        cache = os.path.join(home, "hub")
    return os.path.expanduser(os.path.expandvars(cache))


def is_repo_id(name: str) -> bool:
    """Whether `name` could be a hub id (`name` or `org/name`); paths such as `./x`, `/x` or `a/b/c` cannot."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def resolve_model_dir(name_or_path: str, flag: str, error: type[Exception] = ConfigError) -> str:
    """The folder of a model: `name_or_path` itself if it is a folder, else the cached snapshot of that hub id.

    Args:
        name_or_path: a folder, or a hub id (`org/name`) whose `main` revision is in the local cache.
        flag: the option that named it (`--pretrained`), for the error message; "" for none.
        error: the exception class to raise (each command reports its own kind of user error).
    Returns:
        The folder, unchanged for a folder; for an id, `<cache>/models--org--name/snapshots/<commit>`.
    Raises:
        error: neither a folder nor an id in the cache; the message names the flag, the id and the cache.
    """
    if os.path.isdir(name_or_path):
        return name_or_path
    named = f"{flag} {name_or_path}" if flag else name_or_path
    if not is_repo_id(name_or_path):
        raise error(f"{named}: folder does not exist")
    return cached_snapshot(name_or_path, named, error)


def cached_snapshot(repo_id: str, named: str, error: type[Exception] = ConfigError) -> str:
    """The local cache's snapshot folder of hub id `repo_id` (main revision), never a folder of that name.

    Raises:
        error: `named: ...` when the cache holds no snapshot of it.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = hub_cache()
    try:
        return snapshot_download(repo_id, cache_dir=cache, local_files_only=True)
    except LocalEntryNotFoundError:
        entry = "models--" + repo_id.replace("/", "--")
        raise error(f"{named}: no such folder, and no snapshot of it in the Hugging Face cache {cache} ({entry}; "
                    "set by HF_HUB_CACHE or HF_HOME); nothing is downloaded: fetch it first with "
                    f"`huggingface-cli download {repo_id}`, or give a folder") from None
