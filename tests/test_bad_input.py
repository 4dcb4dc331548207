"""Bad input (data-spec section 5): a clear error naming file, line and reason, or with
--on_error skip a rejected.jsonl entry and a count; never a half-written output."""

import gzip
import json
import os

import pytest

from colossal_llama.config import PretrainDataConfig
from colossal_llama.data.pretrain import main, prepare_pretrain_dataset
from colossal_llama.data.records import DataError
from colossal_llama.tokenizer.loading import TokenizerError
from helpers import SAMPLE_PRETRAIN, write_jsonl

GOOD = {"source": "", "target": "a good record", "category": "c"}

BAD_LINES = {
    # name: (line bytes, reason code, words of the message)
    "invalid_json": (b'{"source": "", "target": "x", "category": "c"', "invalid_json", "invalid JSON"),
    "missing_field": (b'{"source": "", "category": "c"}', "missing_field", 'missing field "target"'),
    "missing_source": (b'{"target": "x", "category": "c"}', "missing_field", 'missing field "source"'),
    "non_string": (b'{"source": 1, "target": "x", "category": "c"}', "wrong_type", '"source" must be a string, got int'),
    "non_string_category": (b'{"source": "", "target": "x", "category": null}', "wrong_type", '"category" must be'),
    "empty_target": (b'{"source": "q", "target": "", "category": "c"}', "empty_target", '"target" is empty'),
    "empty_category": (b'{"source": "", "target": "x", "category": ""}', "empty_category", '"category" is empty'),
    "invalid_utf8": (b'{"source": "", "target": "\xff\xfe", "category": "c"}', "invalid_utf8", "invalid UTF-8"),
    "not_an_object": (b'["source", "target"]', "not_an_object", "expected a JSON object, got list"),
    "special_token": (b'{"source": "", "target": "end</s>more", "category": "c"}', "special_token_text", "'</s>'"),
}


def config(tokenizer_dir, inputs, out, **kw):
    kw.setdefault("num_workers", 2)
    return PretrainDataConfig(data_input_dirs=[str(i) for i in inputs], tokenizer_dir=tokenizer_dir,
                              data_output_dirs=str(out), **kw)


def assert_nothing_written(tmp_path, out):
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_bad_record_stops_with_file_line_reason(name, sp_tokenizer_dir, tmp_path):
    line, _, words = BAD_LINES[name]
    path = write_jsonl(str(tmp_path / "in" / "data.jsonl"), [GOOD, GOOD], raw_lines=[line])
    with pytest.raises(DataError) as err:
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out"))
    assert str(err.value).startswith(f"{path}:3: ")
    assert words in str(err.value)
    assert_nothing_written(tmp_path, tmp_path / "out")


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_bad_record_skipped_with_count(name, sp_tokenizer_dir, tmp_path):
    line, reason, _ = BAD_LINES[name]
    path = write_jsonl(str(tmp_path / "in" / "data.jsonl"), [GOOD], raw_lines=[line, json.dumps(GOOD).encode()])
    out = tmp_path / "out"
    manifest = prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], out, on_error="skip"))
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"], r["reason"]) for r in rejected] == [(path, 2, reason)]
    assert rejected[0]["record"] == line.decode("utf-8", errors="replace")
    assert manifest["totals"]["rejected_by_reason"] == {reason: 1}
    assert manifest["totals"]["records"] == 2
    assert manifest["inputs"][0]["rejected"] == 1 and manifest["inputs"][0]["lines"] == 3
    # counted under the record's category when it can be read, else under "<unknown>"
    readable = name in ("missing_field", "missing_source", "non_string", "empty_target", "special_token")
    assert manifest["categories"]["c" if readable else "<unknown>"]["rejected"] == {reason: 1}


def test_line_numbers_are_absolute_across_chunks(sp_tokenizer_dir, tmp_path):
    good = [{"source": "", "target": f"record number {i}", "category": "c"} for i in range(600)]
    lines = [json.dumps(r).encode() for r in good]
    lines[436] = b"{broken"  # line 437
    lines[598] = b'{"source": 3}'  # line 599
    path = write_jsonl(str(tmp_path / "in" / "big.jsonl"), [], raw_lines=lines)
    small_chunks = dict(chunk_bytes=2048, num_workers=2)
    with pytest.raises(DataError, match=rf"^{path}:437: invalid JSON"):
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out", **small_chunks))
    manifest = prepare_pretrain_dataset(
        config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out", on_error="skip", **small_chunks))
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejected] == [437, 599]
    assert manifest["totals"]["records"] == 598


