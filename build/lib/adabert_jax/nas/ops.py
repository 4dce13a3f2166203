"""AdaBERT's ten candidate operations: 1-D over the token axis, length-preserving, mask-aware.

Every op maps x_BLD -> y_BLD at the same width D. An op never lets the values at padded
positions reach a real token's output, and always returns exact zeros at padded positions, so
the sum of several ops (a node) is again zero on padding and can be fed to the next op as is.

Convolutions are ReLU -> Conv1D (same padding, no bias) -> LayerNorm over channels. The authors
use BatchNorm; we use a per-token LayerNorm with a learned scale and bias because BatchNorm's
batch statistics would mix padded positions into the statistics, it needs mutable running state
(train/eval behave differently), and on several devices it needs cross-device synchronisation.
LayerNorm is mask-safe (each token is normalised on its own), stateless and identical in train
and eval. The conv has no bias because LayerNorm would subtract it again.

Dilated convolutions are real dilated (atrous) convolutions: lax.conv_general_dilated with
rhs_dilation=2, so a kernel of size k covers 2k - 1 tokens. (Not morphological dilation.)
"""

import functools
import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
from jax import lax

Params = dict[str, Any]

OP_NAMES = ("conv3", "conv5", "conv7", "dil_conv3", "dil_conv5", "dil_conv7", "max_pool3",
            "avg_pool3", "identity", "zero")
NUM_OPS = len(OP_NAMES)
ZERO_INDEX = OP_NAMES.index("zero")
IDENTITY_INDEX = OP_NAMES.index("identity")

# name -> (kernel size, dilation) for the convolutions.
CONV_SPECS = {
    "conv3": (3, 1), "conv5": (5, 1), "conv7": (7, 1),
    "dil_conv3": (3, 2), "dil_conv5": (5, 2), "dil_conv7": (7, 2),
}
POOL_WINDOW = 3
LAYER_NORM_EPS = 1e-5


def _check_name(name: str) -> None:
  if name not in OP_NAMES:
    raise ValueError(f"Unknown operation {name!r}; the operations are {', '.join(OP_NAMES)}")


