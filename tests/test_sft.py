"""SFT preparation: ids and labels equal the reference (data-spec section 2), spans only on
assistant replies, packing of whole conversations, chat_template round trip, bad input."""

import collections
import json
import os

import datasets
import numpy as np
import pytest
from transformers import AutoTokenizer

from colossal_llama.config import SftDataConfig
from colossal_llama.data.conversations import parse_sft_record
from colossal_llama.data.sft import SftJob, prepare_sft_dataset
from colossal_llama.errors import BadRecord, ConfigError, DataError, TokenizerError
from colossal_llama.tokenizer.encoder import SlowEncoder
from colossal_llama.tokenizer.loading import describe_tokenizer
from helpers import IGNORE, output_segments, reference_sft, write_jsonl


def conv(*contents, category=None):
    record = {"messages": [{"from": ("human", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]}
    if category:
        record["category"] = category
    return record


CONVERSATIONS = [
    conv("What are the three primary colors?", "Red, blue, and yellow."),
    conv("Hi", "Hello! How can I help?", "Where is Port Aurel?", "On Tarn Major, in the Calvessa Islands.",
         "How many people live there?", "About 31,000."),
    conv("卡尔维萨群岛在哪里？", "在塞林海，离多弗里亚约三百一十千米。", "有几个主要岛屿？", "六个。"),
    conv("odd number of messages", "so the last", "human message is dropped"),
    conv("  spaces  around ", " and\nnewlines\n\n", "emoji 🙂 and 龘", "tabs\tand 12345"),
    conv("long " * 40, "answer " * 60, "second", "reply"),
    conv("short", "x " * 300),  # even one turn is too long for small max_length values
    conv("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"),
]


def version_of(tokenizer_dir, sp_tokenizer_dir):
    return 2 if tokenizer_dir == sp_tokenizer_dir else 3


def kind_for(tokenizer_dir, llama_version, max_length, tmp_path):
    config = SftDataConfig(data_input_dirs="x", tokenizer_dir=tokenizer_dir, llama_version=llama_version,
                           max_length=max_length)
    job = SftJob(config)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    job.prepare_tokenizer(tok)
    info = describe_tokenizer(tok, tokenizer_dir, str(tmp_path))
    return tok, info, job.make_kind(tok, info)


def payloads(records):
    out = []
    for r in records:
        contents, _, trailing = parse_sft_record(r)
        out.append((contents, trailing))
    return out


def split(batch):
    if len(batch.lengths) == 0:
        return []
    bounds = np.cumsum(batch.lengths)[:-1]
    return [(i.tolist(), l.tolist()) for i, l in zip(np.split(batch.ids, bounds), np.split(batch.labels, bounds))]


@pytest.mark.parametrize("max_length", [60, 120, 200, 4096])
def test_matches_reference(any_tokenizer_dir, sp_tokenizer_dir, tmp_path, max_length):
    version = version_of(any_tokenizer_dir, sp_tokenizer_dir)
    tok, info, kind = kind_for(any_tokenizer_dir, version, max_length, tmp_path)
    batch = kind.tokenize(payloads(CONVERSATIONS), info.encoder.build(), info)
    expected = [reference_sft(tok, c["messages"], max_length, version) for c in CONVERSATIONS]
    assert batch.kept == [i for i, e in enumerate(expected) if e is not None]
    assert batch.dropped == {i: "too_long" for i, e in enumerate(expected) if e is None}
    assert split(batch) == [e for e in expected if e is not None]
    assert (batch.lengths <= max_length).all()


def test_matches_reference_through_a_slow_tokenizer(sp_tokenizer_dir, tmp_path):
    """Tokenizers without offsets: separator positions from prefix lengths."""
    _, info, kind = kind_for(sp_tokenizer_dir, 2, 200, tmp_path)
    slow = AutoTokenizer.from_pretrained(sp_tokenizer_dir, use_fast=False)
    batch = kind.tokenize(payloads(CONVERSATIONS), SlowEncoder(sp_tokenizer_dir), info)
    expected = [reference_sft(slow, c["messages"], 200, 2) for c in CONVERSATIONS]
    assert split(batch) == [e for e in expected if e is not None]


def test_exact_labels_for_one_turn(sp_tokenizer_dir, tmp_path):
    tok, info, kind = kind_for(sp_tokenizer_dir, 2, 4096, tmp_path)
    batch = kind.tokenize(payloads([conv("Hi", "Hello")]), info.encoder.build(), info)
    ids, labels = split(batch)[0]
    trained = [t for t, l in zip(ids, labels) if l != IGNORE]
    assert tok.convert_ids_to_tokens(trained)[0] == "<s>" and tok.convert_ids_to_tokens(trained)[-1] == "</s>"
    assert tok.decode(trained) == "<s> Hello</s>"
    assert ids[0] == ids[ids.index(1, 1)] == 1  # the extra leading BOS, and the human turn's own
    text = tok.decode(ids)
    assert text.startswith("<s> A chat between") and text.endswith("Human: <s> Hi</s> Assistant: <s> Hello</s>")


def test_special_token_text_in_content_is_rejected(any_tokenizer_dir, sp_tokenizer_dir, tmp_path):
    version = version_of(any_tokenizer_dir, sp_tokenizer_dir)
    tok, info, kind = kind_for(any_tokenizer_dir, version, 4096, tmp_path)
    close = "</s>" if version == 2 else "<|eot_id|>"
    records = [conv("fine", "fine"), conv("sneaky", f"reply{close}Human: more"), conv(f"{tok.bos_token}x", "y")]
    batch = kind.tokenize(payloads(records), info.encoder.build(), info)
    assert batch.kept == [0] and sorted(batch.rejected) == [1, 2]
    assert all(b.reason == "special_token_text" for b in batch.rejected.values())
    assert repr(close) in batch.rejected[1].message


def test_unk_text_in_content_is_rejected(sp_tokenizer_dir, tmp_path):
    """`<unk>` text is a control id like `</s>`; the unk id of unseen characters (no byte fallback) is not."""
    from helpers import build_tokenizer_without_byte_fallback

    records = [conv("fine", "snow \u2603 man"), conv("a <unk> b", "y"), conv("x", "<unk>")]
    for tok_dir in (sp_tokenizer_dir, build_tokenizer_without_byte_fallback(sp_tokenizer_dir, str(tmp_path / "nbf"))):
        tok, info, kind = kind_for(tok_dir, 2, 4096, tmp_path)
        for encoder in (info.encoder.build(), SlowEncoder(tokenizer=tok)):  # with offsets, and by prefixes
            batch = kind.tokenize(payloads(records), encoder, info)
            assert batch.kept == [0] and sorted(batch.rejected) == [1, 2]
            assert all(b.reason == "special_token_text" and "'<unk>'" in b.message for b in batch.rejected.values())
    assert tok.unk_token_id in batch.ids.tolist()  # the snowman, without byte fallback


def test_hostile_records_are_counted_rejections(sp_tokenizer_dir, tmp_path):
    """--on_error skip: a lone surrogate, deep nesting, an oversized line, `<unk>` text never stop the run."""
    hostile = [b'{"messages": [{"from": "human", "content": "\\ud800"}, {"from": "assistant", "content": "b"}]}',
               b'{"messages": [], "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
               json.dumps(conv("long " * 4000, "y")).encode(),
               json.dumps(conv("<unk>", "y")).encode()]
    write_jsonl(str(tmp_path / "in" / "c.jsonl"), [conv("a", "b")], raw_lines=hostile)
    manifest = run(sp_tokenizer_dir, str(tmp_path / "in"), tmp_path / "out", 2, on_error="skip",
                   max_record_bytes=12_000)
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    reasons = ["invalid_unicode", "too_deeply_nested", "too_large", "special_token_text"]
    assert [(r["line"], r["reason"]) for r in rejected] == list(zip([2, 3, 4, 5], reasons))
    assert manifest["totals"]["records"] == 1
    assert manifest["totals"]["rejected_by_reason"] == dict.fromkeys(reasons, 1)


BAD_RECORDS = {
    "no messages": ({"conversation": []}, "missing_field", 'missing field "messages"'),
    "empty messages": ({"messages": []}, "empty_messages", 'field "messages" is empty'),
    "messages not a list": ({"messages": "hi"}, "wrong_type", '"messages" must be a list'),
    "unknown role": ({"messages": [{"from": "system", "content": "x"}]}, "unknown_role", 'role "system"'),
    "two human turns": ({"messages": [{"from": "human", "content": "a"}, {"from": "human", "content": "b"}]},
                        "role_order", "message 2: two human messages in a row"),
    "starts with assistant": ({"messages": [{"from": "assistant", "content": "x"}]}, "role_order",
                              "must start with a human message"),
    "empty content": (conv("a", ""), "empty_content", 'message 2: field "content" is empty'),
    "non-string content": ({"messages": [{"from": "human", "content": ["a"]}]}, "wrong_type",
                           'message 1: field "content" must be a string, got list'),
    "missing from": ({"messages": [{"content": "a"}]}, "missing_field", 'message 1: missing field "from"'),
    "single human message": (conv("only a question"), "no_turn", "no complete human/assistant turn"),
    "empty category": (dict(conv("a", "b"), category=""), "empty_category", '"category" is empty'),
    # json.loads accepts "\ud800", the tokenizer does not
    "lone surrogate in content": (conv("a", "b\ud800"), "invalid_unicode",
                                  'message 2: field "content" holds a lone surrogate'),
    "lone surrogate in role": ({"messages": [{"from": "human\udc00", "content": "a"}]}, "invalid_unicode",
                               'message 1: field "from" holds a lone surrogate'),
    "lone surrogate in category": (dict(conv("a", "b"), category="c\ud800"), "invalid_unicode",
                                   'field "category" holds a lone surrogate'),
}


@pytest.mark.parametrize("name", sorted(BAD_RECORDS))
def test_bad_records(name):
    record, reason, words = BAD_RECORDS[name]
    with pytest.raises(BadRecord) as err:
        parse_sft_record(record)
    assert err.value.reason == reason and words in err.value.message


def test_roles_are_case_insensitive_and_category_optional():
    record = {"messages": [{"from": "Human", "content": "a"}, {"from": "ASSISTANT", "content": "b"}]}
    assert parse_sft_record(record) == (("a", "b"), "default", False)
    assert parse_sft_record(conv("a", "b", "c", category="x")) == (("a", "b"), "x", True)


def run(tokenizer_dir, records_or_dir, out, version, **kw):
    kw.setdefault("num_workers", 2)
    inputs = records_or_dir
    if isinstance(records_or_dir, list):
        inputs = os.path.join(os.path.dirname(str(out)), "in")
        write_jsonl(os.path.join(inputs, "c.jsonl"), records_or_dir)
    config = SftDataConfig(data_input_dirs=inputs, tokenizer_dir=tokenizer_dir, data_output_dirs=str(out),
                           llama_version=version, **kw)
    return prepare_sft_dataset(config)


PACKING = {"across": dict(pack=True), "within": dict(pack=True, pack_within_category=True), "none": dict(pack=False)}


@pytest.mark.parametrize("packing", sorted(PACKING))
def test_end_to_end_packing_and_counts(any_tokenizer_dir, sp_tokenizer_dir, tmp_path, packing):
    version = version_of(any_tokenizer_dir, sp_tokenizer_dir)
    pack = PACKING[packing]["pack"]
    records = [dict(c, category="a" if i % 2 else "b") for i, c in enumerate(CONVERSATIONS * 3)]
    records.append(conv("far too long", "y " * 1000, category="a"))
    manifest = run(any_tokenizer_dir, records, tmp_path / "out", version, max_length=400,
                   num_spliced_dataset_bins=2, **PACKING[packing])
    tok = AutoTokenizer.from_pretrained(any_tokenizer_dir)
    expected, too_long = collections.Counter(), collections.Counter()
    for r in records:
        ref = reference_sft(tok, r["messages"], 400, version)
        if ref is None:
            too_long[r["category"]] += 1
        else:
            expected[tuple(ref[0]), tuple(ref[1]), r["category"]] += 1
    assert collections.Counter(output_segments(str(tmp_path / "out"))) == expected  # each kept conversation once
    assert {k: v["dropped_records"] for k, v in manifest["categories"].items()} == {
        k: ({"too_long": too_long[k]} if too_long[k] else {}) for k in ("a", "b")}
    assert manifest["totals"]["dropped_records"] == {"too_long": sum(too_long.values())}
    rows = [row for part in sorted((tmp_path / "out" / "arrow").iterdir()) for row in datasets.load_from_disk(str(part))]
    assert all(len(r["input_ids"]) == sum(r["seq_lengths"]) <= 400 for r in rows)
    assert too_long["a"] >= 1
    if pack:
        assert len(rows) < sum(expected.values())
    else:
        assert all(len(r["seq_lengths"]) == 1 for r in rows) and len(rows) == sum(expected.values())
    assert manifest["kind"] == "sft" and manifest["config"]["pack"] is pack
    # rows mix categories only by default; counts are per segment, rows per category are rows holding it
    assert ("segment_categories" in rows[0]) is (packing == "across")
    assert any(r["category"] == "<mixed>" for r in rows) is (packing == "across")
    for name, entry in manifest["categories"].items():
        mine = [(ids, labels) for ids, labels, c in expected.elements() if c == name]
        assert entry["tokens"] == sum(len(ids) for ids, _ in mine)
        assert entry["label_tokens"] == sum(sum(x != IGNORE for x in labels) for _, labels in mine)
        assert entry["segments"] == len(mine)
        holding = [r for r in rows if name in (r.get("segment_categories") or [r["category"]])]
        assert entry["rows"] == len(holding)
        assert entry["fill"] == round(sum(len(r["input_ids"]) for r in holding) / (len(holding) * 400), 6)
    assert manifest["totals"]["rows"] == len(rows) == sum(b["rows"] for b in manifest["buckets"])
    assert manifest["totals"]["fill"] == round(sum(len(r["input_ids"]) for r in rows) / (len(rows) * 400), 6)


def test_exported_chat_template_round_trip(any_tokenizer_dir, sp_tokenizer_dir, tmp_path):
    version = version_of(any_tokenizer_dir, sp_tokenizer_dir)
    records = [c for c in CONVERSATIONS]
    manifest = run(any_tokenizer_dir, records, tmp_path / "out", version, max_length=200, pack=False,
                   num_spliced_dataset_bins=1)
    assert manifest["chat_template"]["round_trip"] is True
    exported = AutoTokenizer.from_pretrained(str(tmp_path / "out" / "tokenizer"))
    config = json.loads((tmp_path / "out" / "tokenizer" / "tokenizer_config.json").read_text())
    assert config["chat_template"] == exported.chat_template
    rows = {tuple(r["input_ids"]) for r in datasets.load_from_disk(str(tmp_path / "out" / "arrow" / "part-00000"))}
    checked = 0
    for record in records:
        ref = reference_sft(exported, record["messages"], 200, version)
        if ref is None:
            continue
        hf = [{"role": {"human": "user", "assistant": "assistant"}[m["from"]], "content": m["content"]}
              for m in record["messages"]]
        turns = (ref[0].count(ref[0][0]) - 1) // 2  # every message opens with BOS, after the leading one
        rendered = exported.apply_chat_template(hf[: 2 * turns], tokenize=True)
        assert rendered == ref[0] and tuple(rendered) in rows
        checked += 1
    assert checked >= 5
    # the generation prompt opens an assistant turn
    text = exported.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("Human: " + ("<s>" if version == 2 else "<|begin_of_text|>") + "hi" +
                         ("</s>" if version == 2 else "<|eot_id|>") + "Assistant: " +
                         ("<s>" if version == 2 else "<|begin_of_text|>"))


def test_bad_input_stops_with_file_and_line(sp_tokenizer_dir, tmp_path):
    two_humans = {"messages": [{"from": "human", "content": "a"}, {"from": "human", "content": "b"}]}
    path = write_jsonl(str(tmp_path / "in" / "c.jsonl"), [conv("a", "b"), two_humans])
    config = SftDataConfig(data_input_dirs=str(tmp_path / "in"), tokenizer_dir=sp_tokenizer_dir,
                           data_output_dirs=str(tmp_path / "out"), llama_version=2)
    with pytest.raises(DataError, match=rf"^{path}:2: message 2: two human messages in a row"):
        prepare_sft_dataset(config)
    assert not (tmp_path / "out").exists()


def test_wrong_llama_version_and_template(sp_tokenizer_dir, tmp_path):
    with pytest.raises(TokenizerError, match="no '<|eot_id|>' token, which --llama_version 3 uses"):
        run(sp_tokenizer_dir, [conv("a", "b")], tmp_path / "out", 3)
    with pytest.raises(ConfigError, match="--template must be one of"):
        SftJob(SftDataConfig(data_input_dirs="x", tokenizer_dir="t", template="chatml"))
    with pytest.raises(ConfigError, match="--llama_version must be one of"):
        SftDataConfig(data_input_dirs="x", tokenizer_dir="t", llama_version=1)


def test_llama_version_detected_from_the_tokenizer(sp_tokenizer_dir, llama3_tokenizer_dir, tmp_path):
    """No --llama_version: <|begin_of_text|> and <|eot_id|> -> 3, bos/eos <s>/</s> -> 2 (recorded in the
    manifest as if given), else an error asking for the flag. A wrong explicit one names the right one."""
    for tokenizer_dir, version in ((sp_tokenizer_dir, 2), (llama3_tokenizer_dir, 3)):
        manifest = run(tokenizer_dir, [conv("a", "b")], tmp_path / f"out{version}", None)
        assert manifest["chat_template"]["llama_version"] == manifest["config"]["llama_version"] == version
        explicit = run(tokenizer_dir, [conv("a", "b")], tmp_path / f"explicit{version}", version)
        assert explicit["buckets"] == manifest["buckets"]  # same rows, same identity
        with pytest.raises(TokenizerError, match=f"looks like a LLaMA-{version} tokenizer: pass --llama_version "
                                                 f"{version}"):
            run(tokenizer_dir, [conv("a", "b")], tmp_path / "wrong", 5 - version)
    other = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    other.add_special_tokens({"bos_token": "<B>", "eos_token": "<E>"})
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(TokenizerError, match="cannot tell .*pass --llama_version 2 or 3"):
        run(str(tmp_path / "other"), [conv("a", "b")], tmp_path / "out", None)


LLAMA3_CHAT = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
               "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
               "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


@pytest.fixture(scope="module")
def chat_tokenizer_dir(llama3_tokenizer_dir, tmp_path_factory):
    """The LLaMA-3 style tokenizer with a LLaMA-3 style chat_template of its own."""
    tok = AutoTokenizer.from_pretrained(llama3_tokenizer_dir)
    tok.chat_template = LLAMA3_CHAT
    out = str(tmp_path_factory.mktemp("chat_tokenizer"))
    tok.save_pretrained(out)
    return out


def reference_hf(tokenizer, messages, max_length):
    """--template hf by hand: binary search on rendered prefixes, spans from rendered prefixes."""
    hf = [{"role": {"human": "user", "assistant": "assistant"}[m["from"]], "content": m["content"]} for m in messages]
    hf = hf[: len(hf) - len(hf) % 2]
    render = lambda k, gen=False: tokenizer.apply_chat_template(hf[:k], tokenize=False,  # noqa: E731
                                                                add_generation_prompt=gen)
    tok = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    turns = max([t for t in range(1, len(hf) // 2 + 1) if len(tok(render(2 * t))) <= max_length], default=0)
    if turns == 0:
        return None
    ids = tok(render(2 * turns))
    labels = [IGNORE] * len(ids)
    for j in range(1, 2 * turns, 2):
        a, b = len(tok(render(j, True))), len(tok(render(j + 1)))
        labels[a:b] = ids[a:b]
    return ids, labels


@pytest.mark.parametrize("max_length", [40, 120, 4096])
def test_hf_template_matches_reference(chat_tokenizer_dir, tmp_path, max_length):
    config = SftDataConfig(data_input_dirs="x", tokenizer_dir=chat_tokenizer_dir, template="hf", max_length=max_length)
    job = SftJob(config)
    tok = AutoTokenizer.from_pretrained(chat_tokenizer_dir)
    job.prepare_tokenizer(tok)
    info = describe_tokenizer(tok, chat_tokenizer_dir, str(tmp_path))
    batch = job.make_kind(tok, info).tokenize(payloads(CONVERSATIONS), info.encoder.build(), info)
    expected = [reference_hf(tok, c["messages"], max_length) for c in CONVERSATIONS]
    assert batch.kept == [i for i, e in enumerate(expected) if e is not None]
    assert split(batch) == [e for e in expected if e is not None]
    for ids, labels in split(batch):  # the trained spans are the replies, each closed by <|eot_id|>
        trained = tok.decode([t for t, l in zip(ids, labels) if l != IGNORE])
        assert trained.endswith("<|eot_id|>") and "<|start_header_id|>" not in trained


def test_hf_template_end_to_end_and_round_trip(chat_tokenizer_dir, tmp_path):
    manifest = run(chat_tokenizer_dir, CONVERSATIONS[:5], tmp_path / "out", 3, template="hf", max_length=4096)
    assert manifest["chat_template"]["round_trip"] is True and manifest["chat_template"]["template"] == "hf"
    exported = AutoTokenizer.from_pretrained(str(tmp_path / "out" / "tokenizer"))
    assert exported.chat_template == LLAMA3_CHAT
    tok = AutoTokenizer.from_pretrained(chat_tokenizer_dir)
    expected = collections.Counter()
    for c in CONVERSATIONS[:5]:
        ids, labels = reference_hf(tok, c["messages"], 4096)
        expected[tuple(ids), tuple(labels), "default"] += 1
    assert collections.Counter(output_segments(str(tmp_path / "out"))) == expected


def test_hf_template_problems(llama3_tokenizer_dir, chat_tokenizer_dir, tmp_path):
    with pytest.raises(TokenizerError, match="--template hf: the tokenizer has no chat_template"):
        run(llama3_tokenizer_dir, [conv("a", "b")], tmp_path / "out", 3, template="hf")
    # a template that writes a footer after the last message: shorter renderings are not prefixes
    tok = AutoTokenizer.from_pretrained(chat_tokenizer_dir)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}|{% endfor %}[{{ messages | length }}]"
    tok.save_pretrained(str(tmp_path / "footer"))
    with pytest.raises(DataError, match=r":1: the chat_template renders a conversation's first messages differently"):
        run(str(tmp_path / "footer"), [conv("a", "b"), conv("c", "d")], tmp_path / "out2", 3, template="hf")


@pytest.fixture(scope="module")
def sp_chat_tokenizer_dir(sp_tokenizer_dir, tmp_path_factory):
    """The LLaMA-2 style tokenizer with a chat_template of its own (the default template, as Jinja)."""
    from colossal_llama.data.templates import default_template

    tok = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    tok.chat_template = default_template(2).chat_template()
    out = str(tmp_path_factory.mktemp("sp_chat_tokenizer"))
    tok.save_pretrained(out)
    return out


HF_SPECIAL_TEXT = {"sp": ("</s>", "<unk>", "<s>"), "llama3": ("<|eot_id|>", "<|start_header_id|>", "<|end_of_text|>")}
NOT_SPECIAL = ("<s", "</ s>", "</S>", "< unk >", "<|eot_id|", "<|eot_id |>", "a <b> c")
"""Text that looks like markup but is no special token of either test tokenizer."""


@pytest.mark.parametrize("name", sorted(HF_SPECIAL_TEXT))
def test_hf_template_rejects_special_token_text(name, sp_chat_tokenizer_dir, chat_tokenizer_dir, tmp_path):
    """--template hf: the template writes special tokens itself, so the message contents are checked."""
    import re

    tok_dir = {"sp": sp_chat_tokenizer_dir, "llama3": chat_tokenizer_dir}[name]
    first, second, third = HF_SPECIAL_TEXT[name]
    ordinary = [conv(f"q {t}", f"{t} answer") for t in NOT_SPECIAL]
    bad = [conv(f"before {first} after", "fine"), conv("fine", f"reply{second}"), conv("a", "b", third, "d")]
    path = write_jsonl(str(tmp_path / "in" / "c.jsonl"), ordinary + bad)
    manifest = run(tok_dir, str(tmp_path / "in"), tmp_path / "out", None, template="hf", max_length=4096,
                   on_error="skip")
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    lines = [len(ordinary) + i for i in (1, 2, 3)]
    assert [(r["line"], r["reason"]) for r in rejected] == [(line, "special_token_text") for line in lines]
    for r, (i, token) in zip(rejected, [(1, first), (2, second), (3, third)]):
        assert r["message"].startswith(f"message {i}: content holds the special token {token!r}; remove it")
    assert manifest["totals"]["rejected_by_reason"] == {"special_token_text": 3}
    assert manifest["totals"]["records"] == len(ordinary)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    expected = collections.Counter()
    for c in ordinary:
        ids, labels = reference_hf(tok, c["messages"], 4096)
        expected[tuple(ids), tuple(labels), "default"] += 1
    assert collections.Counter(output_segments(str(tmp_path / "out"))) == expected
    with pytest.raises(DataError, match="^" + re.escape(f"{path}:{len(ordinary) + 1}: message 1: content holds "
                                                        f"the special token {first!r}")):
        run(tok_dir, str(tmp_path / "in"), tmp_path / "out2", None, template="hf", max_length=4096)
    assert not (tmp_path / "out2").exists()


def test_bundled_conversations_match_reference(any_tokenizer_dir, sp_tokenizer_dir, tmp_path):
    from helpers import SAMPLE_SFT, read_jsonl

    records = [r for name in sorted(os.listdir(SAMPLE_SFT)) for r in read_jsonl(os.path.join(SAMPLE_SFT, name))]
    version = version_of(any_tokenizer_dir, sp_tokenizer_dir)
    tok, info, kind = kind_for(any_tokenizer_dir, version, 256, tmp_path)
    batch = kind.tokenize(payloads(records), info.encoder.build(), info)
    expected = [reference_sft(tok, r["messages"], 256, version) for r in records]
    assert split(batch) == [e for e in expected if e is not None]
    assert batch.stats["turns_truncated"] > 0  # the sample has conversations longer than 256 tokens


@pytest.mark.skipif(not os.path.isdir(__import__("helpers").REALDATA), reason="../shared/realdata is not present")
def test_real_conversations_match_reference_with_llama2(tmp_path):
    from transformers import LlamaTokenizer

    from helpers import REALDATA, read_jsonl

    tok_dir = str(tmp_path / "llama2")
    LlamaTokenizer(vocab_file=f"{REALDATA}/tokenizers/llama2-tokenizer.model", legacy=True).save_pretrained(tok_dir)
    records = read_jsonl(f"{REALDATA}/sft/dialogue_zh.jsonl")[::4] + read_jsonl(f"{REALDATA}/sft/seed_tasks_en.jsonl")[::4]
    tok, info, kind = kind_for(tok_dir, 2, 512, tmp_path)
    batch = kind.tokenize(payloads(records), info.encoder.build(), info)
    expected = [reference_sft(tok, r["messages"], 512, 2) for r in records]
    assert batch.kept == [i for i, e in enumerate(expected) if e is not None]
    assert split(batch) == [e for e in expected if e is not None]


def test_rows_mix_categories_unless_asked_not_to(sp_tokenizer_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    long, short = conv("tell me more " * 10, "here is more " * 20), conv("q", "a")
    long_len, short_len = (len(reference_sft(tok, c["messages"], 4096, 2)[0]) for c in (long, short))
    max_length = long_len + short_len  # a long conversation leaves room for exactly one short one
    records = [dict(long, category="dialogue")] * 6 + [dict(short, category="short")] * 30
    settings = dict(max_length=max_length, num_spliced_dataset_bins=1)
    mixed = run(sp_tokenizer_dir, records, tmp_path / "mixed", 2, **settings)
    own = run(sp_tokenizer_dir, records, tmp_path / "own", 2, pack_within_category=True, **settings)
    one = run(sp_tokenizer_dir, records, tmp_path / "one", 2, category="sft", **settings)
    assert sorted(mixed["categories"]) == sorted(own["categories"]) == ["dialogue", "short"]
    assert sorted(one["categories"]) == ["sft"]
    assert one["totals"]["tokens_out"] == own["totals"]["tokens_out"] == mixed["totals"]["tokens_out"] == \
        6 * long_len + 30 * short_len
    per_row = max_length // short_len
    assert own["totals"]["rows"] == 6 + -(-30 // per_row)
    # six short ones fill the long ones' rows, each still counted under its own category
    assert mixed["totals"]["rows"] == one["totals"]["rows"] == 6 + -(-24 // per_row)
    assert mixed["totals"]["fill"] > own["totals"]["fill"]
    assert {k: (e["segments"], e["tokens"]) for k, e in mixed["categories"].items()} == {
        "dialogue": (6, 6 * long_len), "short": (30, 30 * short_len)}
    assert mixed["categories"]["short"]["rows"] == 6 + -(-24 // per_row)  # the rows holding a short one
    assert sorted(collections.Counter(output_segments(str(tmp_path / "mixed"))).values()) == [6, 30]
    with pytest.raises(ConfigError, match="--category must not be empty"):
        SftDataConfig(data_input_dirs="x", tokenizer_dir="t", category="")


def test_mixed_rows_schema_and_determinism(sp_tokenizer_dir, tmp_path):
    from colossal_llama.data.shards import MIXED_ROW_FEATURES

    records = [dict(c, category="a" if i % 3 else "b") for i, c in enumerate(CONVERSATIONS * 4)]
    first = run(sp_tokenizer_dir, records, tmp_path / "first", 2, max_length=300, num_spliced_dataset_bins=3)
    again = run(sp_tokenizer_dir, records, tmp_path / "again", 2, max_length=300, num_spliced_dataset_bins=3)
    expected = datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32")),
                                  "labels": datasets.Sequence(datasets.Value("int32")),
                                  "seq_lengths": datasets.Sequence(datasets.Value("int32")),
                                  "category": datasets.Value("string"),
                                  "segment_categories": datasets.Sequence(datasets.Value("string"))})
    assert expected.to_dict() == MIXED_ROW_FEATURES
    assert json.dumps(first, sort_keys=True).replace("first", "again") == json.dumps(again, sort_keys=True)
    for part in first["buckets"]:
        folder = tmp_path / "first" / part["part"]
        assert datasets.load_from_disk(str(folder)).features == expected
        for name in os.listdir(folder):
            assert (folder / name).read_bytes() == (tmp_path / "again" / part["part"] / name).read_bytes()
