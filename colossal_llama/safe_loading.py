"""Loading checkpoint and model files without running code from them: no pickle beyond plain data.

    with safe_loading():
        booster.load_model(model, "ck/step-00000012/model")
        booster.load_optimizer(optimizer, "ck/step-00000012/optimizer.pt")

A checkpoint folder is data, but a pickle can name any callable to run when
it is loaded. What this project writes itself is safetensors and JSON (see
`training/state_files.py`); ColossalAI writes the optimizer (and, with .bin
shards, a model) with `torch.save` and reads it back with a plain
`torch.load`, which unpickles anything. While `safe_loading()` is active,
every way ColossalAI 0.5.0 reads such a file is restricted:

- `torch.load` (every call site in `colossalai.checkpoint_io` and the
  plugins' checkpoint IO; also transformers' .bin loading) is replaced by
  `safe_torch_load`: `weights_only=True` whatever the caller asks, so only
  tensors, numbers, strings, None, lists, tuples, dicts and OrderedDicts come
  back (what optimizer states are made of: ColossalAI's param groups hold
  floats, bools, None and tuples, so no `add_safe_globals` is needed). Before
  that, the file must be a zip-format torch file and not a TorchScript
  archive: torch 2.5.1's `torch.load` hands a TorchScript archive to
  `torch.jit.load` even with `weights_only=True` (CVE-2025-32434, fixed in
  torch 2.6), and the pre-1.6 tar/raw-pickle formats are not what any
  current `torch.save` writes.
- ColossalAI's "safetensors" optimizer files (`load_flat`, written by its
  async save) carry param groups as a pickle inside a byte tensor, read with
  a plain `pickle.Unpickler`; that unpickler is replaced by `PlainUnpickler`,
  which loads no global but OrderedDict (once ColossalAI's checkpoint IO is
  imported, as it is as soon as a booster exists).

Anything else is refused with `UnsafeFileError`, naming the file; the
context manager also yields the list of refusals, for callers such as
transformers that turn every loading error into their own OSError. The patch
is process-wide for the duration of the `with` (loading happens in setup(),
before training starts).
"""

from __future__ import annotations

import collections
import os
import pickle
import sys
from contextlib import contextmanager

import torch

from colossal_llama.errors import UnsafeFileError

_TORCH_LOAD = torch.serialization.load
_REFUSED: list = []  # the refusals of the innermost active safe_loading()


class PlainUnpickler(pickle.Unpickler):
    """Unpickles numbers, strings, bytes, None, lists, tuples and dicts; of the globals only OrderedDict.

    Without globals a pickle cannot call anything: REDUCE, NEWOBJ and BUILD
    need a callable or class, and those come only from `find_class`
    (the restriction the pickle documentation recommends).
    """

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refused global {module}.{name}: only plain data is loaded")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id: only plain data is loaded")


def _name_of(f) -> str:
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    return str(getattr(f, "name", "<in-memory file>"))


def check_torch_archive(opened, name: str) -> None:
    """Refuse anything but a zip-format `torch.save` file (TorchScript archives and legacy formats).

    Raises:
        UnsafeFileError: naming `name` and what it is.
    """
    from torch.serialization import _is_torchscript_zip, _is_zipfile, _open_zipfile_reader

    start = opened.tell()
    if not _is_zipfile(opened):
        raise UnsafeFileError(name, "not a zip-format torch file (a raw pickle, or a pre-1.6 torch format); refused, "
                                    "as loading it could run code")
    opened.seek(start)
    try:
        with _open_zipfile_reader(opened) as archive:
            script = _is_torchscript_zip(archive)
    except RuntimeError as exc:  # a damaged zip
        raise UnsafeFileError(name, f"not a readable torch file ({exc})") from None
    if script:
        raise UnsafeFileError(name, "a TorchScript archive, which torch.load would hand to torch.jit.load; refused")
    opened.seek(start)


def safe_torch_load(f, map_location=None, pickle_module=None, *args, **kwargs):
    """`torch.load(f, map_location, weights_only=True)` of a zip-format torch file, whatever else is asked.

    Raises:
        UnsafeFileError: the file holds more than tensors and plain data, or is not a plain torch file.
    """
    try:
        return _load_weights_only(f, map_location)
    except UnsafeFileError as exc:
        _REFUSED.append(exc)
        raise


def _load_weights_only(f, map_location):
    name = _name_of(f)
    owned = isinstance(f, (str, os.PathLike))
    opened = open(f, "rb") if owned else f
    try:
        check_torch_archive(opened, name)
        try:
            return _TORCH_LOAD(opened, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise UnsafeFileError(name, f"holds pickled objects other than tensors and plain data ({_why(exc)}); "
                                        "refused, as loading it could run code") from None
    finally:
        if owned:
            opened.close()


def _why(exc: Exception) -> str:
    """The line of torch's refusal that names what was refused (not its advice to load with weights_only=False)."""
    lines = [line.strip() for line in str(exc).splitlines()[1:]
             if line.strip() and not line.startswith("Check the documentation")]
    return lines[0] if lines else "unsupported pickle content"


@contextmanager
def safe_loading():
    """Within the block, torch.load and ColossalAI's pickled optimizer metadata load plain data only.

    Yields:
        list[UnsafeFileError]: the files refused so far in the block.
    """
    global _REFUSED
    # imported with ColossalAI's checkpoint IO (so whenever a booster exists); not imported here, as importing
    # ColossalAI costs seconds and prints warnings where only transformers loads (inference)
    colossal = sys.modules.get("colossalai.utils.safetensors")
    saved = (torch.load, torch.serialization.load, _REFUSED, colossal and colossal._unpickler)
    torch.load = torch.serialization.load = safe_torch_load
    _REFUSED = []
    if colossal:
        colossal._unpickler = PlainUnpickler
    try:
        yield _REFUSED
    finally:
        torch.load, torch.serialization.load, _REFUSED = saved[:3]
        if colossal:
            colossal._unpickler = saved[3]
