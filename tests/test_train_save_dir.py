"""One training per --save_dir (a lock the OS drops with its process); a full or read-only save_dir is one
line and exit 2 with the previous checkpoint intact; metrics.jsonl holds each step once after a resume."""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from colossal_llama.training.metrics import keep_metrics_until
from colossal_llama.training.resume import read_checkpoint_info
from colossal_llama.training.savedir import lock_save_dir
from helpers import REPO, run_train, small_file_system


HOLD = """
import sys, time
from colossal_llama.training.savedir import lock_save_dir
lock = lock_save_dir(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_training_into_one_save_dir_is_refused(capsys, tiny_model_dir, pretrain_parts, tmp_path):
    save_dir = tmp_path / "ck"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(save_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, metrics = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--max_steps", "1")
        err = capsys.readouterr().err
        assert code == 2 and metrics == [], err[-2000:]
        assert (f"train.py: error: --save_dir {save_dir}: another training (pid {holder.pid} on host "
                f"{socket.gethostname()}) is using it") in err
        assert os.listdir(save_dir) == [".lock"]  # nothing written
    finally:
        holder.kill()  # as a kill -9 would: the OS drops its lock
        holder.wait()
        holder.stdout.close()
    lock_save_dir(str(save_dir)).close()  # free again


def assert_intact(checkpoint: str) -> None:
    """Complete, every file as saved (files.json), and nothing half-written beside it."""
    read_checkpoint_info(checkpoint)
    save_dir = os.path.dirname(checkpoint)
    assert not [n for n in os.listdir(save_dir) if ".tmp-" in n or n.endswith(".partial")], os.listdir(save_dir)
    with open(os.path.join(save_dir, "train_config.json")) as f:
        json.load(f)


@pytest.mark.parametrize("failing_call, report", [(2, "ck"), (3, "ck/final")])
def test_a_failing_write_is_one_line_and_keeps_the_previous_checkpoint(capsys, tiny_model_dir, pretrain_parts,
                                                                       tmp_path, monkeypatch, failing_call, report):
    """Writes that fail as a full disk does: the 2nd save_model call is the checkpoint of step 4, the 3rd the export."""
    from colossalai.booster import Booster

    real, calls = Booster.save_model, []

    def full_disk(self, model, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == failing_call:
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "model.safetensors"), "w") as f:
                f.write("half")
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(path, "model.safetensors"))
        return real(self, model, path, *args, **kwargs)

    monkeypatch.setattr(Booster, "save_model", full_disk)
    code, metrics = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--max_steps", "4", "--save_interval", "2")
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert lines[-1] == f"train.py: error: {tmp_path / report}: No space left on device"
    assert_intact(str(tmp_path / "ck" / "step-00000002"))
    assert not os.path.exists(tmp_path / "ck" / "final")
    saved = ["step-00000002"] + (["step-00000004"] if failing_call == 3 else [])
    assert sorted(os.listdir(tmp_path / "ck")) == [".lock", *saved, "train_config.json"]


def folder_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(root, n)) for root, _, names in os.walk(folder) for n in names)


def test_a_full_save_dir(capsys, tiny_model_dir, pretrain_parts, checkpoint, tmp_path):
    """A save_dir with room for one checkpoint and a half: step 2 is saved, step 4 fills the disk."""
    size = folder_bytes(checkpoint) * 3 // 2
    with small_file_system(tmp_path / "fs", f"size={size // 1024}k") as fs:
        save_dir = str(fs / "ck")
        code, metrics = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--save_dir", save_dir,
                                  "--max_steps", "4", "--save_interval", "2")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and len(metrics) == 4
        assert line == f"train.py: error: {save_dir}: No space left on device", line
        assert_intact(os.path.join(save_dir, "step-00000002"))
        assert sorted(os.listdir(save_dir)) == [".lock", "step-00000002", "train_config.json"]


def test_a_read_only_save_dir(capsys, tiny_model_dir, pretrain_parts, checkpoint, tmp_path):
    with small_file_system(tmp_path / "fs", "size=16m") as fs:
        shutil.copytree(os.path.dirname(checkpoint), fs / "ck")
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        code, metrics = run_train(tiny_model_dir, pretrain_parts, str(tmp_path), "--save_dir", str(fs / "ck"),
                                  "--max_steps", "2", "--load_checkpoint", "latest")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and metrics == []
        assert line.startswith(f"train.py: error: {fs / 'ck'}") and line.endswith(": Read-only file system"), line
        assert_intact(str(fs / "ck" / "step-00000002"))


def test_metrics_after_the_resumed_step_are_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"step": 1, "train/loss": 3.0}, {"step": 2, "train/loss": 2.0}, {"step": 2, "eval/loss": 2.5},
             {"step": 3, "train/loss": 1.0}]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 4, "train/lo')  # killed mid-line
    keep_metrics_until(str(path), 2)
    assert [json.loads(x) for x in path.read_text().splitlines()] == lines[:3]
    keep_metrics_until(str(path), 0)  # a fresh start
    assert path.read_text() == ""
    keep_metrics_until(str(tmp_path / "none.jsonl"), 5)
    assert not os.path.exists(tmp_path / "none.jsonl")


def test_a_full_disk_is_recognised_without_an_os_error(tmp_path):
    """torch.save on a full disk raises `RuntimeError: ... unexpected pos`: the file system tells why."""
    from colossal_llama.outputs import file_system_failure

    opaque = RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 376832 vs 376724")
    assert file_system_failure(opaque, str(tmp_path)) is None  # room left: not the file system's fault
    with small_file_system(tmp_path / "fs", "size=64k") as fs:
        with pytest.raises(OSError), open(fs / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        assert file_system_failure(opaque, str(fs / "ck" / ".step-00000004.partial")) == "No space left on device"
