"""Random stand-ins for the search's inputs, for tests and benchmarks (never for training).

A search batch is what the search stage feeds the step: token arrays [B, L] plus the
precomputed teacher knowledge (teacher_logits [B, C], probe_logits [B, Lt + 1, C]) and labels.
"""

import jax
import jax.numpy as jnp
import numpy as np


def random_emb_tables(key: jax.Array, vocab_size: int, num_positions: int,
                      teacher_width: int) -> dict[str, jax.Array]:
  """Frozen teacher embedding tables with BERT-like scale (std 0.05)."""
  word_key, position_key = jax.random.split(key)
  return {
      "word": 0.05 * jax.random.normal(word_key, (vocab_size, teacher_width), jnp.float32),
      "position": 0.05 * jax.random.normal(position_key, (num_positions, teacher_width),
                                           jnp.float32),
  }


def random_search_batch(seed: int, batch_size: int, length: int, vocab_size: int,
                        num_classes: int, num_teacher_layers: int,
                        pair: bool = False) -> dict[str, jax.Array]:
  """Token ids with varied real lengths (the first example is full length), [CLS]-like id 1
  first, padding id 0; for pair=True the second half of each example's tokens is segment B."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(max(2, length // 2), length + 1, batch_size)
  lengths[0] = length
  positions = np.arange(length)[None, :]
  mask = (positions < lengths[:, None]).astype(np.int32)
  ids = rng.integers(2, vocab_size, (batch_size, length)) * mask
  ids[:, 0] = 1
  types = ((positions >= (lengths[:, None] + 1) // 2) & (mask > 0)).astype(np.int32)
  if not pair:
    types = np.zeros_like(types)
  return {
      "input_ids": jnp.asarray(ids, jnp.int32),
      "token_type_ids": jnp.asarray(types, jnp.int32),
      "attention_mask": jnp.asarray(mask, jnp.int32),
      "label": jnp.asarray(rng.integers(0, num_classes, batch_size), jnp.int32),
      "teacher_logits": jnp.asarray(2.0 * rng.normal(size=(batch_size, num_classes)),
                                    jnp.float32),
      "probe_logits": jnp.asarray(
          rng.normal(size=(batch_size, num_teacher_layers + 1, num_classes)), jnp.float32),
  }


PAIR_CLS, PAIR_SEP = 1, 2  # the stand-in [CLS] and [SEP] ids of pair_arrays


def pair_arrays(a_rows, b_rows, length: int) -> dict[str, jax.Array]:
  """Concatenated `[CLS] a [SEP] b [SEP]` arrays with token types, as the tokenizer writes
  them, from two lists of token-id rows."""
  n = len(a_rows)
  ids, types, mask = (np.zeros((n, length), np.int32) for _ in range(3))
  for i, (a, b) in enumerate(zip(a_rows, b_rows)):
    row = [PAIR_CLS, *a, PAIR_SEP, *b, PAIR_SEP]
    ids[i, :len(row)] = row
    types[i, len(a) + 2:len(row)] = 1
    mask[i, :len(row)] = 1
  return {"input_ids": jnp.asarray(ids), "token_type_ids": jnp.asarray(types),
          "attention_mask": jnp.asarray(mask)}


# A pair task no additive model can learn: is sentence B sentence A with its words shuffled
# (1), or another sentence drawn from the same words (0)? Every word is equally likely in A
# and in B under both labels, so f(A) + g(B) carries no signal.
SYNTHETIC_WORDS, SYNTHETIC_LENGTH, SYNTHETIC_MAX_LEN = 8, 6, 16


def synthetic_pairs(n: int, seed: int) -> dict[str, jax.Array]:
  """n pairs of that task (ids 5..12, 6 words each, max_len 16) with their labels."""
  rng = np.random.default_rng(seed)
  a_rows, b_rows = [], []
  labels = rng.integers(0, 2, n)
  for label in labels:
    a = rng.integers(5, 5 + SYNTHETIC_WORDS, SYNTHETIC_LENGTH)
    b = rng.permutation(a) if label else rng.integers(5, 5 + SYNTHETIC_WORDS, SYNTHETIC_LENGTH)
    a_rows.append(list(a))
    b_rows.append(list(b))
  return dict(pair_arrays(a_rows, b_rows, SYNTHETIC_MAX_LEN),
              label=jnp.asarray(labels, jnp.int32))
