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


def test_trained_cells_get_the_derives_j_and_rank(tmp_path):
  """--genotypes: a trained model's cell is scored as the measured derive scores its
  candidates. The derive's own best cell gets its recorded J and rank 1 of the candidates;
  a cell the derive never measured is ranked among them, counted once more; a cell of
  another space is refused."""
  import json
  import os

  from adabert_jax import artefacts, io_utils
  from adabert_jax.errors import UserError
  from adabert_jax.nas import derive, genotype, search
  from tests.helpers import load_config

  config = load_config("tiny")
  config.derive.passes = 1
  setup = search.setup_from_config(config.search, is_pair=False)
  cfg = setup.supernet
  params = supernet.init_supernet(jax.random.key(0), cfg, 24, 2)
  emb = testing.random_emb_tables(jax.random.key(1), 50, config.data.max_len, 24)
  held = {k: np.asarray(v) for k, v in testing.random_search_batch(
      3, 40, config.data.max_len, 50, 2, num_teacher_layers=2).items()}
  alpha_genotype = derive.uniform_genotype("max_pool3", 1, cfg)
  _, best, evaluated, _ = derive.measured_derive(config, params, emb, held, alpha_genotype,
                                                 setup, log=lambda _: None)
  workdir = str(tmp_path)
  io_utils.save_json_atomic(os.path.join(artefacts.derive_dir(workdir), artefacts.RESULT_FILE),
                            {"evaluated": evaluated})
  measured = {json.dumps(r["genotype"], sort_keys=True) for r in evaluated}
  unmeasured = next(g for g in (genotype.plain_cnn_genotype(k, cfg.k_max, cfg.num_nodes)
                                for k in range(1, cfg.k_max + 1))
                    if json.dumps(json.loads(g.to_json()), sort_keys=True) not in measured)
  other_space = genotype.plain_cnn_genotype(1, cfg.k_max + 1, cfg.num_nodes)
  for name, geno in (("best", best), ("unmeasured", unmeasured), ("other", other_space)):
    io_utils.save_json_atomic(os.path.join(artefacts.student_dir(workdir, name),
                                           artefacts.RESULT_FILE),
                              {"genotype": json.loads(geno.to_json()), "dev": {"score": 50.0}})
  rows = _script().score_trained_cells(["best", "unmeasured"], workdir, config, params, emb,
                                       held, setup)
  assert rows[0]["objective"] == pytest.approx(evaluated[0]["objective"], rel=1e-6)
  assert (rows[0]["rank"], rows[0]["candidates"]) == (1, len(evaluated))
  assert rows[1]["rank"] == 1 + sum(r["objective"] < rows[1]["objective"] for r in evaluated)
  assert rows[1]["candidates"] == len(evaluated) + 1
  with pytest.raises(UserError, match="other"):
    _script().score_trained_cells(["other"], workdir, config, params, emb, held, setup)
  with pytest.raises(UserError, match="--genotypes=missing: no trained model"):
    _script().score_trained_cells(["missing"], workdir, config, params, emb, held, setup)
