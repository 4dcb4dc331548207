"""End to end: jsonl folders -> packed, bucketed Arrow shards + manifest (data-spec 3, 4, 6)."""

import collections
import filecmp
import json
import os

import datasets
import numpy as np
import pytest
from transformers import AutoTokenizer

from colossal_llama.config import PretrainDataConfig
from colossal_llama.data.pretrain import prepare_pretrain_dataset
from colossal_llama.data.shards import ROW_FEATURES, row_schema
from colossal_llama.errors import DataError, OutputError
from helpers import (IGNORE, SAMPLE_PRETRAIN, output_segments, reference_pieces, reference_pretrain,
                     sample_records, write_jsonl)


def run(tokenizer_dir, inputs, out, **kw):
    kw.setdefault("num_workers", 2)
    config = PretrainDataConfig(data_input_dirs=inputs, tokenizer_dir=tokenizer_dir, data_output_dirs=str(out), **kw)
    return prepare_pretrain_dataset(config)


@pytest.fixture(scope="module")
def sample_out(tmp_path_factory, sp_tokenizer_dir):
    out = tmp_path_factory.mktemp("sample") / "out"
    manifest = run(sp_tokenizer_dir, [SAMPLE_PRETRAIN], out, max_length=128, num_spliced_dataset_bins=4)
    return out, manifest


def test_layout_and_schema(sample_out):
    out, manifest = sample_out
    assert sorted(os.listdir(out)) == ["arrow", "manifest.json"]  # no spill, cache, jsonl copy or rejects
    assert not [p for p in os.listdir(out.parent) if ".tmp-" in p or ".old-" in p]
    parts = sorted(os.listdir(out / "arrow"))
    assert parts == [f"part-{i:05d}" for i in range(4)] == [b["part"][6:] for b in manifest["buckets"]]
    expected = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                                  "labels": datasets.Sequence(datasets.Value("int32")),
                                  "seq_lengths": datasets.Sequence(datasets.Value("int32")),
                                  "category": datasets.Value("string")})
    assert expected.to_dict() == ROW_FEATURES
    assert expected.arrow_schema.equals(row_schema(), check_metadata=False)
    assert json.loads(row_schema().metadata[b"huggingface"]) == json.loads(expected.arrow_schema.metadata[b"huggingface"])
    ds = datasets.load_from_disk(str(out / "arrow" / parts[0]))
    assert ds.features == expected
    assert len(ds) == manifest["buckets"][0]["rows"]
    assert json.loads((out / "manifest.json").read_text()) == manifest


@pytest.mark.parametrize("max_length", [128, 4096])
def test_every_token_exactly_once(any_tokenizer_dir, tmp_path, max_length):
    manifest = run(any_tokenizer_dir, [SAMPLE_PRETRAIN], tmp_path / "out", max_length=max_length,
                   num_spliced_dataset_bins=3)
    tok = AutoTokenizer.from_pretrained(any_tokenizer_dir)
    expected = collections.Counter()
    for record in sample_records():
        for ids, labels in reference_pieces(*reference_pretrain(tok, record), max_length):
            expected[ids, labels, record["category"]] += 1
    got = collections.Counter(output_segments(str(tmp_path / "out")))
    assert got == expected  # same multiset of (ids, labels, category): nothing lost, duplicated or split wrongly
    for part in sorted((tmp_path / "out" / "arrow").iterdir()):
        for row in datasets.load_from_disk(str(part)):
            assert len(row["input_ids"]) == len(row["labels"]) == sum(row["seq_lengths"]) <= max_length
    totals = manifest["totals"]
    assert totals["tokens_in"] == totals["tokens_out"] + totals["tokens_dropped"]
    assert totals["tokens_out"] == sum(len(ids) for ids, _, _ in got.elements())
    assert totals["label_tokens"] == sum(sum(x != IGNORE for x in labels) for _, labels, _ in got.elements())


def test_manifest_counts(sample_out, sp_tokenizer_dir):
    out, manifest = sample_out
    per_category = collections.Counter(r["category"] for r in sample_records())
    assert {k: v["records"] for k, v in manifest["categories"].items()} == dict(per_category)
    assert manifest["totals"]["records"] == sum(per_category.values())
    for name, entry in manifest["categories"].items():
        in_buckets = collections.Counter()
        for part in manifest["buckets"]:
            in_buckets.update({k: v for k, v in part["categories"].get(name, {}).items() if isinstance(v, int)})
        for key in ("rows", "tokens", "label_tokens", "documents", "chunks"):
            assert in_buckets[key] == entry[key], (name, key)
        assert entry["documents"] == entry["records"]
        assert entry["tokens_in"] == entry["tokens"] + sum(entry["dropped_tokens"].values())
        assert entry["fill"] == round(entry["tokens"] / (entry["rows"] * 128), 6)
    assert manifest["categories"]["encyclopedia_en"]["chunks"] > 0  # long documents were split
    tok = manifest["tokenizer"]
    assert tok["vocab_size"] == 1000 and len(tok["fingerprint"]) == 64 and tok["class"] == "LlamaTokenizerFast"
    assert [os.path.basename(i["path"]) for i in manifest["inputs"]] == sorted(os.listdir(SAMPLE_PRETRAIN))
    assert all(len(i["sha256"]) == 64 and i["bytes"] > 0 for i in manifest["inputs"])
    assert (manifest["max_length"], manifest["num_bins"], manifest["seed"]) == (128, 4, 42)


