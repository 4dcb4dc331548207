"""Packing and binning: exact results on small inputs, invariants on random ones."""

import numpy as np
import pytest

from colossal_llama.data.buckets import assign_bins
from colossal_llama.data.packing import _RoomIndex, best_fit_decreasing, split_documents


def test_split_documents_exact():
    doc, start, length = split_documents(np.array([3, 8, 9, 17]), 8)
    assert doc.tolist() == [0, 1, 2, 2, 3, 3, 3]
    assert start.tolist() == [0, 0, 0, 8, 0, 8, 16]
    assert length.tolist() == [3, 8, 8, 1, 8, 8, 1]


def test_best_fit_decreasing_docstring_example():
    assert best_fit_decreasing(np.array([7, 5, 4, 3, 1]), 8) == [[0, 4], [1, 3], [2]]


def test_best_fit_picks_the_tightest_row():
    # rows after the first three items: rooms 2 (item 0: 8), 4 (item 1: 6), 5 (item 2: 5)
    # item 3 (length 4) must go to the row with room 4, not the one with room 5
    rows = best_fit_decreasing(np.array([8, 6, 5, 4]), 10)
    assert rows == [[0], [1, 3], [2]]


@pytest.mark.parametrize("seed", range(20))
def test_best_fit_invariants(seed):
    rng = np.random.default_rng(seed)
    capacity = int(rng.integers(8, 200))
    lengths = rng.integers(1, capacity + 1, size=int(rng.integers(1, 400)))
    rows = best_fit_decreasing(lengths, capacity, rng.permutation(len(lengths)))
    placed = sorted(i for row in rows for i in row)
    assert placed == list(range(len(lengths)))  # every item exactly once
    loads = [int(lengths[row].sum()) for row in rows]
    assert max(loads) <= capacity
    # any-fit property: at most one row is at most half full (when the later of
    # two such rows was opened, its first item would have fit in the earlier one)
    assert sum(load <= capacity // 2 for load in loads) <= 1
    assert len(rows) >= -(-int(lengths.sum()) // capacity)


def test_room_index_matches_brute_force():
    rng = np.random.default_rng(0)
    index, counts = _RoomIndex(50), [0] * 51
    for _ in range(2000):
        room = int(rng.integers(0, 51))
        if rng.random() < 0.5 or counts[room] == 0:
            index.add(room, 1)
            counts[room] += 1
        else:
            index.add(room, -1)
            counts[room] -= 1
        n = int(rng.integers(0, 51))
        expected = next((r for r in range(n, 51) if counts[r]), -1)
        assert index.least_at_least(n) == expected


def test_assign_bins_exact():
    # 4 rows of 10 tokens in 2 bins: midpoints 5, 15, 25, 35 of 40
    assert assign_bins(np.array([10, 10, 10, 10]), 2).tolist() == [0, 0, 1, 1]
    # fewer rows than bins: spread out, not the first bins
    assert assign_bins(np.array([10, 10]), 10).tolist() == [2, 7]
    assert assign_bins(np.array([5]), 3).tolist() == [1]


@pytest.mark.parametrize("seed", range(10))
def test_assign_bins_balanced(seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, 100, size=int(rng.integers(50, 300)))
    bins = int(rng.integers(1, 12))
    assigned = assign_bins(tokens, bins)
    assert (np.diff(assigned) >= 0).all()  # contiguous runs in row order
    per_bin = np.bincount(assigned, weights=tokens, minlength=bins)
    # every bin is within one row of its fair share
    assert np.abs(per_bin - tokens.sum() / bins).max() <= tokens.max()
