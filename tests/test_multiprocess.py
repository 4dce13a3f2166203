"""Several processes as one run: 2 processes x 2 CPU devices on localhost (jax.distributed,
gloo) against 1 process x 4 devices, a few search steps and a few student steps each.

Tolerance: as tests/test_nas_multidevice.py's. The runs differ only in how the all-reduce of
the gradients and loss means sums its 4 partial sums (in one process, or across two through
gloo), a few float32 ulps per step; the random draws are bit-identical (one key, folded with
the step, on every process).
"""

import os
import pickle
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO_ROOT

WORKER = os.path.join(REPO_ROOT, "tests", "multiprocess_steps.py")
RTOL, ATOL = 1e-5, 1e-6

pytestmark = pytest.mark.slow


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
  assert a["local_devices"] == 4 and b["local_devices"] == 2

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
  losses_a, params_a = a["student"]
  losses_b, params_b = b["student"]
  for t1, t2 in zip(losses_a, losses_b):
    np.testing.assert_allclose(t2["total"], t1["total"], rtol=RTOL, atol=ATOL)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(y, x, rtol=RTOL, atol=ATOL),
               params_a, params_b)
  print(f"worst gap 2x2 vs 1x4: search state {_worst_gap(state_a, state_b):.2e}, "
        f"student params {_worst_gap(params_a, params_b):.2e}")
