"""The AdaBERT supernet: factorised embedding, k_max stacked cells, per-depth heads and probes.

Structure (the paper's, with DARTS conventions where it is silent):
- Embedding: the teacher's frozen word and position tables (passed separately as `emb_tables`,
  never part of the trainable params) summed, then a learned projection [Dt, hidden] + bias,
  a LayerNorm and dropout (nas/inputs.py).
- Cell k (1..k_max) has two input nodes, the outputs of cells k-2 and k-1; "cells" -1 and 0 are
  the two embedding streams, set by the input mode (cfg.input_mode, nas/inputs.py): for a
  single sentence both are the embedded sentence; for a pair, "siamese" encodes each sentence
  on its own with the same cells (a batch of 2B; "attend" likewise, its heads also reading
  each layer's cross-sentence alignment) and "aligned" (the authors') feeds sentence A
  and sentence B, each from position 0, as the two inputs.
- Nodes are numbered 0, 1 (the inputs) and 2 .. 2+N-1 (intermediate). Intermediate node j gets
  one edge from every earlier node: 2 + 3 + 4 = 9 edges for N = 3, in the order of `cell_edges`.
  Every op uses the mask cell_inputs gives the cells (in aligned mode the union of the two
  sentences' masks: each stream is simply zero where its sentence has ended).
- The cell output is a softmax-weighted sum (learned logits per cell) of its intermediate nodes,
  layer-normalised without affine parameters (ops.normalize_tokens: keeps the scale from
  compounding over cells along identity/pooling paths), followed by dropout when training.
- One alpha_ops [E, NUM_OPS] shared by all cells; each cell has its own weights for every op on
  every edge (stored stacked, leading axes [k_max, E], so the cells run under a lax.scan and
  the edges under an inner one: the edge body compiles once instead of k_max * E times).
- Heads: for each depth k in 1..k_max, a softmax mix (learned logits) of the masked-mean-pooled
  layers 0..k (layer 0 = the embedded input, layer i = cell i; inputs.pool_layer), its
  features (in siamese mode [u, v, |u - v|, u * v] of the two sentences; inputs.features),
  tanh and a linear layer to classes.
  The output logits are the heads mixed by the depth one-hot. One student probe (tanh, linear)
  per cell gives layer_logits [B, k_max, C] for the distillation loss; with
  cfg.embedding_probe one more reads layer 0 (embedding_probe_logits [B, C]), which the
  authors' layer map distils from the teacher's embedding-layer probe.

Params: {"weights": {...every trainable array...}, "arch": {"alpha_ops", "alpha_depth"}}, so
optax.partition can label leaves by their top-level key.

Estimators of the two modes (cfg.mode), both fed the same straight-through sample:
- "all_ops" (the authors' code): every op on every edge and every cell is computed and the edge
  output is sum_o onehot[e, o] * op_o(x). The forward value is that of the sampled op only, but
  d loss / d onehot[e, o] = <dL/dy, op_o(x)> is available for every o, so the straight-through
  gradient to alpha uses every op's output (lower variance, ~NUM_OPS x the compute and memory).
  Likewise all depths' heads are computed and mixed by the depth one-hot.
- "sampled" (GDAS-style): on each edge only the sampled op runs (lax.switch on its index; one
  sample per step for the whole batch) and its output is scaled by onehot[e, index] (== 1), so
  d loss / d onehot is known only at the sampled entry; the softmax inside the one-hot still
  passes it to every alpha of the row. Cells deeper than the sampled depth are skipped
  (lax.cond) and the depth one-hot is restricted to its sampled entry (returned as
  "depth_weights", which the loss also uses), so unsampled depths (whose cells were not run)
  contribute no gradient. Much cheaper per step; a noisier straight-through estimate (each step
  sees one op per edge) that needs more steps for the same signal.
A fixed architecture is the same call with exact one-hots (no noise) as `sample`: in either
mode the output then equals that of the discrete network.
"""

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from adabert_jax.nas import inputs, ops

Params = dict[str, Any]
MODES = ("sampled", "all_ops")
NUM_INPUT_NODES = 2


def cell_edges(num_nodes: int) -> tuple[tuple[int, int], ...]:
  """(node, from_node) for every edge of a cell, node-major: ((2,0), (2,1), (3,0), ...)."""
  return tuple((NUM_INPUT_NODES + j, src) for j in range(num_nodes)
               for src in range(NUM_INPUT_NODES + j))


