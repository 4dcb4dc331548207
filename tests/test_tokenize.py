"""Tokenization equals the reference algorithm (data-spec section 1), record by record.

The oracle is `helpers.reference_pretrain`: the spec written out with plain
HF tokenizer calls. Checked for a LLaMA-2 style SentencePiece tokenizer and a
LLaMA-3 style byte-level BPE tokenizer.
"""

import numpy as np
import pytest
from transformers import AutoTokenizer

from colossal_llama.data.tokenize import mask_prefixes, tokenize_pretrain_batch
from colossal_llama.errors import BadRecord
from colossal_llama.tokenizer.encoder import SlowEncoder
from colossal_llama.tokenizer.loading import describe_tokenizer
from helpers import REALDATA, build_tokenizer_without_byte_fallback, read_jsonl, reference_pretrain, sample_records

EDGE_RECORDS = [
    {"source": "", "target": "x", "category": "edge"},
    {"source": "Q: what?", "target": " A: that.", "category": "edge"},
    {"source": "  leading spaces", "target": "trailing spaces  ", "category": "edge"},
    {"source": "问：卡尔维萨群岛在哪里？", "target": "答：在塞林海。", "category": "edge"},
    {"source": "", "target": "emoji 🙂 and rare 龘 characters\tand\ttabs\nand\nnewlines", "category": "edge"},
    {"source": "12345678", "target": "90", "category": "edge"},
    {"source": "a", "target": "b" * 300, "category": "edge"},
]


def _encode_with(tokenizer_dir, tmp_path, records, encoder=None):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    info = describe_tokenizer(tok, tokenizer_dir, str(tmp_path))
    batch = tokenize_pretrain_batch([(r["source"], r["target"]) for r in records], encoder or info.encoder.build(),
                                    info)
    return tok, info, batch


def _split(batch):
    bounds = np.cumsum(batch.lengths)[:-1]
    return np.split(batch.ids, bounds), np.split(batch.labels, bounds)


def _assert_matches_reference(tok, records, batch):
    assert batch.kept == list(range(len(records))) and not batch.rejected
    for record, ids, labels in zip(records, *_split(batch)):
        ref_ids, ref_labels = reference_pretrain(tok, record)
        assert ids.tolist() == ref_ids
        assert labels.tolist() == ref_labels
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert (ids == tok.bos_token_id).sum() == 1 and (ids == tok.eos_token_id).sum() == 1


def test_matches_reference_on_sample_and_edge_cases(any_tokenizer_dir, tmp_path):
    records = sample_records() + EDGE_RECORDS
    tok, _, batch = _encode_with(any_tokenizer_dir, tmp_path, records)
    _assert_matches_reference(tok, records, batch)


def test_exact_ids_for_a_small_fixture(sp_tokenizer_dir, tmp_path):
    # "Q" is rare in the corpus the fixture was trained on: it falls back to a byte piece
    records = [{"source": "Q", "target": "A", "category": "c"}, {"source": "", "target": "A", "category": "c"}]
    tok, _, batch = _encode_with(sp_tokenizer_dir, tmp_path, records)
    assert tok.convert_ids_to_tokens(batch.ids.tolist()) == ["<s>", "▁", "<0x51>", "A", "</s>", "<s>", "▁A", "</s>"]
    masked = [-100, -100, -100] + tok.convert_tokens_to_ids(["A", "</s>", "<s>", "▁A", "</s>"])
    assert batch.labels.tolist() == masked
    assert batch.lengths.tolist() == [5, 3]


def test_slow_encoder_matches_reference(sp_tokenizer_dir, tmp_path):
    """The path for tokenizers without a fast version: the slow HF tokenizer in the worker."""
    records = sample_records()[:60] + EDGE_RECORDS
    slow = AutoTokenizer.from_pretrained(sp_tokenizer_dir, use_fast=False)
    _, _, batch = _encode_with(sp_tokenizer_dir, tmp_path, records, encoder=SlowEncoder(sp_tokenizer_dir))
    _assert_matches_reference(slow, records, batch)