def test_buckets_hold_bins_of_every_category(sample_out):
    out, manifest = sample_out
    rows_by_category = collections.defaultdict(list)  # category -> [(bucket, tokens)]
    for part in manifest["buckets"]:
        ds = datasets.load_from_disk(str(out / part["part"]))
        assert sorted(set(ds["category"])) == sorted(part["categories"])
        for category, ids in zip(ds["category"], ds["input_ids"]):
            rows_by_category[category].append((part["bucket"], len(ids)))
    for category, rows in rows_by_category.items():
        tokens = np.zeros(4)
        for bucket, n in rows:
            tokens[bucket] += n
        biggest = max(n for _, n in rows)
        if len(rows) >= 4:
            assert np.abs(tokens - tokens.sum() / 4).max() <= biggest, category  # bins of nearly equal tokens
        else:
            assert np.count_nonzero(tokens) == len(rows)  # fewer rows than bins: spread, nothing duplicated


def test_fill_is_close_to_the_bound(sample_out):
    _, manifest = sample_out
    for name, entry in manifest["categories"].items():
        # best-fit decreasing: at most one row of the category is at most half full
        assert entry["rows"] <= -(-entry["tokens"] // 64), name


def test_deterministic_and_independent_of_workers(sp_tokenizer_dir, tmp_path):
    a = run(sp_tokenizer_dir, [SAMPLE_PRETRAIN], tmp_path / "a", max_length=200, num_workers=1)
    b = run(sp_tokenizer_dir, [SAMPLE_PRETRAIN], tmp_path / "b", max_length=200, num_workers=2, chunk_bytes=4096)
    cmp = filecmp.dircmp(tmp_path / "a" / "arrow", tmp_path / "b" / "arrow")
    parts = sorted(os.listdir(tmp_path / "a" / "arrow"))
    for part in parts:
        names = sorted(os.listdir(tmp_path / "a" / "arrow" / part))
        match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a" / "arrow" / part, tmp_path / "b" / "arrow" / part,
                                                   names, shallow=False)
        assert (mismatch, errors) == ([], []) and match == names
    assert not cmp.left_only and not cmp.right_only
    for m in (a, b):
        del m["config"]
    assert a == b
    c = run(sp_tokenizer_dir, [SAMPLE_PRETRAIN], tmp_path / "c", max_length=200, seed=7)
    assert c["totals"]["tokens_out"] == a["totals"]["tokens_out"]
    first = lambda out: datasets.load_from_disk(str(out / "arrow" / "part-00000"))["input_ids"]  # noqa: E731
    assert first(tmp_path / "a") != first(tmp_path / "c")  # the seed changes the order


def test_all_masked_chunks_are_dropped_and_counted(sp_tokenizer_dir, tmp_path):
    records = [
        {"source": "卡尔维萨群岛 " * 80, "target": "short answer", "category": "long_source"},
        {"source": "", "target": "plain " * 50, "category": "long_source"},
    ]
    write_jsonl(str(tmp_path / "in" / "a.jsonl"), records)
    manifest = run(sp_tokenizer_dir, [str(tmp_path / "in")], tmp_path / "out", max_length=32)
    tok = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    ids, labels = reference_pretrain(tok, records[0])
    masked_pieces = [s for s in range(0, len(ids), 32) if all(x == IGNORE for x in labels[s : s + 32])]
    assert len(masked_pieces) >= 2
    dropped = sum(len(ids[s : s + 32]) for s in masked_pieces)
    entry = manifest["categories"]["long_source"]
    assert entry["dropped_tokens"] == {"all_masked_chunk": dropped}
    assert manifest["totals"]["tokens_dropped"] == dropped
    assert manifest["totals"]["tokens_in"] == manifest["totals"]["tokens_out"] + dropped
    assert entry["documents"] == 2  # the document is still counted once, where its first kept piece is


def test_recursive_and_gzip(sp_tokenizer_dir, tmp_path):
    nested = tmp_path / "in" / "sub"
    write_jsonl(str(nested / "a.jsonl"), [{"source": "", "target": "hello", "category": "c"}])
    with pytest.raises(DataError, match="holds no .*add --recursive"):
        run(sp_tokenizer_dir, [str(tmp_path / "in")], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    manifest = run(sp_tokenizer_dir, [str(tmp_path / "in"), SAMPLE_PRETRAIN], tmp_path / "out", recursive=True)
    assert manifest["categories"]["c"]["records"] == 1
    assert manifest["categories"]["story_en"]["records"] == 50  # read from story_en.jsonl.gz


def test_output_folder_is_not_replaced_without_overwrite(sp_tokenizer_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty.*--overwrite"):
        run(sp_tokenizer_dir, [SAMPLE_PRETRAIN], out)
    assert (out / "keep.txt").read_text() == "mine"
    run(sp_tokenizer_dir, [SAMPLE_PRETRAIN], out, overwrite=True)
    assert sorted(os.listdir(out)) == ["arrow", "manifest.json"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_slow_only_tokenizer_end_to_end(sp_tokenizer_dir, tmp_path, monkeypatch):
    """A tokenizer without a fast version: workers load the slow HF tokenizer from the folder."""
    import colossal_llama.data.prepare as prepare

    slow = AutoTokenizer.from_pretrained(sp_tokenizer_dir, use_fast=False)
    monkeypatch.setattr(prepare, "load_tokenizer", lambda _: slow)
    records = sample_records()[:40]
    write_jsonl(str(tmp_path / "in" / "a.jsonl"), records)
    manifest = run(sp_tokenizer_dir, [str(tmp_path / "in")], tmp_path / "out", max_length=64, chunk_bytes=2048)
    assert manifest["tokenizer"]["class"] == "LlamaTokenizer"
    expected = collections.Counter()
    for record in records:
        for ids, labels in reference_pieces(*reference_pretrain(slow, record), 64):
            expected[ids, labels, record["category"]] += 1
    assert collections.Counter(output_segments(str(tmp_path / "out"))) == expected
