"""Vocabulary expansion of SentencePiece tokenizers: ids kept, pieces real and reachable,
old text unchanged, reports, bad input."""

import json
import os
import shutil

import numpy as np
import pytest
from transformers import AutoTokenizer

from colossal_llama.errors import ConfigError, DataError, TokenizerError
from colossal_llama.tokenizer.expand import _unreachable, new_piece_scores
from colossal_llama.tokenizer.folder import fast_slow_mismatch, save_tokenizer
from colossal_llama.tokenizer.init_tokenizer import ExpansionConfig, init_tokenizer, main
from helpers import REALDATA, SAMPLE_PRETRAIN, read_jsonl, sample_records

# each longer piece has a chain of listed pieces leading to it ("卡尔" + "维萨" -> "卡尔维萨")
NEW = ["卡尔", "维萨", "卡尔维萨", "群岛", "卡尔维萨群岛", "塞林", "塞林海"]
UNREACHABLE = "星铃节"  # neither "星铃" nor "铃节" is a piece, so BPE can never form it


def write_pieces(path, pieces, raw=()):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for p in pieces:
            f.write(json.dumps({"piece": p}, ensure_ascii=False) + "\n")
        for line in raw:
            f.write(line + "\n")
    return str(path)


@pytest.fixture(scope="module")
def expanded(sp_tokenizer_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("expand")
    old = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    present = next(t for t in old.get_vocab() if len(t) == 2 and "\u4e00" <= t[0] <= "\u9fff")
    pieces = NEW + ["群岛", present, "zq9", UNREACHABLE]
    config = ExpansionConfig(source_tokenizer_dir=sp_tokenizer_dir, target_tokenizer_dir=str(tmp / "out"),
                             expand_tokens_file=[write_pieces(tmp / "p.jsonl", pieces)],
                             report_corpus=[SAMPLE_PRETRAIN])
    return old, init_tokenizer(config), str(tmp / "out")


def test_ids_kept_and_new_pieces_appended(expanded):
    old, report, out = expanded
    new = AutoTokenizer.from_pretrained(out)
    old_vocab, new_vocab = old.get_vocab(), new.get_vocab()
    assert all(new_vocab[piece] == i for piece, i in old_vocab.items())  # every old token keeps its id
    added = [p for p in NEW if p not in old_vocab]
    assert [new_vocab[p] for p in added] == list(range(len(old), len(old) + len(added)))  # one new id each
    assert len(new) == len(old) + report["added"] == len(old) + len(added)
    assert report["skipped"] == {"duplicate": 1, "already_present": 1, "ascii_piece": 1}
    assert report["unreachable_pieces"] == [UNREACHABLE] and UNREACHABLE not in new_vocab
    assert new.tokenize("在" + UNREACHABLE) == old.tokenize("在" + UNREACHABLE)
    assert new.all_special_tokens == old.all_special_tokens and new.all_special_ids == old.all_special_ids


def test_new_pieces_reachable_and_old_text_unchanged(expanded):
    old, _, out = expanded
    new = AutoTokenizer.from_pretrained(out)
    slow = AutoTokenizer.from_pretrained(out, use_fast=False)
    with open(os.path.join(out, "tokenizer.model"), "rb") as f:
        assert _unreachable(f.read(), NEW) == []
    for piece in NEW:  # inside text, after other characters, each piece is one token
        assert piece in new.tokenize("在" + piece)
    english = [r["source"] + r["target"] for r in sample_records() if r["category"].endswith("_en")]
    assert old(english, add_special_tokens=False)["input_ids"] == new(english, add_special_tokens=False)["input_ids"]
    texts = [r["source"] + r["target"] for r in sample_records()]
    assert new(texts, add_special_tokens=False)["input_ids"] == slow(texts, add_special_tokens=False)["input_ids"]


def test_report(expanded):
    _, report, out = expanded
    assert json.loads(open(os.path.join(out, "report.json"), encoding="utf-8").read())["added"] == report["added"]
    comp = report["compression"]
    assert comp["encyclopedia_en"]["new_over_old"] == 1.0
    assert comp["encyclopedia_zh"]["new_tokens"] < comp["encyclopedia_zh"]["old_tokens"]
    assert comp["total"]["records"] == len(sample_records())


def test_scores_below_old_and_distinct_even_near_1e9():
    old = np.array([0.0, -5.0, -1e9], dtype=np.float32)
    scores = new_piece_scores(old, 20000)
    assert scores.max() < old.min() and len(np.unique(scores)) == 20000 and (np.diff(scores) < 0).all()


def test_learn_pieces_from_a_corpus(sp_tokenizer_dir, tmp_path):
    zh = [os.path.join(SAMPLE_PRETRAIN, f) for f in ("encyclopedia_zh.jsonl", "story_zh.jsonl")]
    report = init_tokenizer(ExpansionConfig(source_tokenizer_dir=sp_tokenizer_dir,
                                            target_tokenizer_dir=str(tmp_path / "out"), train_from=zh,
                                            new_pieces=200, report_corpus=zh))
    assert 0 < report["added"] <= 200
    assert report["compression"]["total"]["new_over_old"] < 0.95


def test_old_command_line(sp_tokenizer_dir, tmp_path, capsys):
    pieces = write_pieces(tmp_path / "p.jsonl", NEW)
    argv = ["--source_tokenizer_dir", sp_tokenizer_dir, "--target_tokenizer_dir", str(tmp_path / "out"),
            "--expand_tokens_file", pieces]
    assert main(argv) == 0
    assert "pieces added" in capsys.readouterr().out
    assert main(argv) == 2  # the target exists now
    assert "exists (add --overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


@pytest.mark.parametrize("line, words", [
    ('{"piece": "好"', "invalid JSON"),
    ('{"piece": ""}', "empty piece"),
    ('{"piece": "  "}', "the piece is only whitespace"),
    ('{"token": "好"}', 'needs a string field "piece"'),
])
def test_bad_piece_files(sp_tokenizer_dir, tmp_path, line, words):
    path = write_pieces(tmp_path / "p.jsonl", ["群岛"], raw=[line])
    with pytest.raises(DataError, match=f"^{path}:2: {words}"):
        init_tokenizer(ExpansionConfig(source_tokenizer_dir=sp_tokenizer_dir,
                                       target_tokenizer_dir=str(tmp_path / "out"), expand_tokens_file=[path]))
    assert not (tmp_path / "out").exists()


def test_bad_sources_and_settings(tmp_path):
    pieces = write_pieces(tmp_path / "p.jsonl", NEW)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TokenizerError, match="no loadable tokenizer"):
        init_tokenizer(ExpansionConfig(source_tokenizer_dir=str(tmp_path / "empty"),
                                       target_tokenizer_dir=str(tmp_path / "out"), expand_tokens_file=[pieces]))
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    word_level = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    word_level.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=word_level, unk_token="<unk>").save_pretrained(tmp_path / "wl")
    with pytest.raises(TokenizerError, match="neither a SentencePiece tokenizer.model nor a byte-level BPE"):
        init_tokenizer(ExpansionConfig(source_tokenizer_dir=str(tmp_path / "wl"),
                                       target_tokenizer_dir=str(tmp_path / "out"), expand_tokens_file=[pieces]))
    with pytest.raises(ConfigError, match="give new pieces"):
        ExpansionConfig(source_tokenizer_dir="a", target_tokenizer_dir="b")
    with pytest.raises(ConfigError, match="--train_from needs --new_pieces"):
        ExpansionConfig(source_tokenizer_dir="a", target_tokenizer_dir="b", train_from=["x"])


