"""How the student reads its input and what its heads see; shared by the supernet and the
discrete student so that the two compute the same function.

Input modes (static, one per task):
- "single": a single-sentence task. Both input nodes of the first cell are the embedded
  sentence.
- "siamese" (the default for pairs; beyond the paper): each sentence is read on its own from
  position 0 (`[CLS] a [SEP]`, `[CLS] b [SEP]`) and encoded by the same cells as a single
  sentence would be (the two run as one batch of 2B). Heads and probes see the interaction
  features [u, v, |u - v|, u * v] of the two pooled vectors, as InferSent and Tang et al.'s
  distilled BiLSTM do, so the logit is not additive in the two sentences.
- "attend" (beyond the paper; ESIM and the decomposable-attention model's compare step):
  encoded as in "siamese", and every layer also softly aligns each token with the other
  sentence's tokens (dot-product attention over that sentence at the same layer, no
  parameters): x~_t = sum_s softmax_s(x_t . y_s / sqrt(D)) y_s. A layer is pooled into the
  mean of x, of x * x~ and of |x - x~| over its real tokens, so the heads see how well each
  sentence's words are matched in the other, which pooled vectors alone cannot show.
- "aligned" (the authors' code, EasyTransfer autokd-torch): each sentence from position 0 as
  above, stream A is input node 0 and stream B input node 1 of the first cell, aligned at the
  same positions (node sums mix A[t] with B[t]); the cells see the union of the two masks and
  layer 0 of the heads is the mean of the two streams.
- "masked" (this project's first form, kept as the additive reference): one concatenated
  `[CLS] a [SEP] b [SEP]` sequence masked into its two segments, which never share a
  position; its logit is f(A) + g(B) up to the few windows that straddle [SEP].

Exact match (beyond the paper; DrQA's feature, `exact_match`): in the modes that read the two
views, each token of a sentence other than [CLS] and [SEP] can also carry a flag, "this token
id occurs in the other sentence", as a learnt vector added to its projected embedding. The
cells and heads then see word overlap directly: a one-threshold rule on it scores 59.21 on
RTE dev, above its teacher (docs/pairs.md). The flags are the same whatever the padding.

Every mode puts the projected embedding through a LayerNorm (learned scale and bias) and
dropout (training only), as the authors do, and every head and probe applies tanh before its
linear layer. The teacher always reads the concatenated pair; the two sentence views are cut
out of that same array (`split_pair`), so tokenization, caches and the precomputed knowledge
are shared by every mode. The training and evaluation loops cut them on the host
(`host_batch`), where each view can be trimmed to the longer sentence of its batch: the
concatenation's length holds both sentences, so views of that length would be about half
padding, and the cells' work grows with it. A batch without views is cut inside jit, with
the same function.
"""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from adabert_jax import array_utils
from adabert_jax.data import batching

PAIR_MODES = ("siamese", "attend", "aligned", "masked")
INPUT_MODES = ("single",) + PAIR_MODES
DEFAULT_PAIR_MODE = "siamese"
LAYER_NORM_EPS = 1e-5
# Folded into the dropout key for the embedding's mask (cells use their index, 0..k_max-1).
EMBEDDING_DROPOUT_STREAM = 1_000_003
# The two sentences of a pair as `host_batch` cuts them: ids and mask of A, then of B.
PAIR_VIEWS = ("input_ids_a", "attention_mask_a", "input_ids_b", "attention_mask_b")
# Views are trimmed to a multiple of this: at max_len 128 at most 8 shapes to compile, and
# on MRPC 1.8x fewer positions than views of the concatenation's length (1.5x with
# power-of-two lengths); RTE's long premises leave 1.3x.
VIEW_LENGTH_STEP = 16


def check_mode(mode: str) -> None:
  if mode not in INPUT_MODES:
    raise ValueError(f"input mode must be one of {INPUT_MODES}, got {mode!r}")


def input_mode(pair_mode: str, is_pair: bool) -> str:
  """The input mode of a task: `pair_mode` for a sentence-pair task, "single" otherwise."""
  if pair_mode not in PAIR_MODES:
    raise ValueError(f"pair_mode must be one of {PAIR_MODES}, got {pair_mode!r}")
  return pair_mode if is_pair else "single"


def encodes_separately(mode: str) -> bool:
  """Whether each sentence of a pair runs through the cells on its own (a batch of 2B:
  sentences A, then sentences B)."""
  check_mode(mode)
  return mode in ("siamese", "attend")


