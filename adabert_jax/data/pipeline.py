"""The data stage: every split of a task, tokenized with the teacher's vocabulary."""

from __future__ import annotations

import hashlib
import os

import ml_collections
import numpy as np

from adabert_jax import assets
from adabert_jax.data import batching, custom, sources, tokenization
from adabert_jax.data.tasks import Task, get_task


def default_cache_dir() -> str:
  return os.environ.get("ADABERT_CACHE_DIR", os.path.join(
      os.path.expanduser("~"), ".cache", "adabert_jax", "tokenized"))


def task_from_config(config: ml_collections.ConfigDict) -> Task:
  """config.task from the registry, or (--task=custom) built from config.data.custom and
  its training file."""
  if config.task.lower() == custom.CUSTOM:
    return custom.CustomSpec.from_config(config.data.custom).task()
  return get_task(config.task)


def source_from_config(task: Task, data: ml_collections.ConfigDict) -> sources.Source:
  if task.custom:
    return custom.CustomFileSource(custom.CustomSpec.from_config(data.custom),
                                   data.split_seed, data.dev_fraction)
  return sources.make_source(task, source=data.source, glue_dir=data.glue_dir,
                             tfds_data_dir=data.tfds_data_dir, seed=data.split_seed,
                             dev_fraction=data.dev_fraction)


def teacher_vocab(config: ml_collections.ConfigDict) -> tokenization.Vocab:
  """The WordPiece vocabulary of the configured teacher: every stage tokenizes with it."""
  return tokenization.load_vocab(assets.resolve_model_dir(config.teacher.checkpoint))


def data_files(config: ml_collections.ConfigDict, task: Task) -> dict[str, str]:
  """What each split's data is, not where it lives: {split: kind:digest} from the source's
  content fingerprint. Stages record it, so a run is never reused on other data."""
  source = source_from_config(task, config.data)
  out = {}
  for split in task.splits:
    fingerprint = source.fingerprint(task, split)
    kind = fingerprint.split(":", 1)[0]
    out[split] = f"{kind}:{hashlib.sha256(fingerprint.encode()).hexdigest()[:16]}"
  return out


def data_record(config: ml_collections.ConfigDict, task: Task) -> dict[str, dict[str, str]]:
  """Where each split came from and what it was (data_files), for reports."""
  source = source_from_config(task, config.data)
  return {"files": {split: source.where(task, split) for split in task.splits},
          "digests": data_files(config, task)}


def load_task_data(config: ml_collections.ConfigDict
                   ) -> tuple[Task, dict[str, dict[str, np.ndarray]], tokenization.Vocab]:
  """Tokenized arrays of every split of ``config.task`` (cached on disk).

  ``config.data.train_subset`` > 0 keeps a fixed, seeded subset of train (for CPU runs).
  """
  task = task_from_config(config)
  source = source_from_config(task, config.data)
  vocab = teacher_vocab(config)
  cache_dir = config.data.cache_dir or default_cache_dir()
  splits = {}
  for split in task.splits:
    arrays = tokenization.load_tokenized(task, split, source, vocab, config.data.max_len,
                                         cache_dir)
    if split == "train":
      arrays = batching.fixed_subset(arrays, config.data.train_subset, config.data.split_seed)
    splits[split] = arrays
  return task, splits, vocab


def describe(task: Task, splits: dict[str, dict[str, np.ndarray]]) -> str:
  """A small table: examples, label balance and truncation per split."""
  lines = [f"task {task.name}: {task.num_classes} classes, metric {task.metric}",
           f"{'split':<16}{'examples':>10}  {'label shares':<24}{'truncated':>10}"]
  for split, arrays in splits.items():
    counts = np.bincount(arrays["label"], minlength=task.num_classes)
    shares = " ".join(f"{c / counts.sum():.2f}" for c in counts)
    truncated = float(np.mean(arrays["attention_mask"][:, -1] == 1))
    lines.append(f"{split:<16}{len(arrays['label']):>10}  {shares:<24}{truncated:>10.1%}")
  return "\n".join(lines)
