"""Classify text with a trained model: an exported student, or a run's teacher.

  from adabert_jax import Student
  student = Student.load("runs/sst2/student/export")
  out = student.predict(["a gripping film", "a dull one"])
  out.labels, out.probabilities        # ['1', '0'], [[0.03, 0.97], [0.91, 0.09]]
  Student.load("runs/mrpc/student/export").predict([("He left.", "He has gone.")])

Inputs are tokenized as the teacher's data were, sorted by length and run in batches
trimmed to a few bucket lengths; the model is jitted once per batch shape. `RunTeacher`
gives the fine-tuned teacher of a run directory the same `predict`, for comparison.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable, Sequence

import jax
import numpy as np

from adabert_jax import artefacts, io_utils
from adabert_jax.data import batching, tokenization
from adabert_jax.errors import UserError
from adabert_jax.nas import inputs
from adabert_jax.nas.genotype import Genotype
from adabert_jax.student import export, model


@dataclasses.dataclass(frozen=True)
class Predictions:
  """labels [N] (the task's label names), probabilities [N, C] in the order of
  `label_names`, and how many inputs were cut to fit max_len."""

  labels: list[str]
  probabilities: np.ndarray
  label_names: tuple[str, ...]
  truncated: int


def _check_inputs(texts: Sequence, is_pair: bool) -> tuple[list[str], ...]:
  """The text fields of `texts` (strings, or (a, b) pairs; one bare string is one input),
  or a UserError naming the first bad input."""
  if isinstance(texts, str):
    texts = [texts]
  if len(texts) == 0:
    raise UserError("Nothing to classify: the input is empty.")
  fields: tuple[list[str], ...] = ([], []) if is_pair else ([],)
  for i, item in enumerate(texts):
    parts = (item,) if isinstance(item, str) else tuple(item)
    if len(parts) != len(fields) or not all(isinstance(p, str) for p in parts):
      want = ("a pair of sentences (a, b): this task compares two sentences" if is_pair
              else "one sentence: this task classifies single sentences")
      raise UserError(f"Input {i} is {str(parts)[:80]}; each input must be {want}.")
    if any(not p.strip() for p in parts):
      raise UserError(f"Input {i} has an empty sentence: {str(parts)[:80]}.")
    for field, part in zip(fields, parts):
      field.append(part)
  return fields


class Predictor:
  """predict() from logits(): what every model here shares."""

  task_name: str
  label_names: tuple[str, ...]
  text_columns: tuple[str, ...]  # the task's text fields (its files' column names)
  is_pair: bool
  max_len: int
  vocab: tokenization.Vocab

  def _encode(self, texts: Sequence) -> tuple[dict[str, np.ndarray], np.ndarray]:
    return tokenization.encode(_check_inputs(texts, self.is_pair), self.vocab, self.max_len)

  def logits(self, texts: Sequence, batch_size: int = 64,
             on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, int]:
    """(logits [N, C], number of inputs cut to max_len) of strings or (a, b) pairs;
    `on_batch(n)` is called after each batch of n inputs (a progress bar)."""
    raise NotImplementedError

  def predict(self, texts: Sequence, batch_size: int = 64,
              on_batch: Callable[[int], None] | None = None) -> Predictions:
    """Labels and class probabilities of strings (single-sentence tasks) or (a, b) pairs."""
    logits, truncated = self.logits(texts, batch_size, on_batch)
    probabilities = np.asarray(jax.nn.softmax(logits, axis=-1))
    labels = [self.label_names[i] for i in logits.argmax(-1)]
    return Predictions(labels, probabilities, self.label_names, truncated)


class Student(Predictor):
  """An exported student, ready to classify text (see the module docstring)."""

  RUNTIMES = ("jax", "stablehlo", "onnx")

  def __init__(self, params: dict, geno: Genotype, task: export.ExportedTask,
               vocab: tokenization.Vocab, max_len: int,
               compiled: Callable | None = None):
    self.params = jax.tree.map(np.asarray, params)
    self.genotype, self.task, self.vocab, self.max_len = geno, task, vocab, max_len
    self.task_name, self.label_names, self.is_pair = task.name, task.labels, task.is_pair
    self.text_columns = task.text_columns
    self.compiled = compiled  # the stablehlo or onnx logits function, if that runtime

  @classmethod
  def load(cls, path: str, runtime: str = "jax") -> "Student":
    """The student in export folder `path`, after checking every file's checksum.
    runtime: "jax" runs the model from its weights (jitted here); "stablehlo" the folder's
    serialised jax.export module and "onnx" its ONNX graph on onnxruntime (what a server
    without this package's model code runs)."""
    if runtime not in cls.RUNTIMES:
      raise UserError(f"runtime {runtime!r}: use one of {', '.join(cls.RUNTIMES)}.")
    params, geno, task, max_len = export.load_export(path)  # checks every file once
    compiled = {"jax": lambda path, checked: None, "stablehlo": export.load_stablehlo,
                "onnx": export.load_onnx}[runtime](path, checked=True)
    return cls(params, geno, task, tokenization.load_vocab(path), max_len, compiled)

  def logits(self, texts, batch_size=64, on_batch=None):
    arrays, truncated = self._encode(texts)
    n = len(truncated)
    fn = _jitted_logits(self.genotype)
    logits = np.zeros((n, len(self.label_names)), np.float32)
    for idx, batch in batching.length_sorted_eval_batches(arrays, min(batch_size, n),
                                                          self.max_len):
      if self.compiled is not None:
        out = self.compiled(*(batch[k] for k in batching.SEQUENCE_FEATURES))
      else:
        out = fn(self.params, inputs.host_batch(
            {k: v for k, v in batch.items() if k != "weight"}, self.genotype.input_mode))
      logits[idx] = np.asarray(out)[:len(idx)]
      if on_batch is not None:
        on_batch(len(idx))
    return logits, int(truncated.sum())


class RunTeacher(Predictor):
  """The fine-tuned teacher of a run directory (it needs the run and the BERT checkpoint,
  unlike a student's export folder)."""

  def __init__(self, workdir: str):
    from adabert_jax.data.tasks import Task, get_task
    from adabert_jax import assets
    from adabert_jax.teacher import finetune

    config_path = os.path.join(artefacts.teacher_dir(workdir), artefacts.CONFIG_FILE)
    if not os.path.isfile(os.path.join(artefacts.teacher_dir(workdir), artefacts.RESULT_FILE)):
      raise UserError(f"No fine-tuned teacher in {workdir} (--workdir): run the pipeline's "
                      "teacher stage first.")
    run_config = io_utils.load_json(config_path)
    checkpoint = run_config["teacher"]["checkpoint"]
    task = (Task.from_definition(run_config["task_definition"])
            if "task_definition" in run_config else get_task(run_config["task"]))
    self.teacher, self.params, _ = finetune.load_finetuned(workdir, checkpoint)
    self.vocab = tokenization.load_vocab(assets.resolve_model_dir(checkpoint))
    self.max_len = run_config["teacher"]["max_len"] or run_config["data"]["max_len"]
    self.task_name, self.label_names, self.is_pair = task.name, task.labels, task.is_pair
    self.text_columns = task.text_columns

  def logits(self, texts, batch_size=64, on_batch=None):
    from adabert_jax.teacher import finetune
    from adabert_jax.train import sharding

    arrays, truncated = self._encode(texts)
    arrays["label"] = np.zeros(len(truncated), np.int32)  # sizes the output
    logits = finetune.predict_logits(self.teacher, self.params, arrays,
                                     min(batch_size, len(truncated)), self.max_len,
                                     sharding.make_mesh(1))
    if on_batch is not None:
      on_batch(len(truncated))
    return logits, int(truncated.sum())


@functools.cache
def _jitted_logits(geno: Genotype):
  return jax.jit(lambda params, batch: model.student_apply(params, batch, geno)["logits"])
