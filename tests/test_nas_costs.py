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