@dataclasses.dataclass(frozen=True)
class SupernetConfig:
  """Static configuration of the supernet (the paper's values are the defaults).

  remat: recompute each cell's forward pass in the backward pass (jax.checkpoint) instead of
    storing its activations; trades ~1/3 more compute for ~k_max x less activation memory,
    which all_ops mode needs at the paper's batch and length.
  unroll: run the cells and edges as Python loops instead of lax.scan. Compiles k_max * E
    copies of the edge body (much slower to compile). With it, sample indices that are
    trace-time constants select their op and depth in Python (no lax.switch / lax.cond), so
    only the sampled ops are traced: XLA's cost analysis (which counts a loop body once and a
    conditional at its dearest branch) then counts exactly one sample's work. The benchmark
    uses this; a search does not need it.
  embedding_probe: a student probe on layer 0 (the embedded input) as well as on every cell,
    for the authors' layer map (losses.LossConfig.layer_kd_map="authors").
  exact_match: each word of a pair also carries whether it occurs in the other sentence
    (inputs.exact_match_flags), as a learnt vector added to its embedding; modes that read
    the two views only.
  """
  hidden: int = 128
  k_max: int = 8
  num_nodes: int = 3
  dropout: float = 0.3
  mode: str = "sampled"
  remat: bool = False
  unroll: bool = False
  input_mode: str = "single"
  embedding_probe: bool = True
  exact_match: bool = False

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"SupernetConfig.mode must be one of {MODES}, got {self.mode!r}")
    if self.input_mode not in inputs.INPUT_MODES:
      raise ValueError(f"SupernetConfig.input_mode must be one of {inputs.INPUT_MODES}, got "
                       f"{self.input_mode!r}")
    for field in ("hidden", "k_max", "num_nodes"):
      if getattr(self, field) < 1:
        raise ValueError(f"SupernetConfig.{field} must be >= 1, got {getattr(self, field)}")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f"SupernetConfig.dropout must be in [0, 1), got {self.dropout}")
    if self.exact_match and not inputs.reads_views(self.input_mode):
      raise ValueError(f"SupernetConfig.exact_match needs a pair mode that reads the two "
                       f"sentences as views, not {self.input_mode!r}")

  @property
  def edges(self) -> tuple[tuple[int, int], ...]:
    return cell_edges(self.num_nodes)

  @property
  def num_edges(self) -> int:
    return len(self.edges)

  @property
  def feature_width(self) -> int:
    """What each head and probe reads (inputs.feature_width)."""
    return inputs.feature_width(self.hidden, self.input_mode)


def init_supernet(key: jax.Array, cfg: SupernetConfig, teacher_width: int,
                  num_classes: int) -> Params:
  """All supernet parameters: {"weights": {...}, "arch": {"alpha_ops", "alpha_depth"}}."""
  h, k_max, e, f = cfg.hidden, cfg.k_max, cfg.num_edges, cfg.feature_width
  keys = jax.random.split(key, 6)
  weights = {
      "embedding": {
          "kernel": ops.flat_normal(keys[0], (teacher_width, h)) / teacher_width ** 0.5,
          "bias": jnp.zeros((h,)),
          **inputs.init_embedding_norm(h),
      },
      "cells": {
          "ops": ops.init_all_ops(keys[1], h, lead_shape=(k_max, e)),  # leaves [k_max, E, ...]
          "node_logits": jnp.zeros((k_max, cfg.num_nodes)),
      },
      "heads": {
          "mix_logits": jnp.zeros((k_max, k_max + 1)),
          "kernel": ops.flat_normal(keys[2], (k_max, f, num_classes)) / f ** 0.5,
          "bias": jnp.zeros((k_max, num_classes)),
      },
      "probes": {
          "kernel": ops.flat_normal(keys[3], (k_max, f, num_classes)) / f ** 0.5,
          "bias": jnp.zeros((k_max, num_classes)),
      },
  }
  if cfg.exact_match:  # its own key too
    weights["embedding"].update(inputs.init_exact_match(jax.random.fold_in(keys[0], 1), h))
  if cfg.embedding_probe:  # its own key, so the other parameters are the same without it
    weights["probes"]["embedding_kernel"] = ops.flat_normal(
        jax.random.fold_in(keys[3], 1), (f, num_classes)) / f ** 0.5
    weights["probes"]["embedding_bias"] = jnp.zeros((num_classes,))
  # DARTS's init: near-uniform architecture distributions, symmetry broken by tiny noise.
  arch = {
      "alpha_ops": 1e-3 * ops.flat_normal(keys[4], (e, ops.NUM_OPS)),
      "alpha_depth": 1e-3 * ops.flat_normal(keys[5], (k_max,)),
  }
  return {"weights": weights, "arch": arch}