def pooled_width(hidden: int, mode: str) -> int:
  """The width of one pooled layer (pool_layer): 3 x hidden for attend, hidden otherwise."""
  check_mode(mode)
  return 3 * hidden if mode == "attend" else hidden


def feature_width(hidden: int, mode: str) -> int:
  """The width of what a head or probe reads (features): 4 x hidden for siamese, 8 x hidden
  for attend, hidden otherwise."""
  check_mode(mode)
  return {"siamese": 4 * hidden, "attend": 8 * hidden}.get(mode, hidden)


def init_embedding_norm(hidden: int) -> dict[str, jax.Array]:
  return {"ln_scale": jnp.ones((hidden,)), "ln_bias": jnp.zeros((hidden,))}


# The embedding parameter [H] added to a token's projected embedding when it is matched in the
# other sentence; models without it read no flags.
EXACT_MATCH_PARAM = "match"


def init_exact_match(key: jax.Array, hidden: int) -> dict[str, jax.Array]:
  """The exact-match vector, about as long as a projected word vector."""
  return {EXACT_MATCH_PARAM: jax.random.normal(key, (hidden,)) / hidden ** 0.5}


def content_mask(mask_XL: jax.Array, xp=jnp) -> jax.Array:
  """The words of `[CLS] s [SEP]` views [X, L]: the real tokens without position 0 ([CLS])
  and the last real one ([SEP]). xp: jnp, or np on the host (experiments/overlap_baseline.py
  counts the same words)."""
  after_XL = xp.concatenate([mask_XL[:, 1:], xp.zeros_like(mask_XL[:, :1])], axis=1)
  not_first_1L = (xp.arange(mask_XL.shape[1]) > 0)[None, :]
  return mask_XL * after_XL * not_first_1L  # after_XL drops the last real token


