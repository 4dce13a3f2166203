"""The op cost table: measured from the op definitions, normalised, and ranked sensibly."""

import chex
import numpy as np
import pytest

from adabert_jax.nas import costs, ops

WIDTH, LENGTH = 16, 16


@pytest.fixture(scope="module")
def table():
  return costs.op_cost_table(WIDTH, LENGTH)


def _cost(table, name):
  return table.normalised[ops.OP_NAMES.index(name)]


def test_table_shapes_and_range(table):
  chex.assert_shape([table.params, table.flops, table.normalised], (ops.NUM_OPS,))
  assert np.all(table.normalised >= 0.0) and np.all(table.normalised <= 1.0)
  assert table.normalised.max() == pytest.approx(1.0)  # conv7 is the largest in both
  assert set(table.as_dict()) == set(ops.OP_NAMES)


def test_param_counts_come_from_the_init(table):
  for name, (size, _) in ops.CONV_SPECS.items():
    # kernel [size, D, D] + LayerNorm scale and bias [D].
    assert table.params[ops.OP_NAMES.index(name)] == size * WIDTH * WIDTH + 2 * WIDTH
  for name in ("max_pool3", "avg_pool3", "identity", "zero"):
    assert table.params[ops.OP_NAMES.index(name)] == 0


def test_zero_op_costs_nothing(table):
  assert table.params[ops.ZERO_INDEX] == 0 and table.flops[ops.ZERO_INDEX] == 0
  assert _cost(table, "zero") == 0.0


def test_cost_ranking(table):
  conv3 = _cost(table, "conv3")
  assert _cost(table, "zero") < _cost(table, "identity")
  for cheap in ("identity", "max_pool3", "avg_pool3"):
    assert 0.0 < _cost(table, cheap) < conv3, cheap
  assert conv3 < _cost(table, "conv5") < _cost(table, "conv7")
  assert _cost(table, "dil_conv3") < _cost(table, "dil_conv5") < _cost(table, "dil_conv7")


def test_flops_scale_with_kernel_size(table):
  flops = dict(zip(ops.OP_NAMES, table.flops))
  # The matmul part (2 * k * D * D per token) dominates: conv7 / conv3 ~ 7 / 3.
  assert 1.8 < flops["conv7"] / flops["conv3"] < 2.6


def test_flops_from_cost_analysis_accepts_dict_list_and_none():
  assert costs.flops_from_cost_analysis({"flops": 12.0, "bytes accessed": 3.0}) == 12.0
  assert costs.flops_from_cost_analysis([{"flops": 2.0}, {"flops": 3.0}, {}]) == 5.0
  assert costs.flops_from_cost_analysis(None) == 0.0
  assert costs.flops_from_cost_analysis({"flops": -1.0}) == 0.0


def test_softmax_norm_is_the_authors_count_op_cost():
  """autokd-torch search.py count_OP_cost: zero and identity smoothed to 1 parameter and 1
  MAC, then mean(softmax(params / 1e5), softmax(MACs / 1e7)) over the ten ops."""
  params = np.array([49408, 82176, 114944, 49408, 82176, 114944, 0, 0, 0, 0], np.float64)
  flops = np.array([12.7e6, 21.0e6, 29.1e6, 12.6e6, 20.8e6, 28.8e6, 82e3, 83e3, 17e3, 0.0])
  smoothed_params = params.copy()
  smoothed_macs = flops / 2
  for name in ("identity", "zero"):
    smoothed_params[ops.OP_NAMES.index(name)] = 1.0
    smoothed_macs[ops.OP_NAMES.index(name)] = 1.0
  soft_params = np.exp(smoothed_params / 1e5) / np.exp(smoothed_params / 1e5).sum()
  soft_macs = np.exp(smoothed_macs / 1e7) / np.exp(smoothed_macs / 1e7).sum()
  got = costs.normalise_costs(params, flops, "softmax")
  np.testing.assert_allclose(got, (soft_params + soft_macs) / 2, rtol=1e-12)
  assert got.sum() == pytest.approx(1.0)
  # A flat price list, against the steep max form's 0 to 1.
  assert 0.04 < got.min() < 0.06 and 0.17 < got.max() < 0.2
  steep = costs.normalise_costs(params, flops, "max")
  assert steep[ops.ZERO_INDEX] == 0.0 and steep.max() == pytest.approx(1.0)
  with pytest.raises(ValueError, match="cost norm"):
    costs.normalise_costs(params, flops, "sum")


def test_softmax_norm_at_the_papers_width_and_length():
  table = costs.op_cost_table(128, 128, "softmax")
  cost = dict(zip(ops.OP_NAMES, table.normalised))
  assert 0.049 < cost["zero"] <= cost["identity"] < 0.052
  assert cost["conv3"] < cost["conv5"] < cost["conv7"] < 0.19
