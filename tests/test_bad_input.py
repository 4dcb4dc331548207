"""Bad input (data-spec section 5): a clear error naming file, line and reason, or with
--on_error skip a rejected.jsonl entry and a count; never a half-written output."""

import gzip
import json
import os

import pytest

from colossal_llama.config import PretrainDataConfig, parse_pretrain_data_args, parse_sft_data_args
from colossal_llama.data.pretrain import main, prepare_pretrain_dataset
from colossal_llama.errors import ConfigError, DataError, TokenizerError, WorkerDied
from helpers import REPO, SAMPLE_PRETRAIN, write_jsonl

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
    # hostile records (issue 11): each must be a counted rejection, never a crash
    "unk_text": (b'{"source": "", "target": "a <unk> b", "category": "c"}', "special_token_text", "'<unk>'"),
    "lone_surrogate": (b'{"source": "", "target": "x\\ud800y", "category": "c"}', "invalid_unicode",
                       'field "target" holds a lone surrogate'),
    "lone_surrogate_category": (b'{"source": "", "target": "x", "category": "c\\udc00"}', "invalid_unicode",
                                'field "category" holds a lone surrogate'),
    "deep_nesting": (b'{"source": "", "target": "x", "category": "c", "junk": ' + b"[" * 100_000 + b"}",
                     "too_deeply_nested", "nested too deeply"),
}
READABLE_CATEGORY = ("missing_field", "missing_source", "non_string", "empty_target", "special_token", "unk_text",
                     "lone_surrogate")


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
    assert manifest["categories"]["c" if name in READABLE_CATEGORY else "<unknown>"]["rejected"] == {reason: 1}


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


def _record_of(size: int) -> bytes:
    line = json.dumps({"source": "", "target": "", "category": "c"}).encode()
    return line.replace(b'"target": ""', b'"target": "' + b"x" * (size - len(line)) + b'"')


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_too_large_record_is_rejected_and_kept_truncated(suffix, sp_tokenizer_dir, tmp_path):
    """A record over --max_record_bytes is bad input; rejected.jsonl keeps only its first 1,000 bytes."""
    big, exact = _record_of(5000), _record_of(1000)
    path = write_jsonl(str(tmp_path / "in" / "data.jsonl"), [GOOD], raw_lines=[big, exact])
    if suffix == ".jsonl.gz":
        with open(path, "rb") as f, gzip.open(path + ".gz", "wb") as gz:
            gz.write(f.read())
        os.remove(path)
        path += ".gz"
    limit = dict(max_record_bytes=1000)
    with pytest.raises(DataError, match=rf"^{path}:2: record is 5,000 bytes, over the limit of 1,000 "
                                        r"\(--max_record_bytes\)"):
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out", **limit))
    assert_nothing_written(tmp_path, tmp_path / "out")
    manifest = prepare_pretrain_dataset(config(sp_tokenizer_dir, [tmp_path / "in"], tmp_path / "out",
                                               on_error="skip", **limit))
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"], r["record_truncated"], r["record_bytes"]) for r in rejected] == [
        (2, "too_large", True, 5000)]
    assert rejected[0]["record"] == big[:1000].decode()
    assert manifest["totals"]["records"] == 2  # a record of exactly the limit is fine
    assert manifest["totals"]["rejected_by_reason"] == {"too_large": 1}


@pytest.mark.parametrize("gz", [False, True])
def test_oversized_lines_are_read_through_not_kept(gz, tmp_path):
    from colossal_llama.data.records import InputChunk, OversizedLine, iter_chunk_lines, plan_chunks

    lines = [b"a" * 10, b"b" * 11, b"c" * 50_000, b"", b"d" * 10, b"e" * 3000]  # the last without newline
    path = tmp_path / ("a.jsonl.gz" if gz else "a.jsonl")
    path.write_bytes((gzip.compress if gz else bytes)(b"\n".join(lines)))
    chunks = [InputChunk(0, str(path), 0, None)] if gz else plan_chunks([str(path)], 100)
    got = [x for c in chunks for batch in iter_chunk_lines(c, 10, batch_lines=2) for x in batch]
    assert got == [b"a" * 10, OversizedLine(b"b" * 11, 11, 10), OversizedLine(b"c" * 1000, 50_000, 10), b"",
                   b"d" * 10, OversizedLine(b"e" * 1000, 3000, 10)]


HOSTILE = ["unk_text", "lone_surrogate", "deep_nesting", "too_large"]


