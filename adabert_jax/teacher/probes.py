"""Knowledge probes and precompute: the teacher's knowledge as arrays the search reads.

One pass of the frozen teacher over a split writes its pooled hidden states of every layer
to a disk-backed array (never all in memory); linear probes, one per layer, train on those
features; then the teacher's logits and every probe's logits are stored per example.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from adabert_jax import artefacts, io_utils
from adabert_jax.data import batching, metrics as metrics_lib
from adabert_jax.data.tasks import Task
from adabert_jax.errors import UserError
from adabert_jax.teacher import bert
from adabert_jax.train import distributed, progress, sharding

KNOWLEDGE_FORMAT = 1


# ---------------------------------------------------------------------------------------
# One teacher pass: pooled features of every layer, and the task logits.
# ---------------------------------------------------------------------------------------


@functools.cache
def _jitted_features(teacher: bert.Teacher) -> Callable:

  def features(params, batch):
    pooled = teacher.pooled_layers(params, batch)  # [B, L+1, D]
    logits = pooled[:, -1] @ params["head"]["kernel"] + params["head"]["bias"]
    return pooled, logits

  return jax.jit(features)


def extract_features(teacher: bert.Teacher, params: Any, arrays: dict[str, np.ndarray],
                     path: str, *, batch_size: int, max_len: int, mesh,
                     desc: str = "teacher features") -> tuple[np.ndarray, np.ndarray]:
  """Writes pooled features [N, L+1, D] to a .npy memmap at `path`; returns (that memmap,
  teacher logits [N, C]). Memory holds one batch of hidden states at a time."""
  n = len(arrays["label"])
  shape = (n, teacher.num_layers + 1, teacher.hidden_size)
  logits = np.zeros((n, teacher.num_classes), np.float32)
  fn = _jitted_features(teacher)
  bar = progress.progress(n, desc)
  with io_utils.atomic_path(path, fixed_tmp=True) as tmp:
    features = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
    for idx, batch in batching.length_sorted_eval_batches(
        arrays, batch_size, max_len, sharding.process_rows(mesh, batch_size)):
      pooled, batch_logits = fn(params, sharding.shard_batch(batch, mesh))
      features[idx] = sharding.to_host(pooled)[:len(idx)]
      logits[idx] = sharding.to_host(batch_logits)[:len(idx)]
      bar.update(len(idx))
    bar.close()
    features.flush()
    del features
  distributed.barrier(f"features {path}")  # process 0 wrote the file every process reads
  return np.load(path, mmap_mode="r"), logits


# ---------------------------------------------------------------------------------------
# Probes: [L+1] independent linear classifiers, trained together.
# ---------------------------------------------------------------------------------------


def init_probes(key: jax.Array, num_layers: int, width: int, num_classes: int) -> dict:
  return {"kernel": 0.02 * jax.random.normal(key, (num_layers, width, num_classes)),
          "bias": jnp.zeros((num_layers, num_classes))}


def probe_logits(probes: dict, features: jax.Array) -> jax.Array:
  """[B, L+1, D] features -> [B, L+1, C] logits, each layer through its own probe."""
  return jnp.einsum("bld,ldc->blc", features, probes["kernel"]) + probes["bias"]


def train_probes(features: np.ndarray, labels: np.ndarray, num_classes: int, *,
                 key: jax.Array, epochs: int, batch_size: int, learning_rate: float,
                 log: progress.MetricsLog | None = None) -> dict:
  """Adam on the summed per-layer cross-entropy; the teacher stays frozen (it is not
  even run: the probes see its stored features)."""
  n, num_layers, width = features.shape
  init_key, data_key = jax.random.split(key)
  probes = init_probes(init_key, num_layers, width, num_classes)
  tx = optax.adam(learning_rate)
  opt_state = tx.init(probes)

  @jax.jit
  def step(probes, opt_state, x, y):

    def loss_fn(p):
      logits = probe_logits(p, x)
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, y[:, None].repeat(num_layers, 1)).mean(0).sum()

    loss, grads = jax.value_and_grad(loss_fn)(probes)
    updates, opt_state = tx.update(grads, opt_state, probes)
    return optax.apply_updates(probes, updates), opt_state, loss

  batch_size = min(batch_size, n)
  bar = progress.progress(epochs * (n // batch_size) * batch_size, "probes")
  for epoch in range(epochs):
    order = batching.epoch_permutation(data_key, epoch, n)
    for i in range(n // batch_size):
      idx = np.sort(order[i * batch_size:(i + 1) * batch_size])
      probes, opt_state, loss = step(probes, opt_state, np.asarray(features[idx]),
                                     labels[idx])
      bar.update(batch_size)
    if log is not None:
      log.write(stage="probes", epoch=epoch, loss=float(loss))
  bar.close()
  return {k: np.asarray(v) for k, v in probes.items()}


def chunked_probe_logits(probes: dict, features: np.ndarray, chunk: int = 4096
                         ) -> np.ndarray:
  fn = jax.jit(probe_logits)
  return np.concatenate([np.asarray(fn(probes, np.asarray(features[i:i + chunk])))
                         for i in range(0, len(features), chunk)])


def probe_metrics(task: Task, logits: np.ndarray, labels: np.ndarray) -> list[dict]:
  """The task metric of every layer's probe: [{layer, accuracy, score, ...}]."""
  return [{"layer": layer, **metrics_lib.compute_metrics(task, logits[:, layer].argmax(-1),
                                                          labels)}
          for layer in range(logits.shape[1])]


