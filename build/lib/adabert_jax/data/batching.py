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


def fixed_subset(arrays: Mapping[str, np.ndarray], size: int, seed: int
                 ) -> dict[str, np.ndarray]:
  """A fixed random subset of `size` examples (in their original order), chosen by `seed`;
  all of them when size <= 0 or size >= the number of examples."""
  n = num_examples(arrays)
  if not 0 < size < n:
    return dict(arrays)
  keep = np.sort(np.random.default_rng(seed).permutation(n)[:size])
  return {name: a[keep] for name, a in arrays.items()}


def holdout_split(arrays: Mapping[str, np.ndarray], size: int, seed: int
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """(rest, held): `size` examples chosen at random by `seed` are held out (both parts keep
  the original order). Nothing is held out when size <= 0."""
  n = num_examples(arrays)
  if size <= 0:
    return dict(arrays), {name: a[:0] for name, a in arrays.items()}
  if size > n // 4:
    raise UserError(f"--config.search.holdout={size} would keep more than a quarter of the "
                    f"{n} training examples out of the search: lower it (at most {n // 4}; "
                    "the :pairs preset is made for small tasks).")
  held = np.zeros(n, bool)
  held[np.random.default_rng(seed).permutation(n)[:size]] = True
  return ({name: a[~held] for name, a in arrays.items()},
          {name: a[held] for name, a in arrays.items()})


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


# ---------------------------------------------------------------------------------------
# Length bucketing: most sentences are far shorter than max_len, so batches of similar
# lengths are trimmed to a few bucket lengths (max_len, max_len/2, ...): few shapes means
# few compilations, short shapes mean much less attention and feed-forward work.
# ---------------------------------------------------------------------------------------

SEQUENCE_FEATURES = ("input_ids", "token_type_ids", "attention_mask")


def bucket_lengths(max_len: int, smallest: int = 16) -> tuple[int, ...]:
  lengths, length = [], max_len
  while length >= smallest:
    lengths.append(length)
    length //= 2
  return tuple(sorted(lengths))


def bucket_for(batch: Batch, max_len: int) -> int:
  """The shortest bucket length that holds every real token of the batch."""
  longest = int(batch["attention_mask"].sum(1).max())
  return next(b for b in bucket_lengths(max_len) if b >= longest)


def trim(batch: Batch, length: int) -> Batch:
  return {name: (a[:, :length] if name in SEQUENCE_FEATURES else a)
          for name, a in batch.items()}


def bucketed_train_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                           key: jax.Array, epoch: int, max_len: int,
                           pool_batches: int = 64, start_step: int = 0) -> Iterator[Batch]:
  """Shuffled batches of similar lengths, each trimmed to its bucket.

  The epoch's permutation is cut into pools of `pool_batches` batches; each pool is sorted
  by length and split into batches, and the batches of the epoch are shuffled, so order
  stays random while padding shrinks. A pure function of (key, epoch); `start_step` skips
  the epoch's first batches (to resume).
  """
  n = num_examples(arrays)
  if n < batch_size:
    raise UserError(f"The training split has {n} examples, fewer than one batch of "
                    f"{batch_size}: lower the batch size (--config.*.batch_size).")
  order = epoch_permutation(key, epoch, n)[:n - n % batch_size]
  lengths = arrays["attention_mask"].sum(1)
  pool = batch_size * pool_batches
  batches = []
  for start in range(0, len(order), pool):
    chunk = order[start:start + pool]
    chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
  shuffle = np.asarray(jax.random.permutation(
      jax.random.fold_in(jax.random.fold_in(key, epoch), 1), len(batches)))
  for b in shuffle[start_step:]:
    batch = {name: a[batches[b]] for name, a in arrays.items()}
    yield trim(batch, bucket_for(batch, max_len))


def length_sorted_eval_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                               max_len: int) -> Iterator[tuple[np.ndarray, Batch]]:
  """(example indices, batch) over all examples sorted by length, trimmed to buckets;
  the last batch is padded (``weight`` 0). Scatter outputs back with the indices."""
  order = np.argsort(arrays["attention_mask"].sum(1), kind="stable")
  sorted_arrays = {name: a[order] for name, a in arrays.items()}
  for start, batch in zip(range(0, len(order), batch_size),
                          eval_batches(sorted_arrays, batch_size)):
    idx = order[start:start + batch_size]
    yield idx, trim(batch, bucket_for(batch, max_len))


def epoch_batches(arrays: Mapping[str, np.ndarray], batch_size: int, key: jax.Array,
                  epoch: int, max_len: int, *, bucket: bool, start_step: int = 0
                  ) -> Iterator[Batch]:
  """One epoch's training batches from `start_step` on: length-bucketed and trimmed (a few
  shapes, little padding) or plain full-length ones."""
  if bucket:
    return bucketed_train_batches(arrays, batch_size, key, epoch, max_len,
                                  start_step=start_step)
  return train_batches(arrays, batch_size, key, epoch, start_step)

