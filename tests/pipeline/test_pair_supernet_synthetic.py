"""experiments/pair_supernet_synthetic.py: the pair supernet on a task only comparing can solve,
and why the `:pairs` preset searches without dropout."""

import argparse

import numpy as np
import pytest

from adabert_jax.nas import testing
from tests.helpers import load_config, load_script


def _script():
  return load_script("pair_supernet_synthetic")


def test_the_stand_in_teacher_points_at_the_label():
  pairs = _script().with_teacher(testing.synthetic_pairs(32, seed=0))
  labels = np.asarray(pairs["label"])
  assert 0 < labels.sum() < len(labels)
  np.testing.assert_array_equal(np.asarray(pairs["teacher_logits"]).argmax(-1), labels)
  probes = np.asarray(pairs["probe_logits"])
  assert probes.shape == (32, 7, 2)
  np.testing.assert_array_equal(probes.argmax(-1), np.repeat(labels[:, None], 7, 1))


# Two 300-step searches, one to three minutes; it checks a preset value, not code.
@pytest.mark.slow
@pytest.mark.long
def test_the_pairs_preset_search_dropout_lets_the_supernet_compare_where_0_3_does_not():
  """Under one fixed architecture, so only the dropout differs: independent masks on the two
  sentences at the paper's 0.3 keep the supernet near chance; the preset's value learns."""
  args = argparse.Namespace(fixed=True, steps=300, hidden=16, k_max=2, seeds=[0])
  preset_dropout = load_config("pairs").search.dropout
  [learnt] = _script().run(preset_dropout, args)
  [noisy] = _script().run(0.3, args)
  assert learnt["accuracy_plain_cnn"] >= 0.8, learnt
  assert noisy["accuracy_plain_cnn"] < 0.75, noisy
  assert learnt["ce_last_100"] < noisy["ce_last_100"] - 0.1
