"""The ten candidate operations: shapes, masking, and that padding never reaches real tokens."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adabert_jax.nas import ops

WIDTH, LENGTH, BATCH = 16, 12, 3
# Row 0 full, row 1 prefix of 7, row 2 with holes (masks need not be prefixes).
MASK_BL = jnp.asarray([[1] * 12, [1] * 7 + [0] * 5, [1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0]],
                      jnp.int32)


def _inputs(seed):
  x_BLD = jax.random.normal(jax.random.key(seed), (BATCH, LENGTH, WIDTH))
  return x_BLD * (MASK_BL[:, :, None] > 0)


def test_op_names_and_constants():
  assert ops.OP_NAMES == ("conv3", "conv5", "conv7", "dil_conv3", "dil_conv5", "dil_conv7",
                          "max_pool3", "avg_pool3", "identity", "zero")
  assert ops.OP_NAMES[ops.ZERO_INDEX] == "zero"
  assert ops.OP_NAMES[ops.IDENTITY_INDEX] == "identity"
  assert ops.NUM_OPS == 10


@pytest.mark.parametrize("name", ops.OP_NAMES)
def test_op_keeps_shape_and_zeroes_padding(name):
  params = ops.init_op(name, jax.random.key(0), WIDTH)
  y_BLD = ops.apply_op(name, params, _inputs(1), MASK_BL)
  chex.assert_shape(y_BLD, (BATCH, LENGTH, WIDTH))
  chex.assert_tree_all_finite(y_BLD)
  np.testing.assert_array_equal(np.asarray(y_BLD)[np.asarray(MASK_BL) == 0], 0.0)


@pytest.mark.parametrize("name", ops.OP_NAMES)
def test_padding_never_leaks_into_real_tokens(name):
  params = ops.init_op(name, jax.random.key(0), WIDTH)
  x_BLD = _inputs(1)
  # Large values (both signs) at padded positions only.
  junk_BLD = 100.0 * jax.random.normal(jax.random.key(2), x_BLD.shape)
  x_junk_BLD = jnp.where(MASK_BL[:, :, None] > 0, x_BLD, junk_BLD)
  y = np.asarray(ops.apply_op(name, params, x_BLD, MASK_BL))
  y_junk = np.asarray(ops.apply_op(name, params, x_junk_BLD, MASK_BL))
  real = np.asarray(MASK_BL) > 0
  np.testing.assert_allclose(y_junk[real], y[real], rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(y_junk[~real], 0.0)


def _reference_conv(x_LD, kernel_KIO, dilation):
  """Plain numpy dilated conv with zero 'same' padding: y[t] = sum_j relu(x)[t + d(j - c)] W[j]."""
  x_LD = np.maximum(np.asarray(x_LD, np.float64), 0.0)
  kernel_KIO = np.asarray(kernel_KIO, np.float64)
  size, centre = kernel_KIO.shape[0], kernel_KIO.shape[0] // 2
  y = np.zeros((x_LD.shape[0], kernel_KIO.shape[2]))
  for t in range(x_LD.shape[0]):
    for j in range(size):
      s = t + dilation * (j - centre)
      if 0 <= s < x_LD.shape[0]:
        y[t] += x_LD[s] @ kernel_KIO[j]
  mean = y.mean(-1, keepdims=True)
  var = ((y - mean) ** 2).mean(-1, keepdims=True)
  return (y - mean) / np.sqrt(var + ops.LAYER_NORM_EPS)


@pytest.mark.parametrize("name", ["conv3", "conv7", "dil_conv3", "dil_conv5", "dil_conv7"])
def test_conv_is_a_real_dilated_convolution(name):
  params = ops.init_op(name, jax.random.key(3), WIDTH)
  x_BLD = _inputs(4)[:1]  # the full-length row: no masking involved
  y = ops.apply_op(name, params, x_BLD, MASK_BL[:1])
  kernel_size, dilation = ops.CONV_SPECS[name]
  assert params["kernel_KIO"].shape == (kernel_size, WIDTH, WIDTH)
  expected = _reference_conv(x_BLD[0], params["kernel_KIO"], dilation)
  np.testing.assert_allclose(np.asarray(y[0]), expected, rtol=1e-4, atol=1e-4)


def test_dilated_conv3_sees_tokens_two_apart():
  # A single real impulse at t=5: dil_conv3 responds at 3, 5, 7 (not 4, 6); conv3 at 4, 5, 6.
  x_BLD = jnp.zeros((1, LENGTH, WIDTH)).at[0, 5].set(1.0)
  mask_BL = jnp.ones((1, LENGTH), jnp.int32)
  for name, touched in (("dil_conv3", {3, 5, 7}), ("conv3", {4, 5, 6})):
    params = ops.init_op(name, jax.random.key(0), WIDTH)
    params["ln_bias"] = jnp.zeros(WIDTH)
    y = np.asarray(ops.apply_op(name, params, x_BLD, mask_BL))[0]
    assert {t for t in range(LENGTH) if np.abs(y[t]).max() > 1e-6} == touched, name


def test_max_pool_treats_padding_as_minus_infinity():
  x_BLD = -jnp.ones((1, 4, 2))  # every real value negative; padding would win if it were 0
  mask_BL = jnp.asarray([[1, 1, 0, 0]])
  y = ops.apply_op("max_pool3", {}, x_BLD, mask_BL)
  np.testing.assert_array_equal(np.asarray(y)[0], [[-1, -1], [-1, -1], [0, 0], [0, 0]])


def test_avg_pool_divides_by_valid_neighbours():
  x_BLD = jnp.asarray([[1.0, 2.0, 3.0, 7.0, 9.0]])[:, :, None]
  mask_BL = jnp.asarray([[1, 1, 1, 0, 0]])
  y = np.asarray(ops.apply_op("avg_pool3", {}, x_BLD, mask_BL))[0, :, 0]
  # Border (t=0) and padding-adjacent (t=2) windows average over their 2 real tokens.
  np.testing.assert_allclose(y, [1.5, 2.0, 2.5, 0.0, 0.0])


def test_parameter_free_ops_have_no_params():
  for name in ("max_pool3", "avg_pool3", "identity", "zero"):
    assert ops.init_op(name, jax.random.key(0), WIDTH) == {}


def test_unknown_op_is_a_clear_error():
  with pytest.raises(ValueError, match="Unknown operation 'conv9'"):
    ops.init_op("conv9", jax.random.key(0), WIDTH)


@pytest.mark.parametrize("name", list(ops.CONV_SPECS))
def test_conv_custom_gradient_matches_autodiff(name):
  size, dilation = ops.CONV_SPECS[name]
  h = jax.random.normal(jax.random.key(1), (2, 9, 4))
  kernel = jax.random.normal(jax.random.key(2), (size, 4, 3))
  dy = jax.random.normal(jax.random.key(3), (2, 9, 3))
  ours = jax.vjp(lambda h, k: ops.conv1d_same(h, k, dilation), h, kernel)[1](dy)
  reference = jax.vjp(
      lambda h, k: jax.lax.conv_general_dilated(h, k, (1,), "SAME", rhs_dilation=(dilation,),
                                                dimension_numbers=("NWC", "WIO", "NWC")),
      h, kernel)[1](dy)
  chex.assert_trees_all_close(ours, reference, rtol=1e-5, atol=1e-5)
