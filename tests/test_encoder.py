"""The encoder table: `sentencepiece` gives the HF call's ids wherever it is chosen, and any difference
falls back to the HF tokenizer with the reason in the manifest (tokenizer/encoder_choice.py)."""

import collections
import filecmp
import json
import os
import shutil

import numpy as np
import pytest
from transformers import AddedToken, AutoTokenizer

from colossal_llama.config import PretrainDataConfig, SftDataConfig
from colossal_llama.data.pretrain import prepare_pretrain_dataset
from colossal_llama.data.sft import prepare_sft_dataset
from colossal_llama.tokenizer.encoder import FastEncoder
from colossal_llama.tokenizer.encoder_choice import first_difference, probe_texts
from colossal_llama.tokenizer.loading import describe_tokenizer
from colossal_llama.tokenizer.sentencepiece_encoder import SentencePieceEncoder
from colossal_llama.tokenizer.sentencepiece_settings import sentencepiece_settings, write_sentencepiece_encoder
from helpers import REALDATA, SAMPLE_PRETRAIN, SAMPLE_SFT, read_jsonl, sample_records, write_jsonl

EDGE_TEXTS = ["", " ", "  a  b   c    ", "\ttab\t", "line\nline\n\n", " \n \t ", "emoji 🙂🙂 rare 龘 𠀀 ",
              "<s>", "</s>", "<s></s>", "<s> x</s>", "<s>  x  </s>", "x<s>y", "<unk>", "<s", "< s >", "<<s>>",
              "\u2581\u2581a", " \u2581a", "<0x41>", "\u3000全角\u3000", "x" * 5000, "word " * 2000, "\r\n",
              "\x00\x01", "<s>\n</s>", "</s> ", " <s>", " <l>  x  <r>  y", "x <lr> y", "a<l>b<r>c"]


def _variants(tokenizer_dir):
    """The prefix-space settings a LLaMA folder can load with, and added tokens with lstrip/rstrip."""
    added = AutoTokenizer.from_pretrained(tokenizer_dir)
    added.add_tokens([AddedToken("<l>", lstrip=True, normalized=False), AddedToken("<r>", rstrip=True, normalized=False),
                      AddedToken("<lr>", lstrip=True, rstrip=True, normalized=False)])
    return {"legacy": (AutoTokenizer.from_pretrained(tokenizer_dir), "every"),
            "legacy=False": (AutoTokenizer.from_pretrained(tokenizer_dir, legacy=False, from_slow=True),
                             "metaspace-first"),
            "add_prefix_space=False": (AutoTokenizer.from_pretrained(tokenizer_dir, add_prefix_space=False), "never"),
            "added lstrip/rstrip": (added, "every")}


def _sentencepiece(tok, tokenizer_dir, tmp_path):
    settings, why_not = sentencepiece_settings(tok, tokenizer_dir)
    assert settings is not None, why_not
    return settings, SentencePieceEncoder(write_sentencepiece_encoder(settings, str(tmp_path)))


def test_same_ids_and_offsets_for_every_prefix_setting(sp_tokenizer_dir, tmp_path):
    """Leading, trailing and repeated spaces, tabs, newlines, empty text, byte fallback, special-token
    look-alikes, very long lines: alone and around <s>/</s>, for each way the folder can be loaded."""
    texts = [r["source"] + r["target"] for r in sample_records()] + EDGE_TEXTS
    for name, (tok, prepend) in _variants(sp_tokenizer_dir).items():
        settings, encoder = _sentencepiece(tok, sp_tokenizer_dir, tmp_path)
        assert settings["prepend"] == prepend, name
        cases = probe_texts(tok) + [v for t in texts for v in (t, "<s>" + t + "</s>", t + "</s>" + t)]
        reference = FastEncoder(backend=tok.backend_tokenizer)
        added = {i for _, i, _, _ in settings["added"]}
        assert first_difference(encoder, reference, cases, added) is None, name
        assert encoder.encode_batch(cases) == tok(cases, add_special_tokens=False)["input_ids"], name


def test_chosen_and_recorded_with_the_same_shards_as_hf(sp_tokenizer_dir, tmp_path):
    outputs = {}
    for encoder in ("auto", "hf"):
        config = PretrainDataConfig(data_input_dirs=[SAMPLE_PRETRAIN], tokenizer_dir=sp_tokenizer_dir, max_length=256,
                                    data_output_dirs=str(tmp_path / encoder), num_workers=1, encoder=encoder)
        outputs[encoder] = prepare_pretrain_dataset(config)["tokenizer"]["encoder"]
    assert outputs["auto"]["kind"] == "sentencepiece"
    assert "probe texts" in outputs["auto"]["reason"] and "records from 7 input file(s)" in outputs["auto"]["reason"]
    assert outputs["hf"] == {"kind": "fast", "reason": "--encoder hf: the HF tokenizer's Rust backend"}
    _assert_same_files(tmp_path / "auto" / "arrow", tmp_path / "hf" / "arrow")