def test_special_token_text_is_rejected(any_tokenizer_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(any_tokenizer_dir)
    records = [
        {"source": "", "target": "fine", "category": "c"},
        {"source": "", "target": f"ends here{tok.eos_token} and goes on", "category": "c"},
        {"source": f"{tok.bos_token}again", "target": "x", "category": "c"},
        {"source": "", "target": "also fine", "category": "c"},
    ]
    _, _, batch = _encode_with(any_tokenizer_dir, tmp_path, records)
    assert batch.kept == [0, 3]
    assert sorted(batch.rejected) == [1, 2]
    assert all(isinstance(b, BadRecord) and b.reason == "special_token_text" for b in batch.rejected.values())
    assert repr(tok.eos_token) in batch.rejected[1].message
    _assert_matches_reference(tok, [records[0], records[3]],
                              type(batch)(batch.ids, batch.labels, batch.lengths, [0, 1]))


UNK_TEXT_RECORDS = [
    {"source": "", "target": "a <unk> b", "category": "c"},
    {"source": "<unk>", "target": "x", "category": "c"},
    {"source": "a <un", "target": "k> b", "category": "c"},  # source + target is tokenized as one text
]


def test_unk_text_is_rejected(sp_tokenizer_dir, tmp_path):
    """`<unk>` text becomes the unk id, a control id the model never saw in ordinary text."""
    records = [{"source": "", "target": "fine", "category": "c"}] + UNK_TEXT_RECORDS
    tok, _, batch = _encode_with(sp_tokenizer_dir, tmp_path, records)
    assert batch.kept == [0] and sorted(batch.rejected) == [1, 2, 3]
    assert all(b.reason == "special_token_text" and "'<unk>'" in b.message for b in batch.rejected.values())
    assert tok.unk_token_id not in batch.ids.tolist()


def test_unk_id_of_unseen_characters_is_fine(sp_tokenizer_dir, tmp_path):
    """Without byte fallback, unseen characters become the unk id in ordinary text: that is kept."""
    tok_dir = build_tokenizer_without_byte_fallback(sp_tokenizer_dir, str(tmp_path / "no_fallback"))
    ordinary = [{"source": "snow \u2603 man", "target": "rare \u9f98 characters", "category": "c"},
                {"source": "", "target": "<unk is not a token, nor unk>", "category": "c"}]
    tok, info, batch = _encode_with(tok_dir, tmp_path, ordinary + UNK_TEXT_RECORDS)
    assert info.unk == (tok.unk_token_id, "<unk>")
    assert batch.kept == [0, 1] and sorted(batch.rejected) == [2, 3, 4]
    assert (batch.ids[: batch.lengths[0]] == tok.unk_token_id).sum() == 2  # the unseen characters
    _assert_matches_reference(tok, ordinary, type(batch)(batch.ids, batch.labels, batch.lengths, [0, 1]))


def test_unk_text_is_ordinary_text_for_a_tokenizer_without_unk(llama3_tokenizer_dir, tmp_path):
    tok, info, batch = _encode_with(llama3_tokenizer_dir, tmp_path, UNK_TEXT_RECORDS)
    assert tok.unk_token is None and info.unk is None
    _assert_matches_reference(tok, UNK_TEXT_RECORDS, batch)


@pytest.mark.skipif(not __import__("os").path.isdir(REALDATA), reason="../shared/realdata is not present")
def test_matches_reference_on_real_llama2_tokenizer(tmp_path):
    from transformers import LlamaTokenizer

    tok_dir = str(tmp_path / "llama2")
    LlamaTokenizer(vocab_file=f"{REALDATA}/tokenizers/llama2-tokenizer.model", legacy=True).save_pretrained(tok_dir)
    records = []
    for name in ("docs_en", "docs_zh", "qa_zh"):
        records += read_jsonl(f"{REALDATA}/pretrain/{name}.jsonl")[::7]
    tok, _, batch = _encode_with(tok_dir, tmp_path, records)
    _assert_matches_reference(tok, records, batch)


def test_mask_prefixes_masks_each_prompt_within_its_document():
    ids = np.arange(10, 19, dtype=np.int32)
    lengths = np.array([3, 2, 4])
    # the last prompt is longer than its document: the mask stops at the document's end
    labels = mask_prefixes(ids, lengths, np.array([2, 0, 5]))
    assert labels.tolist() == [-100, -100, 12, 13, 14, -100, -100, -100, -100]
    assert mask_prefixes(ids, lengths, np.zeros(3, dtype=np.int64)).tolist() == ids.tolist()