# ---------------------------------------------------------------------------------------
# The stored knowledge, with the metadata that detects staleness.
# ---------------------------------------------------------------------------------------


def knowledge_meta(teacher_result: dict, vocab_hash: str, max_len: int, split: str,
                   num_examples: int) -> dict:
  return {"format": KNOWLEDGE_FORMAT, "task": teacher_result["task"],
          "teacher_checkpoint_id": teacher_result["checkpoint_id"],
          "vocab_hash": vocab_hash, "max_len": max_len, "split": split,
          "num_examples": num_examples}


def save_knowledge(path: str, teacher_logits: np.ndarray, probe_logits_: np.ndarray,
                   meta: dict) -> None:
  n = meta["num_examples"]
  chex.assert_shape(teacher_logits, (n, None))
  chex.assert_shape(probe_logits_, (n, None, teacher_logits.shape[1]))
  io_utils.save_npz_atomic(path, {
      "teacher_logits": teacher_logits.astype(np.float32),
      "probe_logits": probe_logits_.astype(np.float32),
      "meta": np.array(io_utils.json_dumps(meta))})


def _stale_fields(meta: dict, expected_meta: dict) -> list[str]:
  """What a stored file's metadata says against this run's, one entry per differing field."""
  return [f"{k}: file has {meta.get(k)!r}, this run has {v!r}"
          for k, v in expected_meta.items() if meta.get(k) != v]


def load_knowledge(path: str, expected_meta: dict) -> dict[str, np.ndarray]:
  """Teacher and probe logits of a split; a UserError if they came from another teacher,
  vocabulary, max_len or split than `expected_meta` describes."""
  if not os.path.isfile(path):
    raise UserError(f"{path} is missing: run experiments/precompute.py for this workdir.")
  data = io_utils.load_npz(path, ("meta", "teacher_logits", "probe_logits"))
  stale = _stale_fields(io_utils.json_loads(str(data["meta"])), expected_meta)
  if stale:
    raise UserError(
        f"{path} does not belong to this run ({'; '.join(stale)}). It was precomputed for "
        "another teacher or setting: delete it (or use a fresh --workdir) and rerun "
        "precompute.")
  return {"teacher_logits": data["teacher_logits"], "probe_logits": data["probe_logits"]}


