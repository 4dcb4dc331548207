"""Reading what the map step spilled: the table of documents and their tokens.

    table = load_doc_table(spill_dir, results)   # every document: chunk, offset, length, category
    reader = SpillReader(spill_dir, results)     # their ids and labels, memory-mapped

Labels are spilled as one byte per token, 1 where the token is trained on
(the label is the token itself) and 0 where the label is -100; the reader
puts the labels back together.

The reduce step (buckets.py) plans rows from the table and gathers the
tokens of each batch of rows through the reader.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

import numpy as np

from colossal_llama.data.mapstep import ChunkResult, spill_path
from colossal_llama.data.tokenize import IGNORE_INDEX

_DTYPES = {"ids": np.int32, "trained": np.uint8}


class SpillReader:
    """Memory-mapped access to the spill files of the map step.

    Pages read through a map count in the process's resident memory until
    `release()` (they stay in the page cache). A spill larger than
    `MAPPED_BUDGET` (5 bytes per token: 109 MB for the 50x benchmark corpus)
    is released after every batch of rows, so the write step's memory stays
    flat however large the corpus; a smaller one is never released, which
    spares reading its pages in again for every bucket.
    """

    MAPPED_BUDGET = 128 << 20

    def __init__(self, spill_dir: str, results: list[ChunkResult]):
        self._maps: dict[str, dict[int, np.ndarray]] = {kind: {} for kind in _DTYPES}
        self._mmaps = []
        self.mapped_bytes = 0
        for r in results:
            for kind, maps in self._maps.items():
                path = spill_path(spill_dir, r.index, kind)
                if os.path.getsize(path) == 0:
                    maps[r.index] = np.zeros(0, _DTYPES[kind])
                    continue
                mapped = np.memmap(path, _DTYPES[kind], "r")
                self.mapped_bytes += mapped.nbytes
                self._mmaps.append(mapped._mmap)
                # a plain ndarray view of the map: slicing a np.memmap costs ~20x more
                maps[r.index] = mapped.view(np.ndarray)

    def trained(self, chunk: int, start: int, n: int) -> np.ndarray:
        """True where the label is the token (it is trained on), False where it is -100."""
        return self._maps["trained"][chunk][start : start + n].view(bool)

    def gather(self, where: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, labels, trained) of the (chunk, start, n) spans, each concatenated."""
        ids, trained = self._maps["ids"], self._maps["trained"]
        ids = np.concatenate([ids[c][o : o + n] for c, o, n in where])
        trained = np.concatenate([trained[c][o : o + n] for c, o, n in where]).view(bool)
        return ids, np.where(trained, ids, np.int32(IGNORE_INDEX)), trained

    def release(self) -> None:
        """Drop the pages read so far from this process's memory (they are read again when needed),
        if the spill is larger than MAPPED_BUDGET."""
        if self.mapped_bytes <= self.MAPPED_BUDGET:
            return
        for m in self._mmaps:
            m.madvise(mmap.MADV_DONTNEED)


@dataclass
class DocTable:
    """Every accepted document in input order: where its tokens are and its category."""

    chunk: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    category: np.ndarray
    names: list[str]
    """Category names, sorted; `category` indexes into it."""


def load_doc_table(spill_dir: str, results: list[ChunkResult]) -> DocTable:
    names = sorted({c for r in results for c in r.categories})
    index = {n: i for i, n in enumerate(names)}
    parts = []
    for r in results:
        docs = np.fromfile(spill_path(spill_dir, r.index, "docs"), dtype=np.int64).reshape(-1, 2)
        local_to_global = np.array([index[c] for c in r.categories] or [0], dtype=np.int64)
        lengths = docs[:, 1]
        offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(lengths) else lengths
        chunk = np.full(len(docs), r.index, dtype=np.int64)
        parts.append((chunk, offsets, lengths, local_to_global[docs[:, 0]]))
    cols = [np.concatenate([p[i] for p in parts]) if parts else np.zeros(0, np.int64) for i in range(4)]
    return DocTable(*cols, names=names)
