"""AdaBERT's search loss: L = (1 - gamma) * L_CE + gamma * L_KD + beta * L_E.

- L_CE: cross-entropy with the gold labels. How the depth sample enters (cfg.depth_mix):
  * "losses" (the authors' code, `torch.dot(sampled_weights_layer, loss_ce_all)`): the CE of
    every depth's head, mixed by the depth weights, so d L / d depth[k] is head k's loss and
    alpha_depth learns which depth predicts best. In sampled mode the mix covers the heads up
    to the sampled depth (their cells ran; outputs["ran_depth_weights"]).
  * "logits": the heads' logits mixed by the depth one-hot, then one CE; d L / d depth[k] is
    <dL/dz, z_k>, a "rescale these logits" derivative near zero for a fitted head.
- L_KD = (1 - final_kd_weight) * L_KD_layers + final_kd_weight * L_KD_final; with the default
  final_kd_weight = 0.5 this is the average of the two terms (the paper adds a final-layer term
  to the hierarchical one without giving the mix).
  * L_KD_layers (attentive hierarchical transfer): for a student of depth K, the matched
    layers (cfg.layer_kd_map) are
      "ceil":    student layer i in 1..K and teacher layer t(i) = ceil(i * Lt / K);
      "authors": student layer j in 0..K-2 (0 = the embedded input, read by the supernet's
                 embedding probe) and teacher layer floor(j * Lt / k_max) (0 = the teacher's
                 embedding-layer probe); none at K = 1 (autokd-torch search.py);
    per matched layer
    T^2 * KL(softmax(teacher_probe_t(i) / T) || softmax(student_probe_i / T)), weighted per
    example by softmax over the K matched layers of -CE(teacher probe t(i), gold label), so
    layers whose teacher probe predicts the example well count more. It is computed for every
    K in 1..k_max and mixed with the depth weights (as L_CE's), so the gradient reaches
    alpha_depth.
  * L_KD_final: T^2 * KL(softmax(teacher_logits / T) || softmax(logits / T)), per head and
    mixed like L_CE.
- L_E = (K / k_max) * mean over edges of the sampled op's normalised cost, from the
  straight-through one-hots (K = sum_k depth[k] * k), so it has gradients to both alphas. It
  uses the full one-hots in both supernet modes: costs are constants, so every op's cost can
  inform the gradient at no extra compute.
Every per-example term is weighted by batch["weight"] when present (0 for padding examples).
"""

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np


DEPTH_MIXES = ("losses", "logits")
LAYER_KD_MAPS = ("authors", "ceil")


@dataclasses.dataclass(frozen=True)
class LossConfig:
  gamma: float = 0.8
  beta: float = 4.0
  temperature: float = 1.0
  final_kd_weight: float = 0.5
  depth_mix: str = "losses"
  layer_kd_map: str = "authors"

  def __post_init__(self):
    if self.depth_mix not in DEPTH_MIXES:
      raise ValueError(f"LossConfig.depth_mix must be one of {DEPTH_MIXES}, got "
                       f"{self.depth_mix!r}")
    if self.layer_kd_map not in LAYER_KD_MAPS:
      raise ValueError(f"LossConfig.layer_kd_map must be one of {LAYER_KD_MAPS}, got "
                       f"{self.layer_kd_map!r}")
    if not 0.0 <= self.gamma <= 1.0:
      raise ValueError(f"LossConfig.gamma must be in [0, 1], got {self.gamma}")
    if not 0.0 <= self.final_kd_weight <= 1.0:
      raise ValueError(f"LossConfig.final_kd_weight must be in [0, 1], got "
                       f"{self.final_kd_weight}")
    if self.temperature <= 0:
      raise ValueError(f"LossConfig.temperature must be positive, got {self.temperature}")


def cross_entropy(logits_XC: jax.Array, labels_X: jax.Array) -> jax.Array:
  """Per-example cross-entropy over the last axis; labels have the leading shape of logits."""
  chex.assert_equal_shape_prefix([logits_XC, labels_X], labels_X.ndim)
  log_probs = jax.nn.log_softmax(logits_XC, axis=-1)
  return -jnp.take_along_axis(log_probs, labels_X[..., None].astype(jnp.int32), axis=-1)[..., 0]


def kl_divergence(teacher_logits: jax.Array, student_logits: jax.Array,
                  temperature: float = 1.0) -> jax.Array:
  """T^2 * KL(softmax(teacher / T) || softmax(student / T)) over the last axis."""
  chex.assert_equal_shape([teacher_logits, student_logits])
  log_p = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  log_q = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  return temperature ** 2 * jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)


