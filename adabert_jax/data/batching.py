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


def take(arrays: Mapping[str, np.ndarray], idx: np.ndarray, rows: slice | None = None
         ) -> Batch:
  """The examples `idx` of a batch; with `rows` (sharding.process_rows: one process of a
  multi-process run), only that block of the batch's positions is read."""
  if rows is not None:
    idx = idx[rows]
  return {name: a[idx] for name, a in arrays.items()}


def train_batches(arrays: Mapping[str, np.ndarray], batch_size: int, key: jax.Array,
                  epoch: int, start_step: int = 0, rows: slice | None = None
                  ) -> Iterator[Batch]:
  """The shuffled batches of one epoch, from batch `start_step` on (to resume); `rows`: only
  that block of each batch (take)."""
  n = num_examples(arrays)
  if n < batch_size:
    raise UserError(f"The training split has {n} examples, fewer than one batch of "
                    f"{batch_size}: lower the batch size (--config.*.batch_size).")
  order = epoch_permutation(key, epoch, n)
  for step in range(start_step, n // batch_size):
    yield take(arrays, np.sort(order[step * batch_size:(step + 1) * batch_size]), rows)


def steps_per_epoch(arrays: Mapping[str, np.ndarray], batch_size: int) -> int:
  return num_examples(arrays) // batch_size


def eval_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                 rows: slice | None = None) -> Iterator[Batch]:
  """All examples in order; the last batch is padded, with ``weight`` 0 on padding. `rows`:
  only that block of each batch (take)."""
  n = num_examples(arrays)
  for start in range(0, n, batch_size):
    yield _padded_batch(arrays, np.arange(start, min(start + batch_size, n)), batch_size,
                        rows)


def _padded_batch(arrays: Mapping[str, np.ndarray], idx: np.ndarray, batch_size: int,
                  rows: slice | None) -> Batch:
  """The examples `idx` (at most batch_size) padded with zero rows to batch_size, with
  ``weight`` 1 on real rows and 0 on padding; `rows` as in take."""
  position = np.arange(batch_size)
  if rows is not None:
    position = position[rows]
  real = position < len(idx)
  batch = {}
  for name, a in arrays.items():
    part = a[idx[position[real]]]
    if not real.all():
      part = np.concatenate([part, np.zeros(((~real).sum(),) + a.shape[1:], a.dtype)])
    batch[name] = part
  batch["weight"] = real.astype(np.float32)
  return batch


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


def inference_bucket_lengths(max_len: int) -> tuple[int, ...]:
  """bucket_lengths and one more between each two of them (1.5x the shorter). A forward
  pass compiles in seconds, where a training step takes many, so the passes that only run
  a model over examples (length_sorted_eval_batches: knowledge, augment, derive, predict)
  take one more shape per doubling: a batch is then at most a third padding, not half. On
  the demo's augmented sentences that is 16% fewer tokens."""
  lengths = bucket_lengths(max_len)
  return tuple(sorted(set(lengths) | {b + b // 2 for b in lengths[:-1]}))


def bucket_for(lengths: np.ndarray, max_len: int, *, inference: bool = False) -> int:
  """The shortest bucket length that holds every real token of a batch whose examples have
  `lengths` real tokens (all of the batch's examples, on every process); of the training
  buckets, or with `inference` of inference_bucket_lengths."""
  longest = int(lengths.max())
  buckets = inference_bucket_lengths(max_len) if inference else bucket_lengths(max_len)
  return next(b for b in buckets if b >= longest)


def trim(batch: Batch, length: int) -> Batch:
  return {name: (a[:, :length] if name in SEQUENCE_FEATURES else a)
          for name, a in batch.items()}


def bucketed_train_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                           key: jax.Array, epoch: int, max_len: int,
                           pool_batches: int = 64, start_step: int = 0,
                           rows: slice | None = None) -> Iterator[Batch]:
  """Shuffled batches of similar lengths, each trimmed to its bucket.

  The epoch's permutation is cut into pools of `pool_batches` batches; each pool is sorted
  by length and split into batches, and the batches of the epoch are shuffled, so order
  stays random while padding shrinks. A pure function of (key, epoch); `start_step` skips
  the epoch's first batches (to resume); `rows`: only that block of each batch (take), trimmed
  to the whole batch's bucket.
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
    idx = batches[b]
    yield trim(take(arrays, idx, rows), bucket_for(lengths[idx], max_len))


def length_sorted_eval_batches(arrays: Mapping[str, np.ndarray], batch_size: int,
                               max_len: int, rows: slice | None = None
                               ) -> Iterator[tuple[np.ndarray, Batch]]:
  """(example indices, batch) over all examples sorted by length, trimmed to the
  inference buckets; the last batch is padded (``weight`` 0). Scatter outputs back with the
  indices (those of the whole batch, also when `rows` reads only a block of it, as in
  eval_batches)."""
  lengths = arrays["attention_mask"].sum(1)
  order = np.argsort(lengths, kind="stable")
  for start in range(0, len(order), batch_size):
    idx = order[start:start + batch_size]
    yield idx, trim(_padded_batch(arrays, idx, batch_size, rows),
                    bucket_for(lengths[idx], max_len, inference=True))


def epoch_batches(arrays: Mapping[str, np.ndarray], batch_size: int, key: jax.Array,
                  epoch: int, max_len: int, *, bucket: bool, start_step: int = 0,
                  rows: slice | None = None) -> Iterator[Batch]:
  """One epoch's training batches from `start_step` on: length-bucketed and trimmed (a few
  shapes, little padding) or plain full-length ones; `rows` as in take."""
  if bucket:
    return bucketed_train_batches(arrays, batch_size, key, epoch, max_len,
                                  start_step=start_step, rows=rows)
  return train_batches(arrays, batch_size, key, epoch, start_step, rows)

