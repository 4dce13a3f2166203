"""Your own data: a classification task defined by files (CSV, TSV or JSONL).

`--task=custom` with `--config.data.custom.train_file=...` (and dev_file, the text column or
two, the label column): the task (its labels, text fields, metric) is built from the config
and the training file, and its files are read by `CustomFileSource`, behind the
same interface as the GLUE and offline sources. Formats:
  csv    RFC 4180 CSV with a header row (quoted fields may hold commas, quotes, newlines);
  tsv    tab-separated with a header row and quoting off, as GLUE writes it;
  jsonl  one JSON object per line, the columns being its keys.
Each is guessed from the file's extension when `format` is empty. A test file (labels or
not) is read by `experiments/predict.py --split=test --test_file=...`, not by the pipeline.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os

import ml_collections
import numpy as np

from adabert_jax import io_utils
from adabert_jax.data.sources import RawSplit, check_split, label_ids
from adabert_jax.data.tasks import METRICS, Task
from adabert_jax.errors import UserError

FORMATS = ("csv", "tsv", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl",
               ".json": "jsonl", ".ndjson": "jsonl"}
CUSTOM = "custom"


def _flag(field: str) -> str:
  return f"--config.data.custom.{field}"


def _split_list(value: str) -> tuple[str, ...]:
  return tuple(v.strip() for v in value.split(",") if v.strip())


def file_format(path: str, fmt: str) -> str:
  """`fmt` if given, else the one the extension says."""
  if fmt:
    if fmt not in FORMATS:
      raise UserError(f"{_flag('format')}={fmt!r}: use one of {', '.join(FORMATS)}.")
    return fmt
  ext = os.path.splitext(path)[1].lower()
  if ext not in _EXTENSIONS:
    raise UserError(f"{path}: cannot tell its format from the extension {ext!r}; pass "
                    f"{_flag('format')}=csv, tsv or jsonl.")
  return _EXTENSIONS[ext]


def read_rows(path: str, fmt: str, columns: tuple[str, ...]
              ) -> tuple[list[list[str]], list[int]]:
  """The `columns` of every row of a data file (one list of strings per column) and each
  row's line number. One clear error, naming the file and line, for anything malformed."""
  text = io_utils.read_text(path, "a --config.data.custom.*_file or --test_file")
  if not text.strip():
    raise UserError(f"{path} is empty.")
  fmt = file_format(path, fmt)
  if fmt == "jsonl":
    return _jsonl_rows(path, text, columns)
  return _delimited_rows(path, text, fmt, columns)


def _check_columns(path: str, header: list[str], columns: tuple[str, ...], fmt: str) -> None:
  missing = [c for c in columns if c not in header]
  if not missing:
    return
  other = {"csv": ("\t", "tsv"), "tsv": (",", "csv")}.get(fmt)
  if other and len(header) == 1 and other[0] in header[0]:
    raise UserError(f"{path}: its header holds no {'tab' if fmt == 'tsv' else 'comma'} but "
                    f"{'commas' if fmt == 'tsv' else 'tabs'}: the delimiter does not match "
                    f"format {fmt}; pass {_flag('format')}={other[1]}.")
  raise UserError(f"{path}: no column {', '.join(map(repr, missing))}; the columns are "
                  f"{', '.join(map(repr, header))}. Set {_flag('text_columns')} and "
                  f"{_flag('label_column')}.")


def _delimited_rows(path, text, fmt, columns):
  if fmt == "csv":
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
      records = [(reader.line_num, row) for row in reader]
    except csv.Error as e:
      raise UserError(f"{path} line {reader.line_num}: not valid CSV ({e}).") from None
    # csv's line_num is the line a record ends on; report where each starts.
    starts = [1] + [end + 1 for end, _ in records[:-1]]
    records = [(start, row) for start, (_, row) in zip(starts, records) if row]
  else:  # GLUE-style TSV: tabs and newlines only, quoting off.
    records = [(n, line.rstrip("\r").split("\t"))
               for n, line in enumerate(text.split("\n"), start=1) if line.rstrip("\r")]
  (_, header), body = records[0], records[1:]
  _check_columns(path, header, columns, fmt)
  index = [header.index(c) for c in columns]
  out: list[list[str]] = [[] for _ in columns]
  lines = []
  for n, fields in body:
    if len(fields) != len(header):
      raise UserError(f"{path} line {n}: {len(fields)} fields where the header has "
                      f"{len(header)} (format {fmt}; a stray delimiter or quote?).")
    for column, i in zip(out, index):
      column.append(fields[i])
    lines.append(n)
  return out, lines


