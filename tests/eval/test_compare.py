"""Paired comparison of two models on the same examples."""

import math

import numpy as np
import pytest

from adabert_jax.data import tasks
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


def test_seed_mean_comparison_means_sds_wins_and_an_interval_that_holds_training_noise():
  rng = np.random.default_rng(0)
  n = 800
  base = rng.random(n) < 0.85
  # a: three trainings that agree on every example; b: three trainings that each lose a
  # different number of a's right answers (so their accuracies differ by seed).
  a = np.stack([base] * 3)
  b = np.stack([base.copy() for _ in range(3)])
  right = np.flatnonzero(base)
  for s, lost in enumerate((8, 16, 40)):
    b[s, right[:lost]] = False
  c = compare.seed_mean_comparison(a, b, seed=1)
  acc_b = [100 * (base.sum() - lost) / n for lost in (8, 16, 40)]
  assert c["accuracies_a"] == pytest.approx([100 * base.mean()] * 3)
  assert c["accuracies_b"] == pytest.approx(acc_b)
  assert c["mean_b"] == pytest.approx(np.mean(acc_b))
  assert c["sd_a"] == 0 and c["sd_b"] == pytest.approx(np.std(acc_b, ddof=1))
  assert c["difference"] == pytest.approx(100 * base.mean() - np.mean(acc_b))
  assert (c["a_wins"], c["ties"], c["b_wins"]) == (9, 0, 0)
  assert c["ci95"][0] < c["difference"] < c["ci95"][1]
  # The seed level of the bootstrap is what carries b's training noise: three identical
  # trainings that each lose 21 examples (about b's mean of 21.3) give a narrower interval,
  # although their per-example differences are more spread (21 examples at 1 against b's
  # 8 at 1, 8 at 2/3 and 24 at 1/3), which alone would widen it.
  b_same = np.stack([base.copy() for _ in range(3)])
  b_same[:, right[:21]] = False
  narrow = compare.seed_mean_comparison(a, b_same, seed=1)
  assert narrow["sd_b"] == 0
  assert (narrow["ci95"][1] - narrow["ci95"][0]) < (c["ci95"][1] - c["ci95"][0])
  # One training each: the interval is the paired bootstrap's, up to resampling noise.
  one = compare.seed_mean_comparison(a[:1], b[2:], seed=1)
  paired = compare.paired_comparison(a[0], b[2], seed=1)
  assert one["difference"] == pytest.approx(paired["difference"])
  assert one["ci95"] == pytest.approx(paired["ci95"], abs=0.15)
  assert math.isnan(one["sd_a"])
  with pytest.raises(ValueError, match="same examples"):
    compare.seed_mean_comparison(a, b[:, :-1])


def test_seed_metrics_gives_f1_per_seed_with_mean_and_sd_and_no_table_for_accuracy_tasks():
  label = np.array([1, 1, 1, 0, 0, 0, 1, 0])
  preds = np.array([[1, 1, 1, 0, 0, 0, 1, 0],    # all right: F1 100
                    [1, 1, 0, 0, 0, 1, 1, 0],    # tp 3, fp 1, fn 1: F1 6 / 8 = 75
                    [0, 0, 0, 0, 0, 0, 0, 0]])   # no positive predicted: F1 0
  mrpc = compare.seed_metrics(tasks.get_task("mrpc"), preds, label)
  assert mrpc["f1"]["per_seed"] == pytest.approx([100.0, 75.0, 0.0])
  assert mrpc["f1"]["mean"] == pytest.approx(175 / 3)
  assert mrpc["f1"]["sd"] == pytest.approx(np.std([100, 75, 0], ddof=1))
  assert mrpc["accuracy"]["per_seed"] == pytest.approx([100.0, 75.0, 50.0])
  assert mrpc["score"]["per_seed"] == pytest.approx([100.0, 75.0, 25.0])
  table = compare.format_seed_metrics({"student": mrpc})
  assert "| student | f1 | 100.00, 75.00, 0.00 | 58.33 | 52.04 |" in table
  assert "| accuracy |" not in table  # the accuracy table has it already
  sst2 = compare.seed_metrics(tasks.get_task("sst2"), preds, label)
  assert set(sst2) == {"accuracy", "score"}
  assert compare.format_seed_metrics({"student": sst2}) == ""
  with pytest.raises(ValueError, match="8 examples"):
    compare.seed_metrics(tasks.get_task("mrpc"), preds[:, :-1], label)


def test_smallest_significant_gap_is_the_most_even_split_mcnemar_rejects():
  # 6 discordant: only 6 / 0 is significant (p = 2 / 64); 5 / 1 gives p = 14 / 64.
  assert compare.smallest_significant_gap(100, 6) == pytest.approx(6.0)
  assert compare.smallest_significant_gap(100, 5) is None  # 5 / 0: p = 2 / 32 = 0.0625
  # 37 discordant of 872: 25 / 12 is the most even split below 0.05, 24 / 13 is not.
  assert compare.mcnemar_exact_p(25, 12) < 0.05 <= compare.mcnemar_exact_p(24, 13)
  assert compare.smallest_significant_gap(872, 37) == pytest.approx(100 * 13 / 872)
  # More disagreement needs a larger gap; a stricter level too.
  assert (compare.smallest_significant_gap(872, 80) > compare.smallest_significant_gap(872, 37)
          < compare.smallest_significant_gap(872, 37, level=0.01))


def test_format_comparisons_gives_the_gap_the_test_would_need():
  a = np.zeros(872, bool)
  b = np.zeros(872, bool)
  a[:25] = True        # 25 examples only a gets right ...
  b[25:37] = True      # ... 12 only b: McNemar p 0.047
  table = compare.format_comparisons("student", [("plain_cnn", compare.paired_comparison(a, b))])
  assert table.splitlines()[-1].endswith(
      f"| 25 / 12 | {compare.mcnemar_exact_p(25, 12):.3f} | {100 * 13 / 872:.2f} |")
  # Of 30 examples all discordant (25 / 5), the most even significant split is 21 / 9.
  assert compare.mcnemar_exact_p(21, 9) < 0.05 <= compare.mcnemar_exact_p(20, 10)
  few = compare.paired_comparison(a[:30], b[:30])
  assert compare.format_comparisons("s", [("m", few)]).endswith(f"| {100 * 12 / 30:.2f} |")
  none = compare.paired_comparison(a[:3], b[:3])  # 3 / 0: no split of 3 is significant
  assert compare.format_comparisons("s", [("m", none)]).endswith("| - |")