def embed(embedding: Params, emb_tables: dict[str, jax.Array],
          input_ids_BL: jax.Array) -> jax.Array:
  """(word[ids] + position[arange(L)]) @ kernel + bias -> x_BLD. The tables are not trained."""
  word_VT, position_PT = emb_tables["word"], emb_tables["position"]
  length = input_ids_BL.shape[1]
  if length > position_PT.shape[0]:
    raise ValueError(f"Sequences of length {length} are longer than the teacher's "
                     f"{position_PT.shape[0]} positions: lower data.max_len")
  chex.assert_shape(embedding["kernel"], (word_VT.shape[1], None))
  tables = jax.lax.stop_gradient((word_VT, position_PT))
  summed_BLT = jnp.take(tables[0], input_ids_BL, axis=0) + tables[1][None, :length]
  return summed_BLT @ embedding["kernel"] + embedding["bias"]


def _edge_all_ops(edge_params, x_BLD, mask_BL, weights_O, index):
  del index
  out_BLD = jnp.zeros_like(x_BLD)
  for o, name in enumerate(ops.OP_NAMES):
    if o != ops.ZERO_INDEX:  # zero contributes weight * 0; its alpha still gets the
      # softmax-coupled gradient through the other entries.
      out_BLD = out_BLD + weights_O[o] * ops.apply_op(name, edge_params[name], x_BLD, mask_BL)
  return out_BLD


def _static_int(x) -> int | None:
  """x as a Python int if it is known at trace time, else None.

  Known means a Python or NumPy value: in jax 0.10 even jnp.asarray(constant) inside jit is a
  tracer, so the loops index NumPy arrays and pinned samples must hold NumPy indices.
  """
  try:
    return int(x)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
    return None


def _edge_sampled(edge_params, x_BLD, mask_BL, weights_O, index):
  static_index = _static_int(index)
  if static_index is not None:  # a constant index (unrolled, pinned): no switch needed
    name = ops.OP_NAMES[static_index]
    return weights_O[static_index] * ops.apply_op(name, edge_params[name], x_BLD, mask_BL)
  branches = [functools.partial(lambda n, p, x, m: ops.apply_op(n, p[n], x, m), name)
              for name in ops.OP_NAMES]
  return weights_O[index] * lax.switch(index, branches, edge_params, x_BLD, mask_BL)


def _scan(body, carry, xs, unroll: bool):
  """lax.scan, or (unroll=True) the same loop in Python, slicing xs at Python ints so that
  constant inputs stay constants inside the body."""
  if not unroll:
    return lax.scan(body, carry, xs)
  length = jax.tree.leaves(xs)[0].shape[0]
  ys = []
  for i in range(length):
    carry, y = body(carry, jax.tree.map(lambda a, i=i: a[i], xs))
    ys.append(y)
  if ys[0] is None:
    return carry, None
  return carry, jax.tree.map(lambda *y: jnp.stack(y), *ys)


def _cell(cell_params, s0_BLD, s1_BLD, mask_BL, op_weights_EO, op_index_E, cfg):
  """One cell's output (before dropout) from its two input nodes.

  The edges run under a lax.scan over a buffer of the cell's node states [S, B, L, D]: edge e
  reads node from_e and adds its output into node to_e. This is valid because the edges are
  node-major (every edge into node j comes before any edge out of it), and it compiles the
  edge body (10 ops) once instead of E times. Only each edge's input is kept for the backward
  pass (the buffer is used linearly), so it costs no more memory than unrolling.
  """
  edge_fn = _edge_all_ops if cfg.mode == "all_ops" else _edge_sampled
  # NumPy, not jnp: constants stay trace-time constants (see _static_int).
  dst_E = np.asarray([node for node, _ in cfg.edges], np.int32)
  src_E = np.asarray([src for _, src in cfg.edges], np.int32)
  intermediate = jnp.zeros((cfg.num_nodes,) + s0_BLD.shape, s0_BLD.dtype)
  states_SBLD = jnp.concatenate([s0_BLD[None], s1_BLD[None], intermediate], axis=0)

  def edge_body(states_SBLD, edge_xs):
    edge_params, src, dst, weights_O, index = edge_xs
    x_BLD = lax.dynamic_index_in_dim(states_SBLD, src, keepdims=False)
    out_BLD = edge_fn(edge_params, x_BLD, mask_BL, weights_O, index)
    node_BLD = lax.dynamic_index_in_dim(states_SBLD, dst, keepdims=False)
    return lax.dynamic_update_index_in_dim(states_SBLD, node_BLD + out_BLD, dst, 0), None

  states_SBLD, _ = _scan(edge_body, states_SBLD,
                        (cell_params["ops"], src_E, dst_E, op_weights_EO, op_index_E),
                        cfg.unroll)
  node_weights_N = jax.nn.softmax(cell_params["node_logits"])
  return ops.normalize_tokens(
      jnp.einsum("n,nbld->bld", node_weights_N, states_SBLD[NUM_INPUT_NODES:]))