def _assert_same_files(a, b):
    names = sorted(os.path.relpath(os.path.join(d, f), a) for d, _, files in os.walk(a) for f in files)
    assert names and filecmp.cmpfiles(a, b, names, shallow=False)[0] == names


def test_sft_gets_the_same_encoder_and_shards(sp_tokenizer_dir, tmp_path):
    manifests = {}
    for encoder in ("auto", "hf"):
        config = SftDataConfig(data_input_dirs=[SAMPLE_SFT], tokenizer_dir=sp_tokenizer_dir, max_length=256,
                               data_output_dirs=str(tmp_path / encoder), num_workers=1, encoder=encoder)
        manifests[encoder] = prepare_sft_dataset(config)
    assert [m["tokenizer"]["encoder"]["kind"] for m in manifests.values()] == ["sentencepiece", "fast"]
    _assert_same_files(tmp_path / "auto" / "arrow", tmp_path / "hf" / "arrow")


def _without_merges_of(tokenizer_dir, piece, out):
    """A copy of the folder whose tokenizer.json cannot form `piece` (tokenizer.model unchanged)."""
    shutil.copytree(tokenizer_dir, out)
    with open(os.path.join(out, "tokenizer.json"), encoding="utf-8") as f:
        spec = json.load(f)
    merges = spec["model"]["merges"]
    spec["model"]["merges"] = [m for m in merges if "".join(m.split(" ") if isinstance(m, str) else m) != piece]
    assert len(spec["model"]["merges"]) < len(merges)
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False)
    return out


def test_a_difference_on_the_probes_or_the_input_falls_back(sp_tokenizer_dir, tmp_path):
    """The same vocabulary in tokenizer.model and tokenizer.json, other merges: the settings pass, the ids do not."""
    tok = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    with open(os.path.join(sp_tokenizer_dir, "tokenizer.json"), encoding="utf-8") as f:
        merged = {"".join(m.split(" ") if isinstance(m, str) else m) for m in json.load(f)["model"]["merges"]}
    probed = {p for text in probe_texts(tok) for p in tok.tokenize(text)}
    records = sample_records()
    used = collections.Counter(p for r in records[:80] for p in tok.tokenize(r["source"] + r["target"]) if p in merged)
    on_probes = max(probed & set(used), key=lambda p: used[p])
    input_only = max(set(used) - probed, key=lambda p: used[p])

    changed = AutoTokenizer.from_pretrained(_without_merges_of(sp_tokenizer_dir, on_probes, str(tmp_path / "p")))
    info = describe_tokenizer(changed, str(tmp_path / "p"), str(tmp_path))
    assert info.encoder.kind == "fast"
    assert info.encoder_reason.startswith("sentencepiece differs from the HF tokenizer on the probes (ids differ on")

    folder = _without_merges_of(sp_tokenizer_dir, input_only, str(tmp_path / "i"))
    write_jsonl(str(tmp_path / "in" / "a.jsonl"), records[:80])
    config = PretrainDataConfig(data_input_dirs=[str(tmp_path / "in")], tokenizer_dir=folder, max_length=256,
                                data_output_dirs=str(tmp_path / "out"), num_workers=1)
    encoder = prepare_pretrain_dataset(config)["tokenizer"]["encoder"]
    first = next(n for n, r in enumerate(records[:80], 1)
                 if input_only in AutoTokenizer.from_pretrained(sp_tokenizer_dir).tokenize(r["source"] + r["target"]))
    assert encoder == {"kind": "fast", "reason": f"sentencepiece differs from the HF tokenizer on "
                       f"{tmp_path / 'in' / 'a.jsonl'}:{first}: the HF tokenizer's Rust backend"}
    hf = PretrainDataConfig(**{**config.to_dict(), "data_output_dirs": str(tmp_path / "hf"), "encoder": "hf"})
    prepare_pretrain_dataset(hf)
    _assert_same_files(tmp_path / "out" / "arrow", tmp_path / "hf" / "arrow")  # the HF ids, not sentencepiece's


