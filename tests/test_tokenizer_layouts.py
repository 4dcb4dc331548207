"""Every command that takes a tokenizer folder, on the folder layouts found in the wild (issue 17).

    layout            files                                                          expected
    sp                tokenizer.model (SentencePiece) + tokenizer.json               works
    sp_model_only     tokenizer.model (SentencePiece)                                works (converted)
    bpe               tokenizer.json (byte-level BPE)                                works
    bpe_tiktoken      tokenizer.json + LLaMA-3's tiktoken ranks as tokenizer.model   works (the file is ignored)
    sp_saved          tokenizer.json + tokenizer.model, "add_prefix_space": null     works (as transformers saves)
    sp_null_prefix    tokenizer.model only, "add_prefix_space": null                 refused: one line naming the
                                                                                     folder and tokenizer_config.json

Each command runs in this process through its main() (or, for inference, the CLI wrapper `run_cli`) on a
tiny model with the layout's tokenizer files; a refusal is exactly one `error:` line, never a traceback.
Then LLaMA-3-sized embeddings: a 128,256-token tokenizer with LLaMA-3.2's special ids and a tiktoken
tokenizer.model, expanded, and a tiny model's rows initialised from it, tied and untied.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from helpers import (SAMPLE_PRETRAIN, SAMPLE_SFT, build_llama3_sized_tokenizer, run_train, set_tokenizer_config,
                     write_tiktoken_ranks)

LAYOUTS = ["sp", "sp_model_only", "bpe", "bpe_tiktoken", "sp_saved", "sp_null_prefix"]
REFUSED = {"sp_null_prefix": ("tokenizer_config.json", '"add_prefix_space": null')}
"""Layouts every command refuses: (the file named, the reason's words)."""

PIECES = ["人", "工", "智", "能", "人工", "智能", "人工智能"]  # each reachable through the ones before it
TINY = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "max_position_embeddings": 256}


def make_layout(name: str, sp: str, bpe: str, out: str) -> str:
    """Copy the SentencePiece or byte-level test tokenizer into `out`, arranged as layout `name`."""
    shutil.copytree(bpe if name.startswith("bpe") else sp, out)
    if name in ("sp_model_only", "sp_null_prefix"):
        os.remove(os.path.join(out, "tokenizer.json"))
    if name == "bpe_tiktoken":  # as LLaMA-3.2's folder: the fast class named, Meta's ranks beside tokenizer.json
        set_tokenizer_config(out, tokenizer_class="PreTrainedTokenizerFast")
        write_tiktoken_ranks(out)
    if name == "sp_saved":
        AutoTokenizer.from_pretrained(sp).save_pretrained(out)
    if name in ("sp_saved", "sp_null_prefix"):
        set_tokenizer_config(out, add_prefix_space=None)
    return out