def saved_by_transformers(source: str, out: str) -> str:
    """The folder as `save_pretrained` writes it (training exports and checkpoints did): add_prefix_space null."""
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    with open(os.path.join(out, "tokenizer_config.json")) as f:
        assert json.load(f)["add_prefix_space"] is None  # the case that broke the expansion
    return out


def test_expanding_a_saved_folder_keeps_english_and_fast_equals_slow(sp_tokenizer_dir, tmp_path):
    """An exported model's tokenizer, expanded: English ids unchanged, fast and slow give the same ids."""
    source = saved_by_transformers(sp_tokenizer_dir, str(tmp_path / "export"))
    out = str(tmp_path / "zh")
    init_tokenizer(ExpansionConfig(source_tokenizer_dir=source, target_tokenizer_dir=out,
                                   expand_tokens_file=[write_pieces(tmp_path / "p.jsonl", NEW)]))
    texts = [r["source"] + r["target"] for r in sample_records()]
    assert fast_slow_mismatch(out, texts) is None
    english = [t for t in texts if t.isascii()]
    assert len(english) > 100
    before = AutoTokenizer.from_pretrained(sp_tokenizer_dir)(english, add_special_tokens=False)["input_ids"]
    for use_fast in (True, False):
        new = AutoTokenizer.from_pretrained(out, use_fast=use_fast)
        assert new(english, add_special_tokens=False)["input_ids"] == before
    with open(os.path.join(out, "tokenizer_config.json")) as f:
        assert "add_prefix_space" not in json.load(f)