def run_precompute(config: ml_collections.ConfigDict, task: Task,
                   splits: dict[str, dict[str, np.ndarray]], vocab_hash: str,
                   teacher: bert.Teacher, params: Any, teacher_result: dict,
                   workdir: str) -> dict:
  """Probes + precompute for a fine-tuned teacher. Writes <workdir>/knowledge/:
  {train,<dev>}.npz (teacher and probe logits), embeddings.npz, probes.json, probes.png."""
  cfg = config.probes
  out_dir = artefacts.knowledge_dir(workdir)
  os.makedirs(out_dir, exist_ok=True)
  log = progress.MetricsLog(os.path.join(out_dir, "log.jsonl"))
  mesh = sharding.make_mesh()
  max_len = config.data.max_len
  sharding.check_batch_size(cfg.batch_size, mesh, "probes.batch_size")
  params = sharding.replicate(params, mesh)
  features, logits = {}, {}
  for split in ("train", task.main_dev_split):
    features[split], logits[split] = extract_features(
        teacher, params, splits[split], os.path.join(out_dir, f"features_{split}.npy"),
        batch_size=cfg.batch_size, max_len=max_len, mesh=mesh,
        desc=f"teacher features {split}")
  probes = train_probes(features["train"], splits["train"]["label"], task.num_classes,
                        key=jax.random.key(config.seed + 1), epochs=cfg.epochs,
                        batch_size=cfg.batch_size, learning_rate=cfg.learning_rate, log=log)
  summary = {"teacher_checkpoint_id": teacher_result["checkpoint_id"], "probes": {}}
  for split in features:
    layer_logits = chunked_probe_logits(probes, features[split])
    meta = knowledge_meta(teacher_result, vocab_hash, max_len, split,
                          len(splits[split]["label"]))
    save_knowledge(os.path.join(out_dir, f"{split}.npz"), logits[split], layer_logits, meta)
    summary["probes"][split] = probe_metrics(task, layer_logits, splits[split]["label"])
    summary.setdefault("teacher", {})[split] = metrics_lib.compute_metrics(
        task, logits[split].argmax(-1), splits[split]["label"])
    io_utils.remove(os.path.join(out_dir, f"features_{split}.npy"))
  io_utils.save_npz_atomic(os.path.join(out_dir, "probes.npz"), probes)
  io_utils.save_npz_atomic(os.path.join(out_dir, "embeddings.npz"),
                           bert.embedding_tables(params))
  io_utils.save_json_atomic(os.path.join(out_dir, "probes.json"), summary)
  plot_probes(summary["probes"][task.main_dev_split], task,
              os.path.join(out_dir, "probes.png"))
  return summary


def plot_probes(rows: list[dict], task: Task, path: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(5, 3.2))
  ax.plot([r["layer"] for r in rows], [r["score"] for r in rows], marker="o")
  ax.set_xlabel("teacher layer (0 = embeddings)")
  ax.set_ylabel(f"dev {task.metric}")
  ax.set_title(f"Knowledge probes, {task.name}")
  ax.grid(alpha=0.3)
  fig.tight_layout()
  with io_utils.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=120)
  plt.close(fig)


def format_probe_table(rows: list[dict]) -> str:
  lines = ["| layer | " + " | ".join(k for k in rows[0] if k not in ("layer", "num_examples"))
           + " |", "|---" * (len(rows[0]) - 1) + "|"]
  for r in rows:
    lines.append(f"| {r['layer']} | " + " | ".join(
        f"{v:.2f}" for k, v in r.items() if k not in ("layer", "num_examples")) + " |")
  return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Augmented training data, labelled by the teacher and its probes.
# ---------------------------------------------------------------------------------------


def augmented_meta(teacher_result: dict, vocab_hash: str, max_len: int, num_examples: int,
                   augment_cfg: ml_collections.ConfigDict) -> dict:
  return {**knowledge_meta(teacher_result, vocab_hash, max_len, "augmented", num_examples),
          "augment": augment_cfg.to_dict()}


def teacher_and_probe_logits(teacher: bert.Teacher, params: Any, probes: dict,
                             arrays: dict[str, np.ndarray], *, batch_size: int, max_len: int
                             ) -> tuple[np.ndarray, np.ndarray]:
  """The teacher's logits [N, C] and its trained probes' logits [N, L+1, C], batch by batch
  (no features are kept: with the probes trained already, only their logits are needed)."""
  mesh = sharding.make_mesh()
  params, probes = sharding.replicate((params, probes), mesh)
  features_fn = _jitted_features(teacher)
  probes_fn = jax.jit(probe_logits)
  n = len(arrays["label"])
  logits = np.zeros((n, teacher.num_classes), np.float32)
  layer_logits = np.zeros((n, teacher.num_layers + 1, teacher.num_classes), np.float32)
  bar = progress.progress(n, "teacher labels")
  for idx, batch in batching.length_sorted_eval_batches(
      arrays, batch_size, max_len, sharding.process_rows(mesh, batch_size)):
    pooled, batch_logits = features_fn(params, sharding.shard_batch(batch, mesh))
    logits[idx] = sharding.to_host(batch_logits)[:len(idx)]
    layer_logits[idx] = sharding.to_host(probes_fn(probes, pooled))[:len(idx)]
    bar.update(len(idx))
  bar.close()
  return logits, layer_logits


