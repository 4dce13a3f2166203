"""The AdaBERT search loss: every term's shape and value on hand-made inputs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adabert_jax.nas import gumbel, losses, ops

B, K_MAX, C, LT = 4, 3, 2, 6


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  outputs = {"logits": jnp.asarray(rng.normal(size=(B, C)), jnp.float32),
             "layer_logits": jnp.asarray(rng.normal(size=(B, K_MAX, C)), jnp.float32),
             "depth_weights": jax.nn.one_hot(1, K_MAX)}
  batch = {"label": jnp.asarray(rng.integers(0, C, B), jnp.int32),
           "teacher_logits": jnp.asarray(rng.normal(size=(B, C)), jnp.float32),
           "probe_logits": jnp.asarray(rng.normal(size=(B, LT + 1, C)), jnp.float32)}
  arch = {"alpha_ops": jnp.asarray(rng.normal(size=(9, ops.NUM_OPS)), jnp.float32),
          "alpha_depth": jnp.asarray(rng.normal(size=(K_MAX,)), jnp.float32)}
  return outputs, batch, arch


COSTS = np.linspace(1.0, 0.0, ops.NUM_OPS)  # zero (last) costs 0
# Jitted once: op-by-op (eager) execution of the many small ops is slower than one compile.
LOSS = jax.jit(losses.adabert_loss, static_argnames=("cfg",))
SAMPLE = jax.jit(gumbel.sample_architecture)


def test_every_term_is_a_scalar_and_total_combines_them():
  outputs, batch, arch = _inputs()
  sample = SAMPLE(jax.random.key(0), arch, 1.0)
  cfg = losses.LossConfig()
  total, terms = LOSS(outputs, batch, sample, COSTS, cfg=cfg)
  assert set(terms) == {"ce", "kd", "kd_layers", "kd_final", "efficiency", "total"}
  chex.assert_shape(list(terms.values()), ())
  chex.assert_tree_all_finite(terms)
  assert float(total) == float(terms["total"])
  expected = 0.2 * terms["ce"] + 0.8 * terms["kd"] + 4.0 * terms["efficiency"]
  np.testing.assert_allclose(terms["total"], expected, rtol=1e-6)
  np.testing.assert_allclose(terms["kd"], 0.5 * (terms["kd_layers"] + terms["kd_final"]),
                             rtol=1e-6)


def test_per_depth_kd_and_cross_entropy_shapes():
  outputs, batch, _ = _inputs()
  kd_BK = losses.layer_kd_per_depth(outputs["layer_logits"], batch["probe_logits"],
                                    batch["label"])
  chex.assert_shape(kd_BK, (B, K_MAX))
  assert np.all(np.asarray(kd_BK) >= 0)
  chex.assert_shape(losses.cross_entropy(outputs["logits"], batch["label"]), (B,))
  chex.assert_shape(losses.kl_divergence(outputs["logits"], batch["teacher_logits"]), (B,))


def test_kl_is_zero_when_student_equals_teacher():
  logits = jax.random.normal(jax.random.key(0), (B, 5))
  np.testing.assert_allclose(losses.kl_divergence(logits, logits), 0.0, atol=1e-6)
  np.testing.assert_allclose(losses.kl_divergence(logits, logits, temperature=3.0), 0.0,
                             atol=1e-6)
  assert np.all(np.asarray(losses.kl_divergence(logits, logits[::-1])) > 0)
  # A student copying every matched teacher probe and the teacher's logits has zero KD.
  outputs, batch, _ = _inputs()
  depth = 2
  index, _ = losses.teacher_layer_map(K_MAX, LT)
  layers = batch["probe_logits"][:, index[depth - 1]]  # [B, K_MAX, C]; deeper ones unused
  outputs = dict(outputs, layer_logits=layers, logits=batch["teacher_logits"],
                 depth_weights=jax.nn.one_hot(depth - 1, K_MAX))
  sample = {"ops": jax.nn.one_hot(jnp.zeros(9, jnp.int32), ops.NUM_OPS),
            "depth": jax.nn.one_hot(depth - 1, K_MAX)}
  _, terms = LOSS(outputs, batch, sample, COSTS)
  np.testing.assert_allclose(terms["kd_layers"], 0.0, atol=1e-6)
  np.testing.assert_allclose(terms["kd_final"], 0.0, atol=1e-6)


def test_teacher_layer_map_is_ceil_i_lt_over_k():
  index, valid = losses.teacher_layer_map(4, 6)
  np.testing.assert_array_equal(index[0], [6, 0, 0, 0])  # K=1: the last teacher layer
  np.testing.assert_array_equal(index[1], [3, 6, 0, 0])
  np.testing.assert_array_equal(index[2], [2, 4, 6, 0])
  np.testing.assert_array_equal(index[3], [2, 3, 5, 6])  # ceil(1.5), ceil(3), ceil(4.5), 6
  np.testing.assert_array_equal(valid, np.tril(np.ones((4, 4), bool)))
  index, _ = losses.teacher_layer_map(8, 6)  # K > Lt: layers repeat, never exceed Lt
  np.testing.assert_array_equal(index[7], [1, 2, 3, 3, 4, 5, 6, 6])


def test_attentive_weights_favour_the_probe_with_lower_cross_entropy():
  # Teacher layers 1..2 (K = 2 matches student layers to teacher layers 1 and 2). Gold label
  # 0; layer 2's probe is confident and right, layer 1's is wrong.
  probe_logits = jnp.asarray([[[0.0, 0.0], [-2.0, 2.0], [4.0, -4.0]]])
  labels = jnp.asarray([0])
  probe_ce = losses.cross_entropy(probe_logits, jnp.zeros((1, 3), jnp.int32))
  index, valid = losses.teacher_layer_map(2, 2)
  weights = losses.attentive_layer_weights(probe_ce, index, valid)
  chex.assert_shape(weights, (1, 2, 2))
  np.testing.assert_allclose(weights[0, 0], [1.0, 0.0])  # K=1: one matched layer
  assert weights[0, 1, 1] > 0.95 > 0.05 > weights[0, 1, 0]
  np.testing.assert_allclose(weights[0, 1], jax.nn.softmax(-probe_ce[0, 1:]), rtol=1e-6)
  # So a student matching only the good probe has a lower layer KD than one matching the bad.
  good = jnp.stack([probe_logits[:, 2], probe_logits[:, 2]], axis=1)
  bad = jnp.stack([probe_logits[:, 1], probe_logits[:, 1]], axis=1)
  kd_good = losses.layer_kd_per_depth(good, probe_logits, labels)[0, 1]
  kd_bad = losses.layer_kd_per_depth(bad, probe_logits, labels)[0, 1]
  assert kd_good < kd_bad


def test_example_weights_drop_padding_examples():
  outputs, batch, arch = _inputs()
  sample = SAMPLE(jax.random.key(0), arch, 1.0)
  weighted = dict(batch, weight=jnp.asarray([1.0, 1.0, 0.0, 0.0]))
  _, terms_w = LOSS(outputs, weighted, sample, COSTS)
  first_two = jax.tree.map(lambda a: a[:2], outputs)
  first_two["depth_weights"] = outputs["depth_weights"]
  _, terms_2 = LOSS(first_two, jax.tree.map(lambda a: a[:2], batch), sample,
                                   COSTS)
  chex.assert_trees_all_close(terms_w, terms_2, rtol=1e-6)


def test_efficiency_value_and_gradient():
  depth, op = 2, 3
  sample = {"ops": jax.nn.one_hot(jnp.full(9, op), ops.NUM_OPS),
            "depth": jax.nn.one_hot(depth - 1, K_MAX)}
  np.testing.assert_allclose(losses.efficiency_loss(sample, COSTS), depth / K_MAX * COSTS[op],
                             rtol=1e-6)
  zero = dict(sample, ops=jax.nn.one_hot(jnp.full(9, ops.ZERO_INDEX), ops.NUM_OPS))
  assert float(losses.efficiency_loss(zero, COSTS)) == 0.0

  _, _, arch = _inputs()
  grad = jax.grad(lambda a: losses.efficiency_loss(
      SAMPLE(jax.random.key(1), a, 1.0), COSTS))(arch)
  assert np.all(np.asarray(grad["alpha_ops"]) != 0)
  assert np.all(np.asarray(grad["alpha_depth"]) != 0)


def test_depth_one_hot_selects_the_per_depth_kd_and_passes_gradient():
  outputs, batch, _ = _inputs()
  kd_BK = losses.layer_kd_per_depth(outputs["layer_logits"], batch["probe_logits"],
                                    batch["label"])

  def kd_layers(depth_weights):
    sample = {"ops": jnp.zeros((9, ops.NUM_OPS)), "depth": depth_weights}
    return LOSS(dict(outputs, depth_weights=depth_weights), batch, sample,
                               COSTS)[1]["kd_layers"]

  for k in range(K_MAX):
    np.testing.assert_allclose(kd_layers(jax.nn.one_hot(k, K_MAX)), kd_BK[:, k].mean(),
                               rtol=1e-6)
  np.testing.assert_allclose(jax.grad(kd_layers)(jax.nn.one_hot(0, K_MAX)), kd_BK.mean(0),
                             rtol=1e-6)


def test_loss_config_is_validated():
  with pytest.raises(ValueError, match="gamma"):
    losses.LossConfig(gamma=1.5)
  with pytest.raises(ValueError, match="temperature"):
    losses.LossConfig(temperature=0.0)