def without_prefix_in_fast(source: str, out: str) -> str:
    """A copy whose tokenizer.json lost the word-boundary "▁" the slow tokenizer adds (what expansions wrote)."""
    shutil.copytree(source, out)
    with open(os.path.join(out, "tokenizer.json"), encoding="utf-8") as f:
        data = json.load(f)
    data["normalizer"]["normalizers"] = [n for n in data["normalizer"]["normalizers"] if n["type"] != "Prepend"]
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    return out


def test_source_whose_fast_and_slow_disagree_is_refused(sp_tokenizer_dir, tmp_path):
    source = without_prefix_in_fast(sp_tokenizer_dir, str(tmp_path / "broken"))
    with pytest.raises(TokenizerError, match=r"--source_tokenizer_dir .*broken: the fast and slow tokenizers give "
                                             r"different ids on 'What is the capital"):
        init_tokenizer(ExpansionConfig(source_tokenizer_dir=source, target_tokenizer_dir=str(tmp_path / "out"),
                                       expand_tokens_file=[write_pieces(tmp_path / "p.jsonl", NEW)]))
    assert not os.path.exists(tmp_path / "out")


def test_save_tokenizer_cleans_the_config_and_checks_agreement(sp_tokenizer_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    save_tokenizer(tokenizer, str(tmp_path / "good"), chat_template="{{ messages }}")
    with open(tmp_path / "good" / "tokenizer_config.json") as f:
        config = json.load(f)
    assert "add_prefix_space" not in config and config["chat_template"] == "{{ messages }}"
    broken = AutoTokenizer.from_pretrained(without_prefix_in_fast(sp_tokenizer_dir, str(tmp_path / "broken")))
    with pytest.raises(TokenizerError, match="written tokenizer .*different ids"):
        save_tokenizer(broken, str(tmp_path / "bad"))


@pytest.mark.skipif(not os.path.isdir(REALDATA), reason="../shared/realdata is not present")
def test_llama2_with_chinese_pieces_keeps_english(tmp_path):
    """LLaMA-2 as an export writes it, plus chinese_sp's pieces: English ids unchanged, fast equals slow."""
    from colossal_llama.tokenizer.train import save_llama_tokenizer

    with open(f"{REALDATA}/tokenizers/llama2-tokenizer.model", "rb") as f:
        llama2 = save_llama_tokenizer(f.read(), str(tmp_path / "llama2"))
    source = saved_by_transformers(llama2, str(tmp_path / "export"))
    report = init_tokenizer(ExpansionConfig(source_tokenizer_dir=source, target_tokenizer_dir=str(tmp_path / "zh"),
                                            expand_from_spm=[f"{REALDATA}/tokenizers/chinese_sp.model"],
                                            report_corpus=[f"{REALDATA}/pretrain"]))
    assert report["new_vocab_size"] == 32000 + report["added"] and report["added"] > 15000
    assert report["compression"]["docs_en"]["new_over_old"] == 1.0
    assert report["compression"]["docs_zh"]["new_over_old"] < 0.85
    english = [r["target"] for r in read_jsonl(f"{REALDATA}/pretrain/docs_en.jsonl")]
    old = AutoTokenizer.from_pretrained(llama2)
    new = AutoTokenizer.from_pretrained(str(tmp_path / "zh"))
    assert new(english, add_special_tokens=False)["input_ids"] == old(english, add_special_tokens=False)["input_ids"]
    real = [r.get("source", "") + r["target"] for name in ("docs_en", "docs_zh", "qa_zh")
            for r in read_jsonl(f"{REALDATA}/pretrain/{name}.jsonl")[:200]]
    assert fast_slow_mismatch(str(tmp_path / "zh"), real) is None


# byte-level BPE (LLaMA-3 style): single characters first, then the words they form
BPE_NEW = ["工", "智", "人", "人工", "智能", "人工智能", "天气", "你好", "谢", "谢谢"]
BPE_UNREACHABLE = "飞翔"  # five byte-level tokens in the fixture: no single merge can form it


@pytest.fixture(scope="module")
def expanded_bpe(llama3_tokenizer_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("expand_bpe")
    old = AutoTokenizer.from_pretrained(llama3_tokenizer_dir)
    config = ExpansionConfig(source_tokenizer_dir=llama3_tokenizer_dir, target_tokenizer_dir=str(tmp / "out"),
                             expand_tokens_file=[write_pieces(tmp / "p.jsonl",
                                                              BPE_NEW + ["hello there", BPE_UNREACHABLE, "你好"])],
                             report_corpus=[SAMPLE_PRETRAIN])
    return old, init_tokenizer(config), str(tmp / "out")


def test_bpe_ids_kept_pieces_reachable_old_text_unchanged(expanded_bpe):
    old, report, out = expanded_bpe
    new = AutoTokenizer.from_pretrained(out)
    old_vocab, new_vocab = old.get_vocab(), new.get_vocab()
    assert report["kind"] == "byte_level_bpe"
    assert all(new_vocab[t] == i for t, i in old_vocab.items())
    present = [p for p in BPE_NEW if len(old(p, add_special_tokens=False)["input_ids"]) == 1]
    expected = [p for p in BPE_NEW if p not in present]
    assert report["added"] == len(expected) and len(new) == len(old) + len(expected)
    assert report["skipped"] == {"duplicate": 1, "already_present": len(present), "ascii_piece": 1}
    assert report["unreachable_pieces"] == [BPE_UNREACHABLE]
    first_new = max(old_vocab.values()) + 1  # after every old id, special tokens included
    ids = sorted(new(p, add_special_tokens=False)["input_ids"][0] for p in expected)
    assert ids == list(range(first_new, first_new + len(expected)))
    for piece in expected:  # alone, each piece is one token
        assert len(new(piece, add_special_tokens=False)["input_ids"]) == 1
    english = [r["source"] + r["target"] for r in sample_records() if r["category"].endswith("_en")]
    assert old(english, add_special_tokens=False)["input_ids"] == new(english, add_special_tokens=False)["input_ids"]
    assert new.all_special_tokens == old.all_special_tokens and new.all_special_ids == old.all_special_ids
    assert new.decode(new("人工智能和天气", add_special_tokens=False)["input_ids"]) == "人工智能和天气"
    assert report["compression"]["encyclopedia_en"]["new_over_old"] == 1.0


def test_byte_alphabet_matches_the_tokenizers_library():
    from tokenizers import pre_tokenizers

    from colossal_llama.tokenizer.expand_bpe import byte_alphabet, to_byte_level

    assert sorted(byte_alphabet().values()) == sorted(pre_tokenizers.ByteLevel.alphabet())
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    for text in ["你好", "héllo wörld", "\n\t ~"]:
        assert to_byte_level(text) == "".join(w for w, _ in pre.pre_tokenize_str(text))


def test_bad_report_corpus_line(sp_tokenizer_dir, tmp_path):
    pieces = write_pieces(tmp_path / "p.jsonl", NEW)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"target": "fine", "source": ""}\n{"target": 5}\n', encoding="utf-8")
    with pytest.raises(DataError, match=f"^{corpus}:2: not a record this report can read"):
        init_tokenizer(ExpansionConfig(source_tokenizer_dir=sp_tokenizer_dir, target_tokenizer_dir=str(tmp_path / "o"),
                                       expand_tokens_file=[pieces], report_corpus=[str(corpus)]))
    assert not (tmp_path / "o").exists()


def test_pieces_over_a_base_without_their_characters(tmp_path):
    """An English-only base spells Chinese in bytes; the pieces' characters are added so the fast tokenizer uses them."""
    from colossal_llama.tokenizer.train import train_llama_tokenizer

    english = [r["target"] for r in sample_records() if r["category"].endswith("_en")]
    base = train_llama_tokenizer(english, str(tmp_path / "base"), vocab_size=600)
    assert "<0xE7>" in AutoTokenizer.from_pretrained(base).tokenize("群岛")  # byte fallback
    write_pieces(tmp_path / "p.jsonl", ["群岛", "卡尔", "维萨", "卡尔维萨"])
    report = init_tokenizer(ExpansionConfig(source_tokenizer_dir=base, target_tokenizer_dir=str(tmp_path / "new"),
                                            expand_tokens_file=[str(tmp_path / "p.jsonl")]))
    assert report["added"] == 4 + 6 and report["unreachable"] == 0  # the pieces and 群 岛 卡 尔 维 萨
    fast = AutoTokenizer.from_pretrained(str(tmp_path / "new"))
    assert fast.tokenize("卡尔维萨群岛") == ["▁", "卡尔维萨", "群岛"]
    assert fast.tokenize("萨卡") == ["▁", "萨", "卡"]
