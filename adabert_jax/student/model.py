"""The discrete student: only the genotype's ops and edges, K cells, one head.

Params (training form):
  {"embedding": {"kernel" [Dt, H], "bias" [H],           # projection of the frozen teacher tables
                 "ln_scale" [H], "ln_bias" [H],          # LayerNorm after it (nas/inputs.py)
                 "match" [H]},                           # exact match, if the model has it
   "cells": [{"edges": [op params per genotype edge], "node_logits": [N]}] * K,
   "head": {"mix_logits" [K+1], "kernel" [F, C], "bias" [C]},
   "probes": {"kernel" [K, F, C], "bias" [K, C]}}        # for layer-wise KD while training
F is the feature width: H, 4H for the siamese pair mode or 8H for attend (nas/inputs.py;
the genotype's input_mode says how a pair is read). The exported form replaces the projection by the
projected tables {"embedding": {"word" [V, H], "position" [P, H], "ln_scale", "ln_bias"}} (and
"match" if present) and drops the probes: the deployable model needs neither the teacher's
384-wide tables nor the KD heads.

The computation mirrors the supernet's under a fixed architecture exactly (tested), so
weights can be inherited from the search.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from adabert_jax.nas import inputs, ops, supernet
from adabert_jax.nas.genotype import Genotype

Params = dict[str, Any]


def _edges_into(geno: Genotype, node: int) -> list[tuple[int, int, str]]:
  return [(i, src, name) for i, (dst, src, name) in enumerate(geno.ops) if dst == node]


def init_student(key: jax.Array, geno: Genotype, hidden: int, teacher_width: int,
                 num_classes: int, exact_match: bool = False) -> Params:
  """Fresh weights for the genotype (the 'train from scratch' baseline); `exact_match` as in
  supernet.SupernetConfig."""
  if exact_match and not inputs.reads_views(geno.input_mode):
    raise ValueError(f"exact_match needs a pair mode that reads the two sentences as views, "
                     f"not {geno.input_mode!r}")
  k, f = geno.depth, inputs.feature_width(hidden, geno.input_mode)
  keys = jax.random.split(key, 4 + k)
  cells = []
  for c in range(k):
    edge_keys = jax.random.split(keys[4 + c], len(geno.ops))
    cells.append({"edges": [ops.init_op(name, edge_keys[i], hidden)
                            for i, (_, _, name) in enumerate(geno.ops)],
                  "node_logits": jnp.zeros((geno.num_nodes,))})
  embedding = {"kernel": jax.random.normal(keys[0], (teacher_width, hidden)) / teacher_width ** 0.5,
               "bias": jnp.zeros((hidden,)), **inputs.init_embedding_norm(hidden)}
  if exact_match:
    embedding.update(inputs.init_exact_match(jax.random.fold_in(keys[0], 1), hidden))
  return {
      "embedding": embedding,
      "cells": cells,
      "head": {"mix_logits": jnp.zeros((k + 1,)),
               "kernel": jax.random.normal(keys[1], (f, num_classes)) / f ** 0.5,
               "bias": jnp.zeros((num_classes,))},
      "probes": {"kernel": jax.random.normal(keys[2], (k, f, num_classes)) / f ** 0.5,
                 "bias": jnp.zeros((k, num_classes))},
  }


def from_supernet(supernet_params: Params, geno: Genotype,
                  cfg: supernet.SupernetConfig) -> Params:
  """The searched weights of the genotype's ops, cells 1..K and head K (the paper's way)."""
  if geno.input_mode != cfg.input_mode:
    raise ValueError(f"genotype input_mode {geno.input_mode!r} differs from the supernet's "
                     f"{cfg.input_mode!r}")
  w = jax.device_get(supernet_params["weights"])
  k = geno.depth
  edge_index = {edge: e for e, edge in enumerate(cfg.edges)}
  cells = []
  for c in range(k):
    edges = []
    for dst, src, name in geno.ops:
      e = edge_index[(dst, src)]
      edges.append(jax.tree.map(lambda a, c=c, e=e: np.asarray(a[c, e]),
                                w["cells"]["ops"][name]))
    cells.append({"edges": edges, "node_logits": np.asarray(w["cells"]["node_logits"][c])})
  heads = w["heads"]
  return {
      "embedding": jax.tree.map(np.asarray, w["embedding"]),
      "cells": cells,
      "head": {"mix_logits": np.asarray(heads["mix_logits"][k - 1, :k + 1]),
               "kernel": np.asarray(heads["kernel"][k - 1]),
               "bias": np.asarray(heads["bias"][k - 1])},
      "probes": {"kernel": np.asarray(w["probes"]["kernel"][:k]),
                 "bias": np.asarray(w["probes"]["bias"][:k])},
  }


def export(params: Params, emb_tables: dict[str, Any]) -> Params:
  """The deployable form: embedding folded into projected [V, H] and [P, H] tables."""
  emb = params["embedding"]
  word = np.asarray(emb_tables["word"], np.float32) @ np.asarray(emb["kernel"])
  position = (np.asarray(emb_tables["position"], np.float32) @ np.asarray(emb["kernel"])
              + np.asarray(emb["bias"]))
  out = {k: v for k, v in params.items() if k not in ("embedding", "probes")}
  out["embedding"] = {"word": word.astype(np.float32), "position": position.astype(np.float32),
                      **{k: np.asarray(emb[k], np.float32) for k in
                         ("ln_scale", "ln_bias", inputs.EXACT_MATCH_PARAM) if k in emb}}
  return out


def _embed(embedding: Params, emb_tables: dict | None, ids_BL: jax.Array) -> jax.Array:
  length = ids_BL.shape[1]
  if "word" in embedding:  # exported: tables already projected
    return jnp.take(embedding["word"], ids_BL, axis=0) + embedding["position"][None, :length]
  if emb_tables is None:
    raise ValueError("A student in training form needs the teacher's emb_tables.")
  return supernet.embed(embedding, emb_tables, ids_BL)


def student_apply(params: Params, batch: dict[str, Any], geno: Genotype, *,
                  emb_tables: dict | None = None, train: bool = False,
                  dropout: float = 0.0, dropout_key: jax.Array | None = None
                  ) -> dict[str, jax.Array]:
  """logits [B, C], and layer_logits [B, K, C] when the params have probes."""
  mode = geno.input_mode
  s0_XLD, s1_XLD, mask_XL, layer0_XLD = inputs.cell_inputs(
      lambda ids: _embed(params["embedding"], emb_tables, ids), params["embedding"], batch,
      mode, train=train, dropout=dropout, dropout_key=dropout_key)
  pooled = [inputs.pool_layer(layer0_XLD, mask_XL, mode)]
  first_node = supernet.NUM_INPUT_NODES
  for c, cell in enumerate(params["cells"]):
    states = [s0_XLD, s1_XLD]
    for node in range(first_node, first_node + geno.num_nodes):
      total = jnp.zeros_like(s0_XLD)
      for i, src, name in _edges_into(geno, node):
        total = total + ops.apply_op(name, cell["edges"][i], states[src], mask_XL)
      states.append(total)
    node_weights = jax.nn.softmax(cell["node_logits"])
    out_XLD = ops.normalize_tokens(
        jnp.einsum("n,nbld->bld", node_weights, jnp.stack(states[first_node:])))
    if train and dropout > 0:
      keep = jax.random.bernoulli(jax.random.fold_in(dropout_key, c), 1.0 - dropout,
                                  out_XLD.shape)
      out_XLD = jnp.where(keep, out_XLD / (1.0 - dropout), 0.0)
    pooled.append(inputs.pool_layer(out_XLD, mask_XL, mode))
    s0_XLD, s1_XLD = s1_XLD, out_XLD
  pooled_XJP = jnp.stack(pooled, axis=1)  # [X, K+1, P], layer 0 = embedding
  head = params["head"]
  mixed_X1P = jnp.einsum("j,xjp->xp", jax.nn.softmax(head["mix_logits"]), pooled_XJP)[:, None]
  head_in_BF = jnp.tanh(inputs.features(mixed_X1P, mode))[:, 0]
  out = {"logits": head_in_BF @ head["kernel"] + head["bias"]}
  if "probes" in params:
    probe_in_BKF = jnp.tanh(inputs.features(pooled_XJP[:, 1:], mode))
    out["layer_logits"] = (jnp.einsum("bkf,kfc->bkc", probe_in_BKF,
                                      params["probes"]["kernel"]) + params["probes"]["bias"])
  chex.assert_shape(out["logits"], (inputs.batch_size(batch), None))
  return out