def _jsonl_rows(path, text, columns):
  out: list[list[str]] = [[] for _ in columns]
  lines = []
  for n, line in enumerate(text.split("\n"), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise UserError(f"{path} line {n}: not a JSON object ({e.msg}).") from None
    if not isinstance(record, dict):
      raise UserError(f"{path} line {n}: not a JSON object.")
    missing = [c for c in columns if c not in record]
    if missing:
      raise UserError(f"{path} line {n}: no key {', '.join(map(repr, missing))}; its keys "
                      f"are {', '.join(map(repr, record))}. Every line needs "
                      f"{', '.join(map(repr, columns))}.")
    for column, c in zip(out, columns):
      value = record[c]
      if isinstance(value, (dict, list)) or value is None:
        raise UserError(f"{path} line {n}: {c!r} is {json.dumps(value)[:40]}, not text.")
      column.append(value if isinstance(value, str) else json.dumps(value))
    lines.append(n)
  return out, lines


@dataclasses.dataclass(frozen=True)
class CustomSpec:
  """The files and columns of a custom task (config.data.custom, checked)."""
  name: str
  train_file: str
  dev_file: str
  format: str
  text_columns: tuple[str, ...]
  label_column: str
  labels: tuple[str, ...]
  metric: str

  @classmethod
  def from_config(cls, custom: ml_collections.ConfigDict) -> CustomSpec:
    if not custom.train_file:
      raise UserError(f"--task=custom needs {_flag('train_file')}=PATH (a CSV, TSV or JSONL "
                      "file with a header or keys naming its text and label columns).")
    text_columns = _split_list(custom.text_columns)
    if len(text_columns) not in (1, 2):
      raise UserError(f"{_flag('text_columns')}={custom.text_columns!r}: name one text "
                      "column, or two (a sentence pair), separated by a comma.")
    if custom.metric not in METRICS:
      raise UserError(f"{_flag('metric')}={custom.metric!r}: use one of "
                      f"{', '.join(METRICS)}.")
    for field in ("train_file", "dev_file"):
      if custom[field]:
        file_format(custom[field], custom.format)
    return cls(custom.name or CUSTOM, custom.train_file, custom.dev_file, custom.format,
               text_columns, custom.label_column, _split_list(custom.labels), custom.metric)

  def task(self) -> Task:
    """The Task, with the labels listed or else the sorted set found in train."""
    columns, lines = read_rows(self.train_file, self.format,
                               self.text_columns + (self.label_column,))
    found = columns[-1]
    labels = self.labels or tuple(sorted(set(found)))
    if len(set(labels)) < 2:
      raise UserError(f"{self.train_file}: one class only ({labels[0] if labels else '-'!r}"
                      "): a classifier needs at least two.")
    counts = {label: 0 for label in labels}
    for label, n in zip(found, lines):
      if label not in counts:
        raise UserError(f"{self.train_file} line {n}: label {label!r} is not in "
                        f"{_flag('labels')} ({', '.join(labels)}).")
      counts[label] += 1
    rare = [label for label, c in counts.items() if c < 2]
    if rare:
      raise UserError(f"{self.train_file}: fewer than two training examples of class "
                      f"{', '.join(map(repr, rare))}; every class needs at least two.")
    if self.metric == "f1_accuracy" and len(labels) != 2:
      raise UserError(f"{_flag('metric')}=f1_accuracy is for two classes; this task has "
                      f"{len(labels)}: use macro_f1.")
    return Task(self.name, "", self.text_columns, self.label_column, labels, self.metric,
                custom=True)


@dataclasses.dataclass(frozen=True)
class CustomFileSource:
  """A custom task's files. Without a dev file, dev is a seeded `dev_fraction` of train
  (and train the rest), stratified so every class is in both."""
  spec: CustomSpec
  seed: int = 0
  dev_fraction: float = 0.1

  def _path(self, task: Task, split: str) -> str:
    check_split(task, split)
    return self.spec.dev_file if split == "dev" and self.spec.dev_file else \
        self.spec.train_file

  def where(self, task: Task, split: str) -> str:
    if split == "dev" and not self.spec.dev_file:
      return (f"{self.spec.train_file} (dev: a stratified {self.dev_fraction:g} of it, "
              f"seed {self.seed})")
    return self._path(task, split)

  def fingerprint(self, task: Task, split: str) -> str:
    with open(self._path(task, split), "rb") as f:
      digest = hashlib.sha256(f.read()).hexdigest()
    carved = "" if self.spec.dev_file else f":carved:{self.seed}:{self.dev_fraction}"
    carved += f":{file_format(self._path(task, split), self.spec.format)}"
    definition = json.dumps(task.definition(), sort_keys=True)
    return f"custom:{digest}{carved}:{hashlib.sha256(definition.encode()).hexdigest()[:16]}"

  def read(self, task: Task, split: str) -> RawSplit:
    path = self._path(task, split)
    columns, lines = read_rows(path, self.spec.format, task.text_columns + (task.label_column,))
    for column, name in zip(columns[:-1], task.text_columns):
      for text, n in zip(column, lines):
        if not text.strip():
          raise UserError(f"{path} line {n}: the text column {name!r} is empty.")
    labels = label_ids(task, columns[-1], path, lines)
    texts = tuple(columns[:-1])
    if not self.spec.dev_file:
      chosen = _carve(labels, self.seed, self.dev_fraction, split)
      texts = tuple([column[i] for i in chosen] for column in texts)
      labels = labels[chosen]
    if len(labels) == 0:
      raise UserError(f"{path} has no examples.")
    return RawSplit(task.name, split, texts, labels)


def _carve(labels: np.ndarray, seed: int, dev_fraction: float, split: str) -> np.ndarray:
  """Indices of `split` when dev is cut from train: per class, a seeded `dev_fraction`
  (at least one example) goes to dev; sorted, so the file's order is kept."""
  rng = np.random.default_rng(seed)
  dev = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    n_dev = max(1, int(round(dev_fraction * len(members))))
    dev.extend(rng.permutation(members)[:n_dev])
  is_dev = np.zeros(len(labels), bool)
  is_dev[dev] = True
  return np.flatnonzero(is_dev if split == "dev" else ~is_dev)