def _check_sample(sample: dict[str, jax.Array], cfg: SupernetConfig) -> None:
  chex.assert_shape(sample["ops"], (cfg.num_edges, ops.NUM_OPS))
  chex.assert_shape(sample["ops_index"], (cfg.num_edges,))
  chex.assert_shape(sample["depth"], (cfg.k_max,))
  chex.assert_shape(sample["depth_index"], ())


def effective_depth_weights(sample: dict[str, jax.Array], cfg: SupernetConfig) -> jax.Array:
  """The depth weights [k_max] the heads and the distillation loss are mixed with.

  all_ops: the straight-through one-hot itself. sampled: the weights restricted to the sampled
  entry and scaled to 1 there (for a straight-through one-hot the same forward value and
  gradient; for gumbel.fair_sample's uniform weights the deepest head's logits, not 1/k_max
  of them), since deeper cells were skipped and shallower heads are not the sampled path.
  """
  if cfg.mode == "all_ops":
    return sample["depth"]
  restricted_K = sample["depth"] * jax.nn.one_hot(sample["depth_index"], cfg.k_max,
                                                  dtype=sample["depth"].dtype)
  return restricted_K / jax.lax.stop_gradient(jnp.sum(restricted_K))


def ran_depth_weights(sample: dict[str, jax.Array], cfg: SupernetConfig) -> jax.Array:
  """The depth weights [k_max] over the heads whose cells ran: all of them in all_ops mode,
  those up to the sampled depth in sampled mode (the same forward value, the one-hot; the
  loss mixes per-head losses with them, losses.LossConfig.depth_mix="losses")."""
  if cfg.mode == "all_ops":
    return sample["depth"]
  ran_K = jnp.arange(cfg.k_max) <= sample["depth_index"]
  return sample["depth"] * ran_K.astype(sample["depth"].dtype)