def teacher_layer_map(k_max: int, num_teacher_layers: int, how: str = "ceil"
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Static layer matching for every depth K in 1..k_max (the module docstring's forms).

  Returns (teacher_index [k_max, k_max] int32, valid [k_max, k_max] bool): row K-1, column i-1
  holds the teacher layer (an index into probe_logits, whose 0 is the embedding layer)
  matched to the student's column i-1 where valid. "ceil": columns are cells 1..k_max,
  matched to ceil(i * Lt / K) for i <= K. "authors": columns are the student's layers
  0..k_max-1 (0 = the embedded input), column j matched to floor(j * Lt / k_max) for
  j <= K - 2.
  """
  depth = np.arange(1, k_max + 1)[:, None]
  layer = np.arange(1, k_max + 1)[None, :]
  if how == "ceil":
    valid = layer <= depth
    # Integer ceil(i * Lt / K), exact (no float rounding).
    index = -(-(layer * num_teacher_layers) // depth)
  elif how == "authors":
    valid = layer <= depth - 1
    index = np.broadcast_to((layer - 1) * num_teacher_layers // k_max, valid.shape)
  else:
    raise ValueError(f"layer map must be one of {LAYER_KD_MAPS}, got {how!r}")
  return np.where(valid, index, 0).astype(np.int32), valid


def attentive_layer_weights(probe_ce_BJ: jax.Array, teacher_index_KI: np.ndarray,
                            valid_KI: np.ndarray) -> jax.Array:
  """Per example and depth K, softmax over the matched layers of -CE(teacher probe) [B, K, I]
  (all zero for a depth with no matched layer)."""
  scores_BKI = jnp.where(valid_KI, -probe_ce_BJ[:, teacher_index_KI], -jnp.inf)
  # A row with no matched layer (K = 1 under the authors' map) would be softmax(-inf...) =
  # NaN: give it finite scores and let the mask zero it.
  scores_BKI = jnp.where(valid_KI.any(-1, keepdims=True), scores_BKI, 0.0)
  return jnp.where(valid_KI, jax.nn.softmax(scores_BKI, axis=-1), 0.0)


def layer_kd_per_depth(layer_logits_BIC: jax.Array, probe_logits_BJC: jax.Array,
                       labels_B: jax.Array, temperature: float = 1.0,
                       layer_map: str = "ceil") -> jax.Array:
  """The attentive hierarchical KD for each depth K = 1..k_max -> [B, k_max]."""
  batch_size, k_max, num_classes = layer_logits_BIC.shape
  chex.assert_shape(probe_logits_BJC, (batch_size, None, num_classes))
  chex.assert_shape(labels_B, (batch_size,))
  num_teacher_layers = probe_logits_BJC.shape[1] - 1
  if num_teacher_layers < 1:
    raise ValueError("probe_logits must hold the embedding probe and at least one layer's, "
                     f"got shape {probe_logits_BJC.shape}")
  teacher_index_KI, valid_KI = teacher_layer_map(k_max, num_teacher_layers, layer_map)
  probe_ce_BJ = cross_entropy(probe_logits_BJC, jnp.broadcast_to(
      labels_B[:, None], probe_logits_BJC.shape[:2]))
  weights_BKI = attentive_layer_weights(probe_ce_BJ, teacher_index_KI, valid_KI)
  teacher_BKIC = probe_logits_BJC[:, teacher_index_KI]
  student_BKIC = jnp.broadcast_to(layer_logits_BIC[:, None], teacher_BKIC.shape)
  kl_BKI = kl_divergence(teacher_BKIC, student_BKIC, temperature)
  layer_kd_BK = jnp.sum(jnp.where(valid_KI, weights_BKI * kl_BKI, 0.0), axis=-1)
  chex.assert_shape(layer_kd_BK, (batch_size, k_max))
  return layer_kd_BK


def efficiency_loss(sample: dict[str, jax.Array], op_costs_O: Any) -> jax.Array:
  """(K / k_max) * mean over edges of sum_o ops[e, o] * cost[o], from straight-through one-hots."""
  ops_EO, depth_K = sample["ops"], sample["depth"]
  op_costs_O = jnp.asarray(op_costs_O, ops_EO.dtype)
  chex.assert_shape(op_costs_O, (ops_EO.shape[1],))
  k_max = depth_K.shape[0]
  depth_value = jnp.sum(depth_K * jnp.arange(1, k_max + 1, dtype=depth_K.dtype))
  edge_cost = jnp.mean(ops_EO @ op_costs_O)
  return depth_value / k_max * edge_cost


def _weighted_mean(x_B: jax.Array, weight_B: jax.Array | None) -> jax.Array:
  if weight_B is None:
    return jnp.mean(x_B)
  weight_B = weight_B.astype(x_B.dtype)
  return jnp.sum(x_B * weight_B) / jnp.maximum(jnp.sum(weight_B), 1e-9)


def task_loss_per_example(outputs: dict[str, jax.Array], batch: dict[str, Any],
                          cfg: LossConfig = LossConfig(),
                          per_head: jax.Array | bool = False) -> dict[str, jax.Array]:
  """The per-example terms of the search loss: {ce, kd, kd_layers, kd_final, task} [B], where
  task = (1 - gamma) CE + gamma KD (everything but the efficiency term).

  outputs: from supernet_apply (logits [B, C], head_logits and layer_logits [B, k_max, C],
  depth_weights and ran_depth_weights [k_max]).
  batch: label [B] int, teacher_logits [B, C], probe_logits [B, Lt + 1, C].
  per_head: mix the heads' losses (as depth_mix="losses") whatever cfg.depth_mix; may be a
  traced bool. The search's fair steps set it: alpha gets no gradient there, so depth_mix
  has nothing to decide, and every head is to train (under "logits" only the sampled head's
  loss counts).
  """
  logits_BC, layer_logits_BKC = outputs["logits"], outputs["layer_logits"]
  batch_size, num_classes = logits_BC.shape
  labels_B = batch["label"]
  chex.assert_shape(labels_B, (batch_size,))
  chex.assert_shape(batch["teacher_logits"], (batch_size, num_classes))
  chex.assert_shape(batch["probe_logits"], (batch_size, None, num_classes))

  def heads_mixed():  # (depth weights, CE, final KD) from each head's loss
    depth_K, head_logits_BKC = outputs["ran_depth_weights"], outputs["head_logits"]
    ce_B = cross_entropy(head_logits_BKC, jnp.broadcast_to(
        labels_B[:, None], head_logits_BKC.shape[:2])) @ depth_K
    kd_final_B = kl_divergence(jnp.broadcast_to(batch["teacher_logits"][:, None],
                                                head_logits_BKC.shape),
                               head_logits_BKC, cfg.temperature) @ depth_K
    return depth_K, ce_B, kd_final_B

  def logits_mixed():  # from the heads' logits mixed by the depth weights
    return (outputs["depth_weights"], cross_entropy(logits_BC, labels_B),
            kl_divergence(batch["teacher_logits"], logits_BC, cfg.temperature))

  if cfg.depth_mix == "losses" or per_head is True:
    depth_K, ce_B, kd_final_B = heads_mixed()
  elif per_head is False:
    depth_K, ce_B, kd_final_B = logits_mixed()
  else:
    depth_K, ce_B, kd_final_B = jax.tree.map(
        lambda h, l: jnp.where(per_head, h, l), heads_mixed(), logits_mixed())
  if cfg.layer_kd_map == "authors":
    if "embedding_probe_logits" not in outputs:
      raise ValueError("layer_kd_map='authors' distils the embedding layer too: build the "
                       "supernet with SupernetConfig(embedding_probe=True)")
    # The student's layers 0..k_max-1: the embedding, then cells 1..k_max-1 (the deepest
    # cell is never layer-distilled under this map: at K = k_max it is the final layer).
    layer_logits_BKC = jnp.concatenate(
        [outputs["embedding_probe_logits"][:, None], layer_logits_BKC[:, :-1]], axis=1)
  layer_kd_BK = layer_kd_per_depth(layer_logits_BKC, batch["probe_logits"], labels_B,
                                   cfg.temperature, cfg.layer_kd_map)
  kd_layers_B = layer_kd_BK @ depth_K
  kd_B = mix_kd(kd_layers_B, kd_final_B, cfg.final_kd_weight)
  return {"ce": ce_B, "kd": kd_B, "kd_layers": kd_layers_B, "kd_final": kd_final_B,
          "task": mix_task(ce_B, kd_B, cfg.gamma)}


def mix_kd(kd_layers: jax.Array, kd_final: jax.Array, final_kd_weight: float) -> jax.Array:
  """L_KD = (1 - final_kd_weight) L_KD_layers + final_kd_weight L_KD_final."""
  return (1.0 - final_kd_weight) * kd_layers + final_kd_weight * kd_final


def mix_task(ce: jax.Array, kd: jax.Array, gamma: float) -> jax.Array:
  """(1 - gamma) L_CE + gamma L_KD: the loss without the efficiency term."""
  return (1.0 - gamma) * ce + gamma * kd


def adabert_loss(outputs: dict[str, jax.Array], batch: dict[str, Any],
                 sample: dict[str, jax.Array], op_costs_O: Any,
                 cfg: LossConfig = LossConfig(), per_head: jax.Array | bool = False
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The search loss. Returns (total, {ce, kd, kd_layers, kd_final, efficiency, total}).

  outputs, batch, per_head: as for task_loss_per_example; batch may hold weight [B] (0 for
  padding). sample: the architecture sample (for the efficiency term). op_costs_O:
  normalised op costs.
  """
  per_example = task_loss_per_example(outputs, batch, cfg, per_head)
  weight_B = batch.get("weight")
  if weight_B is not None:
    chex.assert_shape(weight_B, (outputs["logits"].shape[0],))
  terms = {name: _weighted_mean(per_example[name], weight_B)
           for name in ("ce", "kd", "kd_layers", "kd_final")}
  terms["efficiency"] = efficiency_loss(sample, op_costs_O)
  terms["total"] = mix_task(terms["ce"], terms["kd"], cfg.gamma) + cfg.beta * terms["efficiency"]
  chex.assert_shape(list(terms.values()), ())
  return terms["total"], terms
