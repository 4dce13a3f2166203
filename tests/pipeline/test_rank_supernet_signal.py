"""experiments/rank_supernet.py --signal_architectures: what the loss and alpha's gradient
say about each op."""

import jax
import numpy as np
import pytest

from adabert_jax.nas import losses, ops, supernet, testing
from tests.helpers import load_script


def _script():
  return load_script("rank_supernet")


def test_op_signal_covers_every_op_fairly_and_the_two_modes_agree():
  cfg = supernet.SupernetConfig(hidden=8, k_max=2, num_nodes=2, dropout=0.0)
  params = supernet.init_supernet(jax.random.key(0), cfg, teacher_width=12, num_classes=2)
  emb = testing.random_emb_tables(jax.random.key(1), 50, 16, 12)
  batches = [testing.random_search_batch(s, 4, 16, 50, 2, num_teacher_layers=2)
             for s in (0, 1)]
  signal = _script().op_signal(params, emb, batches, cfg, losses.LossConfig(beta=4.0),
                               depth=2, architectures=ops.NUM_OPS, key=jax.random.key(2))
  rows = signal["ops"]
  assert list(rows) == list(ops.OP_NAMES)
  # 10 fair architectures: every op once on every edge.
  assert all(row["edge_samples"] == cfg.num_edges for row in rows.values())
  # Each architecture counts once per edge, so the per-op deviations average to zero.
  assert np.mean([row["loss_vs_mean"] for row in rows.values()]) == pytest.approx(0, abs=1e-6)
  for name, row in rows.items():
    assert row["grad_all_ops_where_sampled"] == pytest.approx(row["grad_sampled"], rel=1e-3,
                                                              abs=1e-7), name
  # The zero op's output is zero whatever its weight: no gradient in either mode.
  assert rows["zero"]["grad_sampled"] == 0.0 and rows["zero"]["grad_all_ops"] == 0.0
  assert all(abs(rows[name]["grad_all_ops"]) > 0 for name in ops.OP_NAMES if name != "zero")
