"""Kill -9 and restart: the teacher fine-tune and the search, run as the user runs them (the
stage scripts in a subprocess), are killed at random moments after a checkpoint and
restarted with the same command; the end result must equal an uninterrupted run's, bitwise.

Bitwise is the right bar on CPU: a resumed run restores the exact float32 state, replays the
same batches (data order is a pure function of key, epoch and step) and the same dropout and
Gumbel noise (keys folded with the step), through the same compiled programs.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers import REPO_ROOT

CONFIG = os.path.join(REPO_ROOT, "experiments", "configs", "default.py")
KILL_CYCLES = 2

# Four stage runs each (straight, killed twice, the finish), 1.5 to 3 minutes a test on 2
# cores: `make test-all` runs them, CI does not.
pytestmark = [pytest.mark.slow, pytest.mark.long]


def _args(script, workdir, tiny_bert_dir, *overrides):
  return [sys.executable, os.path.join(REPO_ROOT, "experiments", script),
          f"--config={CONFIG}:tiny", f"--workdir={workdir}",
          f"--config.teacher.checkpoint={tiny_bert_dir}", *overrides]


def _env(tmp_path):
  return {**os.environ, "ADABERT_QUIET": "1", "ADABERT_CACHE_DIR": str(tmp_path / "cache")}


def _ring_steps(ring_dir):
  """Finished steps of an orbax CheckpointManager directory (unfinished ones carry a tmp
  suffix until orbax renames them)."""
  if not os.path.isdir(ring_dir):
    return []
  return sorted(int(name) for name in os.listdir(ring_dir) if name.isdigit())


def _run(args, env):
  done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
  assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
  return done


def _kill_and_restart(args, env, ring_dir, rng, log_dir):
  """Starts `args` KILL_CYCLES times, each time SIGKILLing it at a random moment after it
  wrote a checkpoint newer than any before; then lets it finish. Returns the steps at
  which the kills landed (the newest checkpoint present when each kill was sent)."""
  kills = []
  for cycle in range(KILL_CYCLES):
    before = max(_ring_steps(ring_dir), default=0)
    with open(os.path.join(log_dir, f"cycle{cycle}.log"), "w") as out:
      proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
      deadline = time.time() + 300
      while proc.poll() is None and max(_ring_steps(ring_dir), default=0) <= before:
        assert time.time() < deadline, f"no new checkpoint in {ring_dir} within 300 s"
        time.sleep(0.02)
      time.sleep(rng.uniform(0.0, 0.4))  # somewhere after the checkpoint: mid-step or mid-save
      if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(max(_ring_steps(ring_dir), default=0))
  _run(args, env)
  return kills


def _straight_and_killed(tmp_path, tiny_bert_dir, script, stage, overrides, reused, seed):
  """Runs `script` straight through in tmp_path/straight, then in tmp_path/killed (with the
  earlier stages `reused` copied over: they are not under test) killed and restarted until it
  finishes. Returns the two run folders."""
  env = _env(tmp_path)
  straight, killed = tmp_path / "straight", tmp_path / "killed"
  _run(_args(script, straight, tiny_bert_dir, *overrides), env)
  for earlier in reused:
    shutil.copytree(straight / earlier, killed / earlier)
  kills = _kill_and_restart(_args(script, killed, tiny_bert_dir, *overrides), env,
                            str(killed / stage / "checkpoints"), random.Random(seed),
                            str(tmp_path))
  assert len(kills) == KILL_CYCLES, f"only {len(kills)} kills landed before the run finished"
  return straight, killed


def _assert_trees_equal(a, b):
  import jax

  leaves_a, tree_a = jax.tree.flatten(a)
  leaves_b, tree_b = jax.tree.flatten(b)
  assert tree_a == tree_b
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_teacher_finetune_survives_kills(tmp_path, tiny_bert_dir):
  from adabert_jax import io_utils
  from adabert_jax.train import checkpoints

  straight, killed = _straight_and_killed(
      tmp_path, tiny_bert_dir, "finetune_teacher.py", "teacher",
      ("--config.teacher.epochs=3", "--config.teacher.checkpoint_every_steps=3"), (), seed=0)
  a = io_utils.load_json(straight / "teacher" / "result.json")
  b = io_utils.load_json(killed / "teacher" / "result.json")
  assert b["resumed_from_step"] > 0
  assert (a["dev"], a["best_step"], a["checkpoint_id"]) == (
      b["dev"], b["best_step"], b["checkpoint_id"])
  _assert_trees_equal(checkpoints.restore_pytree(str(straight / "teacher" / "best")),
                      checkpoints.restore_pytree(str(killed / "teacher" / "best")))
  # The training states only served the resume; they are gone once the teacher is done.
  assert not (killed / "teacher" / "checkpoints").exists()


def test_search_survives_kills(tmp_path, tiny_bert_dir):
  from adabert_jax.train import checkpoints

  straight, killed = _straight_and_killed(
      tmp_path, tiny_bert_dir, "search.py", "search",
      # Length-bucketed batches, as every preset but tiny trains on: the resumed run must
      # replay the same bucket order.
      ("--config.search.epochs=3", "--config.search.checkpoint_every_steps=4",
       "--config.search.bucket_lengths=true"),
      ("teacher", "knowledge"), seed=1)
  genotypes = [json.loads((d / "search" / "result.json").read_text())["genotype"]
               for d in (straight, killed)]
  assert genotypes[0] == genotypes[1]
  _assert_trees_equal(checkpoints.restore_pytree(str(straight / "search" / "final_params")),
                      checkpoints.restore_pytree(str(killed / "search" / "final_params")))
  # One record per epoch, none lost or doubled by the kills.
  records = [len((d / "search" / "history.jsonl").read_text().splitlines())
             for d in (straight, killed)]
  assert records == [3, 3]


def test_student_training_survives_kills(tmp_path, tiny_bert_dir):
  from adabert_jax import io_utils
  from adabert_jax.train import checkpoints

  straight, killed = _straight_and_killed(
      tmp_path, tiny_bert_dir, "train_student.py", "student",
      ("--config.student.epochs=3", "--config.student.checkpoint_every_steps=4",
       "--config.student.bucket_lengths=true"),
      ("teacher", "knowledge", "search", "derive"), seed=2)
  a = io_utils.load_json(straight / "student" / "result.json")
  b = io_utils.load_json(killed / "student" / "result.json")
  assert a["resumed_from_step"] == 0 and b["resumed_from_step"] > 0
  assert (a["dev"], a["best_epoch"]) == (b["dev"], b["best_epoch"])
  _assert_trees_equal(checkpoints.restore_pytree(str(straight / "student" / "params")),
                      checkpoints.restore_pytree(str(killed / "student" / "params")))
  assert ((straight / "student" / "export" / "params.npz").read_bytes()
          == (killed / "student" / "export" / "params.npz").read_bytes())
  # One dev record per epoch, none lost or doubled by the kills.
  logs = [[json.loads(line)["dev"] for line in
           (d / "student" / "log.jsonl").read_text().splitlines()] for d in (straight, killed)]
  assert len(logs[0]) == 3 and logs[0] == logs[1]
  assert not (killed / "student" / "checkpoints").exists()
