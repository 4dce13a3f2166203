import numpy as np
import pytest

from adabert_jax import UserError
from adabert_jax.data import metrics, tasks


def test_registry_has_the_paper_tasks_and_cola():
  for name in ["sst2", "mrpc", "qqp", "mnli", "qnli", "rte", "cola"]:
    assert name in tasks.TASKS
  assert tasks.get_task("SST-2").name == "sst2"
  assert tasks.get_task("MNLI").num_classes == 3
  assert tasks.get_task("mnli").dev_splits == ("dev_matched", "dev_mismatched")
  assert tasks.get_task("mrpc").metric == "f1_accuracy"
  assert tasks.get_task("qqp").metric == "f1_accuracy"
  assert tasks.get_task("cola").metric == "matthews"
  assert tasks.get_task("rte").is_pair and not tasks.get_task("sst2").is_pair


def test_unknown_task_names_the_flag_and_the_choices():
  with pytest.raises(UserError, match=r"Unknown task 'sst3' \(--task\).*sst2"):
    tasks.get_task("sst3")


def test_metrics_against_hand_counts():
  pred = np.array([1, 1, 0, 0, 1, 0])
  label = np.array([1, 0, 0, 1, 1, 0])
  # tp=2 fp=1 fn=1 tn=2
  assert metrics.accuracy(pred, label) == pytest.approx(4 / 6)
  assert metrics.f1_binary(pred, label) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
  assert metrics.matthews(pred, label) == pytest.approx((2 * 2 - 1 * 1) / 9)
  mrpc = metrics.compute_metrics(tasks.get_task("mrpc"), pred, label)
  assert mrpc["score"] == pytest.approx((mrpc["f1"] + mrpc["accuracy"]) / 2)
  cola = metrics.compute_metrics(tasks.get_task("cola"), pred, label)
  assert cola["score"] == pytest.approx(100 / 3)
  assert metrics.matthews(np.ones(4), np.array([0, 1, 0, 1])) == 0.0