def flat_normal(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Standard normal samples of `shape`, drawn as a flat vector and reshaped.

  Same distribution as jax.random.normal(key, shape); drawing flat avoids a compile-time
  cost of the partitionable threefry PRNG that grows with the rank of the shape (~2 s for a
  rank-5 draw on a CPU), which would dominate initialising the stacked supernet.
  """
  return jax.random.normal(key, (math.prod(shape),), jnp.float32).reshape(shape)


def init_op(name: str, key: jax.Array, width: int, lead_shape: tuple[int, ...] = ()) -> Params:
  """Parameters of op `name` at channel width `width` (an empty dict for parameter-free ops).

  lead_shape stacks independent copies: every leaf gets those leading axes (the supernet uses
  (k_max, num_edges) so the cells and edges can run under lax.scan).
  """
  _check_name(name)
  if name not in CONV_SPECS:
    return {}
  kernel_size, _ = CONV_SPECS[name]
  # He-normal over the fan-in (kernel_size * width): the conv follows a ReLU.
  std = (2.0 / (kernel_size * width)) ** 0.5
  return {
      "kernel_KIO": std * flat_normal(key, (*lead_shape, kernel_size, width, width)),
      "ln_scale": jnp.ones((*lead_shape, width), jnp.float32),
      "ln_bias": jnp.zeros((*lead_shape, width), jnp.float32),
  }


def layer_norm(x_BLD: jax.Array, scale_D: jax.Array, bias_D: jax.Array) -> jax.Array:
  """Per-token LayerNorm over channels."""
  return normalize_tokens(x_BLD) * scale_D + bias_D


def normalize_tokens(x_BLD: jax.Array) -> jax.Array:
  """LayerNorm without scale or bias: each token's vector to zero mean, unit variance.

  Applied to every cell output. A node sums all its incoming edges, and identity and pooling
  edges pass their input's scale through, so along a sampled path of such edges the
  activations would grow several-fold per cell (up to ~5^8 over 8 cells) and the heads
  would see inputs whose scale jumps from one architecture sample to the next. DARTS-style
  cells normalise their inputs for the same reason; convolutions here already end in a
  LayerNorm. A padded token (all zeros) stays all zeros.
  """
  mean = jnp.mean(x_BLD, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(x_BLD - mean), axis=-1, keepdims=True)
  return (x_BLD - mean) * lax.rsqrt(var + LAYER_NORM_EPS)


def _conv1d_same_fwd_only(h_BLI: jax.Array, kernel_KIO: jax.Array, dilation: int) -> jax.Array:
  return lax.conv_general_dilated(h_BLI, kernel_KIO, window_strides=(1,), padding="SAME",
                                  rhs_dilation=(dilation,),
                                  dimension_numbers=("NWC", "WIO", "NWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv1d_same(h_BLI: jax.Array, kernel_KIO: jax.Array, dilation: int) -> jax.Array:
  """1-D convolution over the token axis, zero 'same' padding, odd kernel, given dilation:
  y[t] = sum_j h[t + dilation * (j - K // 2)] @ W[j].

  The forward pass is lax.conv_general_dilated. The custom VJP computes both gradients as one
  matmul per tap on shifted copies, instead of XLA's transposed convolutions: inside a
  lax.scan (how the supernet runs its cells and edges) XLA:CPU ran the kernel-gradient
  convolution (whose window is the whole sequence) ~40x slower than outside one, and the
  input-gradient one ~1.5x slower; matmuls are fast in and out of loops on every backend.
  """
  return _conv1d_same_fwd_only(h_BLI, kernel_KIO, dilation)


def _conv1d_same_fwd(h_BLI, kernel_KIO, dilation):
  return _conv1d_same_fwd_only(h_BLI, kernel_KIO, dilation), (h_BLI, kernel_KIO)


def _conv1d_same_bwd(dilation, residuals, dy_BLO):
  h_BLI, kernel_KIO = residuals
  size, length = kernel_KIO.shape[0], h_BLI.shape[1]
  reach = dilation * (size // 2)
  pad = ((0, 0), (reach, reach), (0, 0))
  h_pad, dy_pad = jnp.pad(h_BLI, pad), jnp.pad(dy_BLO, pad)
  # Tap j reads h at offset o_j = dilation * j - reach:
  #   dW[j] = sum_t h[t + o_j]^T dy[t];   dh[s] = sum_j dy[s - o_j] W[j]^T.
  dkernel_KIO = jnp.stack([
      jnp.einsum("bli,blo->io", h_pad[:, dilation * j:dilation * j + length], dy_BLO)
      for j in range(size)])
  dh_BLI = sum(
      jnp.einsum("blo,io->bli",
                 dy_pad[:, 2 * reach - dilation * j:2 * reach - dilation * j + length],
                 kernel_KIO[j])
      for j in range(size))
  return dh_BLI.astype(h_BLI.dtype), dkernel_KIO.astype(kernel_KIO.dtype)


conv1d_same.defvjp(_conv1d_same_fwd, _conv1d_same_bwd)


def _conv(params: Params, x_BLD: jax.Array, m_BL1: jax.Array, dilation: int) -> jax.Array:
  # Zeroing padded inputs is what keeps padding out of real tokens' receptive fields.
  h_BLD = jax.nn.relu(x_BLD) * m_BL1
  y_BLD = conv1d_same(h_BLD, params["kernel_KIO"], dilation)
  return layer_norm(y_BLD, params["ln_scale"], params["ln_bias"])


def _max_pool(x_BLD: jax.Array, m_BL1: jax.Array) -> jax.Array:
  # Padded neighbours (and the out-of-range border) are -inf, so they never win the max; a
  # real token always sees itself, so its output is finite. An elementwise max of shifted
  # copies rather than lax.reduce_window: its gradient is a select, where reduce_window's
  # (select_and_scatter) is several times slower on CPU.
  h_BLD = jnp.where(m_BL1 > 0, x_BLD, -jnp.inf)
  reach, length = POOL_WINDOW // 2, x_BLD.shape[1]
  h_pad = jnp.pad(h_BLD, ((0, 0), (reach, reach), (0, 0)), constant_values=-jnp.inf)
  return functools.reduce(jnp.maximum, [h_pad[:, j:j + length] for j in range(POOL_WINDOW)])


def _avg_pool(x_BLD: jax.Array, m_BL1: jax.Array) -> jax.Array:
  # count_include_pad=False: divide by the number of real tokens in the window.
  total_BLD = lax.reduce_window(x_BLD * m_BL1, 0.0, lax.add, (1, POOL_WINDOW, 1), (1, 1, 1),
                                "SAME")
  count_BL1 = lax.reduce_window(m_BL1, 0.0, lax.add, (1, POOL_WINDOW, 1), (1, 1, 1), "SAME")
  return total_BLD / jnp.maximum(count_BL1, 1.0)


def apply_op(name: str, params: Params, x_BLD: jax.Array, mask_BL: jax.Array) -> jax.Array:
  """Applies op `name` to x_BLD; mask_BL is 1 at real tokens, 0 at padding. Returns y_BLD."""
  _check_name(name)
  chex.assert_rank(x_BLD, 3)
  chex.assert_shape(mask_BL, x_BLD.shape[:2])
  if name == "zero":
    return jnp.zeros_like(x_BLD)
  m_BL1 = mask_BL.astype(x_BLD.dtype)[:, :, None]
  if name in CONV_SPECS:
    y_BLD = _conv(params, x_BLD, m_BL1, CONV_SPECS[name][1])
  elif name == "max_pool3":
    y_BLD = _max_pool(x_BLD, m_BL1)
  elif name == "avg_pool3":
    y_BLD = _avg_pool(x_BLD, m_BL1)
  else:  # identity
    y_BLD = x_BLD
  # Padded outputs are exact zeros (a where, not a product: max pool is -inf there).
  y_BLD = jnp.where(m_BL1 > 0, y_BLD, 0.0)
  chex.assert_equal_shape([y_BLD, x_BLD])
  return y_BLD


def init_all_ops(key: jax.Array, width: int, lead_shape: tuple[int, ...] = ()) -> dict[str, Params]:
  """Parameters of all ten ops for one edge (or a lead_shape stack of edges): {op_name: params}."""
  keys = jax.random.split(key, NUM_OPS)
  return {name: init_op(name, k, width, lead_shape) for name, k in zip(OP_NAMES, keys)}
