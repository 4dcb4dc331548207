"""Seeded randomness for data: one generator per purpose, derived from the run's seed.

    order = derived_rng(seed, "bucket", epoch, k).permutation(n)

The purpose (any JSON-serialisable values) keeps the streams independent: the
packing ties of a category, the row order of a bucket and the mixture's
sampling draw from different generators, and none depends on Python's hash
seed or on the order in which the others were used.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np


def derived_rng(seed: int, *purpose) -> np.random.Generator:
    """A generator for one purpose, independent of Python's hash seed."""
    digest = hashlib.sha256(json.dumps([seed, *purpose]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