def test_other_tokenizer_kinds_keep_the_hf_path(sp_tokenizer_dir, llama3_tokenizer_dir, tmp_path):
    """Byte-level BPE (with or without a stray tiktoken tokenizer.model), a tokenizer.model that is not
    SentencePiece, normalized added tokens, no byte fallback: each says why."""
    from helpers import build_tokenizer_without_byte_fallback

    stray = shutil.copytree(llama3_tokenizer_dir, str(tmp_path / "bpe"))
    with open(os.path.join(stray, "tokenizer.model"), "w") as f:
        f.write("IQ== 0\nIg== 1\n")  # tiktoken ranks: base64 token, rank
    not_sp = shutil.copytree(sp_tokenizer_dir, str(tmp_path / "not_sp"))
    shutil.copy(os.path.join(stray, "tokenizer.model"), not_sp)
    normalized = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    normalized.add_tokens([AddedToken("<n>", normalized=True)])
    cases = {
        "byte-level": (AutoTokenizer.from_pretrained(llama3_tokenizer_dir), llama3_tokenizer_dir,
                       "not those of a LLaMA SentencePiece tokenizer"),
        "stray tiktoken": (AutoTokenizer.from_pretrained(stray), stray, "not those of a LLaMA SentencePiece tokenizer"),
        "not sentencepiece": (AutoTokenizer.from_pretrained(not_sp), not_sp, "is not a SentencePiece model"),
        "normalized": (normalized, sp_tokenizer_dir, "added token '<n>' is matched after normalization"),
    }
    no_fallback = build_tokenizer_without_byte_fallback(sp_tokenizer_dir, str(tmp_path / "nbf"))
    cases["no byte fallback"] = (AutoTokenizer.from_pretrained(no_fallback), no_fallback, "no byte fallback")
    for name, (tok, folder, why) in cases.items():
        info = describe_tokenizer(tok, folder, str(tmp_path))
        assert info.encoder.kind == "fast" and why in info.encoder_reason, (name, info.encoder_reason)
        assert info.to_manifest()["encoder"] == {"kind": "fast", "reason": info.encoder_reason}


@pytest.mark.skipif(not os.path.isdir(REALDATA), reason="../shared/realdata is not present")
def test_every_real_text_gets_the_hf_ids(tmp_path):
    """The whole real corpora with the LLaMA-2 tokenizer: every pretraining text and prefix as tokenize.py
    builds them, every SFT conversation as the template renders it (ids and separator offsets)."""
    from colossal_llama.data.templates import default_template
    from colossal_llama.tokenizer.train import save_llama_tokenizer

    with open(os.path.join(REALDATA, "tokenizers", "llama2-tokenizer.model"), "rb") as f:
        tok_dir = save_llama_tokenizer(f.read(), str(tmp_path / "llama2"))
    tok = AutoTokenizer.from_pretrained(tok_dir)
    info = describe_tokenizer(tok, tok_dir, str(tmp_path))
    assert info.encoder.kind == "sentencepiece", info.encoder_reason
    texts = []
    for name in ("docs_en", "docs_zh", "qa_zh"):
        for r in read_jsonl(f"{REALDATA}/pretrain/{name}.jsonl"):
            texts += ["<s>" + r["source"] + r["target"] + "</s>", "<s>" + r["source"]]
    template = default_template(2)
    for name in ("dialogue_zh", "seed_tasks_en"):
        for r in read_jsonl(f"{REALDATA}/sft/{name}.jsonl"):
            contents = [m["content"] for m in r["messages"]]
            texts.append(template.render(contents[: len(contents) // 2 * 2]).text)
    encoder, reference = info.encoder.build(), FastEncoder(backend=tok.backend_tokenizer)
    assert first_difference(encoder, reference, texts, frozenset({0, 1, 2})) is None
    assert np.array_equal(np.concatenate([np.asarray(x) for x in encoder.encode_batch(texts)]),
                          np.concatenate([np.asarray(x) for x in reference.encode_batch(texts)]))


def test_flat_ids_with_and_without_numpy_output_of_sentencepiece(sp_tokenizer_dir, tmp_path):
    """`encode_flat` (what tokenize.py uses) is `encode_batch` back to back, whether sentencepiece hands the
    ids over as numpy buffers (>= 0.2.1) or as lists; for every prefix setting and lstrip/rstrip tokens."""
    texts = [r["source"] + r["target"] for r in sample_records()[:40]] + EDGE_TEXTS
    cases = [v for t in texts for v in (t, "<s>" + t + "</s>", t + "</s>" + t)]
    for name, (tok, _) in _variants(sp_tokenizer_dir).items():
        _, encoder = _sentencepiece(tok, sp_tokenizer_dir, tmp_path)
        expected = tok(cases, add_special_tokens=False)["input_ids"]
        for numpy_out in (True, False):
            encoder._numpy_out = numpy_out
            flat, lengths = encoder.encode_flat(cases)
            assert flat.dtype == np.int32 and lengths.dtype == np.int64, name
            assert lengths.tolist() == [len(e) for e in expected], (name, numpy_out)
            assert flat.tolist() == [i for e in expected for i in e], (name, numpy_out)
        assert encoder.encode_flat([])[0].shape == (0,) and encoder.encode_flat([""])[1].tolist() == [0]
