"""Paired comparison of two models on the same examples."""

import math

import numpy as np
import pytest

from adabert_jax.eval import compare


def test_mcnemar_exact_p_matches_hand_counts():
  assert compare.mcnemar_exact_p(0, 6) == pytest.approx(2 * 0.5 ** 6)  # 0.03125
  assert compare.mcnemar_exact_p(6, 0) == compare.mcnemar_exact_p(0, 6)
  # 2 against 8: 2 * P(X <= 2), X ~ Binomial(10, 1/2) = 2 * 56 / 1024.
  assert compare.mcnemar_exact_p(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
  assert compare.mcnemar_exact_p(5, 5) == 1.0 and compare.mcnemar_exact_p(0, 0) == 1.0


def test_paired_comparison_counts_differences_and_brackets_them():
  rng = np.random.default_rng(0)
  truth_a = rng.random(800) < 0.87
  truth_b = truth_a.copy()
  flip = rng.choice(800, size=40, replace=False)
  truth_b[flip[:30]] = False  # b loses 30 examples a gets right ...
  truth_b[flip[30:]] = True   # ... and gains up to 10
  c = compare.paired_comparison(truth_a, truth_b, seed=1)
  only_a = int(np.sum(truth_a & ~truth_b))
  only_b = int(np.sum(~truth_a & truth_b))
  assert (c["only_a_right"], c["only_b_right"]) == (only_a, only_b)
  assert c["difference"] == pytest.approx(100 * (only_a - only_b) / 800)
  assert c["ci95"][0] < c["difference"] < c["ci95"][1]
  # The paired interval is far narrower than the unpaired one of two independent accuracies.
  pa, pb = truth_a.mean(), truth_b.mean()
  unpaired = 2 * 1.96 * 100 * np.sqrt((pa * (1 - pa) + pb * (1 - pb)) / 800)
  assert c["ci95"][1] - c["ci95"][0] < unpaired / 2
  assert c["mcnemar_p"] == pytest.approx(compare.mcnemar_exact_p(only_a, only_b))
  assert only_a - only_b > 15 and c["mcnemar_p"] < 0.001  # a real difference is found
  same = compare.paired_comparison(truth_a, truth_a)
  assert same["difference"] == 0 and same["ci95"] == [0, 0] and same["mcnemar_p"] == 1.0
  with pytest.raises(ValueError, match="equal"):
    compare.paired_comparison(truth_a, truth_a[:-1])
  assert math.isclose(c["accuracy_a"], 100 * truth_a.mean())
