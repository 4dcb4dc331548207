"""Buckets are checked against the model's tokenizer and positions before training."""

import pytest
from transformers import AutoTokenizer

from colossal_llama.config import PretrainDataConfig
from colossal_llama.data.pretrain import prepare_pretrain_dataset
from colossal_llama.errors import DataError
from colossal_llama.training.prepared import load_buckets
from helpers import SAMPLE_PRETRAIN


@pytest.fixture(scope="module")
def prepared(sp_tokenizer_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "out"
    prepare_pretrain_dataset(PretrainDataConfig(data_input_dirs=[SAMPLE_PRETRAIN], tokenizer_dir=sp_tokenizer_dir,
                                                data_output_dirs=str(out), max_length=256,
                                                num_spliced_dataset_bins=2, num_workers=1))
    return out


def test_loads_in_order(prepared, sp_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    parts = [str(prepared / "arrow" / f"part-0000{i}") for i in (1, 0)]
    import datasets

    buckets = load_buckets(parts, tok, max_positions=512)  # the order given, not the folder order
    assert [b["input_ids"] for b in buckets] == [datasets.load_from_disk(p)["input_ids"] for p in parts]
    assert buckets[0]["input_ids"] != buckets[1]["input_ids"]


def test_refuses_other_tokenizer_short_model_and_bad_folders(prepared, llama3_tokenizer_dir, sp_tokenizer_dir,
                                                             tmp_path):
    part = str(prepared / "arrow" / "part-00000")
    with pytest.raises(DataError, match="prepared with another tokenizer"):
        load_buckets([part], AutoTokenizer.from_pretrained(llama3_tokenizer_dir), max_positions=512)
    tok = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    with pytest.raises(DataError, match="rows of up to 256 tokens, but the model has 128 positions"):
        load_buckets([part], tok, max_positions=128)
    with pytest.raises(DataError, match="folder does not exist"):
        load_buckets([str(tmp_path / "nope")], tok, max_positions=512)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a prepared part"):
        load_buckets([str(tmp_path / "empty")], tok, max_positions=512)