@pytest.mark.parametrize("on_error", ["raise", "skip"])
@pytest.mark.parametrize("name", HOSTILE)
def test_cli_hostile_record(name, on_error, sp_tokenizer_dir, tmp_path, capsys):
    """`raise`: one line `error: FILE:LINE: reason`, exit 2; `skip`: exit 0 and a counted rejection."""
    line, reason, words = BAD_LINES[name] if name != "too_large" else (_record_of(300_000), "too_large", "300,000")
    path = write_jsonl(str(tmp_path / "in" / "data.jsonl"), [GOOD], raw_lines=[line, json.dumps(GOOD).encode()])
    out = tmp_path / "out"
    code = main(["--data_input_dirs", str(tmp_path / "in"), "--tokenizer_dir", sp_tokenizer_dir, "--data_output_dirs",
                 str(out), "--num_workers", "2", "--max_record_bytes", "200000", "--on_error", on_error])
    errors = [x for x in capsys.readouterr().err.splitlines() if "error" in x.lower() or "Traceback" in x]
    if on_error == "raise":
        assert code == 2 and len(errors) == 1
        assert errors[0].startswith(f"error: {path}:2: ") and words in errors[0]
        assert_nothing_written(tmp_path, out)
        return
    assert code == 0 and not errors
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert [(r["file"], r["line"], r["reason"]) for r in rejected] == [(path, 2, reason)]
    assert json.loads((out / "manifest.json").read_text())["totals"]["rejected_by_reason"] == {reason: 1}


def test_max_record_bytes_default_and_documented():
    for parse in (parse_pretrain_data_args, parse_sft_data_args):
        assert parse(["--data_input_dirs", "a", "--tokenizer_dir", "t"]).max_record_bytes == 16 << 20
    assert PretrainDataConfig(data_input_dirs="a", tokenizer_dir="t").max_record_bytes == 16 << 20
    with pytest.raises(ConfigError, match="--max_record_bytes must be positive"):
        PretrainDataConfig(data_input_dirs="a", tokenizer_dir="t", max_record_bytes=0)
    from colossal_llama.config import pretrain_data_parser

    assert "too_large" in " ".join(pretrain_data_parser().format_help().split())
    readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    assert "| `--max_record_bytes` | 16 MiB |" in readme
    for reason in ("too_large", "too_deeply_nested", "invalid_unicode"):
        assert f"`{reason}`" in readme
    assert '`"record_truncated": true`' in readme


def _die(chunk, settings):
    os._exit(3)  # what the kernel's OOM killer does to a worker, as far as the parent can tell


def test_killed_worker_is_reported_not_waited_for(sp_tokenizer_dir, tmp_path, monkeypatch):
    from colossal_llama.data import mapstep

    monkeypatch.setattr(mapstep, "map_chunk", _die)
    with pytest.raises(WorkerDied, match="worker died"):
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


def test_rejected_records_in_line_order_whatever_the_chunking(sp_tokenizer_dir, tmp_path):
    """Bad lines found while parsing and while tokenizing are written in line order, so rejected.jsonl is the
    same bytes for any chunking (chunks follow --num_workers); raise mode names the first bad line."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    lines = []
    for i in range(6000):  # a special-token target (found by the tokenizer) before a broken line (found by parsing)
        lines.append(json.dumps({"source": "", "target": f"a </s> b {i}", "category": "c"}) if i % 2 == 0
                     else '{"oops' if i % 3 else json.dumps({"source": "", "target": f"fine {i}", "category": "c"}))
    (inputs / "a.jsonl").write_text("\n".join(lines) + "\n")
    written = []
    for chunk_bytes in (1 << 20, 2048):
        out = tmp_path / f"out{chunk_bytes}"
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [inputs], out, on_error="skip", chunk_bytes=chunk_bytes,
                                        max_length=64, num_spliced_dataset_bins=1))
        rejected = (out / "rejected.jsonl").read_text()
        numbers = [json.loads(line)["line"] for line in rejected.splitlines()]
        assert numbers == sorted(numbers) and len(numbers) > 3000
        written.append(rejected)
    assert written[0] == written[1]
    with pytest.raises(DataError, match=r"a.jsonl:1: .*</s>"):  # one worker: chunks in order (several: the
        prepare_pretrain_dataset(config(sp_tokenizer_dir, [inputs], tmp_path / "raise", chunk_bytes=2048,  # first
                                        num_workers=1))  # chunk to finish reports its first bad line)


def test_local_workers_die_with_the_run(tmp_path):
    """A run killed with SIGKILL takes its forked workers with it (they hold its staging lock otherwise)."""
    import signal
    import subprocess
    import sys
    import time

    script = ("from colossal_llama.data.engine import LocalEngine\n"
              "import os, sys, time\n"
              "engine = LocalEngine(2)\n"
              "engine.start_workers()\n"
              "print(' '.join(str(p) for p in engine.pool._processes), flush=True)\n"
              "time.sleep(60)\n")
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers = [int(p) for p in run.stdout.readline().split()]
    assert len(workers) == 2 and all(os.path.exists(f"/proc/{p}") for p in workers)
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.time() + 10
    while any(os.path.exists(f"/proc/{p}") for p in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{p}") for p in workers)
