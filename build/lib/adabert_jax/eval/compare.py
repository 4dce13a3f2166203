"""Is one model really better than another on the same dev set? Paired statistics on the
per-example correctness of two models' predictions.

- McNemar's exact test: of the examples exactly one model gets right, how likely a split at
  least this lopsided is if both were equally good (a two-sided binomial test at 1/2).
- A paired bootstrap 95% interval for the accuracy difference (examples resampled together
  for both models, so what they share does not count as noise).

On SST-2's 872 dev sentences an accuracy near 87% carries a binomial standard error of
about 1.1 points on its own; the paired view is much tighter, but differences of a few
tenths are still rarely real.
"""

from __future__ import annotations

import math

import numpy as np


def mcnemar_exact_p(only_a: int, only_b: int) -> float:
  """Two-sided exact McNemar p-value from the discordant counts (a right and b wrong, and
  the reverse)."""
  n = only_a + only_b
  if n == 0:
    return 1.0
  tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
  return min(1.0, 2.0 * tail)


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
           f"only {reference} right / only model right | McNemar p |",
           "|---|---|---|---|---|---|"]
  for name, c in rows:
    lines.append(f"| {name} | {c['accuracy_b']:.2f} | {c['difference']:+.2f} | "
                 f"[{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}] | "
                 f"{c['only_a_right']} / {c['only_b_right']} | {c['mcnemar_p']:.3f} |")
  return "\n".join(lines)
