"""experiments/overlap_baseline.py: the word-overlap yardstick for pair tasks."""

import itertools

import numpy as np

from adabert_jax.nas import testing
from tests.helpers import load_script


def _script():
  return load_script("overlap_baseline")


def _numpy(arrays):
  return {k: np.asarray(v) for k, v in arrays.items()}


def test_features_count_distinct_tokens_without_cls_and_sep():
  arrays = _numpy(testing.pair_arrays([[5, 6, 7, 7]], [[6, 7, 8, 9, 9]], 16))
  [(a, b)] = _script().sentence_words(arrays)
  assert (a, b) == ({5, 6, 7}, {6, 7, 8, 9})
  np.testing.assert_allclose(_script().overlap_features(arrays), [[2 / 4, 2 / 5]])


def test_threshold_is_the_best_on_training_data():
  rng = np.random.default_rng(0)
  x, label = rng.integers(0, 6, 40) / 5, rng.integers(0, 2, 40)
  threshold, at_least = _script().fit_threshold(x, label)
  fitted = np.mean(_script().predict(x, threshold, at_least) == label)
  brute_force = max(np.mean(((x >= t) == side) == label)
                    for t, side in itertools.product(np.append(x, np.inf), (True, False)))
  assert fitted == brute_force
  threshold, at_least = _script().fit_threshold(np.array([0.1, 0.2, 0.8, 0.9]),
                                                np.array([1, 1, 0, 0]))
  assert (threshold, at_least) == (0.8, False)


def test_the_rule_learns_overlap_and_nothing_else():
  """Shuffled-words pairs (B covered by A) against random ones: overlap decides them; with
  labels that ignore the pair, one threshold cannot do better than chance on new pairs."""
  script = _script()
  train, test = (_numpy(testing.synthetic_pairs(400, seed)) for seed in (0, 1))
  x_train, x_test = (script.overlap_features(p)[:, 0] for p in (train, test))
  rule = script.fit_threshold(x_train, train["label"])
  assert np.mean(script.predict(x_test, *rule) == test["label"]) >= 0.95
  rng = np.random.default_rng(2)
  noise_train, noise_test = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
  rule = script.fit_threshold(x_train, noise_train)
  assert np.mean(script.predict(x_test, *rule) == noise_test) < 0.6
