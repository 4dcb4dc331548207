"""Checkpoint folders: complete or absent; the last N kept."""

import os

import pytest

from colossal_llama.training.checkpoint import (atomic_checkpoint, latest_checkpoint, list_checkpoints,
                                                prune_checkpoints)


def save(save_dir, step, fail=False):
    with atomic_checkpoint(str(save_dir), step) as folder:
        with open(os.path.join(folder, "model.bin"), "w") as f:
            f.write(f"weights at {step}")
        if fail:
            raise RuntimeError("killed during the save")


def test_a_failed_save_leaves_the_previous_checkpoint_latest(tmp_path):
    save(tmp_path, 10)
    with pytest.raises(RuntimeError):
        save(tmp_path, 20, fail=True)
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "step-00000010")
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [10]
    save(tmp_path, 20)  # the partial folder of the failed save is replaced
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "step-00000020")
    assert (tmp_path / "step-00000020" / "model.bin").read_text() == "weights at 20"
    assert sorted(os.listdir(tmp_path)) == ["step-00000010", "step-00000020"]


def test_keep_last_n(tmp_path):
    for step in (5, 10, 15, 20):
        save(tmp_path, step)
    assert prune_checkpoints(str(tmp_path), keep=2) == [str(tmp_path / "step-00000005"), str(tmp_path / "step-00000010")]
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [15, 20]
    assert prune_checkpoints(str(tmp_path), keep=0) == []
    assert latest_checkpoint(str(tmp_path / "none")) is None


def test_saves_killed_at_any_step_are_cleaned_live_ones_kept(tmp_path):
    from colossal_llama.outputs import LOCK_NAME, take_lock

    dead, live = tmp_path / "step-00000003.tmp-abcdef12", tmp_path / "step-00000005.tmp-12345678"
    for folder in (dead, live):
        folder.mkdir()
        (folder / LOCK_NAME).write_text("")
    held = take_lock(str(live / LOCK_NAME))  # another open file: conflicts as another process would
    try:
        save(tmp_path, 4)
        assert sorted(os.listdir(tmp_path)) == ["step-00000004", live.name]
        assert [s for s, _ in list_checkpoints(str(tmp_path))] == [4]
    finally:
        held.close()
