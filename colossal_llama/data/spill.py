"""Reading what the map step spilled, and the reduce step's own spill of planned rows.

    reader = SpillReader(spill_dir)                           # ids and labels, mapped chunk by chunk
    category, offset, length = chunk_documents(spill_dir, 3)  # chunk 3's documents
    save_arrays(plan_dir, "g000001", {"pieces": pieces})      # a plan task's output; load_arrays(plan_dir, ...)

Labels are spilled as one byte per token, 1 where the token is trained on
(the label is the token itself) and 0 where the label is -100; the reader
puts the labels back together.

The reduce step's tasks (buckets.py) read the documents of their categories
from the chunks' `.docs` files, save their planned pieces and rows as `.npy`
files in it, and the write tasks gather each batch of rows' tokens through
a reader. A task opens its own reader (it may run on any node) and closes it
when done, unless it runs in a process that shares one (`shared_reader`: the
local engine runs the tasks in the driver).
"""

from __future__ import annotations

import mmap
import os
import secrets
from contextlib import contextmanager, suppress

import numpy as np

from colossal_llama.data.mapstep import spill_path
from colossal_llama.data.tokenize import IGNORE_INDEX

_DTYPES = {"ids": np.int32, "trained": np.uint8}


class SpillReader:
    """Memory-mapped access to the spill files of the map step; a chunk's files are mapped when first read.

    Pages read through a map count in the process's resident memory until
    `release()` or `close()` (they stay in the page cache). Once the maps
    hold more than `MAPPED_BUDGET` (5 bytes per token: 109 MB for the 50x
    benchmark corpus), they are released after every batch of rows, so a
    task's memory stays flat however large the corpus; below it they are
    kept until `close()`, which spares reading the pages in again.
    """

    MAPPED_BUDGET = 128 << 20

    def __init__(self, spill_dir: str):
        self.spill_dir = spill_dir
        self._maps: dict[str, dict[int, np.ndarray]] = {kind: {} for kind in _DTYPES}
        self._mmaps = []
        self.mapped_bytes = 0

    def _array(self, kind: str, chunk: int) -> np.ndarray:
        maps = self._maps[kind]
        if chunk not in maps:
            path = spill_path(self.spill_dir, chunk, kind)
            if os.path.getsize(path) == 0:
                maps[chunk] = np.zeros(0, _DTYPES[kind])
            else:
                mapped = np.memmap(path, _DTYPES[kind], "r")
                self.mapped_bytes += mapped.nbytes
                self._mmaps.append(mapped._mmap)
                # a plain ndarray view of the map: slicing a np.memmap costs ~20x more
                maps[chunk] = mapped.view(np.ndarray)
        return maps[chunk]

    def trained(self, chunk: int, start: int, n: int) -> np.ndarray:
        """True where the label is the token (it is trained on), False where it is -100."""
        return self._array("trained", chunk)[start : start + n].view(bool)

    def gather(self, where: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, labels, trained) of the (chunk, start, n) spans, each concatenated."""
        for c in {c for c, _, _ in where} - self._maps["ids"].keys():  # map them first: then plain lookups
            self._array("ids", c)
            self._array("trained", c)
        ids, trained = self._maps["ids"], self._maps["trained"]
        ids = np.concatenate([ids[c][o : o + n] for c, o, n in where])
        trained = np.concatenate([trained[c][o : o + n] for c, o, n in where]).view(bool)
        return ids, np.where(trained, ids, np.int32(IGNORE_INDEX)), trained

    def release(self) -> None:
        """Drop the pages read so far from this process's memory (they are read again when needed),
        if the maps hold more than MAPPED_BUDGET."""
        if self.mapped_bytes <= self.MAPPED_BUDGET:
            return
        for m in self._mmaps:
            m.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        """Unmap every file (the maps go when the last array read from them goes)."""
        self._maps = {kind: {} for kind in _DTYPES}
        self._mmaps = []
        self.mapped_bytes = 0


_SHARED: dict[str, tuple[int, SpillReader]] = {}


@contextmanager
def shared_reader(spill_dir: str):
    """While open, the tasks that run in this process share one reader of `spill_dir` (`task_reader`).

    The local engine runs the reduce and write tasks in the driver, one after
    the other; a reader per task would map and fault in the spill again for
    every bucket (29,000 page faults against 6,000 writing the 50x corpus).
    """
    reader = SpillReader(spill_dir)
    _SHARED[spill_dir] = (os.getpid(), reader)
    try:
        yield reader
    finally:
        del _SHARED[spill_dir]
        reader.close()


@contextmanager
def task_reader(spill_dir: str):
    """The reader of a task: the one this process shares, else its own, closed when the task ends (a Ray worker
    must not keep the maps of a spill that is deleted after the run)."""
    pid, reader = _SHARED.get(spill_dir, (None, None))
    if pid == os.getpid():
        yield reader
        return
    reader = SpillReader(spill_dir)
    try:
        yield reader
    finally:
        reader.close()


def chunk_documents(spill_dir: str, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(local category, offset, length) of every document of a chunk, in input order (int64 each)."""
    docs = np.fromfile(spill_path(spill_dir, chunk, "docs"), dtype=np.int64).reshape(-1, 2)
    lengths = docs[:, 1]
    offsets = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    return docs[:, 0], offsets, lengths


def save_arrays(folder: str, stem: str, arrays: dict[str, np.ndarray]) -> None:
    """`folder/stem.NAME.npy` per array, each written under a temporary name of this attempt first, then
    renamed (a retried task may overlap an earlier attempt still running: each rewrites them whole, and a
    reader of the earlier file keeps its inode)."""
    attempt = f"{os.getpid()}-{secrets.token_hex(6)}"
    for name, values in arrays.items():
        path = os.path.join(folder, f"{stem}.{name}.npy")
        temporary = os.path.join(folder, f".{stem}.{name}.npy.{attempt}")
        try:
            with open(temporary, "wb") as f:
                np.save(f, values)
            os.replace(temporary, path)
        except BaseException:
            with suppress(OSError):
                os.remove(temporary)
            raise


def load_arrays(folder: str, stem: str, *names: str) -> list[np.ndarray]:
    """Arrays written by `save_arrays`, memory-mapped."""
    # plain ndarray views: slicing a np.memmap costs ~20x more
    return [np.load(os.path.join(folder, f"{stem}.{name}.npy"), mmap_mode="r").view(np.ndarray) for name in names]
