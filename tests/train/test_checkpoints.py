"""Checkpoints: complete-or-absent saves, the ring's fallback past a damaged latest step, and
write failures (disk full, no permission) as one clear error with nothing overwritten."""

import errno
import os

import numpy as np
import orbax.checkpoint as ocp
import pytest

from adabert_jax.errors import UserError
from adabert_jax.train import checkpoints


def _tree(value):
  return {"w": np.full((3, 2), value, np.float32), "step": np.asarray(value, np.int32)}


def _fail_with(error):
  def fail(*args, **kwargs):
    raise error
  return fail


def test_ring_keeps_the_last_steps_and_falls_back_past_a_damaged_one(tmp_path):
  ring = checkpoints.CheckpointRing(str(tmp_path / "ring"), keep=2)
  for step in (1, 2, 3):
    ring.save(step, _tree(step))
  ring.save(3, _tree(99))  # a second save of a step is a no-op, not an overwrite
  assert ring.steps() == [2, 3]
  step, state = ring.restore_latest(_tree(0))
  assert step == 3 and state["w"][0, 0] == 3
  # Damage every file of the latest step (a disk fault or a hand edit).
  for root, _, files in os.walk(tmp_path / "ring" / "3"):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\0garbage")
  with pytest.warns(UserWarning, match="checkpoint step 3 .* unreadable"):
    step, state = checkpoints.CheckpointRing(str(tmp_path / "ring")).restore_latest(_tree(0))
  assert step == 2 and state["w"][0, 0] == 2


def test_save_pytree_replaces_only_once_complete(tmp_path):
  path = str(tmp_path / "best")
  checkpoints.save_pytree(path, _tree(1))
  checkpoints.save_pytree(path, _tree(2))
  assert checkpoints.restore_pytree(path, _tree(0))["w"][0, 0] == 2
  assert sorted(os.listdir(tmp_path)) == ["best"]  # no .saving / .old left behind
  # A kill between save_pytree's two renames leaves only best.old: it is what is read.
  os.replace(path, path + ".old")
  assert checkpoints.restore_pytree(path, _tree(0))["w"][0, 0] == 2


@pytest.mark.parametrize("error, reason", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
    (PermissionError(errno.EACCES, "Permission denied"), "no permission to write there"),
])
def test_write_failure_is_one_error_and_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, error, reason):
  path = str(tmp_path / "best")
  checkpoints.save_pytree(path, _tree(1))
  monkeypatch.setattr(ocp.StandardCheckpointer, "save", _fail_with(error))
  with pytest.raises(UserError, match=f"Cannot write the checkpoint {path}: {reason}"):
    checkpoints.save_pytree(path, _tree(2))
  monkeypatch.undo()
  assert checkpoints.restore_pytree(path, _tree(0))["w"][0, 0] == 1
  assert sorted(os.listdir(tmp_path)) == ["best"]

  ring = checkpoints.CheckpointRing(str(tmp_path / "ring"))
  ring.save(1, _tree(1))
  monkeypatch.setattr(ring._manager, "save", _fail_with(error))
  with pytest.raises(UserError, match=f"checkpoint .*ring.2: {reason}.*previous checkpoint"):
    ring.save(2, _tree(2))
  monkeypatch.undo()
  assert ring.restore_latest(_tree(0))[0] == 1


def test_real_unwritable_location_is_reported_not_a_traceback(tmp_path):
  # A path under a regular file: the OS refuses (ENOTDIR / EEXIST) however orbax wraps it.
  blocker = tmp_path / "not_a_folder"
  blocker.write_text("x")
  with pytest.raises(UserError, match="Cannot write the checkpoint .*not_a_folder"):
    checkpoints.save_pytree(str(blocker / "best"), _tree(1))
  assert blocker.read_text() == "x"