def exact_match_flags(ids_a: jax.Array, mask_a: jax.Array, ids_b: jax.Array,
                      mask_b: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(flags of A [B, L], flags of B [B, L]), float: 1 at a word of one sentence whose id is
  among the other sentence's words, 0 elsewhere ([CLS], [SEP] and padding included)."""
  words_a, words_b = content_mask(mask_a) > 0, content_mask(mask_b) > 0
  same_BLS = (ids_a[:, :, None] == ids_b[:, None, :]) & words_a[:, :, None] & words_b[:, None, :]
  return (jnp.max(same_BLS, axis=2).astype(jnp.float32),
          jnp.max(same_BLS, axis=1).astype(jnp.float32))


def split_pair(ids_BL: jax.Array, types_BL: jax.Array, mask_BL: jax.Array, xp=jnp
               ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """The two sentences of `[CLS] a [SEP] b [SEP]` (token types 0 then 1), each from position
  0 as BERT would tokenise it alone: (ids_a, mask_a, ids_b, mask_b), each [B, L].

  A is `[CLS] a [SEP]` where it already is; B is `[CLS] b [SEP]`, moved to the front (its
  [CLS] copied from position 0). A row without a segment B (padding) gives an empty B.
  xp: jnp inside jit, np on the host (`host_batch`); the same code either way.
  """
  chex.assert_equal_shape([ids_BL, types_BL, mask_BL])
  length = ids_BL.shape[1]
  real_BL = mask_BL > 0
  seg_b_BL = (types_BL == 1) & real_BL
  seg_a_BL = real_BL & ~seg_b_BL
  len_a_B1 = xp.sum(seg_a_BL, axis=1, keepdims=True)
  len_b_B1 = xp.sum(seg_b_BL, axis=1, keepdims=True)
  t_1L = xp.arange(length)[None, :]
  # B's token t >= 1 is the concatenation's token len_a - 1 + t.
  source_BL = xp.clip(len_a_B1 - 1 + t_1L, 0, length - 1)
  moved_BL = xp.take_along_axis(ids_BL, source_BL, axis=1)
  in_b_BL = (t_1L >= 1) & (t_1L <= len_b_B1)
  mask_b_BL = in_b_BL | ((t_1L == 0) & (len_b_B1 > 0))
  ids_b_BL = xp.where(t_1L == 0, ids_BL[:, :1], xp.where(in_b_BL, moved_BL, 0))
  ids_b_BL = xp.where(mask_b_BL, ids_b_BL, 0)
  ids_a_BL = xp.where(seg_a_BL, ids_BL, 0)
  as_mask = lambda m: m.astype(mask_BL.dtype)
  return ids_a_BL, as_mask(seg_a_BL), ids_b_BL, as_mask(mask_b_BL)


def reads_views(mode: str) -> bool:
  """Whether the mode reads the two sentences as separate views (all but single and
  masked)."""
  check_mode(mode)
  return mode in ("siamese", "attend", "aligned")


def host_batch(batch: dict[str, np.ndarray], mode: str) -> dict[str, np.ndarray]:
  """The batch as the student reads it, prepared on the host: for siamese and aligned, the
  concatenated sequences are replaced by the two sentence views (`PAIR_VIEWS`), trimmed to
  the shortest multiple of VIEW_LENGTH_STEP that holds the longer sentence of the batch (in a
  multi-process run, the batch's length); other modes get the batch unchanged. Outputs
  equal those of the untrimmed batch, since padding never changes any output.
  """
  if not reads_views(mode):
    return batch
  views = split_pair(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                     xp=np)
  view_len = batch["input_ids"].shape[1]
  if jax.process_count() == 1:
    # With several processes each holds only its rows of the batch, and the views' length
    # must be the same on all: they keep the batch's (outputs are the same either way).
    longest = max(int(views[1].sum(1).max()), int(views[3].sum(1).max()), 1)
    view_len = min(view_len, -(-longest // VIEW_LENGTH_STEP) * VIEW_LENGTH_STEP)
  out = {name: a for name, a in batch.items() if name not in batching.SEQUENCE_FEATURES}
  out.update({name: v[:, :view_len] for name, v in zip(PAIR_VIEWS, views)})
  return out


def batch_size(batch: dict[str, Any]) -> int:
  """The number of examples in a batch, with or without pair views."""
  return (batch["input_ids_a"] if "input_ids_a" in batch else batch["input_ids"]).shape[0]


def masked_streams(x_BLD: jax.Array, token_type_ids_BL: jax.Array,
                   mask_BL: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The "masked" mode's two inputs: the concatenation masked to segment A and to B."""
  real_BL = mask_BL > 0
  seg_b_BL = (token_type_ids_BL == 1) & real_BL
  return x_BLD * (real_BL & ~seg_b_BL)[:, :, None], x_BLD * seg_b_BL[:, :, None]


def _normalise_and_drop(norm: dict, x_BLD: jax.Array, mask_BL: jax.Array, *, train: bool,
                        dropout: float, key: jax.Array | None) -> jax.Array:
  mean = jnp.mean(x_BLD, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x_BLD - mean), axis=-1, keepdims=True)
  y_BLD = (x_BLD - mean) * jax.lax.rsqrt(var + LAYER_NORM_EPS) * norm["ln_scale"]
  y_BLD = y_BLD + norm["ln_bias"]
  if train and dropout > 0:
    keep = jax.random.bernoulli(key, 1.0 - dropout, (y_BLD.size,)).reshape(y_BLD.shape)
    y_BLD = jnp.where(keep, y_BLD / (1.0 - dropout), 0.0)
  return y_BLD * (mask_BL > 0)[:, :, None].astype(y_BLD.dtype)  # padding stays exactly 0


def cell_inputs(embed_fn: Callable[[jax.Array], jax.Array], norm: dict, batch: dict[str, Any],
                mode: str, *, train: bool = False, dropout: float = 0.0,
                dropout_key: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(s0, s1, mask, layer0) for the cells: the two input nodes of the first cell [X, L, H],
  the mask the cells use [X, L], and layer 0 of the heads [X, L, H] (pooled with that mask).
  X is the batch B, or 2B in siamese mode (sentences A, then sentences B).

  embed_fn: ids [X, L] -> projected embedding [X, L, H] (positions from 0).
  norm: the embedding's parameters: its LayerNorm's, and the exact-match vector if the model
  has one (modes that read views only).
  """
  check_mode(mode)
  key = (None if dropout_key is None
         else jax.random.fold_in(dropout_key, EMBEDDING_DROPOUT_STREAM))
  if not reads_views(mode):
    ids_BL, types_BL, mask_BL = (batch["input_ids"], batch["token_type_ids"],
                                 batch["attention_mask"])
    chex.assert_rank(ids_BL, 2)
    chex.assert_equal_shape([ids_BL, types_BL, mask_BL])
    x_BLD = _normalise_and_drop(norm, embed_fn(ids_BL), mask_BL, train=train,
                                dropout=dropout, key=key)
    if mode == "single":
      return x_BLD, x_BLD, mask_BL, x_BLD
    s0_BLD, s1_BLD = masked_streams(x_BLD, types_BL, mask_BL)
    return s0_BLD, s1_BLD, mask_BL, x_BLD
  if PAIR_VIEWS[0] in batch:
    ids_a, mask_a, ids_b, mask_b = (batch[name] for name in PAIR_VIEWS)
  else:
    ids_a, mask_a, ids_b, mask_b = split_pair(batch["input_ids"], batch["token_type_ids"],
                                              batch["attention_mask"])
  chex.assert_rank(ids_a, 2)
  chex.assert_equal_shape([ids_a, mask_a, ids_b, mask_b])
  ids_XL, mask_XL = jnp.concatenate([ids_a, ids_b]), jnp.concatenate([mask_a, mask_b])
  embedded_XLD = embed_fn(ids_XL)
  if EXACT_MATCH_PARAM in norm:
    flags_XL = jnp.concatenate(exact_match_flags(ids_a, mask_a, ids_b, mask_b))
    embedded_XLD = embedded_XLD + flags_XL[..., None] * norm[EXACT_MATCH_PARAM]
  x_XLD = _normalise_and_drop(norm, embedded_XLD, mask_XL, train=train, dropout=dropout,
                              key=key)
  if encodes_separately(mode):
    return x_XLD, x_XLD, mask_XL, x_XLD
  a_BLD, b_BLD = x_XLD[:ids_a.shape[0]], x_XLD[ids_a.shape[0]:]
  union_BL = jnp.maximum(mask_a, mask_b)
  return a_BLD, b_BLD, union_BL, 0.5 * (a_BLD + b_BLD)


def partner(x_X: jax.Array) -> jax.Array:
  """Each row's other sentence in a batch of 2B (A rows, then B rows): B's, then A's."""
  half = x_X.shape[0] // 2
  return jnp.concatenate([x_X[half:], x_X[:half]])


# Attention logits where the other sentence has padding: finite, so that a row whose partner
# is empty (a padding row of the batch) gets a uniform average of zeros, not NaN; any real
# partner token outweighs it by exp(1e30).
NO_PARTNER_TOKEN = -1e30


def cross_align(x_XLD: jax.Array, mask_XL: jax.Array) -> jax.Array:
  """x~ [X, L, D]: each token's soft alignment with the other sentence's tokens at the same
  layer, sum_s softmax_s(x_t . y_s / sqrt(D)) y_s over the partner's real tokens s (attend
  mode; no parameters). Padding of either sentence never reaches a real token's x~."""
  y_XLD, ymask_XL = partner(x_XLD), partner(mask_XL)
  scores_XLS = jnp.einsum("xld,xsd->xls", x_XLD, y_XLD) / np.sqrt(x_XLD.shape[-1])
  scores_XLS = jnp.where(ymask_XL[:, None, :] > 0, scores_XLS, NO_PARTNER_TOKEN)
  return jnp.einsum("xls,xsd->xld", jax.nn.softmax(scores_XLS, axis=-1), y_XLD)


def pool_layer(x_XLD: jax.Array, mask_XL: jax.Array, mode: str) -> jax.Array:
  """What heads and probes keep of one layer [X, L, D]: [X, P] (P = pooled_width). The
  masked mean; in attend mode also the masked means of x * x~ and |x - x~| (cross_align)."""
  mean_XD = array_utils.masked_mean(x_XLD, mask_XL)
  if mode != "attend":
    return mean_XD
  aligned_XLD = cross_align(x_XLD, mask_XL)
  return jnp.concatenate([mean_XD, array_utils.masked_mean(x_XLD * aligned_XLD, mask_XL),
                          array_utils.masked_mean(jnp.abs(x_XLD - aligned_XLD), mask_XL)], axis=-1)


def features(pooled_XJP: jax.Array, mode: str) -> jax.Array:
  """What heads and probes read from pooled layers [X, J, P]: [B, J, F] (F = feature_width).

  siamese: [u, v, |u - v|, u * v] of sentence A's (u) and B's (v) pooled vectors; attend: the
  same of the two means, then A's and B's alignment statistics (pool_layer); the other
  modes: the pooled vector itself. tanh is applied by the caller (after any layer mix).
  """
  if not encodes_separately(mode):
    return pooled_XJP
  half = pooled_XJP.shape[0] // 2
  a_BJP, b_BJP = pooled_XJP[:half], pooled_XJP[half:]
  width = pooled_XJP.shape[-1] // 3 if mode == "attend" else pooled_XJP.shape[-1]
  u, v = a_BJP[..., :width], b_BJP[..., :width]
  out = [u, v, jnp.abs(u - v), u * v]
  if mode == "attend":
    out += [a_BJP[..., width:], b_BJP[..., width:]]
  return jnp.concatenate(out, axis=-1)
