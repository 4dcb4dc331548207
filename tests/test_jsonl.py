"""The shared JSONL reader (colossal_llama/jsonl.py): one `FILE:LINE: reason` format in every command,
gzip input, blank lines skipped but counted, bounded lines, and the commands that use it."""

from __future__ import annotations

import gzip

import pytest

from colossal_llama.errors import DataError, InferenceError
from colossal_llama.inference.generate import main as generate_main
from colossal_llama.inference.generate import read_prompts
from colossal_llama.jsonl import OversizedLine, bounded_lines, read_jsonl, read_lines

# one good line every command accepts: a piece, a probe, a prompt, a pretraining record
GOOD = b'{"piece": "\xe5\xa5\xbd", "prompt": "hi", "source": "", "target": "an answer", "category": "c"}'
BAD = b'{"piece": "x", "target": '  # line 3, after a blank line 2
BAD_REASON = "invalid JSON: Expecting value (column 26)"


def write(path, *lines: bytes, gz: bool = False) -> str:
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(gzip.compress(data) if gz else data)
    return str(path)


@pytest.mark.parametrize("gz", [False, True])
def test_blank_lines_are_skipped_but_counted(tmp_path, gz):
    path = write(tmp_path / ("a.jsonl.gz" if gz else "a.jsonl"), b'\xef\xbb\xbf{"a": 1}', b"", b" \t\r",
                 b'{"a": 2}\r', b'{"a": 3}', gz=gz)
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (4, {"a": 2}), (5, {"a": 3})]  # BOM dropped, \r tolerated


def test_text_lines(tmp_path):
    path = write(tmp_path / "p.txt.gz", b"\xef\xbb\xbf first ", b"", b"second\r", gz=True)
    assert list(read_lines(path)) == [(1, " first "), (3, "second")]


@pytest.mark.parametrize("line, reason", [
    (BAD, BAD_REASON),
    (b"[1, 2]", "expected a JSON object, got list"),
    (b'{"a": "\xff"}', "invalid UTF-8 at byte 7 of the line"),
    (b"[" * 100_000, "JSON nested too deeply to decode"),
    (b'{"a": "' + b"x" * 200 + b'"}', "record is 209 bytes, over the limit of 100"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_bad_line_names_file_and_line(tmp_path, line, reason, gz):
    path = write(tmp_path / ("a.jsonl.gz" if gz else "a.jsonl"), GOOD, b"", line, GOOD, gz=gz)
    with pytest.raises(DataError) as err:
        list(read_jsonl(path, max_line_bytes=100 if b"x" * 200 in line else 1 << 20))
    assert str(err.value) == f"{path}:3: {reason}"


def test_unreadable_files(tmp_path):
    missing = str(tmp_path / "none.jsonl")
    with pytest.raises(DataError, match=rf"^{missing}: cannot read it: No such file or directory$"):
        list(read_jsonl(missing))
    corrupt = tmp_path / "c.jsonl.gz"
    corrupt.write_bytes(gzip.compress(GOOD * 100)[:-30])
    with pytest.raises(DataError, match=rf"^{corrupt}: not a readable gzip file"):
        list(read_jsonl(str(corrupt)))


def test_long_lines_are_read_through_in_bounded_memory(tmp_path):
    path = write(tmp_path / "a.jsonl", b"a" * 5, b"b" * 3_000_000, b"c")
    with open(path, "rb") as f:
        got = list(bounded_lines(f, 10))
    assert got == [b"a" * 5, OversizedLine(b"b" * 1000, 3_000_000, 10), b"c"]


# every command that reads JSONL, called in process on the same file: the same message
def _pieces(path, _):
    from colossal_llama.tokenizer.init_tokenizer import read_piece_files
    return read_piece_files([path])


def _report(path, _):
    from colossal_llama.tokenizer.report import corpus_texts
    return list(corpus_texts([path]))


def _probes(path, _):
    from colossal_llama.stages.probes import read_probes
    return read_probes(path)


def _generate(path, capsys):
    code = generate_main(["--model_dir", "unused", "--prompts_file", path])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", [_pieces, _report, _probes])
@pytest.mark.parametrize("gz", [False, True])
def test_commands_report_a_bad_line_alike(command, gz, tmp_path, capsys):
    path = write(tmp_path / ("in.jsonl.gz" if gz else "in.jsonl"), GOOD, b"", BAD, gz=gz)
    with pytest.raises(DataError) as err:
        command(path, capsys)
    assert str(err.value) == f"{path}:3: {BAD_REASON}"
    assert command(write(tmp_path / "ok.jsonl", GOOD, b"", GOOD), capsys)  # the good lines are read


def test_generate_reports_a_bad_line_alike(tmp_path, capsys):
    path = write(tmp_path / "prompts.jsonl", GOOD, b"", BAD)
    assert _generate(path, capsys) == (2, f"error: {path}:3: {BAD_REASON}\n")
    path = write(tmp_path / "prompts.jsonl", GOOD, b"", b'{"prompt": 5}')
    assert _generate(path, capsys) == (2, f'error: {path}:3: expected an object with a non-empty string "prompt"\n')
    assert read_prompts(write(tmp_path / "p.jsonl.gz", GOOD, b"", GOOD, gz=True)) == ["hi", "hi"]
    with pytest.raises(InferenceError, match=r"p.txt:2: invalid UTF-8 at byte 0 of the line"):
        read_prompts(write(tmp_path / "p.txt", b"one", b"\xff"))


def test_command_specific_reasons_use_the_same_format(tmp_path):
    from colossal_llama.stages.probes import read_probes
    from colossal_llama.tokenizer.init_tokenizer import read_piece_files
    from colossal_llama.tokenizer.report import corpus_texts

    path = write(tmp_path / "x.jsonl", GOOD, b"", b'{"piece": " ", "source": "", "target": "", "category": 5}')
    for read, reason in [
        (lambda: read_piece_files([path]), "the piece is only whitespace (' ')"),
        (lambda: read_probes(path), "expected {source, target, category} with a non-empty target"),
        (lambda: list(corpus_texts([path])), "not a record this report can read (texts and category must be strings)"),
    ]:
        with pytest.raises(DataError) as err:
            read()
        assert str(err.value) == f"{path}:3: {reason}"


@pytest.mark.parametrize("gz", [False, True])
def test_data_path_reports_a_bad_line_alike(sp_tokenizer_dir, tmp_path, capsys, gz):
    from colossal_llama.data.pretrain import main

    (tmp_path / "in").mkdir()
    path = write(tmp_path / "in" / ("data.jsonl.gz" if gz else "data.jsonl"), GOOD, b"", BAD, gz=gz)
    code = main(["--data_input_dirs", str(tmp_path / "in"), "--tokenizer_dir", sp_tokenizer_dir,
                 "--data_output_dirs", str(tmp_path / "out"), "--num_workers", "1"])
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
    assert code == 2
    assert errors == [f"error: {path}:3: {BAD_REASON} (use --on_error skip to skip bad records)"]
