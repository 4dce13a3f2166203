"""The exported student as an ONNX graph, built from its genotype with the `onnx` package.

Why built by hand rather than converted: jax2onnx pins orbax-checkpoint below the 0.12 this
project needs and pulls in equinox and a hub client, and every student op is a standard ONNX
operator (Gather, Conv with dilations, Relu, MaxPool, AveragePool, ReduceMean, MatMul, Tanh,
GatherElements for the pair split). The graph mirrors student/model.py and nas/inputs.py op
for op, in the [batch, channels, length] layout ONNX's Conv and pools use, and is checked
against the JAX student in tests/student/test_export_and_predict.py.

Inputs: input_ids, token_type_ids, attention_mask, int64 [batch, length] (the pair
concatenated as the tokenizer writes it, length <= max_len); output: logits float [batch, C].
`pip install 'adabert-jax[onnx]'` for the onnx package; onnxruntime alone runs the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adabert_jax.nas import inputs, ops
from adabert_jax.nas.genotype import Genotype
from adabert_jax.nas.supernet import NUM_INPUT_NODES

OPSET = 17
INPUT_NAMES = ("input_ids", "token_type_ids", "attention_mask")


class _Graph:
  """A growing list of ONNX nodes and initialisers with fresh value names."""

  def __init__(self):
    import onnx  # an optional dependency: only building the graph needs it

    self.onnx = onnx
    self.nodes: list[Any] = []
    self.initializers: list[Any] = []
    self._count = 0

  def _name(self, hint: str) -> str:
    self._count += 1
    return f"{hint}_{self._count}"

  def const(self, value, hint: str = "c") -> str:
    from onnx import numpy_helper

    name = self._name(hint)
    array = np.asarray(value)
    if array.dtype == np.float64:
      array = array.astype(np.float32)
    self.initializers.append(numpy_helper.from_array(array, name))
    return name

  def op(self, op_type: str, *args: str, hint: str | None = None, **attrs) -> str:
    out = self._name(hint or op_type.lower())
    self.nodes.append(self.onnx.helper.make_node(op_type, list(args), [out], **attrs))
    return out


def _layer_norm_channels(g: _Graph, x: str, scale=None, bias=None) -> str:
  """LayerNorm over axis 1 of [B, D, L] (ops.normalize_tokens, then scale and bias)."""
  mean = g.op("ReduceMean", x, axes=[1], keepdims=1)
  centred = g.op("Sub", x, mean)
  var = g.op("ReduceMean", g.op("Mul", centred, centred), axes=[1], keepdims=1)
  y = g.op("Div", centred, g.op("Sqrt", g.op("Add", var, g.const(
      np.float32(ops.LAYER_NORM_EPS)))))
  if scale is not None:
    y = g.op("Add", g.op("Mul", y, g.const(np.asarray(scale).reshape(1, -1, 1))),
             g.const(np.asarray(bias).reshape(1, -1, 1)))
  return y


def _masked(g: _Graph, x: str, m_b1l: str) -> str:
  """Exact zeros at padding (a Where, as in ops.apply_op: max pool is -inf there)."""
  return g.op("Where", g.op("Greater", m_b1l, g.const(np.float32(0))), x,
              g.const(np.float32(0)))


def _apply_op(g: _Graph, name: str, params: dict, x: str, m_b1l: str) -> str | None:
  """One op on x [B, D, L] (zero on padding); None for the zero op (nothing to add)."""
  if name == "zero":
    return None
  if name in ops.CONV_SPECS:
    size, dilation = ops.CONV_SPECS[name]
    reach = dilation * (size // 2)
    h = g.op("Mul", g.op("Relu", x), m_b1l)
    weight = np.transpose(np.asarray(params["kernel_KIO"]), (2, 1, 0))  # [O, I, K]
    y = g.op("Conv", h, g.const(weight, "conv_w"), dilations=[dilation], pads=[reach, reach],
             kernel_shape=[size], strides=[1])
    y = _layer_norm_channels(g, y, params["ln_scale"], params["ln_bias"])
  elif name == "max_pool3":
    h = g.op("Where", g.op("Greater", m_b1l, g.const(np.float32(0))), x,
             g.const(np.float32(-np.inf)))
    reach = ops.POOL_WINDOW // 2
    y = g.op("MaxPool", h, kernel_shape=[ops.POOL_WINDOW], pads=[reach, reach], strides=[1])
  elif name == "avg_pool3":
    reach = ops.POOL_WINDOW // 2
    pool = dict(kernel_shape=[ops.POOL_WINDOW], pads=[reach, reach], strides=[1],
                count_include_pad=1)
    total = g.op("AveragePool", g.op("Mul", x, m_b1l), **pool)
    count = g.op("AveragePool", m_b1l, **pool)  # both / window: the ratio is the same
    y = g.op("Div", total, g.op("Max", count, g.const(np.float32(1 / ops.POOL_WINDOW))))
  elif name == "identity":
    y = x
  else:
    raise ValueError(f"no ONNX form for op {name!r}")
  return _masked(g, y, m_b1l)


def _masked_mean(g: _Graph, x: str, m_b1l: str) -> str:
  """[B, D] mean over real tokens of x [B, D, L] (array_utils.masked_mean)."""
  total = g.op("ReduceSum", g.op("Mul", x, m_b1l), g.const(np.array([2], np.int64)),
               keepdims=0)
  count = g.op("ReduceSum", m_b1l, g.const(np.array([2], np.int64)), keepdims=0)
  return g.op("Div", total, g.op("Max", count, g.const(np.float32(1))))


def _pool_layer(g: _Graph, x: str, m_b1l: str, mode: str, width: int) -> str:
  """[B, P] of x [B, D, L] (inputs.pool_layer): the masked mean, and in attend mode the
  masked means of x * x~ and |x - x~| for x~ the alignment with the other sentence."""
  mean = _masked_mean(g, x, m_b1l)
  if mode != "attend":
    return mean
  other, other_mask = _swap_halves(g, x), _swap_halves(g, m_b1l)  # [B, D, S], [B, 1, S]
  scores = g.op("Mul", g.op("MatMul", g.op("Transpose", x, perm=[0, 2, 1]), other),
                g.const(np.float32(1 / np.sqrt(width))))  # [B, L, S]
  scores = g.op("Where", g.op("Greater", other_mask, g.const(np.float32(0))), scores,
                g.const(np.float32(inputs.NO_PARTNER_TOKEN)))
  weights = g.op("Softmax", scores, axis=-1)
  aligned = g.op("Transpose", g.op("MatMul", weights, g.op("Transpose", other, perm=[0, 2, 1])),
                 perm=[0, 2, 1])  # [B, D, L]
  return g.op("Concat", mean, _masked_mean(g, g.op("Mul", x, aligned), m_b1l),
              _masked_mean(g, g.op("Abs", g.op("Sub", x, aligned)), m_b1l), axis=1)


def _split_pair(g: _Graph, ids: str, types: str, mask: str) -> tuple[str, str, str, str]:
  """inputs.split_pair in ONNX: (ids_a, mask_a, ids_b, mask_b), int64 [B, L] each."""
  zero, one = g.const(np.int64(0)), g.const(np.int64(1))
  real = g.op("Greater", mask, zero)
  seg_b = g.op("And", g.op("Equal", types, one), real)
  seg_a = g.op("And", real, g.op("Not", seg_b))
  axis1 = g.const(np.array([1], np.int64))
  len_a = g.op("ReduceSum", g.op("Cast", seg_a, to=7), axis1, keepdims=1)  # int64 [B, 1]
  len_b = g.op("ReduceSum", g.op("Cast", seg_b, to=7), axis1, keepdims=1)
  length = g.op("Gather", g.op("Shape", ids), one, axis=0)
  t = g.op("Unsqueeze", g.op("Range", zero, length, one), g.const(np.array([0], np.int64)))
  source = g.op("Clip", g.op("Add", g.op("Sub", len_a, one), t), zero,
                g.op("Sub", length, one))
  source = g.op("Expand", source, g.op("Shape", ids))
  moved = g.op("GatherElements", ids, source, axis=1)
  in_b = g.op("And", g.op("GreaterOrEqual", t, one), g.op("LessOrEqual", t, len_b))
  at_0 = g.op("Equal", t, zero)
  mask_b = g.op("Or", in_b, g.op("And", at_0, g.op("Greater", len_b, zero)))
  cls = g.op("Slice", ids, g.const(np.array([0], np.int64)), g.const(np.array([1], np.int64)),
             axis1)
  ids_b = g.op("Where", at_0, cls, g.op("Where", in_b, moved, zero))
  ids_b = g.op("Where", mask_b, ids_b, zero)
  ids_a = g.op("Where", seg_a, ids, zero)
  return ids_a, g.op("Cast", seg_a, to=7), ids_b, g.op("Cast", mask_b, to=7)


def _content_mask(g: _Graph, mask: str) -> str:
  """inputs.content_mask in ONNX: bool [B, L], the real tokens but position 0 and the last."""
  zero, one = g.const(np.array([0], np.int64)), g.const(np.array([1], np.int64))
  big, axis1 = g.const(np.array([np.iinfo(np.int64).max], np.int64)), one
  after = g.op("Concat", g.op("Slice", mask, one, big, axis1),
               g.op("Mul", g.op("Slice", mask, zero, one, axis1), g.const(np.int64(0))), axis=1)
  length = g.op("Gather", g.op("Shape", mask), g.const(np.int64(1)), axis=0)
  t = g.op("Range", g.const(np.int64(0)), length, g.const(np.int64(1)))
  not_first = g.op("Unsqueeze", g.op("Greater", t, g.const(np.int64(0))), zero)  # [1, L]
  return g.op("And", g.op("Greater", g.op("Mul", mask, after), g.const(np.int64(0))),
              not_first)


def _exact_match_flags(g: _Graph, ids_a: str, mask_a: str, ids_b: str, mask_b: str) -> str:
  """inputs.exact_match_flags in ONNX: float [2B, L], A's flags, then B's."""
  words_a, words_b = _content_mask(g, mask_a), _content_mask(g, mask_b)
  axis1, axis2 = g.const(np.array([1], np.int64)), g.const(np.array([2], np.int64))
  same = g.op("Equal", g.op("Unsqueeze", ids_a, axis2), g.op("Unsqueeze", ids_b, axis1))
  same = g.op("And", g.op("And", same, g.op("Unsqueeze", words_a, axis2)),
              g.op("Unsqueeze", words_b, axis1))  # [B, La, Lb]
  same = g.op("Cast", same, to=1)
  return g.op("Concat", g.op("ReduceMax", same, axes=[2], keepdims=0),
              g.op("ReduceMax", same, axes=[1], keepdims=0), axis=0)


def student_onnx(params: dict, geno: Genotype, num_classes: int):
  """An onnx.ModelProto of exported student `params` (student.model.export's form)."""
  g = _Graph()
  helper = g.onnx.helper
  mode = geno.input_mode
  emb = params["embedding"]
  word, position = g.const(emb["word"], "word"), g.const(emb["position"], "position")
  ids, types, mask = INPUT_NAMES

  def embed(ids_bl: str, mask_bl: str, match_flags_bl: str | None = None) -> str:
    """[B, D, L]: word + position (+ the exact-match vector where flagged), LayerNorm, zero
    at padding (inputs.cell_inputs, inputs._normalise_and_drop)."""
    length = g.op("Unsqueeze", g.op("Gather", g.op("Shape", ids_bl), g.const(np.int64(1)),
                                    axis=0), g.const(np.array([0], np.int64)))
    pos = g.op("Slice", position, g.const(np.array([0], np.int64)), length,
               g.const(np.array([0], np.int64)))
    x = g.op("Add", g.op("Gather", word, ids_bl, axis=0), pos)  # [B, L, D]
    if match_flags_bl is not None:
      flags = g.op("Unsqueeze", match_flags_bl, g.const(np.array([2], np.int64)))
      x = g.op("Add", x, g.op("Mul", flags, g.const(emb[inputs.EXACT_MATCH_PARAM], "match")))
    x = g.op("Transpose", x, perm=[0, 2, 1])
    x = _layer_norm_channels(g, x, emb["ln_scale"], emb["ln_bias"])
    return g.op("Mul", x, _mask_b1l(mask_bl))

  def _mask_b1l(mask_bl: str) -> str:
    return g.op("Unsqueeze", g.op("Cast", mask_bl, to=1), g.const(np.array([1], np.int64)))

  if mode in ("single", "masked"):
    x = embed(ids, mask)
    m = _mask_b1l(mask)
    layer0 = x
    if mode == "single":
      s0 = s1 = x
    else:
      seg_b = g.op("And", g.op("Equal", types, g.const(np.int64(1))),
                   g.op("Greater", mask, g.const(np.int64(0))))
      m_b = g.op("Unsqueeze", g.op("Cast", seg_b, to=1), g.const(np.array([1], np.int64)))
      s1 = g.op("Mul", x, m_b)
      s0 = g.op("Mul", x, g.op("Sub", m, m_b))
  else:
    ids_a, mask_a, ids_b, mask_b = _split_pair(g, ids, types, mask)
    ids_x = g.op("Concat", ids_a, ids_b, axis=0)
    mask_x = g.op("Concat", mask_a, mask_b, axis=0)
    flags = (_exact_match_flags(g, ids_a, mask_a, ids_b, mask_b)
             if inputs.EXACT_MATCH_PARAM in emb else None)
    x = embed(ids_x, mask_x, flags)
    if inputs.encodes_separately(mode):
      s0 = s1 = layer0 = x
      m = _mask_b1l(mask_x)
    else:  # aligned
      s0, s1 = _halves(g, x)
      m = g.op("Max", _mask_b1l(mask_a), _mask_b1l(mask_b))
      layer0 = g.op("Mul", g.op("Add", s0, s1), g.const(np.float32(0.5)))

  width = np.asarray(emb["ln_scale"]).shape[0]
  pooled = [_pool_layer(g, layer0, m, mode, width)]
  for cell in params["cells"]:
    states = [s0, s1]
    for node in range(NUM_INPUT_NODES, NUM_INPUT_NODES + geno.num_nodes):
      total = g.op("Mul", s0, g.const(np.float32(0)))
      for i, (dst, src, name) in enumerate(geno.ops):
        if dst == node:
          y = _apply_op(g, name, cell["edges"][i], states[src], m)
          if y is not None:
            total = g.op("Add", total, y)
      states.append(total)
    logits = np.asarray(cell["node_logits"], np.float64)
    node_weights = np.exp(logits - logits.max())
    node_weights /= node_weights.sum()
    out = g.op("Mul", states[NUM_INPUT_NODES], g.const(np.float32(node_weights[0])))
    for n, state in enumerate(states[NUM_INPUT_NODES + 1:], start=1):
      out = g.op("Add", out, g.op("Mul", state, g.const(np.float32(node_weights[n]))))
    out = _layer_norm_channels(g, out)
    pooled.append(_pool_layer(g, out, m, mode, width))
    s0, s1 = s1, out

  head = params["head"]
  mix = np.asarray(head["mix_logits"], np.float64)
  mix = np.exp(mix - mix.max())
  mix /= mix.sum()
  mixed = g.op("Mul", pooled[0], g.const(np.float32(mix[0])))
  for j, p in enumerate(pooled[1:], start=1):
    mixed = g.op("Add", mixed, g.op("Mul", p, g.const(np.float32(mix[j]))))
  if inputs.encodes_separately(mode):  # inputs.features
    a, b = _halves(g, mixed)
    u, v = (_columns(g, h, 0, width) for h in (a, b))
    parts = [u, v, g.op("Abs", g.op("Sub", u, v)), g.op("Mul", u, v)]
    if mode == "attend":
      parts += [_columns(g, h, width, 3 * width) for h in (a, b)]
    mixed = g.op("Concat", *parts, axis=1)
  logits = g.op("Add", g.op("MatMul", g.op("Tanh", mixed), g.const(head["kernel"], "kernel")),
                g.const(head["bias"], "bias"))
  g.nodes.append(helper.make_node("Identity", [logits], ["logits"]))
  int_input = lambda name: helper.make_tensor_value_info(name, g.onnx.TensorProto.INT64,
                                                         ["batch", "length"])
  graph = helper.make_graph(
      g.nodes, "adabert_student", [int_input(n) for n in INPUT_NAMES],
      [helper.make_tensor_value_info("logits", g.onnx.TensorProto.FLOAT,
                                     ["batch", num_classes])],
      initializer=g.initializers)
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                            producer_name="adabert-jax")
  g.onnx.checker.check_model(model)
  return model


def _columns(g: _Graph, x: str, start: int, stop: int) -> str:
  """x[:, start:stop] of a [B, P] value."""
  return g.op("Slice", x, g.const(np.array([start], np.int64)),
              g.const(np.array([stop], np.int64)), g.const(np.array([1], np.int64)))


def _swap_halves(g: _Graph, x: str) -> str:
  """Each row's other sentence (inputs.partner): the second half along axis 0, then the
  first."""
  first, second = _halves(g, x)
  return g.op("Concat", second, first, axis=0)


def _halves(g: _Graph, x: str) -> tuple[str, str]:
  """The first and second halves of x along axis 0 (sentences A, then B)."""
  zero, axis0 = g.const(np.array([0], np.int64)), g.const(np.array([0], np.int64))
  batch = g.op("Gather", g.op("Shape", x), g.const(np.array([0], np.int64)), axis=0)
  half = g.op("Div", batch, g.const(np.array([2], np.int64)))
  big = g.const(np.array([np.iinfo(np.int64).max], np.int64))
  return (g.op("Slice", x, zero, half, axis0), g.op("Slice", x, half, big, axis0))
