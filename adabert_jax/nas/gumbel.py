"""Hard straight-through Gumbel-softmax sampling of an architecture, and the temperature schedule.

A sample is {"ops": [E, NUM_OPS], "ops_index": [E] int32, "depth": [k_max],
"depth_index": () int32}. "ops" and "depth" are straight-through one-hots: their forward value is
exactly one-hot (the argmax of logits + Gumbel noise), their gradient is that of the soft
Gumbel-softmax softmax((logits + g) / temperature). "depth_index" is K - 1 (0-based), the
deepest cell run; "depth" weights the heads' losses (fair_sample's is uniform over all heads).

A fixed architecture (a derived genotype) uses the same structure with exact one-hots and no
noise: see genotype.genotype_to_onehots.
"""

from typing import Any

import chex
import jax
import jax.numpy as jnp

Sample = dict[str, jax.Array]


def straight_through_gumbel(key: jax.Array, logits: jax.Array,
                            temperature: jax.Array | float) -> tuple[jax.Array, jax.Array]:
  """Hard Gumbel-softmax over the last axis: (straight-through one-hot, argmax index int32)."""
  gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
  soft = jax.nn.softmax((logits + gumbel) / temperature, axis=-1)
  index = jnp.argmax(soft, axis=-1).astype(jnp.int32)
  hard = jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)
  # hard + (soft - soft) is exactly hard in the forward pass (x - x == 0 in floating point;
  # the parentheses matter: (hard + soft) - soft can round to 0.99999994); the gradient flows
  # through `soft` only.
  return hard + (soft - jax.lax.stop_gradient(soft)), index


def sample_architecture(key: jax.Array, arch_params: dict[str, Any],
                        temperature: jax.Array | float) -> Sample:
  """One architecture sample from {"alpha_ops": [E, NUM_OPS], "alpha_depth": [k_max]}."""
  alpha_ops, alpha_depth = arch_params["alpha_ops"], arch_params["alpha_depth"]
  chex.assert_rank([alpha_ops, alpha_depth], [2, 1])
  ops_key, depth_key = jax.random.split(key)
  ops_st, ops_index = straight_through_gumbel(ops_key, alpha_ops, temperature)
  depth_st, depth_index = straight_through_gumbel(depth_key, alpha_depth, temperature)
  return {"ops": ops_st, "ops_index": ops_index, "depth": depth_st, "depth_index": depth_index}


def fair_sample(key: jax.Array, arch_params: dict[str, Any], step: jax.Array | int) -> Sample:
  """A warm-up sample that trains every op and every head equally often: on each edge, the
  steps of each block of NUM_OPS steps take the ops in a fresh random order (FairNAS's strict
  fairness); the depth index is k_max - 1, so every cell runs, and the depth weights are
  uniform, so the loss mixes all k_max heads equally. (A one-hot at k_max trained the
  deepest head only: a search sampled fairly throughout could then derive nothing but
  K = k_max, the shallower heads being untrained.) Constants: alpha gets no gradient.
  `key` is the search's base key, `step` may be traced."""
  num_edges, num_ops = arch_params["alpha_ops"].shape
  k_max = arch_params["alpha_depth"].shape[0]
  step = jnp.asarray(step, jnp.int32)
  block_key = jax.random.fold_in(jax.random.fold_in(key, 0x0FA1), step // num_ops)
  orders = jax.vmap(lambda k: jax.random.permutation(k, num_ops))(
      jax.random.split(block_key, num_edges))  # [E, NUM_OPS]
  ops_index = orders[:, step % num_ops].astype(jnp.int32)
  depth_index = jnp.asarray(k_max - 1, jnp.int32)
  dtype = arch_params["alpha_ops"].dtype
  return {"ops": jax.nn.one_hot(ops_index, num_ops, dtype=dtype), "ops_index": ops_index,
          "depth": jnp.full((k_max,), 1.0 / k_max, dtype),
          "depth_index": depth_index}


TEMPERATURE_SCHEDULES = ("per_epoch", "exponential", "linear")
WARMUP_SAMPLINGS = ("gumbel", "fair")  # how the arch warm-up samples: from alpha, or fair_sample


def temperature_at(step: jax.Array | int, total_steps: int, start: float = 1.0,
                   end: float = 0.1, *, schedule: str = "exponential",
                   anneal_rate: float = 0.02, steps_per_epoch: int = 0) -> jax.Array:
  """The Gumbel-softmax temperature at `step`. Jittable: `step` may be a traced integer.

  "exponential": start * (end / start) ** (step / total_steps), held at `end` after; equal
    steps in log-temperature, since the sampling sharpness depends on the ratio between
    temperatures, reaching `end` whatever the search's length.
  "linear": start + (end - start) * step / total_steps, held at `end` after (GDAS's
    schedule, there 10 to 0.1, set per epoch).
  "per_epoch" (the authors' code): max(start * exp(-anneal_rate * epoch), end), constant
    within an epoch (epoch = step // steps_per_epoch); `end` is a floor that a short search
    may never reach (e^(-0.02 * 80) = 0.2 after the paper's 80 epochs).
  """
  if total_steps <= 0:
    raise ValueError(f"total_steps must be positive, got {total_steps}")
  if start <= 0 or end <= 0:
    raise ValueError(f"temperatures must be positive, got start={start}, end={end}")
  step = jnp.asarray(step, jnp.float32)
  progress = jnp.clip(step / total_steps, 0.0, 1.0)  # the exponential and linear schedules'
  if schedule == "exponential":
    return start * (end / start) ** progress
  if schedule == "linear":
    return start + (end - start) * progress
  if schedule == "per_epoch":
    if steps_per_epoch <= 0:
      raise ValueError(f"the per_epoch schedule needs steps_per_epoch > 0, got "
                       f"{steps_per_epoch}")
    epoch = jnp.floor(step / steps_per_epoch)
    return jnp.maximum(start * jnp.exp(-anneal_rate * epoch), end)
  raise ValueError(f"schedule must be one of {TEMPERATURE_SCHEDULES}, got {schedule!r}")