def test_empty_file(sp_tokenizer_dir, tmp_path):
    write_jsonl(str(tmp_path / "in" / "a.jsonl"), [GOOD])
    empty = tmp_path / "in" / "b.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=rf"^{empty}: file is empty"):
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out"))
    assert_nothing_written(tmp_path, tmp_path / "out")
    manifest = prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out",
                                               on_error="skip"))
    assert manifest["empty_files"] == [str(empty)]
    assert manifest["totals"]["records"] == 1


def test_blank_lines_only_file_is_empty(sp_tokenizer_dir, tmp_path):
    blank = tmp_path / "in" / "a.jsonl"
    blank.parent.mkdir()
    blank.write_bytes(b"\n  \n\n")
    with pytest.raises(DataError, match="file is empty"):
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out"))


def test_all_records_rejected(sp_tokenizer_dir, tmp_path):
    write_jsonl(str(tmp_path / "in" / "a.jsonl"), [], raw_lines=[b"nope", b"[]"])
    with pytest.raises(DataError, match=r"no record was accepted \(2 rejected, 0 too long\)"):
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out", on_error="skip"))
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_corrupt_gzip(sp_tokenizer_dir, tmp_path):
    bad = tmp_path / "in" / "a.jsonl.gz"
    bad.parent.mkdir()
    bad.write_bytes(gzip.compress(b'{"source": "", "target": "x", "category": "c"}\n')[:-12])
    with pytest.raises(DataError, match=rf"^{bad}: not a readable gzip file"):
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out"))
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_missing_and_empty_folders(sp_tokenizer_dir, tmp_path):
    with pytest.raises(DataError, match=f"folder {tmp_path / 'nope'} does not exist"):
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "nope"], tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not jsonl")
    with pytest.raises(DataError, match=f"folder {tmp_path / 'empty'} holds no"):
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "empty"], tmp_path / "out"))
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_missing_or_unusable_tokenizer(tmp_path):
    with pytest.raises(TokenizerError, match="folder does not exist"):
        prepare_pretrain_dataset(config(str(tmp_path / "nope"), [SAMPLE_PRETRAIN], tmp_path / "out"))
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "README").write_text("no tokenizer here")
    with pytest.raises(TokenizerError, match="no loadable tokenizer"):
        prepare_pretrain_dataset(config(str(tmp_path / "tok"), [SAMPLE_PRETRAIN], tmp_path / "out"))
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_cli_reports_error_and_exit_code(sp_tokenizer_dir, tmp_path, capsys):
    path = write_jsonl(str(tmp_path / "in" / "data.jsonl"), [GOOD], raw_lines=[b"{oops"])
    code = main(["--data_input_dirs", str(tmp_path / "in"), "--tokenizer_dir", sp_tokenizer_dir,
                 "--data_output_dirs", str(tmp_path / "out")])
    assert code == 2
    assert f"error: {path}:2: invalid JSON" in capsys.readouterr().err
    assert_nothing_written(tmp_path, tmp_path / "out")


def _die(chunk, settings):
    os._exit(3)  # what the kernel's OOM killer does to a worker, as far as the parent can tell


def test_killed_worker_is_reported_not_waited_for(sp_tokenizer_dir, tmp_path, monkeypatch):
    from colossal_llama.data import mapstep

    monkeypatch.setattr(mapstep, "map_chunk", _die)
    with pytest.raises(mapstep.WorkerDied, match="worker died"):
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [SAMPLE_PRETRAIN], tmp_path / "out", num_workers=2))
    assert_nothing_written(tmp_path, tmp_path / "out")


def test_tolerated_line_variants(sp_tokenizer_dir, tmp_path):
    """A UTF-8 byte-order mark, CRLF line ends, blank lines and a last line without newline are fine."""
    path = tmp_path / "in" / "a.jsonl"
    path.parent.mkdir()
    line = json.dumps(GOOD).encode()
    path.write_bytes(b"\xef\xbb\xbf" + line + b"\r\n\r\n" + line + b"\n   \n" + line)
    manifest = prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out"))
    assert manifest["totals"]["records"] == 3
    assert manifest["totals"]["blank_lines"] == 2
    assert manifest["inputs"][0]["lines"] == 5