def supernet_apply(params: Params, emb_tables: dict[str, jax.Array], batch: dict[str, Any],
                   sample: dict[str, jax.Array], cfg: SupernetConfig, *, train: bool,
                   dropout_key: jax.Array | None = None) -> dict[str, jax.Array]:
  """Runs the supernet under an architecture sample (see the module docstring).

  batch: input_ids, token_type_ids, attention_mask, each [B, L] int (other keys ignored).
  sample: from gumbel.sample_architecture, or exact one-hots for a fixed architecture.
  Returns logits [B, C] (the heads mixed by depth), layer_logits [B, k_max, C] (per-cell
  probes), head_logits [B, k_max, C] (head of depth k at index k-1), depth_weights [k_max]
  (effective_depth_weights), ran_depth_weights [k_max] (ran_depth_weights),
  pooled [X, k_max + 1, P] (layer 0 = embedding; X = B, or 2B in siamese and attend mode: A
  then B; P = inputs.pooled_width: D, or 3D in attend mode).
  """
  weights = params["weights"]
  _check_sample(sample, cfg)
  if train and cfg.dropout > 0 and dropout_key is None:
    raise ValueError("supernet_apply(train=True) with dropout needs a dropout_key")
  batch_size = inputs.batch_size(batch)
  h, k_max = cfg.hidden, cfg.k_max

  stream_a_XLD, stream_b_XLD, cell_mask_XL, layer0_XLD = inputs.cell_inputs(
      lambda ids: embed(weights["embedding"], emb_tables, ids), weights["embedding"], batch,
      cfg.input_mode, train=train, dropout=cfg.dropout, dropout_key=dropout_key)
  op_weights_EO, op_index_E = sample["ops"], sample["ops_index"]
  depth_weights_K = effective_depth_weights(sample, cfg)

  def run_cell(cell_params, s0_BLD, s1_BLD, cell_index):
    out_BLD = _cell(cell_params, s0_BLD, s1_BLD, cell_mask_XL, op_weights_EO, op_index_E,
                    cfg)
    if train and cfg.dropout > 0:
      # Drawn flat: see ops.flat_normal on the PRNG's rank-dependent compile time.
      keep_BLD = jax.random.bernoulli(jax.random.fold_in(dropout_key, cell_index),
                                      1.0 - cfg.dropout, (out_BLD.size,)).reshape(out_BLD.shape)
      out_BLD = jnp.where(keep_BLD, out_BLD / (1.0 - cfg.dropout), 0.0)
    return out_BLD, inputs.pool_layer(out_BLD, cell_mask_XL, cfg.input_mode)

  if cfg.remat:
    run_cell = jax.checkpoint(run_cell)
  pooled_shape = (stream_a_XLD.shape[0], inputs.pooled_width(h, cfg.input_mode))

  def scan_body(carry, cell_xs):
    s0_BLD, s1_BLD = carry
    cell_params, cell_index = cell_xs
    if cfg.mode == "sampled":
      # Cells deeper than the sampled depth feed nothing the sampled head reads: skip them
      # (their output and pooled layer are zeros).
      run = lambda: run_cell(cell_params, s0_BLD, s1_BLD, cell_index)
      skip = lambda: (jnp.zeros_like(s1_BLD), jnp.zeros(pooled_shape, s1_BLD.dtype))
      static_cell, static_depth = _static_int(cell_index), _static_int(sample["depth_index"])
      if static_cell is not None and static_depth is not None:
        out_BLD, pooled_XP = run() if static_cell <= static_depth else skip()
      else:
        out_BLD, pooled_XP = lax.cond(cell_index <= sample["depth_index"], run, skip)
    else:
      out_BLD, pooled_XP = run_cell(cell_params, s0_BLD, s1_BLD, cell_index)
    return (s1_BLD, out_BLD), pooled_XP

  _, pooled_KXP = _scan(scan_body, (stream_a_XLD, stream_b_XLD),
                        (weights["cells"], np.arange(k_max, dtype=np.int32)), cfg.unroll)
  pooled_XKP = jnp.concatenate(
      [inputs.pool_layer(layer0_XLD, cell_mask_XL, cfg.input_mode)[:, None],
       jnp.swapaxes(pooled_KXP, 0, 1)], axis=1)
  chex.assert_shape(pooled_XKP, (layer0_XLD.shape[0], k_max + 1,
                                 inputs.pooled_width(h, cfg.input_mode)))

  # Head k (index k-1) mixes layers 0..k: mask the deeper layers out of its softmax.
  heads = weights["heads"]
  visible_KJ = jnp.arange(k_max + 1)[None, :] <= jnp.arange(1, k_max + 1)[:, None]
  mix_KJ = jax.nn.softmax(jnp.where(visible_KJ, heads["mix_logits"], -jnp.inf), axis=-1)
  head_in_BKF = jnp.tanh(inputs.features(jnp.einsum("kj,xjp->xkp", mix_KJ, pooled_XKP),
                                         cfg.input_mode))
  head_logits_BKC = jnp.einsum("bkf,kfc->bkc", head_in_BKF, heads["kernel"]) + heads["bias"]
  logits_BC = jnp.einsum("k,bkc->bc", depth_weights_K, head_logits_BKC)

  probes = weights["probes"]
  probe_in_BKF = jnp.tanh(inputs.features(pooled_XKP[:, 1:], cfg.input_mode))
  layer_logits_BKC = (jnp.einsum("bkf,kfc->bkc", probe_in_BKF, probes["kernel"])
                      + probes["bias"])
  num_classes = heads["bias"].shape[-1]
  chex.assert_shape([head_logits_BKC, layer_logits_BKC], (batch_size, k_max, num_classes))
  chex.assert_shape(logits_BC, (batch_size, num_classes))
  extra = {}
  if "embedding_kernel" in probes:
    extra["embedding_probe_logits"] = (
        jnp.tanh(inputs.features(pooled_XKP[:, 0], cfg.input_mode)) @ probes["embedding_kernel"]
        + probes["embedding_bias"])
  return {**extra, "logits": logits_BC, "layer_logits": layer_logits_BKC,
          "head_logits": head_logits_BKC, "depth_weights": depth_weights_K,
          "ran_depth_weights": ran_depth_weights(sample, cfg),
          "pooled": pooled_XKP}
