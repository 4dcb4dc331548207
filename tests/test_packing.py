"""Packing and binning: exact results on small inputs, invariants on random ones."""

import os

import numpy as np
import pytest

from colossal_llama.data.buckets import assign_bins
from colossal_llama.data.packing import Rows, _RoomIndex, best_fit_decreasing, concatenated_ranges, split_documents


def test_split_documents_exact():
    doc, start, length = split_documents(np.array([3, 8, 9, 17]), 8)
    assert doc.tolist() == [0, 1, 2, 2, 3, 3, 3]
    assert start.tolist() == [0, 0, 0, 8, 0, 8, 16]
    assert length.tolist() == [3, 8, 8, 1, 8, 8, 1]


def test_best_fit_decreasing_docstring_example():
    rows = best_fit_decreasing(np.array([7, 5, 4, 3, 1]), 8)
    assert rows.tolist() == [[0, 4], [1, 3], [2]]
    assert rows.members.tolist() == [0, 4, 1, 3, 2] and rows.offsets.tolist() == [0, 2, 4, 5]


def test_best_fit_picks_the_tightest_row():
    # rows after the first three items: rooms 2 (item 0: 8), 4 (item 1: 6), 5 (item 2: 5)
    # item 3 (length 4) must go to the row with room 4, not the one with room 5
    rows = best_fit_decreasing(np.array([8, 6, 5, 4]), 10)
    assert rows.tolist() == [[0], [1, 3], [2]]


