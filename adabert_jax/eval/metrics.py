"""GLUE metrics on class-id predictions."""

from __future__ import annotations

import numpy as np

from adabert_jax.data.tasks import Task


def accuracy(pred: np.ndarray, label: np.ndarray) -> float:
  return float(np.mean(pred == label))


def f1_binary(pred: np.ndarray, label: np.ndarray) -> float:
  tp = float(np.sum((pred == 1) & (label == 1)))
  fp = float(np.sum((pred == 1) & (label == 0)))
  fn = float(np.sum((pred == 0) & (label == 1)))
  return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def matthews(pred: np.ndarray, label: np.ndarray) -> float:
  tp = float(np.sum((pred == 1) & (label == 1)))
  tn = float(np.sum((pred == 0) & (label == 0)))
  fp = float(np.sum((pred == 1) & (label == 0)))
  fn = float(np.sum((pred == 0) & (label == 1)))
  denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
  return 0.0 if denom == 0 else float((tp * tn - fp * fn) / denom)


def compute_metrics(task: Task, pred: np.ndarray, label: np.ndarray) -> dict[str, float]:
  """The task's metrics (in percent, as GLUE reports them); ``score`` is the main one."""
  pred, label = np.asarray(pred), np.asarray(label)
  if pred.shape != label.shape:
    raise ValueError(f"pred {pred.shape} and label {label.shape} differ in shape")
  out = {"accuracy": 100 * accuracy(pred, label)}
  if task.metric == "f1_accuracy":
    out["f1"] = 100 * f1_binary(pred, label)
    out["score"] = (out["f1"] + out["accuracy"]) / 2
  elif task.metric == "matthews":
    out["matthews"] = 100 * matthews(pred, label)
    out["score"] = out["matthews"]
  else:
    out["score"] = out["accuracy"]
  out["num_examples"] = int(len(label))
  return out
