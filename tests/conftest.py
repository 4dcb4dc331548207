"""Shared fixtures: throwaway tokenizers trained in the test session and a tiny LLaMA.

Nothing is downloaded: the SentencePiece model and the byte-level BPE model
are trained here on the bundled sample corpus (a few seconds, once per session).
"""

from __future__ import annotations

import os

import pytest

from helpers import build_llama3_style_tokenizer, sample_texts

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def sp_tokenizer_dir(tmp_path_factory) -> str:
    """A LLaMA-2 style tokenizer: SentencePiece BPE with byte fallback, <unk>=0 <s>=1 </s>=2."""
    from colossal_llama.tokenizer.train import train_llama_tokenizer

    out = str(tmp_path_factory.mktemp("sp_tokenizer"))
    # coverage < 1 keeps rare characters out of the vocabulary, so byte fallback is exercised
    return train_llama_tokenizer(sample_texts(), out, vocab_size=1000, character_coverage=0.99)


@pytest.fixture(scope="session")
def llama3_tokenizer_dir(tmp_path_factory) -> str:
    """A LLaMA-3 style byte-level BPE fast tokenizer that always prepends BOS."""
    return build_llama3_style_tokenizer(sample_texts(), str(tmp_path_factory.mktemp("llama3_tokenizer")))


@pytest.fixture(params=["sp", "llama3"])
def any_tokenizer_dir(request, sp_tokenizer_dir, llama3_tokenizer_dir) -> str:
    return {"sp": sp_tokenizer_dir, "llama3": llama3_tokenizer_dir}[request.param]


@pytest.fixture(scope="session")
def tiny_llama(sp_tokenizer_dir):
    """A 2-layer LlamaForCausalLM sized for the SentencePiece test tokenizer, built in code."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, sp_tokenizer_dir) -> str:
    """An HF folder: the SentencePiece test tokenizer and a 2-layer LLaMA (fp32, untied head)."""
    from helpers import save_tiny_model

    return save_tiny_model(sp_tokenizer_dir, str(tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture(scope="session")
def pretrain_parts(tmp_path_factory, tiny_model_dir) -> list[str]:
    """The bundled pretraining sample prepared for the tiny model: rows of 128 tokens, 2 buckets."""
    from helpers import prepare_parts

    return prepare_parts("pretrain", tiny_model_dir, str(tmp_path_factory.mktemp("pretrain_data") / "out"), 128, 2)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tiny_model_dir, pretrain_parts) -> str:
    """The step-2 checkpoint of a 2-step run on `pretrain_parts` (read only: tests copy it before damaging it)."""
    from helpers import run_train

    out = tmp_path_factory.mktemp("two_step_run")
    code, _ = run_train(tiny_model_dir, pretrain_parts, str(out), "--max_steps", "2")
    assert code == 0
    return str(out / "ck" / "step-00000002")