@pytest.mark.parametrize("seed", range(20))
def test_best_fit_invariants(seed):
    rng = np.random.default_rng(seed)
    capacity = int(rng.integers(8, 200))
    lengths = rng.integers(1, capacity + 1, size=int(rng.integers(1, 400)))
    rows = best_fit_decreasing(lengths, capacity, rng.permutation(len(lengths))).tolist()
    placed = sorted(i for row in rows for i in row)
    assert placed == list(range(len(lengths)))  # every item exactly once
    loads = [int(lengths[row].sum()) for row in rows]
    assert max(loads) <= capacity
    # any-fit property: at most one row is at most half full (when the later of
    # two such rows was opened, its first item would have fit in the earlier one)
    assert sum(load <= capacity // 2 for load in loads) <= 1
    assert len(rows) >= -(-int(lengths.sum()) // capacity)


def test_rows_take_and_sums():
    rows = Rows(np.array([4, 0, 2, 1, 3]), np.array([0, 2, 3, 5]))  # [[4, 0], [2], [1, 3]]
    assert rows.take(np.array([2, 0, 1])).tolist() == [[1, 3], [4, 0], [2]]
    assert rows.take(np.array([1])).tolist() == [[2]] and rows.take(np.zeros(0, np.int64)).tolist() == []
    assert rows.sums(np.array([10, 20, 30, 40, 50])).tolist() == [60, 30, 60]
    assert Rows.singletons(3).tolist() == [[0], [1], [2]] and len(best_fit_decreasing(np.zeros(0), 4)) == 0
    assert concatenated_ranges(np.array([5, 0, 9]), np.array([2, 0, 3])).tolist() == [5, 6, 9, 10, 11]


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


# --- the reduce step on a synthetic spill (no tokenizer): within and across categories ---


def fake_spill(folder, docs_per_chunk=60, max_doc=160, masked_prefixes=True, seed=11):
    """Two map chunks of documents of three categories (local category orders differ per chunk).

    Returns (results, documents): the chunk results and every document as
    (ids, labels, category) in spill order.
    """
    from colossal_llama.data.mapstep import ChunkResult, spill_path

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    results, documents = [], []
    for index, cats in enumerate((["b", "a", "c"], ["c", "a"])):
        lengths = rng.integers(1, max_doc, size=docs_per_chunk)
        local = rng.integers(0, len(cats), size=docs_per_chunk)
        ids = rng.integers(3, 1000, size=int(lengths.sum())).astype(np.int32)
        labels = ids.copy()
        start = 0
        for n, c in zip(lengths.tolist(), local.tolist()):
            if masked_prefixes:  # a masked prefix, sometimes all of it
                labels[start : start + int(rng.integers(0, n + 1))] = -100
            documents.append((ids[start : start + n].tolist(), labels[start : start + n].tolist(), cats[c]))
            start += n
        ids.tofile(spill_path(folder, index, "ids"))
        (labels != -100).astype(np.uint8).tofile(spill_path(folder, index, "trained"))
        np.stack([local, lengths], axis=1).astype(np.int64).tofile(spill_path(folder, index, "docs"))
        results.append(ChunkResult(index, records=docs_per_chunk, tokens=int(lengths.sum()), categories=cats))
    return results, documents


def reduce_fake(tmp_path, name, max_length, bins, seed, workers=1, **plan_kw):
    """The reduce and write steps over a fake spill; returns (arrow folder, parts, plan, documents)."""
    spill = str(tmp_path / f"spill-{name}")
    results, documents = fake_spill(spill)
    arrow = str(tmp_path / name)
    plan, parts = reduce_spill(spill, results, arrow, max_length, bins, seed, workers, **plan_kw)
    return arrow, parts, plan, documents


def reduce_spill(spill, results, arrow, max_length, bins, seed, workers=1, **plan_kw):
    """(plan, parts) of the reduce and write steps over the spill folder `spill`.

    One worker: the tasks run in this process; more: in a process pool, as on Ray's workers.
    """
    from colossal_llama.data.bucket_writer import write_buckets
    from colossal_llama.data.buckets import plan_buckets
    from colossal_llama.data.engine import LocalEngine

    engine = LocalEngine(workers)
    engine.start_workers()
    try:
        plan = plan_buckets(engine, spill, results, max_length, bins, seed, **plan_kw)
        return plan, write_buckets(engine, plan, arrow, "identity")
    finally:
        engine.close()


def arrow_rows(arrow_dir):
    """Every row of every part, as pyarrow reads them: [(part, [row dicts])]."""
    import pyarrow as pa

    parts = []
    for part in sorted(os.listdir(arrow_dir)):
        rows = []
        for name in sorted(f for f in os.listdir(os.path.join(arrow_dir, part)) if f.endswith(".arrow")):
            with pa.OSFile(os.path.join(arrow_dir, part, name)) as f:
                rows += pa.ipc.open_stream(f).read_all().to_pylist()
        parts.append((part, rows))
    return parts


def rows_digest(arrow_dir) -> str:
    import hashlib
    import json

    h = hashlib.sha256()
    for part, rows in arrow_rows(arrow_dir):
        h.update(part.encode())
        columns = {k: [r[k] for r in rows] for k in rows[0]}
        h.update(json.dumps(columns, sort_keys=True).encode())
    return h.hexdigest()


def stats_digest(parts) -> str:
    import hashlib
    import json

    old_keys = ("chunks", "documents", "dropped_all_masked_chunk", "label_tokens", "rows", "segments", "tokens")
    shaped = [[p["part"], p["bucket"], p["files"],
               {c: {k: v[k] for k in old_keys} for c, v in sorted(p["categories"].items())}] for p in parts]
    return hashlib.sha256(json.dumps(shaped, sort_keys=True).encode()).hexdigest()


# digests of the rows and per-part counts that the reduce step wrote before rows could mix categories
# (pinned from the code of commit cdc9873): one category per row must stay exactly that
PINNED_WITHIN = {
    True: ("a8666a17ec21319711667f5c3e206b2537be2938d053480ad6cfd9a2d190a7d2",
           "582526d3932b10e6da30680ba2d8dc3a6847c021dde5a5c2f9991ad5a943cf15"),
    False: ("ddaff279ea770b617e43d4a297fcf2e51df298c1363f3458c4a33364576b9fe1",
            "2e02b8d55e0957cd8672a07469cabbe9d1207bc661e50783a2655f93577b23d2"),
}


@pytest.mark.parametrize("pack", [True, False])
def test_within_category_rows_are_unchanged(tmp_path, pack):
    arrow, parts, plan, _ = reduce_fake(tmp_path, "out", 64, 3, 5, pack=pack, across_categories=False)
    assert (rows_digest(arrow), stats_digest(parts)) == PINNED_WITHIN[pack]
    assert not plan.settings.across
    assert all("segment_categories" not in r for _, rows in arrow_rows(arrow) for r in rows)
    if not pack:  # --no-pack: one document per row, whatever the packing mode
        again, parts, _, _ = reduce_fake(tmp_path, "again", 64, 3, 5, pack=False, across_categories=True)
        assert (rows_digest(again), stats_digest(parts)) == PINNED_WITHIN[False]


def test_across_categories_invariants_and_determinism(tmp_path):
    import collections
    import filecmp

    from helpers import reference_pieces

    max_length, bins = 64, 3
    arrow, parts, plan, documents = reduce_fake(tmp_path, "out", max_length, bins, 5, across_categories=True)
    expected = collections.Counter()
    for ids, labels, category in documents:
        for piece in reference_pieces(ids, labels, max_length):
            expected[(*piece, category)] += 1
    segments, per_bucket = collections.Counter(), collections.defaultdict(collections.Counter)
    mixed_rows = 0
    for part, (name, rows) in zip(parts, arrow_rows(arrow)):
        assert part["part"].endswith(name)
        for row in rows:
            assert len(row["input_ids"]) == len(row["labels"]) == sum(row["seq_lengths"]) <= max_length
            assert len(row["segment_categories"]) == len(row["seq_lengths"])
            distinct = set(row["segment_categories"])
            assert row["category"] == (distinct.pop() if len(distinct) == 1 else "<mixed>")
            mixed_rows += row["category"] == "<mixed>"
            start = 0
            for n, category in zip(row["seq_lengths"], row["segment_categories"]):
                segments[tuple(row["input_ids"][start : start + n]), tuple(row["labels"][start : start + n]),
                         category] += 1
                per_bucket[category][part["bucket"]] += n
                start += n
    assert segments == expected  # every kept piece exactly once, with the category of its document
    assert mixed_rows > 0 and plan.settings.across
    for category, tokens in per_bucket.items():  # bins: each category spread evenly over the buckets
        counts = np.array([tokens[k] for k in range(bins)])
        assert np.abs(counts - counts.sum() / bins).max() <= max_length, category
    reduce_fake(tmp_path, "again", max_length, bins, 5, across_categories=True)  # same inputs and seed: same bytes
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [name for name, _ in arrow_rows(arrow)]
    for part in (tmp_path / "out").iterdir():
        files = sorted(p.name for p in part.iterdir())
        assert filecmp.cmpfiles(part, tmp_path / "again" / part.name, files, shallow=False)[0] == files
    other, _, _, _ = reduce_fake(tmp_path, "other", max_length, bins, 6, across_categories=True)
    assert rows_digest(other) != rows_digest(arrow)  # the seed decides


def test_across_categories_fills_rows_one_category_cannot(tmp_path):
    """60%- and 40%-of-a-row documents: apart, every row of the first is 40% empty; together, none is."""
    from colossal_llama.data.mapstep import ChunkResult, spill_path

    lengths = np.array([60] * 20 + [40] * 20)
    for kind, values in (("ids", np.ones(lengths.sum(), np.int32)), ("trained", np.ones(lengths.sum(), np.uint8)),
                         ("docs", np.stack([np.repeat([0, 1], 20), lengths], axis=1).astype(np.int64))):
        values.tofile(spill_path(str(tmp_path), 0, kind))
    results = [ChunkResult(0, records=40, tokens=int(lengths.sum()), categories=["long", "short"])]
    fill = {}
    for across in (False, True):
        arrow = tmp_path / f"across-{across}"
        _, parts = reduce_spill(str(tmp_path), results, str(arrow), 100, 2, 0, across_categories=across)
        row_tokens = [sum(row["seq_lengths"]) for _, rows in arrow_rows(arrow) for row in rows]
        fill[across] = sum(row_tokens) / (100 * len(row_tokens))
        assert max(row_tokens) <= 100 and sum(row_tokens) == lengths.sum()
    assert fill == {False: 2000 / 3000, True: 1.0}


@pytest.mark.parametrize("across", [False, True])
def test_tasks_split_and_spread_give_the_same_bytes(tmp_path, monkeypatch, across):
    """One plan task per category, tasks in worker processes: the same parts as one task in this process."""
    import filecmp

    from colossal_llama.data import buckets

    arrow, parts, plan, _ = reduce_fake(tmp_path, "one", 64, 3, 5, across_categories=across)
    assert {g for task in plan.buckets for g in task.runs[:, 0].tolist()} == {0}  # small: one plan task
    monkeypatch.setattr(buckets, "PLAN_GROUP_TOKENS", 1)
    again, parts_again, plan_again, _ = reduce_fake(tmp_path, "spread", 64, 3, 5, workers=2, across_categories=across)
    assert {g for task in plan_again.buckets for g in task.runs[:, 0].tolist()} == {0, 1, 2}  # one per category
    assert parts_again == parts and plan_again.category_inputs == plan.category_inputs
    assert sum(task.runs.nbytes for task in plan.buckets) <= 3 * 3 * 32  # the driver: per (category, bin), no more
    for part in os.listdir(arrow):
        files = sorted(os.listdir(os.path.join(arrow, part)))
        assert filecmp.cmpfiles(os.path.join(arrow, part), os.path.join(again, part), files, shallow=False)[0] == files


def test_spill_pages_are_released_above_the_budget(tmp_path, monkeypatch):
    """The write step's memory stays flat: pages read from a spill over MAPPED_BUDGET leave the process."""
    import psutil

    from colossal_llama.data.mapstep import spill_path
    from colossal_llama.data.spill import SpillReader

    n = 8 << 20  # 32 MiB of ids, 8 MiB of trained flags
    np.arange(n, dtype=np.int32).tofile(spill_path(str(tmp_path), 0, "ids"))
    (np.arange(n) % 3 != 0).astype(np.uint8).tofile(spill_path(str(tmp_path), 0, "trained"))
    reader = SpillReader(str(tmp_path))
    rss = lambda: psutil.Process().memory_info().rss  # noqa: E731
    before = rss()
    ids, labels, trained = reader.gather([(0, 0, n // 2), (0, n // 2, n - n // 2)])
    assert ids[-1] == n - 1 and labels[3] == -100 and labels[4] == 4 and trained.sum() == n - (n + 2) // 3
    del ids, labels, trained
    read = rss()
    assert read - before > 32 << 20  # the mapped pages count while they are mapped
    reader.release()  # 40 MiB is under the budget: kept
    assert rss() > read - (8 << 20)
    monkeypatch.setattr(SpillReader, "MAPPED_BUDGET", 1 << 20)
    reader.release()
    assert rss() < read - (32 << 20)


def test_overlapping_attempts_publish_whole_files(tmp_path):
    """A task retried while an earlier attempt still runs (Ray lost its node): each attempt writes names of its own
    and renames them at the end, so a reader of the first attempt's files keeps its full data, the final files are
    complete and the same, and no attempt leaves temporaries (a failed one removes its own)."""
    import filecmp
    import threading

    from colossal_llama.data.bucket_writer import WriteSettings, write_bucket
    from colossal_llama.data.mapstep import _ChunkSpill, spill_path
    from colossal_llama.data.spill import load_arrays, save_arrays

    # map step: attempt 1 finishes, a reader maps its ids; attempt 2 writes the same chunk, then a failed attempt 3
    spill = str(tmp_path / "spill")
    os.makedirs(spill)
    ids = np.arange(1 << 16, dtype=np.int32)

    def map_attempt(fail=False):
        chunk = _ChunkSpill(spill, 7)
        try:
            chunk.files["ids"].write(ids)
            chunk.files["trained"].write(np.ones(len(ids), dtype=np.uint8))
            chunk.files["docs"].write(np.array([[0, len(ids)]], dtype=np.int64))
            if fail:
                raise RuntimeError("worker lost")
        except RuntimeError:
            chunk.close(failed=True)
            raise
        chunk.close(failed=False)

    map_attempt()
    mapped = np.memmap(spill_path(spill, 7, "ids"), dtype=np.int32, mode="r")
    second = _ChunkSpill(spill, 7)  # open, not yet written: the first attempt's files are untouched
    assert os.path.getsize(spill_path(spill, 7, "ids")) == ids.nbytes
    second.files["ids"].write(ids)
    second.files["trained"].write(np.ones(len(ids), dtype=np.uint8))
    second.files["docs"].write(np.array([[0, len(ids)]], dtype=np.int64))
    second.close(failed=False)
    with pytest.raises(RuntimeError):
        map_attempt(fail=True)
    assert (mapped == ids).all()
    assert (np.fromfile(spill_path(spill, 7, "ids"), dtype=np.int32) == ids).all()
    assert sorted(os.listdir(spill)) == [f"c000007.{s}" for s in ("docs", "ids", "trained")]
    del mapped

    # plan task: concurrent saves of the same arrays; a mapped load of an earlier one stays whole
    save_arrays(spill, "g000001", {"pieces": ids})
    (loaded,) = load_arrays(spill, "g000001", "pieces")
    threads = [threading.Thread(target=save_arrays, args=(spill, "g000001", {"pieces": ids})) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (loaded == ids).all() and (load_arrays(spill, "g000001", "pieces")[0] == ids).all()
    assert [n for n in os.listdir(spill) if n.startswith(".")] == []

    # write step: every bucket written by two concurrent attempts, then once more after both finished
    arrow, parts, plan, _ = reduce_fake(tmp_path, "one", 64, 3, 5, across_categories=True)
    again = str(tmp_path / "again")
    os.makedirs(again)
    settings = WriteSettings(plan.settings, again, "identity")
    got: dict = {}

    def write_attempt(task, key):
        got[key] = write_bucket(task, settings)

    threads = [threading.Thread(target=write_attempt, args=(task, (task.bucket, n)))
               for task in plan.buckets for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for task in plan.buckets:
        late = write_bucket(task, settings)  # the part is there: this attempt's copy is dropped
        assert got[task.bucket, 0] == got[task.bucket, 1] == late == parts[task.bucket]
    assert sorted(os.listdir(again)) == sorted(os.listdir(arrow))  # no attempt's folder is left
    for part in os.listdir(arrow):
        files = sorted(os.listdir(os.path.join(arrow, part)))
        assert files == sorted(os.listdir(os.path.join(again, part)))
        assert filecmp.cmpfiles(os.path.join(arrow, part), os.path.join(again, part), files, shallow=False)[0] == files
