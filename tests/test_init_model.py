"""Embedding initialisation for new tokens: exact means, old rows and outputs unchanged,
tied weights, dtypes, vocabulary replacement."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from colossal_llama.errors import TokenizerError
from colossal_llama.model.init_model import init_model, main
from colossal_llama.tokenizer.init_tokenizer import ExpansionConfig, init_tokenizer

NEW = ["卡尔", "维萨", "卡尔维萨", "群岛", "卡尔维萨群岛", "塞林", "塞林海"]


def make_model_dir(path, tokenizer_dir, tied=False, dtype=torch.float32, vocab=1000):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    model = LlamaForCausalLM(config).to(dtype)
    model.save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(path)
    return model


@pytest.fixture(scope="module")
def expanded_tokenizer(sp_tokenizer_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tok")
    (tmp / "p.jsonl").write_text("".join(json.dumps({"piece": p}, ensure_ascii=False) + "\n" for p in NEW),
                                 encoding="utf-8")
    init_tokenizer(ExpansionConfig(source_tokenizer_dir=sp_tokenizer_dir, target_tokenizer_dir=str(tmp / "zh"),
                                   expand_tokens_file=[str(tmp / "p.jsonl")]))
    return str(tmp / "zh")


def expected_parts(old, token_text):
    """The old ids of a text, without special tokens and a bare "▁" (written out by hand);
    a text of markers only keeps them."""
    ids = [i for i in old(token_text, add_special_tokens=False)["input_ids"] if i not in old.all_special_ids]
    return [i for i in ids if old.convert_ids_to_tokens(i) != "\u2581"] or ids


@pytest.mark.parametrize("tied", [False, True])
def test_new_rows_are_means_and_old_behaviour_is_kept(sp_tokenizer_dir, expanded_tokenizer, tmp_path, tied):
    source = make_model_dir(tmp_path / "src", sp_tokenizer_dir, tied=tied)
    report = init_model(str(tmp_path / "src"), expanded_tokenizer, str(tmp_path / "out"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    old = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    assert len(tok) == model.config.vocab_size == 1000 + len(NEW) == report["new_vocab_size"]
    old_embed = source.get_input_embeddings().weight
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    assert torch.equal(embed[:1000], old_embed)
    assert torch.equal(head[:1000], source.get_output_embeddings().weight)
    for piece in NEW:
        new_id = tok.convert_tokens_to_ids(piece)
        parts = expected_parts(old, piece)
        assert len(parts) >= 2
        torch.testing.assert_close(embed[new_id], old_embed[parts].mean(0), rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(head[new_id], source.get_output_embeddings().weight[parts].mean(0),
                                   rtol=1e-6, atol=1e-7)
    if tied:
        assert model.config.tie_word_embeddings and head.data_ptr() == embed.data_ptr()
    ids = torch.tensor([[1, 5, 17, 300, 999, 2]])  # old tokens only
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits[..., :1000], source(ids).logits, rtol=1e-5, atol=1e-6)
    assert report["rows_copied"] == 1000 and report["rows_initialised"] == len(NEW)


def test_dtype_kept_or_converted(sp_tokenizer_dir, expanded_tokenizer, tmp_path):
    make_model_dir(tmp_path / "src", sp_tokenizer_dir, dtype=torch.bfloat16)
    init_model(str(tmp_path / "src"), expanded_tokenizer, str(tmp_path / "bf16"))
    init_model(str(tmp_path / "src"), expanded_tokenizer, str(tmp_path / "fp32"), dtype="float32")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "bf16" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    with safe_open(str(tmp_path / "fp32" / "model.safetensors"), "pt") as f:
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.float32


def test_replace_vocabulary(sp_tokenizer_dir, llama3_tokenizer_dir, tmp_path):
    source = make_model_dir(tmp_path / "src", sp_tokenizer_dir)
    with pytest.raises(TokenizerError, match="does not keep the ids.*--replace_vocab"):
        init_model(str(tmp_path / "src"), llama3_tokenizer_dir, str(tmp_path / "out"))
    report = init_model(str(tmp_path / "src"), llama3_tokenizer_dir, str(tmp_path / "out"), replace_vocab=True)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    old, new = AutoTokenizer.from_pretrained(sp_tokenizer_dir), AutoTokenizer.from_pretrained(llama3_tokenizer_dir)
    embed, old_embed = model.get_input_embeddings().weight, source.get_input_embeddings().weight
    shared = [t for t in new.get_vocab() if t in old.get_vocab()]
    assert report["rows_copied"] == len(shared) and report["rows_initialised"] == len(new) - len(shared)
    for token in shared:
        assert torch.equal(embed[new.convert_tokens_to_ids(token)], old_embed[old.convert_tokens_to_ids(token)])
    checked = 0
    for token, new_id in sorted(new.get_vocab().items(), key=lambda kv: kv[1]):
        if token in old.get_vocab() or new_id in new.all_special_ids:
            continue
        parts = expected_parts(old, new.convert_tokens_to_string([token]))
        torch.testing.assert_close(embed[new_id], old_embed[parts].mean(0), rtol=1e-6, atol=1e-7)
        checked += 1
    assert checked > 100


def test_old_command_line(sp_tokenizer_dir, expanded_tokenizer, tmp_path, capsys):
    make_model_dir(tmp_path / "src", sp_tokenizer_dir)
    argv = ["--source_model_and_tokenizer_path", str(tmp_path / "src"), "--target_tokenizer_path",
            expanded_tokenizer, "--target_model_path", str(tmp_path / "out")]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["rows_initialised"] == len(NEW)
    assert main(argv) == 2 and "exists (add --overwrite" in capsys.readouterr().err


def test_rows_for_a_byte_level_bpe_expansion(llama3_tokenizer_dir, tmp_path):
    pieces = ["工", "智", "人", "人工", "智能", "人工智能"]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps({"piece": p}, ensure_ascii=False) + "\n" for p in pieces),
                                      encoding="utf-8")
    init_tokenizer(ExpansionConfig(source_tokenizer_dir=llama3_tokenizer_dir, target_tokenizer_dir=str(tmp_path / "zh"),
                                   expand_tokens_file=[str(tmp_path / "p.jsonl")]))
    old = AutoTokenizer.from_pretrained(llama3_tokenizer_dir)
    source = make_model_dir(tmp_path / "src", llama3_tokenizer_dir, vocab=len(old))
    init_model(str(tmp_path / "src"), str(tmp_path / "zh"), str(tmp_path / "out"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    new = AutoTokenizer.from_pretrained(tmp_path / "out")
    old_embed, embed = source.get_input_embeddings().weight, model.get_input_embeddings().weight
    assert torch.equal(embed[: len(old)], old_embed)
    for piece in ["人工", "人工智能"]:
        (new_id,) = new(piece, add_special_tokens=False)["input_ids"]
        assert new_id >= len(old)
        torch.testing.assert_close(embed[new_id], old_embed[expected_parts(old, piece)].mean(0), rtol=1e-6, atol=1e-7)


def test_model_written_into_the_tokenizer_folder(sp_tokenizer_dir, expanded_tokenizer, tmp_path, capsys):
    """The old README's flow: --target_model_path is the folder init_tokenizer wrote. The model joins the
    tokenizer there (no --overwrite needed, the tokenizer files kept); a folder that holds a model is refused."""
    make_model_dir(tmp_path / "src", sp_tokenizer_dir)
    folder = tmp_path / "zh"
    shutil.copytree(expanded_tokenizer, folder)
    kept = sorted(os.listdir(folder))
    argv = ["--source_model_and_tokenizer_path", str(tmp_path / "src"), "--target_tokenizer_path", str(folder),
            "--target_model_path", str(folder)]
    assert main(argv) == 0, capsys.readouterr().err
    assert set(kept) <= set(os.listdir(folder)) and "config.json" in os.listdir(folder)
    for name in kept:  # the tokenizer files are copied as they were
        assert (folder / name).read_bytes() == (Path(expanded_tokenizer) / name).read_bytes()
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(folder)) == 1000 + len(NEW)
    assert sorted(os.listdir(tmp_path)) == ["src", "zh"]  # published by a rename: nothing left beside it
    capsys.readouterr()
    assert main(argv) == 2 and "already holds a model (add --overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert AutoModelForCausalLM.from_pretrained(folder).config.vocab_size == 1000 + len(NEW)


def test_missing_folders_name_the_flag_given(sp_tokenizer_dir, expanded_tokenizer, tmp_path, capsys):
    make_model_dir(tmp_path / "src", sp_tokenizer_dir)
    flags = {"--source_model_and_tokenizer_path": str(tmp_path / "src"), "--target_tokenizer_path": expanded_tokenizer,
             "--target_model_path": str(tmp_path / "out")}
    for flag in ("--source_model_and_tokenizer_path", "--target_tokenizer_path"):
        argv = [x for k, v in {**flags, flag: str(tmp_path / "none")}.items() for x in (k, v)]
        assert main(argv) == 2
        assert capsys.readouterr().err.strip() == f"error: {flag} {tmp_path / 'none'}: folder does not exist"
    (tmp_path / "src" / "config.json").unlink()
    argv = [x for kv in flags.items() for x in kv]
    assert main(argv) == 2 and "--source_model_and_tokenizer_path" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
