"""Is one model really better than another on the same dev set? Paired statistics on the
per-example correctness of two models' predictions.

- McNemar's exact test: of the examples exactly one model gets right, how likely a split at
  least this lopsided is if both were equally good (a two-sided binomial test at 1/2).
- A paired bootstrap 95% interval for the accuracy difference (examples resampled together
  for both models, so what they share does not count as noise).
- The smallest difference McNemar's test could call significant, given how many examples
  the two models disagree on (smallest_significant_gap).

On SST-2's 872 dev sentences an accuracy near 87% carries a binomial standard error of
about 1.1 points on its own; the paired view is much tighter, but differences of a few
tenths are still rarely real.
"""

from __future__ import annotations

import math

import numpy as np

from adabert_jax.data import metrics
from adabert_jax.data.tasks import Task


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
  """Two-sided exact McNemar p-value from the discordant counts (a right and b wrong, and
  the reverse)."""
  n = only_a + only_b
  if n == 0:
    return 1.0
  tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
  return min(1.0, 2.0 * tail)


def smallest_significant_gap(num_examples: int, discordant: int, level: float = 0.05
                             ) -> float | None:
  """The smallest accuracy difference (points) that McNemar's exact test calls significant
  at `level` when two models disagree on `discordant` of `num_examples` examples: the most
  even split of the discordant examples whose p-value is below the level. None if no split
  of so few is (fewer than 6 at 0.05)."""
  for ahead in range((discordant + 1) // 2, discordant + 1):
    if mcnemar_exact_p(ahead, discordant - ahead) < level:
      return 100.0 * (2 * ahead - discordant) / num_examples
  return None


def paired_comparison(correct_a: np.ndarray, correct_b: np.ndarray, *, seed: int = 0,
                      resamples: int = 10_000) -> dict:
  """Accuracy difference a - b (points), its paired bootstrap 95% interval, and McNemar's
  exact p-value; correct_a and correct_b are per-example booleans on the same examples."""
  correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
  if correct_a.shape != correct_b.shape or correct_a.ndim != 1 or not len(correct_a):
    raise ValueError(f"need two equal, non-empty 1-D correctness vectors, got "
                     f"{correct_a.shape} and {correct_b.shape}")
  n = len(correct_a)
  diff_n = correct_a.astype(np.float64) - correct_b
  rng = np.random.default_rng(seed)
  # Resampled in chunks so 10,000 x n indices never sit in memory at once.
  boot = np.concatenate([diff_n[rng.integers(0, n, size=(min(1000, resamples - i), n))]
                         .mean(axis=1) for i in range(0, resamples, 1000)])
  only_a = int(np.sum(correct_a & ~correct_b))
  only_b = int(np.sum(~correct_a & correct_b))
  return {"accuracy_a": 100.0 * correct_a.mean(), "accuracy_b": 100.0 * correct_b.mean(),
          "difference": 100.0 * diff_n.mean(),
          "ci95": [100.0 * float(np.percentile(boot, 2.5)),
                   100.0 * float(np.percentile(boot, 97.5))],
          "only_a_right": only_a, "only_b_right": only_b,
          "mcnemar_p": mcnemar_exact_p(only_a, only_b), "num_examples": n}


def format_comparisons(reference: str, rows: list[tuple[str, dict]]) -> str:
  """Markdown: each model against `reference` (difference = reference - model)."""
  lines = [f"| model | accuracy | {reference} minus model (points) | paired 95% interval | "
           f"only {reference} right / only model right | McNemar p | "
           "the smallest difference p < 0.05 needs at this disagreement |",
           "|---|---|---|---|---|---|---|"]
  for name, c in rows:
    gap = smallest_significant_gap(c["num_examples"], c["only_a_right"] + c["only_b_right"])
    lines.append(f"| {name} | {c['accuracy_b']:.2f} | {c['difference']:+.2f} | "
                 f"[{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] | "
                 f"{c['only_a_right']} / {c['only_b_right']} | {c['mcnemar_p']:.3f} | "
                 f"{'-' if gap is None else f'{gap:.2f}'} |")
  return "\n".join(lines)


def _sd(values) -> float:
  """The sample SD (ddof 1) of one model's per-seed scores; NaN for a single seed."""
  return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def seed_mean_comparison(correct_a: np.ndarray, correct_b: np.ndarray, *, seed: int = 0,
                         resamples: int = 10_000) -> dict:
  """Two models, each trained several times (seeds), on the same examples: correct_a is
  [seeds_a, examples] and correct_b [seeds_b, examples], per-example booleans.

  Gives each model's accuracy per seed, mean and SD (ddof 1); the difference of the means
  (a - b, points) with a 95% interval from a two-level bootstrap (each model's seeds
  resampled on their own, the examples resampled together for both, so the interval holds
  both the training noise and the dev sample's); and, over every pairing of an a-training
  with a b-training, how many a wins, ties and loses. With 3 seeds a model the seed level
  of the bootstrap sees little of the training noise's tail: read the interval as a floor.
  """
  correct_a, correct_b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
  if (correct_a.ndim != 2 or correct_b.ndim != 2 or correct_a.shape[1] != correct_b.shape[1]
      or not correct_a.size or not correct_b.size):
    raise ValueError(f"need two non-empty [seeds, examples] correctness arrays on the same "
                     f"examples, got {correct_a.shape} and {correct_b.shape}")
  (seeds_a, n), seeds_b = correct_a.shape, correct_b.shape[0]
  acc_a, acc_b = 100.0 * correct_a.mean(axis=1), 100.0 * correct_b.mean(axis=1)
  rng = np.random.default_rng(seed)
  boot = []
  for i in range(0, resamples, 1000):  # chunks, so resamples x n indices never sit in memory
    m = min(1000, resamples - i)
    examples = rng.integers(0, n, size=(m, n))
    pick_a = rng.integers(0, seeds_a, size=(m, seeds_a))
    pick_b = rng.integers(0, seeds_b, size=(m, seeds_b))
    # Per-example correctness averaged over the resampled seeds, then over the resampled
    # examples.
    mean_a = correct_a[pick_a].mean(axis=1)  # [m, n]
    mean_b = correct_b[pick_b].mean(axis=1)
    rows = np.arange(m)[:, None]
    boot.append((mean_a[rows, examples] - mean_b[rows, examples]).mean(axis=1))
  boot = 100.0 * np.concatenate(boot)
  pairs = acc_a[:, None] - acc_b[None, :]
  return {"accuracies_a": acc_a.tolist(), "accuracies_b": acc_b.tolist(),
          "mean_a": float(acc_a.mean()), "mean_b": float(acc_b.mean()),
          "sd_a": _sd(acc_a), "sd_b": _sd(acc_b),
          "difference": float(acc_a.mean() - acc_b.mean()),
          "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
          "a_wins": int(np.sum(pairs > 0)), "ties": int(np.sum(pairs == 0)),
          "b_wins": int(np.sum(pairs < 0)), "num_examples": n}


def format_seed_comparisons(reference: str, rows: list[tuple[str, dict]]) -> str:
  """Markdown: each model's dev accuracy per seed, mean and SD, and the difference of the
  means against `reference` (reference - model) with its two-level bootstrap interval."""
  fmt = lambda accs: ", ".join(f"{a:.2f}" for a in accs)
  first = rows[0][1]
  lines = ["| model | accuracy per seed | mean | SD | "
           f"{reference} minus model (means) | 95% interval (seeds and examples resampled) | "
           f"pairs of trainings: {reference} ahead / tied / behind |",
           "|---|---|---|---|---|---|---|",
           f"| {reference} | {fmt(first['accuracies_a'])} | {first['mean_a']:.2f} | "
           f"{first['sd_a']:.2f} | | | |"]
  for name, c in rows:
    lines.append(f"| {name} | {fmt(c['accuracies_b'])} | {c['mean_b']:.2f} | {c['sd_b']:.2f} | "
                 f"{c['difference']:+.2f} | [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] | "
                 f"{c['a_wins']} / {c['ties']} / {c['b_wins']} |")
  return "\n".join(lines)


def seed_metrics(task: Task, preds: np.ndarray, label: np.ndarray) -> dict[str, dict]:
  """One model trained once per seed, preds [seeds, examples] its predicted class ids: each
  of the task's metrics (data/metrics.py: accuracy, and F1, Matthews or macro-F1 and the
  main score where the task has them) per seed, with the mean and SD over the seeds."""
  preds = np.asarray(preds)
  if preds.ndim != 2 or preds.shape[1] != len(label) or not preds.size:
    raise ValueError(f"need [seeds, examples] predictions for {len(label)} examples, got "
                     f"{preds.shape}")
  per_seed = [metrics.compute_metrics(task, p, label) for p in preds]
  by_name = {name: [m[name] for m in per_seed] for name in per_seed[0]
             if name != "num_examples"}
  return {name: {"per_seed": values, "mean": float(np.mean(values)), "sd": _sd(values)}
          for name, values in by_name.items()}


def format_seed_metrics(by_model: dict[str, dict[str, dict]]) -> str:
  """Markdown: each model's metrics other than accuracy (which format_seed_comparisons
  gives), per seed, with the mean and SD; '' where the task has no other metric."""
  names = [n for n in next(iter(by_model.values())) if n != "accuracy"]
  if names == ["score"]:  # the score is the accuracy
    return ""
  lines = ["| model | metric | per seed | mean | SD |", "|---|---|---|---|---|"]
  for model, m in by_model.items():
    for name in names:
      lines.append(f"| {model} | {name} | {', '.join(f'{v:.2f}' for v in m[name]['per_seed'])}"
                   f" | {m[name]['mean']:.2f} | {m[name]['sd']:.2f} |")
  return "\n".join(lines)
