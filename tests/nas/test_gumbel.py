"""Straight-through Gumbel-softmax: exact one-hots forward, soft gradients backward."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adabert_jax.nas import gumbel


def _arch(key, edges=9, num_ops=10, k_max=3):
  ops_key, depth_key = jax.random.split(key)
  return {"alpha_ops": jax.random.normal(ops_key, (edges, num_ops)),
          "alpha_depth": jax.random.normal(depth_key, (k_max,))}


def test_sample_is_exactly_one_hot_and_matches_its_index():
  arch = _arch(jax.random.key(0))
  jitted = jax.jit(gumbel.sample_architecture)
  for seed in range(5):
    sample = (jitted if seed % 2 else gumbel.sample_architecture)(jax.random.key(seed), arch,
                                                                  0.7)
    chex.assert_shape(sample["ops"], (9, 10))
    chex.assert_shape(sample["ops_index"], (9,))
    chex.assert_shape(sample["depth"], (3,))
    chex.assert_shape(sample["depth_index"], ())
    assert sample["ops_index"].dtype == jnp.int32 and sample["depth_index"].dtype == jnp.int32
    np.testing.assert_array_equal(sample["ops"], jax.nn.one_hot(sample["ops_index"], 10))
    np.testing.assert_array_equal(sample["depth"], jax.nn.one_hot(sample["depth_index"], 3))


def test_samples_follow_the_logits():
  arch = {"alpha_ops": jnp.zeros((1, 4)).at[0, 2].set(5.0), "alpha_depth": jnp.zeros(2)}
  keys = jax.random.split(jax.random.key(0), 200)
  idx = jax.vmap(lambda k: gumbel.sample_architecture(k, arch, 1.0)["ops_index"][0])(keys)
  # p(op 2) = e^5 / (e^5 + 3) ~ 0.98.
  assert np.mean(np.asarray(idx) == 2) > 0.9


def test_gradient_is_that_of_the_soft_sample():
  arch = _arch(jax.random.key(1))
  key, temperature = jax.random.key(2), 0.5
  weights = jax.random.normal(jax.random.key(3), (9, 10))

  def hard_loss(alpha):
    return jnp.sum(gumbel.sample_architecture(key, dict(arch, alpha_ops=alpha),
                                              temperature)["ops"] * weights)

  def soft_loss(alpha):
    ops_key, _ = jax.random.split(key)
    g = jax.random.gumbel(ops_key, alpha.shape)
    return jnp.sum(jax.nn.softmax((alpha + g) / temperature) * weights)

  grad_hard = jax.grad(hard_loss)(arch["alpha_ops"])
  np.testing.assert_allclose(grad_hard, jax.grad(soft_loss)(arch["alpha_ops"]), rtol=1e-5,
                             atol=1e-7)
  assert np.all(np.asarray(grad_hard) != 0.0)


def test_temperature_schedule_is_exponential_from_start_to_end():
  assert float(gumbel.temperature_at(0, 100)) == pytest.approx(1.0)
  assert float(gumbel.temperature_at(50, 100)) == pytest.approx(0.1 ** 0.5, rel=1e-5)
  assert float(gumbel.temperature_at(100, 100)) == pytest.approx(0.1, rel=1e-5)
  assert float(gumbel.temperature_at(500, 100)) == pytest.approx(0.1, rel=1e-5)
  temps = jax.jit(lambda s: gumbel.temperature_at(s, 100, 2.0, 0.2))(jnp.arange(101))
  assert np.all(np.diff(np.asarray(temps)) < 0)
  with pytest.raises(ValueError):
    gumbel.temperature_at(0, 0)


def test_linear_schedule_is_gdas_equal_steps_from_start_to_end():
  at = lambda step: float(gumbel.temperature_at(  # noqa: E731
      step, 200, 10.0, 0.1, schedule="linear"))
  assert at(0) == pytest.approx(10.0)
  assert at(100) == pytest.approx(5.05, rel=1e-6)  # halfway: the mean, not the geometric 1.0
  assert at(150) == pytest.approx(2.575, rel=1e-6)
  assert at(200) == at(1_000) == pytest.approx(0.1, rel=1e-5)  # float32
  temps = jax.jit(lambda s: gumbel.temperature_at(s, 200, 10.0, 0.1, schedule="linear"))(
      jnp.arange(201))
  np.testing.assert_allclose(np.diff(np.asarray(temps)), -9.9 / 200, rtol=1e-4)


def test_per_epoch_schedule_is_the_authors_max_of_exp_decay_and_floor():
  # autokd-torch search.py: max(initial * exp(-anneal_rate * epoch), min), set per epoch.
  at = lambda step: float(gumbel.temperature_at(  # noqa: E731
      step, 10_000, 1.0, 0.2, schedule="per_epoch", anneal_rate=0.02, steps_per_epoch=50))
  assert at(0) == at(49) == pytest.approx(1.0)
  assert at(50) == at(99) == pytest.approx(np.exp(-0.02), rel=1e-6)
  assert at(50 * 79) == pytest.approx(max(np.exp(-0.02 * 79), 0.2), rel=1e-6)
  assert at(50 * 81) == pytest.approx(0.2, rel=1e-6)  # e^(-1.62) = 0.198: the floor holds
  jitted = jax.jit(lambda s: gumbel.temperature_at(s, 10_000, 1.0, 0.2, schedule="per_epoch",
                                                  steps_per_epoch=50))
  assert float(jitted(jnp.asarray(120))) == pytest.approx(np.exp(-0.04), rel=1e-6)
  with pytest.raises(ValueError, match="steps_per_epoch"):
    gumbel.temperature_at(0, 100, schedule="per_epoch")
  with pytest.raises(ValueError, match="schedule"):
    gumbel.temperature_at(0, 100, schedule="cosine")
