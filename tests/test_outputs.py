"""Output folders: concurrent runs never replace each other's work, killed runs' leftovers are cleaned,
modes follow the umask, a read-only or full file system is one line and exit 2 with nothing half-written."""

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from colossal_llama.config import PretrainDataConfig
from colossal_llama.data import prepare as prepare_module
from colossal_llama.data.pretrain import main as pretrain_main
from colossal_llama.data.pretrain import prepare_pretrain_dataset
from colossal_llama.errors import OutputError
from colossal_llama.outputs import LOCK_NAME, staged_output
from helpers import REPO, SAMPLE_PRETRAIN, small_file_system


def config(tokenizer_dir, out, **kw):
    kw = {"num_workers": 1, "max_length": 128, "num_spliced_dataset_bins": 2, **kw}
    return PretrainDataConfig(data_input_dirs=[SAMPLE_PRETRAIN], tokenizer_dir=tokenizer_dir,
                              data_output_dirs=str(out), **kw)


def argv(tokenizer_dir, out):
    return ["--data_input_dirs", SAMPLE_PRETRAIN, "--tokenizer_dir", tokenizer_dir, "--data_output_dirs", str(out),
            "--max_length", "128", "--num_spliced_dataset_bins", "2", "--num_workers", "1"]


def test_a_run_that_finishes_second_does_not_replace_the_first(sp_tokenizer_dir, tmp_path, monkeypatch, capsys):
    """Two prepares into one folder at once: the one that publishes second fails, the first's output stays."""
    out = tmp_path / "out"
    real = prepare_module._prepare_into
    calls = []

    def with_a_rival(tmp, *args, **kwargs):
        calls.append(tmp)
        if len(calls) == 1:  # while this run works, another one (other settings) starts and finishes
            prepare_pretrain_dataset(config(sp_tokenizer_dir, out, max_length=256))
        return real(tmp, *args, **kwargs)

    monkeypatch.setattr(prepare_module, "_prepare_into", with_a_rival)
    assert pretrain_main(argv(sp_tokenizer_dir, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: --data_output_dirs {out}: another run wrote it while this one was working; "
                       "nothing was replaced (add --overwrite to replace it)")
    assert json.loads((out / "manifest.json").read_text())["max_length"] == 256  # the rival's output, intact
    assert sorted(os.listdir(tmp_path)) == ["out"]  # the loser's staging folder is gone


def test_an_empty_output_folder_is_filled(sp_tokenizer_dir, tmp_path):
    (tmp_path / "out").mkdir()
    prepare_pretrain_dataset(config(sp_tokenizer_dir, tmp_path / "out"))
    assert sorted(os.listdir(tmp_path / "out")) == ["arrow", "manifest.json"]


HOLD = """
import sys, time
from colossal_llama.outputs import staged_output
with staged_output(sys.argv[1]) as tmp:
    open(tmp + "/partial.bin", "w").write("half")
    print(tmp, flush=True)
    time.sleep(600)
"""


@contextlib.contextmanager
def holder(out):
    """A process in the middle of writing `out` (its staging folder locked); yields (process, staging folder)."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        yield process, process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def test_killed_runs_leftovers_are_removed_live_ones_kept(sp_tokenizer_dir, tmp_path):
    out = tmp_path / "out"
    with holder(out) as (live, live_tmp), holder(out) as (dead, dead_tmp):
        os.kill(dead.pid, signal.SIGKILL)  # as a kill -9 of a prepare would
        dead.wait()
        assert os.path.isfile(os.path.join(dead_tmp, "partial.bin"))
        prepare_pretrain_dataset(config(sp_tokenizer_dir, out))
        assert not os.path.exists(dead_tmp)
        assert os.path.isfile(os.path.join(live_tmp, "partial.bin")) and live.poll() is None
    assert not os.path.exists(os.path.join(out, LOCK_NAME))


def test_outputs_follow_the_umask(sp_tokenizer_dir, tmp_path):
    previous = os.umask(0o022)
    try:
        prepare_pretrain_dataset(config(sp_tokenizer_dir, tmp_path / "out"))
        with staged_output(str(tmp_path / "other")) as tmp:
            open(os.path.join(tmp, "x"), "w").close()
    finally:
        os.umask(previous)
    for folder in (tmp_path / "out", tmp_path / "other"):
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o755


def test_a_failing_write_is_one_line_and_leaves_nothing(sp_tokenizer_dir, tmp_path, monkeypatch, capsys):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "x.arrow"))

    monkeypatch.setattr(prepare_module, "write_buckets", full)
    assert pretrain_main(argv(sp_tokenizer_dir, tmp_path / "out")) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {tmp_path / 'x.arrow'}: No space left on device"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("options, reason", [("size=64k", "No space left on device"),
                                             ("ro,size=64k", "Read-only file system")])
def test_a_full_or_read_only_file_system(sp_tokenizer_dir, tmp_path, capsys, options, reason):
    with small_file_system(tmp_path / "fs", options) as fs:
        assert pretrain_main(argv(sp_tokenizer_dir, fs / "out")) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(f"error: {fs}") and line.endswith(f": {reason}"), line
        assert os.listdir(fs) == []


def test_publish_refuses_a_folder_filled_meanwhile(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="another run wrote it"):
        with staged_output(str(out)) as tmp:
            open(os.path.join(tmp, "mine"), "w").close()
            out.mkdir()
            (out / "theirs").write_text("x")
    assert os.listdir(out) == ["theirs"] and sorted(os.listdir(tmp_path)) == ["out"]


def test_only_staging_folders_are_cleaned(tmp_path):
    """A user's folder that merely starts like a staging folder is never touched, however old."""
    from colossal_llama.outputs import remove_stale_staging

    mine = tmp_path / "out.tmp-my-notes"
    mine.mkdir()
    os.utime(mine, (0, 0))  # far older than the grace period for lockless staging folders
    stale = tmp_path / "out.tmp-abc_1234"
    stale.mkdir()
    os.utime(stale, (0, 0))
    assert remove_stale_staging(str(tmp_path / "out")) == [str(stale)]
    assert mine.is_dir()


def test_ranks_write_one_staging_folder_and_the_main_one_publishes(tmp_path):
    """Two ranks (threads here): one staging folder, each rank's file in the published output."""
    import threading

    from colossal_llama.outputs import shared_staging_path

    out, barrier, seen, errors = tmp_path / "export", threading.Barrier(2, timeout=10), {}, []

    def rank(r):
        try:
            with staged_output(str(out), overwrite=True, is_main=r == 0, barrier=barrier.wait,
                               report_as=str(out)) as tmp:
                seen[r] = tmp
                (tmp_path / os.path.basename(tmp) / f"rank-{r}").write_text(str(r))
        except Exception as exc:  # noqa: BLE001 - reported below, threads swallow them
            errors.append(exc)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and seen[0] == seen[1] == shared_staging_path(str(out))
    assert sorted(os.listdir(out)) == ["rank-0", "rank-1"] and os.listdir(tmp_path) == ["export"]


def test_a_shared_staging_folder_of_a_dead_run_is_replaced_a_live_ones_refused(tmp_path):
    from colossal_llama.outputs import shared_staging_path, take_lock

    out = tmp_path / "ck" / "step-00000004"
    left = shared_staging_path(str(out))
    for lock_file in (True, False):  # killed while writing (its lock free), killed while publishing (no lock file)
        os.makedirs(left)
        open(os.path.join(left, "half.bin"), "w").close()
        if lock_file:
            open(os.path.join(left, LOCK_NAME), "w").close()
        with staged_output(str(out), overwrite=True, barrier=lambda: None) as tmp:
            assert tmp == left and os.listdir(tmp) == [LOCK_NAME]
            open(os.path.join(tmp, "model.bin"), "w").close()
        assert os.listdir(out) == ["model.bin"] and not os.path.exists(left)
    os.makedirs(left)
    held = take_lock(os.path.join(left, LOCK_NAME))  # another open file: conflicts as another process would
    try:
        with pytest.raises(OutputError, match="another run is writing it now"):
            with staged_output(str(out), overwrite=True, barrier=lambda: None):
                pass
        assert os.listdir(left) == [LOCK_NAME] and os.listdir(out) == ["model.bin"]
    finally:
        held.close()


def test_a_failing_shared_write_names_the_output_and_keeps_the_previous_one(tmp_path):
    out = tmp_path / "final"
    out.mkdir()
    (out / "old.bin").write_text("old")
    with pytest.raises(OutputError, match=f"^{out}: No space left on device$"):
        with staged_output(str(out), overwrite=True, barrier=lambda: None, report_as=str(out)):
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from OSError(28, "No space left on device")
    with pytest.raises(KeyError):  # not the file system's fault: passes through
        with staged_output(str(out), overwrite=True, barrier=lambda: None, report_as=str(out)):
            raise KeyError("x")
    assert os.listdir(tmp_path) == ["final"] and os.listdir(out) == ["old.bin"]


def test_write_json_replaces_whole_files(tmp_path):
    from colossal_llama.outputs import write_json

    path = tmp_path / "sub" / "state.json"
    previous = os.umask(0o022)
    try:
        write_json(str(path), {"b": 1, "a": "é"}, indent=2, ensure_ascii=False)
    finally:
        os.umask(previous)
    assert path.read_text(encoding="utf-8") == '{\n  "b": 1,\n  "a": "é"\n}\n'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    with pytest.raises(TypeError):
        write_json(str(path), {"a": object()})  # fails halfway through: the old file stays whole
    assert json.loads(path.read_text()) == {"b": 1, "a": "é"} and os.listdir(path.parent) == ["state.json"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=f"^{tmp_path / 'file' / 'x.json'}: "):
        write_json(str(tmp_path / "file" / "x.json"), {})
