"""Freezing helpers: only embeddings train; with train_only_new_rows only new rows get gradient."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from colossal_llama.model.freeze import freeze_all_but_embeddings, train_only_new_rows


def tiny(tied):
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=tied))


def test_freeze_all_but_embeddings():
    model = tiny(tied=False)
    assert freeze_all_but_embeddings(model) == ["model.embed_tokens.weight", "lm_head.weight"]
    assert freeze_all_but_embeddings(tiny(tied=True)) == ["model.embed_tokens.weight"]


def test_only_new_rows_get_gradient():
    for tied in (False, True):
        model = tiny(tied)
        handles = train_only_new_rows(model, old_vocab_size=40)
        ids = torch.tensor([[1, 45, 3, 47, 2, 41]])
        model(input_ids=ids, labels=ids).loss.backward()
        embed = model.get_input_embeddings().weight
        assert embed.grad[:40].abs().sum() == 0 and embed.grad[40:].abs().sum() > 0
        assert all(p.grad is None for n, p in model.named_parameters() if "embed" not in n and "lm_head" not in n)
        for h in handles:
            h.remove()
