"""Classification metrics on class-id predictions (GLUE's, and macro-F1)."""

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


def _confusion(pred: np.ndarray, label: np.ndarray, num_classes: int) -> np.ndarray:
  """counts[true, predicted]."""
  counts = np.zeros((num_classes, num_classes), np.float64)
  np.add.at(counts, (np.asarray(label, np.int64), np.asarray(pred, np.int64)), 1.0)
  return counts


def matthews(pred: np.ndarray, label: np.ndarray, num_classes: int = 2) -> float:
  """Matthews correlation; for more than two classes Gorodkin's R_K, which is the binary
  MCC at two."""
  c = _confusion(pred, label, num_classes)
  n, correct = c.sum(), np.trace(c)
  true_k, pred_k = c.sum(1), c.sum(0)
  denom = np.sqrt((n * n - pred_k @ pred_k) * (n * n - true_k @ true_k))
  return 0.0 if denom == 0 else float((correct * n - true_k @ pred_k) / denom)


def macro_f1(pred: np.ndarray, label: np.ndarray, num_classes: int) -> float:
  """The unweighted mean over classes of each class's F1 (0 for a class never predicted
  nor present)."""
  c = _confusion(pred, label, num_classes)
  tp = np.diag(c)
  denom = c.sum(0) + c.sum(1)  # 2 tp + fp + fn
  return float(np.mean(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)))


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
    out["matthews"] = 100 * matthews(pred, label, task.num_classes)
    out["score"] = out["matthews"]
  elif task.metric == "macro_f1":
    out["macro_f1"] = 100 * macro_f1(pred, label, task.num_classes)
    out["score"] = out["macro_f1"]
  else:
    out["score"] = out["accuracy"]
  out["num_examples"] = int(len(label))
  return out
