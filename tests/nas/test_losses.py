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
  head_logits = jnp.asarray(rng.normal(size=(B, K_MAX, C)), jnp.float32)
  outputs = {"logits": head_logits[:, 1], "head_logits": head_logits,
             "layer_logits": jnp.asarray(rng.normal(size=(B, K_MAX, C)), jnp.float32),
             "embedding_probe_logits": jnp.asarray(rng.normal(size=(B, C)), jnp.float32),
             "depth_weights": jax.nn.one_hot(1, K_MAX),
             "ran_depth_weights": jax.nn.one_hot(1, K_MAX)}
  batch = {"label": jnp.asarray(rng.integers(0, C, B), jnp.int32),
           "teacher_logits": jnp.asarray(rng.normal(size=(B, C)), jnp.float32),
           "probe_logits": jnp.asarray(rng.normal(size=(B, LT + 1, C)), jnp.float32)}
  arch = {"alpha_ops": jnp.asarray(rng.normal(size=(9, ops.NUM_OPS)), jnp.float32),
          "alpha_depth": jnp.asarray(rng.normal(size=(K_MAX,)), jnp.float32)}
  return outputs, batch, arch


COSTS = np.linspace(1.0, 0.0, ops.NUM_OPS)  # zero (last) costs 0
# The form the older tests pin: one loss of the depth-mixed logits, layers matched by ceil.
LOGITS_CEIL = losses.LossConfig(depth_mix="logits", layer_kd_map="ceil")
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
  _, terms = LOSS(outputs, batch, sample, COSTS, cfg=LOGITS_CEIL)
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
  first_two["ran_depth_weights"] = outputs["ran_depth_weights"]
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
                COSTS, cfg=LOGITS_CEIL)[1]["kd_layers"]

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


def test_losses_depth_mix_is_the_depth_weighted_sum_of_every_heads_loss():
  """The authors' `torch.dot(sampled_weights_layer, loss_ce_all)`: the value is the sampled
  head's loss and d loss / d depth[k] is head k's loss (kd_final likewise)."""
  outputs, batch, _ = _inputs()
  head_ce = np.asarray([losses.cross_entropy(outputs["head_logits"][:, k], batch["label"])
                        .mean() for k in range(K_MAX)])
  head_kd = np.asarray([losses.kl_divergence(batch["teacher_logits"],
                                             outputs["head_logits"][:, k]).mean()
                        for k in range(K_MAX)])

  def terms(ran):
    sample = {"ops": jnp.zeros((9, ops.NUM_OPS)), "depth": ran}
    return LOSS(dict(outputs, ran_depth_weights=ran), batch, sample, COSTS,
                cfg=losses.LossConfig())[1]

  one_hot = jax.nn.one_hot(2, K_MAX)
  np.testing.assert_allclose(terms(one_hot)["ce"], head_ce[2], rtol=1e-6)
  np.testing.assert_allclose(terms(one_hot)["kd_final"], head_kd[2], rtol=1e-6)
  np.testing.assert_allclose(jax.grad(lambda w: terms(w)["ce"])(one_hot), head_ce, rtol=1e-5)
  np.testing.assert_allclose(jax.grad(lambda w: terms(w)["kd_final"])(one_hot), head_kd,
                             rtol=1e-5)
  # The logits form gives the same value but a different gradient: <dL/dz, z_k>.
  logits_form = lambda w: LOSS(dict(outputs, depth_weights=w, logits=jnp.einsum(  # noqa: E731
      "k,bkc->bc", w, outputs["head_logits"])), batch, {"ops": jnp.zeros((9, ops.NUM_OPS)),
                                                        "depth": w}, COSTS,
      cfg=LOGITS_CEIL)[1]["ce"]
  np.testing.assert_allclose(logits_form(one_hot), head_ce[2], rtol=1e-6)
  assert not np.allclose(jax.grad(logits_form)(one_hot), head_ce, rtol=1e-2)


def test_authors_layer_map_starts_at_the_embedding_and_has_no_term_at_depth_one():
  # autokd-torch search.py: for i in range(K - 1): teacher layer int(i * Lt / k_max).
  index, valid = losses.teacher_layer_map(4, 6, "authors")
  expected = [[int(i * 6 / 4) for i in range(k - 1)] for k in range(1, 5)]
  for k in range(4):
    np.testing.assert_array_equal(index[k][valid[k]], expected[k])
  assert not valid[0].any() and valid.sum() == 0 + 1 + 2 + 3
  index, valid = losses.teacher_layer_map(8, 12, "authors")
  np.testing.assert_array_equal(index[7][valid[7]], [0, 1, 3, 4, 6, 7, 9])
  # At K = 1 the layer term is exactly 0 (not NaN), with a finite gradient.
  outputs, batch, _ = _inputs()
  kd_BK = losses.layer_kd_per_depth(outputs["layer_logits"], batch["probe_logits"],
                                    batch["label"], layer_map="authors")
  np.testing.assert_array_equal(kd_BK[:, 0], 0.0)
  assert np.all(np.asarray(kd_BK[:, 1:]) > 0)
  grad = jax.grad(lambda x: losses.layer_kd_per_depth(
      x, batch["probe_logits"], batch["label"], layer_map="authors").sum())(
          outputs["layer_logits"])
  chex.assert_tree_all_finite(grad)
  # K = 2 matches the student's column 0 to the teacher's embedding probe alone: a plain KL.
  np.testing.assert_allclose(kd_BK[:, 1], losses.kl_divergence(
      batch["probe_logits"][:, 0], outputs["layer_logits"][:, 0]), rtol=1e-6)
  with pytest.raises(ValueError, match="layer_kd_map"):
    losses.LossConfig(layer_kd_map="floor")


def test_the_authors_map_distils_the_students_embedding_probe_then_its_cells():
  outputs, batch, _ = _inputs()
  cfg = losses.LossConfig()  # the authors' map
  kl = lambda t, s: np.asarray(losses.kl_divergence(t, s))  # noqa: E731

  def kd_layers(depth):
    sample = {"ops": jnp.zeros((9, ops.NUM_OPS)), "depth": jax.nn.one_hot(depth - 1, K_MAX)}
    out = dict(outputs, depth_weights=sample["depth"], ran_depth_weights=sample["depth"])
    return float(LOSS(out, batch, sample, COSTS, cfg=cfg)[1]["kd_layers"])

  assert kd_layers(1) == 0.0
  # K = 2: the embedding probe against the teacher's embedding probe (teacher index 0).
  np.testing.assert_allclose(kd_layers(2), kl(batch["probe_logits"][:, 0],
                                              outputs["embedding_probe_logits"]).mean(),
                             rtol=1e-6)
  # K = 3: the embedding (teacher 0) and cell 1 (teacher floor(1 * 6 / 3) = 2), attentively.
  ce = np.asarray(losses.cross_entropy(batch["probe_logits"], jnp.broadcast_to(
      batch["label"][:, None], batch["probe_logits"].shape[:2])))
  w = np.asarray(jax.nn.softmax(-ce[:, [0, 2]], axis=-1))
  expected = (w[:, 0] * kl(batch["probe_logits"][:, 0], outputs["embedding_probe_logits"])
              + w[:, 1] * kl(batch["probe_logits"][:, 2], outputs["layer_logits"][:, 0]))
  np.testing.assert_allclose(kd_layers(3), expected.mean(), rtol=1e-5)
  no_probe = {k: v for k, v in outputs.items() if k != "embedding_probe_logits"}
  with pytest.raises(ValueError, match="embedding_probe=True"):
    losses.task_loss_per_example(no_probe, batch, cfg)