class Layouts:
    """Each layout's tokenizer folder, tiny model folder (the tokenizer's files beside the weights), prepared
    pretraining data and expansion, built on first use and kept for the module."""

    def __init__(self, tmp_path_factory, sp: str, bpe: str):
        self.tmp, self.sp, self.bpe = tmp_path_factory, sp, bpe
        self.cache: dict = {}

    def _once(self, key, build):
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]

    def tokenizer(self, name: str) -> str:
        return self._once(("tokenizer", name),
                          lambda: make_layout(name, self.sp, self.bpe, str(self.tmp.mktemp(name) / "tokenizer")))

    def model(self, name: str) -> str:
        def build():
            out = str(self.tmp.mktemp(f"{name}_model"))
            base = self.bpe if name.startswith("bpe") else self.sp
            torch.manual_seed(0)
            config = LlamaConfig(vocab_size=len(AutoTokenizer.from_pretrained(base)), **TINY)
            LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
            for file in os.listdir(self.tokenizer(name)):
                shutil.copy(os.path.join(self.tokenizer(name), file), out)
            return out

        return self._once(("model", name), build)

    def prepared(self, name: str, capsys) -> tuple[int, str, str]:
        """(exit status, stderr, output folder) of the pretraining preparation with the layout's tokenizer."""
        from colossal_llama.data.pretrain import main

        def build():
            out = str(self.tmp.mktemp(f"{name}_pretrain") / "out")
            code = main(["--data_input_dirs", SAMPLE_PRETRAIN, "--tokenizer_dir", self.tokenizer(name),
                         "--data_output_dirs", out, "--max_length", "64", "--num_spliced_dataset_bins", "1",
                         "--num_workers", "1"])
            return code, capsys.readouterr().err, out

        return self._once(("prepared", name), build)

    def expanded(self, name: str, capsys) -> tuple[int, str, str]:
        """(exit status, stderr, output folder) of init_tokenizer on the layout, with PIECES."""
        from colossal_llama.tokenizer.init_tokenizer import main

        def build():
            tmp = self.tmp.mktemp(f"{name}_zh")
            (tmp / "p.jsonl").write_text("".join(json.dumps({"piece": p}, ensure_ascii=False) + "\n"
                                                 for p in PIECES), encoding="utf-8")
            code = main(["--source_tokenizer_dir", self.tokenizer(name), "--target_tokenizer_dir", str(tmp / "zh"),
                         "--expand_tokens_file", str(tmp / "p.jsonl")])
            return code, capsys.readouterr().err, str(tmp / "zh")

        return self._once(("expanded", name), build)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, sp_tokenizer_dir, llama3_tokenizer_dir) -> Layouts:
    return Layouts(tmp_path_factory, sp_tokenizer_dir, llama3_tokenizer_dir)


def assert_works_or_refused(name: str, code: int, err: str, folder: str, prefix: str = "error: ") -> bool:
    """True when the command worked; for a refused layout, its one line names the folder, the file and the reason."""
    if name not in REFUSED:
        assert code == 0, err
        return True
    lines = err.strip().splitlines()
    file, reason = REFUSED[name]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(prefix) and folder in lines[0] and file in lines[0] and reason in lines[0], lines[0]
    return False


@pytest.mark.parametrize("name", LAYOUTS)
def test_prepare_pretrain(layouts, name, capsys):
    code, err, out = layouts.prepared(name, capsys)
    if assert_works_or_refused(name, code, err, layouts.tokenizer(name)):
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        assert manifest["tokenizer"]["vocab_size"] == len(AutoTokenizer.from_pretrained(layouts.tokenizer(name)))


@pytest.mark.parametrize("name", LAYOUTS)
def test_prepare_sft(layouts, name, tmp_path, capsys):
    from colossal_llama.data.sft import main

    folder = layouts.tokenizer(name)
    code = main(["--data_input_dirs", SAMPLE_SFT, "--tokenizer_dir", folder, "--data_output_dirs", str(tmp_path / "o"),
                 "--max_length", "512", "--num_spliced_dataset_bins", "1", "--num_workers", "1",
                 "--llama_version", "3" if name.startswith("bpe") else "2"])
    if assert_works_or_refused(name, code, capsys.readouterr().err, folder):
        assert os.listdir(tmp_path / "o" / "arrow")


@pytest.mark.parametrize("name", LAYOUTS)
def test_init_tokenizer(layouts, name, capsys):
    """Old ids kept, every piece one token, and no tokenizer.model that does not match the new vocabulary."""
    code, err, out = layouts.expanded(name, capsys)
    if not assert_works_or_refused(name, code, err, layouts.tokenizer(name)):
        return
    old, new = AutoTokenizer.from_pretrained(layouts.tokenizer(name)), AutoTokenizer.from_pretrained(out)
    assert all(new.get_vocab()[t] == i for t, i in old.get_vocab().items())
    assert len(new) > len(old)
    for piece in PIECES:  # one token (after SentencePiece's word-start "▁")
        ids = [i for i in new(piece, add_special_tokens=False)["input_ids"] if new.convert_ids_to_tokens(i) != "\u2581"]
        assert len(ids) == 1 and new.decode(ids) == piece, (piece, ids)
    with open(os.path.join(out, "report.json"), encoding="utf-8") as f:
        kind = json.load(f)["kind"]
    assert kind == ("byte_level_bpe" if name.startswith("bpe") else "sentencepiece")
    if kind == "byte_level_bpe":  # a copy of the source's tiktoken ranks would lack the new tokens
        assert "tokenizer.model" not in os.listdir(out)
    else:  # the expanded SentencePiece model: the slow tokenizer built from it has every new piece
        slow = AutoTokenizer.from_pretrained(out, use_fast=False)
        assert not slow.is_fast and slow.get_vocab() == new.get_vocab()