def run_augmentation(config: ml_collections.ConfigDict, train: dict[str, np.ndarray],
                     vocab_path: str, vocab_hash: str, teacher: bert.Teacher, params: Any,
                     word_table: np.ndarray, teacher_result: dict, workdir: str) -> dict:
  """config.augment.copies substituted copies of every training example (data/augment.py),
  each labelled with the teacher's logits, every probe's logits and the teacher's
  prediction as its label (a substitution can flip the meaning: 'good' -> 'bad').
  `word_table` is the teacher's [V, D] word embedding (knowledge/embeddings.npz); the probes
  come from knowledge/probes.npz. Writes <workdir>/augment/augmented.npz and returns a
  summary."""
  from adabert_jax.data import augment

  cfg = config.augment
  out_dir = artefacts.augment_dir(workdir)
  os.makedirs(out_dir, exist_ok=True)
  probes = io_utils.load_npz(os.path.join(artefacts.knowledge_dir(workdir), "probes.npz"))
  tokens = augment.read_vocab_tokens(vocab_path)
  if len(tokens) != word_table.shape[0]:
    raise UserError(f"{vocab_path} has {len(tokens)} entries but the teacher's word table "
                    f"has {word_table.shape[0]} rows: the vocabulary is not the "
                    "teacher's.")
  neighbours = augment.nearest_neighbours(word_table, augment.word_token_mask(tokens),
                                          cfg.neighbours)
  # The authors replace 0.3 of the words of a sentence pair, 0.4 of a single sentence.
  is_pair = bool(np.any(train["token_type_ids"]))
  replace_prob = cfg.pair_replace_prob if is_pair else cfg.replace_prob
  copies = augment.augment_split(train, neighbours, augment.continuation_mask(tokens),
                                 copies=cfg.copies, replace_prob=replace_prob,
                                 seed=config.seed + 23)
  n = len(copies["input_ids"])
  logits, layer_logits = teacher_and_probe_logits(
      teacher, params, probes, {**copies, "label": np.zeros(n, np.int32)},
      batch_size=config.probes.batch_size, max_len=config.data.max_len)
  meta = augmented_meta(teacher_result, vocab_hash, config.data.max_len, n, cfg)
  labels = logits.argmax(-1).astype(np.int32)
  io_utils.save_npz_atomic(os.path.join(out_dir, artefacts.AUGMENTED_FILE), {
      "input_ids": copies["input_ids"], "source": copies["source"], "label": labels,
      "teacher_logits": logits.astype(np.float32),
      "probe_logits": layer_logits.astype(np.float32),
      "meta": np.array(io_utils.json_dumps(meta))})
  changed = (copies["input_ids"] != train["input_ids"][copies["source"]]).any(-1)
  return {"examples": n, "copies": cfg.copies, "replace_prob": replace_prob,
          "changed_fraction": float(changed.mean()),
          "teacher_agrees_with_source_label": float(
              (labels == train["label"][copies["source"]]).mean())}


def load_augmented(path: str, train: dict[str, np.ndarray], expected_meta: dict
                   ) -> dict[str, np.ndarray]:
  """The augmented copies as training arrays with their knowledge (the segment ids and
  mask come from each copy's source row, "source": that row of train)."""
  data = io_utils.load_npz(path, ("meta", "source", "input_ids", "label", "teacher_logits",
                                 "probe_logits"))
  stale = _stale_fields(io_utils.json_loads(str(data["meta"])), expected_meta)
  if int(data["source"].max(initial=-1)) >= len(train["label"]):
    stale.append(f"made from a larger train set than this run's {len(train['label'])}")
  if stale:
    raise UserError(f"{path} does not belong to this run ({'; '.join(stale)}): delete it "
                    "(or use a fresh --workdir) and rerun.")
  source = data["source"]
  return {"input_ids": data["input_ids"], "label": data["label"],
          "token_type_ids": train["token_type_ids"][source],
          "attention_mask": train["attention_mask"][source],
          "teacher_logits": data["teacher_logits"], "probe_logits": data["probe_logits"],
          "source": source}
