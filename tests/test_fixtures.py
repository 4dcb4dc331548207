"""The throwaway tokenizers and the tiny model behave like the real things they stand in for."""

import torch
from transformers import AutoTokenizer

from helpers import LLAMA3_SPECIALS


def test_sp_tokenizer_is_llama_style(sp_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    assert type(tok).__name__ == "LlamaTokenizerFast"
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert (tok.unk_token, tok.bos_token, tok.eos_token) == ("<unk>", "<s>", "</s>")
    assert len(tok) == 1000
    # a character the corpus never had goes through byte fallback, not <unk>
    pieces = tok.tokenize("龘")
    assert pieces[-3:] == ["<0xE9>", "<0xBE>", "<0x98>"]
    assert tok("hello")["input_ids"][0] == 1  # LLaMA-2 adds BOS by default


def test_llama3_tokenizer_ignores_add_bos_token(llama3_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(llama3_tokenizer_dir, add_bos_token=False)
    bos = tok.convert_tokens_to_ids(LLAMA3_SPECIALS[0])
    assert tok.bos_token == LLAMA3_SPECIALS[0]
    # the flag has no effect: BOS still comes first, which is why the pipeline passes add_special_tokens=False
    assert tok("hello world")["input_ids"][0] == bos
    assert bos not in tok("hello world", add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids("<|eot_id|>") is not None


def test_tiny_llama_forward(tiny_llama):
    ids = torch.tensor([[1, 5, 6, 7, 2]])
    out = tiny_llama(input_ids=ids, labels=ids)
    assert out.logits.shape == (1, 5, 1000)
    assert torch.isfinite(out.loss)