@pytest.mark.parametrize("name", LAYOUTS)
def test_init_model(layouts, name, tmp_path, capsys):
    from colossal_llama.model.init_model import main

    code, _, expanded = layouts.expanded(name, capsys)
    target = expanded if code == 0 else layouts.tokenizer(name)
    source = layouts.model(name)
    code = main(["--source_model_and_tokenizer_path", source, "--target_tokenizer_path", target,
                 "--target_model_path", str(tmp_path / "out")])
    if assert_works_or_refused(name, code, capsys.readouterr().err, source):  # the output loads alone
        model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
        assert model.config.vocab_size == len(tokenizer) == len(AutoTokenizer.from_pretrained(target))
        assert "tokenizer.model" not in os.listdir(tmp_path / "out") or name.startswith("sp")


@pytest.mark.parametrize("name", LAYOUTS)
def test_train(layouts, name, tmp_path, capsys):
    """One step of train.py on data prepared with the layout (a refused layout's model: data of the sp layout)."""
    _, _, data = layouts.prepared(name if name not in REFUSED else "sp", capsys)
    parts = [os.path.join(data, "arrow", p) for p in sorted(os.listdir(os.path.join(data, "arrow")))]
    code, metrics = run_train(layouts.model(name), parts, str(tmp_path), "--max_steps", "1", "--save_interval", "0",
                              "--batch_size", "2")
    if assert_works_or_refused(name, code, capsys.readouterr().err, layouts.model(name), "train.py: error: "):
        assert [m["step"] for m in metrics] == [1]


@pytest.mark.parametrize("name", LAYOUTS)
def test_inference(layouts, name, capsys):
    from colossal_llama.inference.cli import run_cli
    from colossal_llama.inference.generation import SamplingSettings, generate, load_for_inference

    completions = []

    def greedy() -> int:
        model, tokenizer = load_for_inference(layouts.model(name), device="cpu")
        completions.extend(generate(model, tokenizer, ["Once upon a time"], SamplingSettings(max_new_tokens=3,
                                                                                            temperature=0), chat=False))
        return 0

    if assert_works_or_refused(name, run_cli(greedy), capsys.readouterr().err, layouts.model(name)):
        assert len(completions) == 1 and isinstance(completions[0], str)


def test_no_slow_tokenizer_is_built_from_tiktoken_ranks(llama3_tokenizer_dir, tmp_path):
    """`AutoTokenizer(use_fast=False)` on a PreTrainedTokenizer folder raises AttributeError: never asked for."""
    from colossal_llama.tokenizer.folder import fast_slow_mismatch, has_slow_tokenizer

    folder = shutil.copytree(llama3_tokenizer_dir, tmp_path / "bpe")
    write_tiktoken_ranks(str(folder))
    assert not has_slow_tokenizer(str(folder)) and fast_slow_mismatch(str(folder)) is None


