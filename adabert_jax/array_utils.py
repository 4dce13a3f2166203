"""Small functions over arrays and pytrees that every layer uses."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def masked_mean(hidden: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean over the token axis (-2) of `hidden` [B, ..., L, D], counting real tokens only
  (mask [B, L]); 0 for an all-padding row."""
  mask = mask.astype(hidden.dtype)
  mask = mask.reshape(mask.shape[:1] + (1,) * (hidden.ndim - 3) + mask.shape[1:] + (1,))
  return (hidden * mask).sum(-2) / jnp.maximum(mask.sum(-2), 1.0)


def count_params(tree: Any) -> int:
  """The number of numbers in a pytree of arrays."""
  return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(tree)))
