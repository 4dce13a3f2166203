"""The efficiency cost of each operation, measured from the op definitions (not typed by hand).

For an op at a given width and sequence length:
  params: the number of scalars its init returns (jax.eval_shape: nothing is allocated);
  flops:  XLA's cost analysis of the jitted apply_op at batch 1.
The normalised cost (the efficiency loss's per-op price) comes in two forms (COST_NORMS):
  max:     mean(params / max params, flops / max flops), in [0, 1]; the zero op means "no
           edge": its params and flops are forced to 0, so it costs 0. Parameter-free ops
           cost ~0 and conv7 1.0: a steep price list.
  softmax: the authors' code (autokd-torch search.py count_OP_cost): mean(softmax over ops of
           params / 1e5, softmax over ops of MACs / 1e7), where zero and identity count 1
           parameter and 1 MAC ("smoothing") and a MAC is 2 of XLA's flops. At width 128 and
           length 128 it runs from ~0.05 (parameter-free) to ~0.19 (conv7): a flat one.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adabert_jax.nas import ops

COST_NORMS = ("max", "softmax")


@dataclasses.dataclass(frozen=True)
class OpCostTable:
  """Per-op costs, each a float64 array of shape [NUM_OPS] in OP_NAMES order."""
  width: int
  length: int
  params: np.ndarray
  flops: np.ndarray
  normalised: np.ndarray

  def as_dict(self) -> dict[str, dict[str, float]]:
    """{op_name: {"params", "flops", "normalised"}}, e.g. for logging as JSON."""
    return {name: {"params": float(self.params[i]), "flops": float(self.flops[i]),
                   "normalised": float(self.normalised[i])}
            for i, name in enumerate(ops.OP_NAMES)}


def flops_from_cost_analysis(cost: Any) -> float:
  """The 'flops' entry of Compiled.cost_analysis(), which is a dict in jax 0.10 and was a
  list of dicts (one per computation) in older releases; a missing entry counts as 0."""
  if cost is None:
    return 0.0
  if isinstance(cost, dict):
    cost = [cost]
  return float(sum(max(float(c.get("flops", 0.0)), 0.0) for c in cost if c))


def op_param_count(name: str, width: int) -> int:
  """Number of parameters of op `name` at `width`, from the shapes its init would return."""
  shapes = jax.eval_shape(lambda k: ops.init_op(name, k, width), jax.random.key(0))
  return int(sum(np.prod(s.shape, dtype=np.int64) for s in jax.tree.leaves(shapes)))


def op_flops(name: str, width: int, length: int) -> float:
  """XLA's FLOP count for one application of op `name` to a [1, length, width] input."""
  params = jax.eval_shape(lambda k: ops.init_op(name, k, width), jax.random.key(0))
  x_BLD = jax.ShapeDtypeStruct((1, length, width), jnp.float32)
  mask_BL = jax.ShapeDtypeStruct((1, length), jnp.int32)
  fn = jax.jit(lambda p, x, m: ops.apply_op(name, p, x, m))
  return flops_from_cost_analysis(fn.lower(params, x_BLD, mask_BL).compile().cost_analysis())


def _softmax(x: np.ndarray) -> np.ndarray:
  e = np.exp(x - x.max())
  return e / e.sum()


def normalise_costs(params: np.ndarray, flops: np.ndarray, norm: str = "max") -> np.ndarray:
  """Each op's price from its measured params and flops (the module docstring's forms)."""
  if norm == "max":
    norm_params = params / params.max() if params.max() > 0 else params
    norm_flops = flops / flops.max() if flops.max() > 0 else flops
    return 0.5 * (norm_params + norm_flops)
  if norm == "softmax":
    smoothed = np.zeros(len(params), bool)
    smoothed[[ops.ZERO_INDEX, ops.OP_NAMES.index("identity")]] = True
    size = np.where(smoothed, 1.0, params)
    macs = np.where(smoothed, 1.0, flops / 2.0)
    return 0.5 * (_softmax(size / 1e5) + _softmax(macs / 1e7))
  raise ValueError(f"cost norm must be one of {COST_NORMS}, got {norm!r}")


def op_cost_table(width: int, length: int, norm: str = "max") -> OpCostTable:
  """Measures every op at `width` and `length` (compiles ten tiny functions, ~1 s)."""
  params = np.array([op_param_count(n, width) for n in ops.OP_NAMES], np.float64)
  flops = np.array([op_flops(n, width, length) for n in ops.OP_NAMES], np.float64)
  params[ops.ZERO_INDEX] = 0.0
  flops[ops.ZERO_INDEX] = 0.0
  return OpCostTable(width, length, params, flops, normalise_costs(params, flops, norm))
