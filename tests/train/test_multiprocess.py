"""Several processes as one run: 2 processes x 2 CPU devices on localhost (jax.distributed,
gloo) against 1 process x 4 devices, a few search steps and a few student steps each.

Tolerance: as tests/nas/test_multidevice.py's. The runs differ only in how the all-reduce of
the gradients and loss means sums its 4 partial sums (in one process, or across two through
gloo), a few float32 ulps per step; the random draws are bit-identical (one key, folded with
the step, on every process).
"""

import json
import os
import pickle
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.helpers import REPO_ROOT

WORKER = os.path.join(REPO_ROOT, "tests", "train", "multiprocess_steps.py")
RTOL, ATOL = 1e-5, 1e-6

# Two processes share the cores for minutes: `make test-all` runs these.
pytestmark = [pytest.mark.slow, pytest.mark.long]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env():
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",)}
  return env


def _launch(num_processes, out, port):
  return [subprocess.Popen([sys.executable, WORKER, str(i), str(num_processes), str(port),
                            str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=_env())
          for i in range(num_processes)]


def _finish(procs, timeout=600):
  outputs = [p.communicate(timeout=timeout) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]


def _worst_gap(a, b):
  gaps = jax.tree.map(lambda x, y: float(np.max(np.abs(np.asarray(x, np.float64)
                                                       - np.asarray(y, np.float64)))), a, b)
  return max(jax.tree.leaves(gaps))


def test_two_processes_compute_what_one_process_does(tmp_path):
  one, two = tmp_path / "one.pkl", tmp_path / "two.pkl"
  _finish(_launch(1, one, _free_port()))
  _finish(_launch(2, two, _free_port()))
  a, b = (pickle.loads(p.read_bytes()) for p in (one, two))
  for out, results, processes in ((one, a, 1), (two, b, 2)):
    results["tokens"] = [pickle.loads(open(f"{out}.tokens{i}", "rb").read())
                         for i in range(processes)]
  assert a["local_devices"] == 4 and b["local_devices"] == 2

  # Tokenizing: each process tokenized its half of the split (the one process all of it),
  # into the same arrays; the second time every process read the cache.
  n = len(a["tokens"][0]["arrays"]["label"])
  assert [t["first"] for t in a["tokens"]] == [[n]]
  assert [t["first"] for t in b["tokens"]] == [[(n + 1) // 2], [n // 2]]
  for t in a["tokens"] + b["tokens"]:
    assert t["again"] == [] and t["same_again"]
    for name, array in a["tokens"][0]["arrays"].items():
      np.testing.assert_array_equal(t["arrays"][name], array, err_msg=name)

  history_a, state_a = a["search"]
  history_b, state_b = b["search"]
  for m1, m2 in zip(history_a, history_b):
    # One architecture sample per step across all processes, as across devices.
    np.testing.assert_array_equal(m1["ops_index"], m2["ops_index"])
    np.testing.assert_array_equal(m1["depth"], m2["depth"])
    for name in ("ce", "kd", "kd_layers", "kd_final", "total", "weights_grad_norm"):
      np.testing.assert_allclose(m2[name], m1[name], rtol=RTOL, atol=ATOL, err_msg=name)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL),
               state_a, state_b)
  assert len({float(m["total"]) for m in history_a}) == len(history_a)  # it trained
  for student in ("student", "pair_student"):
    losses_a, params_a = a[student]
    losses_b, params_b = b[student]
    for t1, t2 in zip(losses_a, losses_b):
      np.testing.assert_allclose(t2["total"], t1["total"], rtol=RTOL, atol=ATOL)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL),
                 params_a, params_b)
    print(f"{student}: worst gap in the parameters 2x2 vs 1x4 "
          f"{_worst_gap(params_a, params_b):.2e}")
  print(f"worst gap 2x2 vs 1x4: search state {_worst_gap(state_a, state_b):.2e}; search step "
        f"{history_a[-1]['ms_per_step']:.1f} ms (1x4) vs {history_b[-1]['ms_per_step']:.1f} "
        "ms (2x2)")


def _pipeline(tmp_path, workdir, tiny_bert_dir, port, *extra):
  """The tiny pipeline as 2 processes x 2 devices (Popen handles, in process order)."""
  config = os.path.join(REPO_ROOT, "experiments", "configs", "default.py")
  env = {**os.environ, "ADABERT_QUIET": "1", "ADABERT_CACHE_DIR": str(tmp_path / "cache"),
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  return [subprocess.Popen(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "pipeline.py"),
       f"--config={config}:tiny", f"--workdir={workdir}",
       f"--config.teacher.checkpoint={tiny_bert_dir}", "--config.bench.bert_base=false",
       "--config.augment.copies=1", "--config.search.checkpoint_every_steps=4",
       "--config.derive.method=alpha",  # the measured derive is not what is tested here
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
       *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
          for i in range(2)]


def test_the_pipeline_on_two_processes_and_after_one_dies(tmp_path, tiny_bert_dir):
  import shutil
  import time

  from adabert_jax.train import checkpoints

  run = tmp_path / "run"
  procs = _pipeline(tmp_path, run, tiny_bert_dir, _free_port())
  outputs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  # Process 0 speaks for the run; process 1 prints nothing of ours (gloo's C++ lines aside).
  assert "report:" in outputs[0][0] and "[teacher]" in outputs[0][0]
  assert "report:" not in outputs[1][0] and "[teacher]" not in outputs[1][0], outputs[1][0]
  assert (run / "report.md").is_file() and (run / "student" / "export" / "manifest.json").is_file()
  # Every record once: process 0 alone writes the logs.
  for log, records in (("teacher/log.jsonl", 1), ("search/history.jsonl", 1),
                       ("search/log.jsonl", 1), ("student/log.jsonl", 1)):
    assert len((run / log).read_text().splitlines()) == records, log

  # Process 1 dies after the search's first checkpoint: process 0 ends within a bounded time
  # (JAX's coordination service stops it, saying another task died), and the same command
  # again resumes the search from that checkpoint and ends where the straight run did.
  again = tmp_path / "again"
  shutil.copytree(run, again)
  for stage in ("search", "derive", "augment", "student", "bench"):
    shutil.rmtree(again / stage)
  procs = _pipeline(tmp_path, again, tiny_bert_dir, _free_port())
  ring = again / "search" / "checkpoints"
  deadline = time.time() + 600
  while not (ring.is_dir() and any(p.isdigit() for p in os.listdir(ring))):
    assert time.time() < deadline and procs[0].poll() is None, procs[0].stderr.read()[-2000:]
    time.sleep(0.05)
  procs[1].kill()
  start = time.time()
  _, err = procs[0].communicate(timeout=300)
  waited = time.time() - start
  procs[1].communicate()
  assert procs[0].returncode != 0
  assert "another task died" in err, err[-3000:]
  assert waited < distributed_heartbeat() + 60, waited
  print(f"process 0 stopped {waited:.0f} s after process 1 died")
  procs = _pipeline(tmp_path, again, tiny_bert_dir, _free_port(), "--stop_after=search")
  _finish(procs)
  result = json.loads((again / "search" / "result.json").read_text())
  assert 0 < result["steps_this_run"] < result["steps_per_epoch"]
  a = checkpoints.restore_pytree(str(run / "search" / "final_params"))
  b = checkpoints.restore_pytree(str(again / "search" / "final_params"))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL), a, b)


def distributed_heartbeat() -> int:
  from adabert_jax.train import distributed

  return distributed.HEARTBEAT_TIMEOUT_S