def test_tiktoken_ranks_alone_are_refused_in_one_line(llama3_tokenizer_dir, tmp_path):
    """Meta's original folder (tiktoken tokenizer.model, no tokenizer.json): a one-line reason, not a converter list."""
    from colossal_llama.tokenizer.loading import load_tokenizer
    from colossal_llama.errors import TokenizerError

    folder = shutil.copytree(llama3_tokenizer_dir, tmp_path / "original")
    write_tiktoken_ranks(str(folder))
    os.remove(folder / "tokenizer.json")
    with pytest.raises(TokenizerError, match=r"original: .*tokenizer.model is not a SentencePiece model .* no "
                                             r"tokenizer.json") as raised:
        load_tokenizer(str(folder))
    assert "\n" not in str(raised.value) and "converters" not in str(raised.value)


# LLaMA-3-sized: 128,000 regular tokens and 256 special tokens; new pieces two CJK tokens each (or two new ones)
BIG_PIECES = ["人工", "智能", "人工智能", "天气", "你好"]


@pytest.fixture(scope="module")
def llama3_sized(tmp_path_factory):
    """(the tokenizer folder, the tokenizer, its expansion with BIG_PIECES)."""
    from colossal_llama.tokenizer.init_tokenizer import ExpansionConfig, init_tokenizer

    tmp = tmp_path_factory.mktemp("llama3_sized")
    source = build_llama3_sized_tokenizer(str(tmp / "llama3"))
    (tmp / "p.jsonl").write_text("".join(json.dumps({"piece": p}, ensure_ascii=False) + "\n" for p in BIG_PIECES),
                                 encoding="utf-8")
    report = init_tokenizer(ExpansionConfig(source_tokenizer_dir=source, target_tokenizer_dir=str(tmp / "zh"),
                                            expand_tokens_file=[str(tmp / "p.jsonl")]))
    assert report["added"] == len(BIG_PIECES) and report["new_vocab_size"] == 128256 + len(BIG_PIECES)
    assert "tokenizer.model" not in os.listdir(tmp / "zh")  # the source's ranks lack the new tokens
    return source, AutoTokenizer.from_pretrained(source), str(tmp / "zh")


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_llama3_sized_rows(llama3_sized, tmp_path, tied):
    """New rows are the means of their old sub-token rows; the 256 special rows and all old rows are untouched;
    the output loads alone."""
    from safetensors import safe_open

    from colossal_llama.model.init_model import init_model

    source_tokenizer, old, expanded = llama3_sized
    torch.manual_seed(0)
    source = LlamaForCausalLM(LlamaConfig(vocab_size=128256, tie_word_embeddings=tied, bos_token_id=128000,
                                          eos_token_id=128009, **{**TINY, "hidden_size": 8, "intermediate_size": 16,
                                                                  "num_attention_heads": 1}))
    source.save_pretrained(tmp_path / "src", safe_serialization=True)
    for file in os.listdir(source_tokenizer):
        shutil.copy(os.path.join(source_tokenizer, file), tmp_path / "src")
    init_model(str(tmp_path / "src"), expanded, str(tmp_path / "out"))

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out", trust_remote_code=False)
    new = AutoTokenizer.from_pretrained(tmp_path / "out", trust_remote_code=False)
    assert len(new) == model.config.vocab_size == 128256 + len(BIG_PIECES)
    assert "tokenizer.model" not in os.listdir(tmp_path / "out")
    assert new.convert_tokens_to_ids(["<|begin_of_text|>", "<|eot_id|>", "<|reserved_special_token_247|>"]) == [
        128000, 128009, 128255]
    matrices = [(model.get_input_embeddings().weight, source.get_input_embeddings().weight),
                (model.get_output_embeddings().weight, source.get_output_embeddings().weight)]
    for after, before in matrices:
        assert torch.equal(after[:128256], before)  # the special rows 128000-128255 included
        for piece in BIG_PIECES:
            (new_id,) = new(piece, add_special_tokens=False)["input_ids"]
            parts = old(piece, add_special_tokens=False)["input_ids"]
            assert new_id >= 128256 and len(parts) >= 2 and max(parts) < 128000
            torch.testing.assert_close(after[new_id], before[parts].mean(0), rtol=1e-6, atol=1e-7)
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) is not tied
    assert model.config.tie_word_embeddings is tied
