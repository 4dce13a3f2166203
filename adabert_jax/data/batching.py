"""Fixed-shape batches from in-memory arrays, shuffled by an explicit PRNG key.

Every batch has the same shapes, so a jitted step compiles once. Training drops the
remainder of an epoch (a fresh permutation each epoch means every example is still
seen); evaluation pads the last batch and marks padding with ``weight == 0`` so every
example is counted exactly once.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import jax
import numpy as np

from adabert_jax.errors import UserError

Batch = dict[str, np.ndarray]


def num_examples(arrays: Mapping[str, np.ndarray]) -> int:
  sizes = {name: len(a) for name, a in arrays.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"Arrays disagree on the number of examples: {sizes}")
  return next(iter(sizes.values()))


def epoch_permutation(key: jax.Array, epoch: int, n: int) -> np.ndarray:
  """The example order of one epoch: a pure function of (key, epoch)."""
  return np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))


def train_batches(arrays: Mapping[str, np.ndarray], batch_size: int, key: jax.Array,
                  epoch: int, start_step: int = 0) -> Iterator[Batch]:
  """The shuffled batches of one epoch, from batch `start_step` on (to resume)."""
  n = num_examples(arrays)
  if n < batch_size:
    raise UserError(f"The training split has {n} examples, fewer than one batch of "
                    f"{batch_size}: lower the batch size (--config.*.batch_size).")
  order = epoch_permutation(key, epoch, n)
  for step in range(start_step, n // batch_size):
    idx = np.sort(order[step * batch_size:(step + 1) * batch_size])
    yield {name: a[idx] for name, a in arrays.items()}


def steps_per_epoch(arrays: Mapping[str, np.ndarray], batch_size: int) -> int:
  return num_examples(arrays) // batch_size


def eval_batches(arrays: Mapping[str, np.ndarray], batch_size: int) -> Iterator[Batch]:
  """All examples in order; the last batch is padded, with ``weight`` 0 on padding."""
  n = num_examples(arrays)
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    pad = batch_size - (stop - start)
    batch = {}
    for name, a in arrays.items():
      part = a[start:stop]
      if pad:
        part = np.concatenate([part, np.zeros((pad,) + a.shape[1:], a.dtype)])
      batch[name] = part
    batch["weight"] = np.concatenate(
        [np.ones(stop - start, np.float32), np.zeros(pad, np.float32)])
    yield batch
