"""The BERT teacher behind a small interface: load, apply, pool, classify.

transformers' Flax BERT (4.57.x: 5.x dropped Flax) is the backbone, but only this module
knows that: the rest of the code sees `Teacher` (a config plus a pure apply function) and a
params pytree ``{"bert": ..., "head": {"kernel", "bias"}}``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from adabert_jax import array_utils, assets, errors
from adabert_jax.data import tokenization
from adabert_jax.errors import UserError

Params = Any


# eq=False: hashed by identity (the linen module inside holds an unhashable config),
# so jitted functions can be cached per teacher.
@dataclasses.dataclass(frozen=True, eq=False)
class Teacher:
  """A BERT encoder with a classification head on the masked mean of its last layer.

  Mean pooling (not BERT's [CLS] pooler) is the default: all-MiniLM-L6-v2 was trained as a
  mean-pooled sentence embedder, and the probes pool every layer the same way.
  """

  module: Any  # transformers' FlaxBertModule (linen), without its pooler
  num_layers: int
  hidden_size: int
  num_classes: int
  model_dir: str

  def encode(self, params: Params, batch: dict, *, train: bool = False,
             dropout_key: jax.Array | None = None) -> jax.Array:
    """All hidden states, embedding output first: [B, num_layers + 1, L, D]."""
    ids = batch["input_ids"]
    rngs = {"dropout": dropout_key} if train else {}
    out = self.module.apply(
        {"params": params["bert"]}, ids, batch["attention_mask"], batch["token_type_ids"],
        jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape), None,
        deterministic=not train, output_hidden_states=True, rngs=rngs)
    hidden = jnp.stack(out.hidden_states, axis=1)
    chex.assert_shape(hidden, (ids.shape[0], self.num_layers + 1, ids.shape[1],
                               self.hidden_size))
    return hidden

  def pooled_layers(self, params: Params, batch: dict, **kwargs) -> jax.Array:
    """Masked mean over tokens of every layer: [B, num_layers + 1, D]."""
    return array_utils.masked_mean(self.encode(params, batch, **kwargs), batch["attention_mask"])

  def logits(self, params: Params, batch: dict, *, train: bool = False,
             dropout_key: jax.Array | None = None, dropout_rate: float = 0.1) -> jax.Array:
    """Task logits [B, C] from the pooled last layer."""
    pooled = self.pooled_layers(params, batch, train=train,
                                dropout_key=None if dropout_key is None else
                                jax.random.fold_in(dropout_key, 0))[:, -1]
    if train and dropout_rate > 0:
      keep = jax.random.bernoulli(jax.random.fold_in(dropout_key, 1), 1 - dropout_rate,
                                  pooled.shape)
      pooled = jnp.where(keep, pooled / (1 - dropout_rate), 0)
    return pooled @ params["head"]["kernel"] + params["head"]["bias"]


def _quiet_transformers():
  os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
  import transformers

  transformers.logging.set_verbosity_error()
  return transformers


def load_teacher(checkpoint: str, num_classes: int, key: jax.Array
                 ) -> tuple[Teacher, Params, tokenization.Vocab]:
  """Loads a pretrained BERT (folder, '' for the offline default, or a hub name) and
  puts a fresh classification head on it."""
  model_dir = assets.resolve_model_dir(checkpoint)
  config_dict = assets.read_bert_config(model_dir)
  vocab = tokenization.load_vocab(model_dir)
  if vocab.size != config_dict.get("vocab_size"):
    raise UserError(
        f"{vocab.path} has {vocab.size} tokens but {model_dir}/config.json says "
        f"vocab_size={config_dict.get('vocab_size')}: the vocabulary does not belong to "
        "this checkpoint.")
  weights = [f for f in ("model.safetensors", "flax_model.msgpack")
             if os.path.isfile(os.path.join(model_dir, f))]
  if not weights:
    raise UserError(f"{model_dir} has no model.safetensors (or flax_model.msgpack): no "
                    "BERT weights to load (--config.teacher.checkpoint).")
  transformers = _quiet_transformers()
  from transformers.models.bert import modeling_flax_bert

  # from_pt=True reads safetensors (PyTorch- or Flax-named) without needing PyTorch.
  try:
    pretrained = transformers.FlaxBertModel.from_pretrained(
        model_dir, from_pt=weights[0] == "model.safetensors")
  except Exception as e:  # noqa: BLE001  (safetensors, msgpack and shape errors alike)
    raise UserError(
        f"{os.path.join(model_dir, weights[0])} cannot be loaded ({errors.summary(e)}): the "
        "teacher checkpoint is damaged or not a BERT; copy it again or pick another "
        "--config.teacher.checkpoint.") from None
  config = pretrained.config
  module = modeling_flax_bert.FlaxBertModule(config=config, add_pooling_layer=False)
  bert_params = {k: v for k, v in pretrained.params.items() if k != "pooler"}
  head = init_head(key, config.hidden_size, num_classes)
  teacher = Teacher(module, config.num_hidden_layers, config.hidden_size, num_classes,
                    model_dir)
  return teacher, {"bert": bert_params, "head": head}, vocab


def init_head(key: jax.Array, width: int, num_classes: int) -> dict:
  return {"kernel": 0.02 * jax.random.normal(key, (width, num_classes), jnp.float32),
          "bias": jnp.zeros((num_classes,), jnp.float32)}


def embedding_tables(params: Params) -> dict[str, np.ndarray]:
  """The teacher's word and position tables, for the student's factorised embedding."""
  emb = params["bert"]["embeddings"]
  return {"word": np.asarray(emb["word_embeddings"]["embedding"], np.float32),
          "position": np.asarray(emb["position_embeddings"]["embedding"], np.float32)}
