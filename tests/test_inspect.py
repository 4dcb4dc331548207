"""The inspection command shows trained-on spans and document boundaries."""

from transformers import AutoTokenizer

from colossal_llama.config import SftDataConfig
from colossal_llama.data.inspect_rows import main, render_row, spans
from colossal_llama.data.sft import prepare_sft_dataset
from helpers import write_jsonl


def test_spans():
    assert spans([-100, -100, 5, 6, -100, 7]) == [(0, 2, False), (2, 4, True), (4, 5, False), (5, 6, True)]
    assert spans([1]) == [(0, 1, True)]


def test_render_row_marks_spans_and_documents(sp_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    a = tok("<s>the sea</s>", add_special_tokens=False)["input_ids"]
    b = tok("<s>a hill</s>", add_special_tokens=False)["input_ids"]
    row = {"input_ids": a + b, "labels": [-100] * 2 + a[2:] + b, "seq_lengths": [len(a), len(b)], "category": "c"}
    text = render_row(row, tok, color=False)
    lines = text.splitlines()
    assert lines[0] == f"category c, {len(a) + len(b)} tokens in 2 document(s), {len(a) - 2 + len(b)} trained on"
    assert lines[1] == f"--- document 1: tokens 0-{len(a) - 1} ({len(a)} tokens, {len(a) - 2} trained on)"
    assert lines[3].startswith(f"--- document 2: tokens {len(a)}-{len(a) + len(b) - 1}")
    assert "[[" in lines[2] and lines[2].endswith("</s>]]") and not lines[2].startswith("[[")
    assert lines[4].startswith("[[<s>") and lines[4].endswith("</s>]]")
    assert "\033[42;30m" in render_row(row, tok, color=True)


def test_cli_on_sft_output(sp_tokenizer_dir, tmp_path, capsys):
    records = [{"messages": [{"from": "human", "content": "Hi"}, {"from": "assistant", "content": "Hello there"}]}]
    write_jsonl(str(tmp_path / "in" / "a.jsonl"), records)
    prepare_sft_dataset(SftDataConfig(data_input_dirs=str(tmp_path / "in"), tokenizer_dir=sp_tokenizer_dir,
                                      data_output_dirs=str(tmp_path / "out"), llama_version=2, num_workers=1))
    part = str(tmp_path / "out" / "arrow" / "part-00000")
    assert main([part, "--index", "0", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "Human: <s> Hi</s> Assistant: [[<s> Hello there</s>]]" in out
    assert main([part, "--index", "5"]) == 2
    assert "--index 5 is outside 0..0" in capsys.readouterr().err


def test_render_row_names_the_category_of_each_document_of_a_mixed_row(sp_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(sp_tokenizer_dir)
    a = tok("<s>the sea</s>", add_special_tokens=False)["input_ids"]
    b = tok("<s>a hill</s>", add_special_tokens=False)["input_ids"]
    row = {"input_ids": a + b, "labels": a + b, "seq_lengths": [len(a), len(b)], "category": "<mixed>",
           "segment_categories": ["chat_en", "chat_zh"]}
    lines = render_row(row, tok, color=False).splitlines()
    assert lines[0].startswith("category <mixed>, ")
    assert lines[1].startswith("--- document 1 (chat_en): tokens 0-")
    assert lines[3].startswith(f"--- document 2 (chat_zh): tokens {len(a)}-")
