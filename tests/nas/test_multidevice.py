"""The search step is data-parallel without changing the maths: on 4 (forced host CPU) devices,
batch sharded and state replicated exactly as run_search does it, it computes the same losses,
architecture samples and updated parameters as on one device."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from adabert_jax.data.tasks import get_task
from adabert_jax.errors import UserError
from adabert_jax.nas import costs, losses, search, search_step, supernet, testing
from adabert_jax.train import sharding
from tests.helpers import load_config

TEACHER_WIDTH, VOCAB, POSITIONS, CLASSES, TEACHER_LAYERS = 24, 50, 32, 2, 4
BATCH, LENGTH, STEPS = 8, 12, 3  # BATCH: 2 examples per device on the 4-device mesh
CFG = supernet.SupernetConfig(hidden=16, k_max=2, dropout=0.3)
LOSS_TERMS = ("ce", "kd", "kd_layers", "kd_final", "efficiency", "total")

# Tolerance. The two runs differ only in float summation order: on 4 devices every reduction
# over the batch (the loss means, every weight gradient) is 4 per-device partial sums followed
# by a cross-device all-reduce, instead of one sum over the 8 examples, so each differs by a
# few float32 ulps; 3 optimiser steps carry that into the parameters and optimiser state. The
# random draws themselves (Gumbel noise, dropout masks) are bit-identical: the key is
# replicated and jax's threefry is partitionable, so a sharded draw equals the unsharded one.
# Measured (jax 0.10.2, XLA:CPU): loss terms and gradient norms differ by <= 2.4e-7, every
# state leaf by <= 2.4e-7 absolute (2 ulps at 1.0; the largest leaves are ~1). Relative
# differences reach ~3e-4 on leaves near 1e-6 (Adam's second moments, tiny alpha updates), so
# the check is absolute-dominated: |a4 - a1| <= 1e-6 + 1e-5 * |a1|, ~4x the worst case seen,
# while a real sharding bug is 3-5 orders of magnitude larger: a loss term averaged over one
# device's 2 examples instead of all 8 differs here by 6e-4 to 0.24 (measured per term/shard).
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def inputs():
  emb_tables = testing.random_emb_tables(jax.random.key(1), VOCAB, POSITIONS, TEACHER_WIDTH)
  op_costs = costs.op_cost_table(CFG.hidden, LENGTH).normalised
  # One pair batch and one single-sentence batch, alternating over the steps.
  batches = [testing.random_search_batch(seed, BATCH, LENGTH, VOCAB, CLASSES, TEACHER_LAYERS,
                                         pair=seed % 2 == 1) for seed in range(2)]
  # As run_search gets them: host NumPy arrays (batching.train_batches yields NumPy).
  batches = [jax.tree.map(np.asarray, b) for b in batches]
  return {k: np.asarray(v) for k, v in emb_tables.items()}, op_costs, batches


def _run(num_devices, cfg, emb_tables, op_costs, batches):
  """STEPS search steps on a mesh of the first `num_devices` devices, set up the way
  search.run_search does it (same library calls, same order)."""
  mesh = sharding.make_mesh(num_devices)
  assert mesh.devices.size == num_devices
  sharding.check_batch_size(BATCH, mesh, "search.batch_size")
  optimizer = search_step.make_optimizer(search_step.OptimizerConfig(), STEPS)
  step_fn = search_step.make_search_step(
      cfg, losses.LossConfig(), search_step.SearchConfig(total_steps=STEPS), optimizer,
      op_costs, donate_state=True)
  base_key = jax.random.key(0)
  init_key, search_key = jax.random.fold_in(base_key, 0), jax.random.fold_in(base_key, 2)
  # A fresh state per run: the step donates its input state.
  state = search_step.init_search_state(init_key, cfg, TEACHER_WIDTH, CLASSES, optimizer)
  emb = sharding.replicate({k: jnp.asarray(v) for k, v in emb_tables.items()}, mesh)
  state = sharding.replicate(state, mesh)
  history = []
  for step in range(STEPS):
    batch = sharding.shard_batch(batches[step % len(batches)], mesh)
    # The placement really is what we meant to test: examples split over `num_devices`.
    assert batch["input_ids"].sharding.spec == P(sharding.DATA_AXIS)
    assert len(batch["input_ids"].addressable_shards) == num_devices
    assert batch["input_ids"].addressable_shards[0].data.shape[0] == BATCH // num_devices
    state, metrics = step_fn(state, batch, emb, search_key, step)
    history.append(jax.device_get(metrics))
  # The updated state is still a full copy on every device of the mesh.
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding.is_fully_replicated
    assert len(leaf.sharding.device_set) == num_devices
  return jax.device_get(state), history


@pytest.mark.parametrize("mode", ["sampled", "all_ops"])
def test_search_steps_on_four_devices_equal_one_device(inputs, mode):
  assert len(jax.devices()) >= 4, "conftest forces 4 host CPU devices"
  cfg = dataclasses.replace(CFG, mode=mode)
  state_1, history_1 = _run(1, cfg, *inputs)
  state_4, history_4 = _run(4, cfg, *inputs)

  depths, samples = set(), set()
  for step, (m1, m4) in enumerate(zip(history_1, history_4)):
    # One PRNG stream: the same (key, step) draws the same architecture on either mesh.
    np.testing.assert_array_equal(m1["ops_index"], m4["ops_index"], err_msg=f"step {step}")
    np.testing.assert_array_equal(m1["depth"], m4["depth"], err_msg=f"step {step}")
    assert float(m1["temperature"]) == float(m4["temperature"])
    depths.add(int(m1["depth"]))
    samples.add(tuple(np.asarray(m1["ops_index"]).tolist()))
    for name in LOSS_TERMS + ("weights_grad_norm", "arch_grad_norm"):
      assert np.isfinite(m1[name]), (step, name)
      np.testing.assert_allclose(m4[name], m1[name], rtol=RTOL, atol=ATOL,
                                 err_msg=f"step {step}, {name}")
  # The steps drew different architectures (the comparison covered more than one sample).
  assert len(samples) == STEPS, samples

  # Every parameter leaf (weights and arch) and every optimiser-state leaf.
  leaves_1 = jax.tree_util.tree_leaves_with_path(state_1)
  leaves_4 = jax.tree_util.tree_leaves_with_path(state_4)
  assert [p for p, _ in leaves_1] == [p for p, _ in leaves_4]
  assert len(leaves_1) > 10
  for (path, a1), (_, a4) in zip(leaves_1, leaves_4):
    np.testing.assert_allclose(a4, a1, rtol=RTOL, atol=ATOL,
                               err_msg=jax.tree_util.keystr(path))
  # The steps really trained (a comparison of untouched initial values would prove nothing).
  init = search_step.init_search_state(jax.random.fold_in(jax.random.key(0), 0), cfg,
                                       TEACHER_WIDTH, CLASSES,
                                       search_step.make_optimizer(
                                           search_step.OptimizerConfig(), STEPS))
  for group in ("weights", "arch"):
    moved = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                         state_1.params[group], init.params[group])
    assert max(jax.tree.leaves(moved)) > 1e-4, group


def test_batch_size_that_does_not_divide_across_devices_is_a_clear_error():
  mesh = sharding.make_mesh(4)
  with pytest.raises(UserError) as err:
    sharding.check_batch_size(6, mesh, "search.batch_size")
  message = str(err.value)
  assert "Batch size 6 does not divide across 4 devices" in message
  assert "--config.search.batch_size" in message  # the flag to change ...
  assert "multiple of 4" in message  # ... and what to set it to
  sharding.check_batch_size(8, mesh, "search.batch_size")  # a multiple is fine
  sharding.check_batch_size(6, sharding.make_mesh(1), "search.batch_size")


def test_run_search_rejects_an_indivisible_batch_size_before_any_work(tmp_path):
  """The search stage checks its own flag on the full mesh (all 4 devices) up front."""
  config = load_config("tiny")
  config.search.batch_size = 6
  with pytest.raises(UserError, match=r"Batch size 6 does not divide across 4 devices: "
                                      r"set --config\.search\.batch_size to a multiple of 4"):
    # Nothing past the check is needed: empty data would fail later, not here.
    search.run_search(config, task=get_task(config.task), splits={}, knowledge={}, emb_tables={},
                      teacher_result={}, workdir=str(tmp_path))
  assert not any(p.name == "checkpoints" for p in tmp_path.rglob("*"))
