"""The benchmark's FLOP and parameter counts (eval/benchmark.measure) against hand counts.

measure() reports XLA's own cost analysis of the compiled (optimised, fused) program, via
nas/costs.flops_from_cost_analysis. What XLA:CPU counts as 'flops' (jax 0.10.2; each rule
checked on a one-op program when this test was written):
  dot [M, K] x [K, N]                     2 * M * N * K   (a multiply and an add per MAC)
  elementwise add / multiply / compare /
    select / and (float, int or bool)     1 per output element
  reduce-sum of n elements to 1           n - 1 adds per output element
  jnp.mean over n                         the sum, then x * (1/n): 1 multiply per output
  gather (the table lookup itself)        0
  exp, rsqrt, ...                         0 ('transcendentals' is a separate entry)
  convolution                             2 * in * out channels per *valid* tap: taps that
                                          fall on the zero 'SAME' padding are not counted
  jnp.take(table, ids, axis=0) in its default mode="fill" is a gather plus 6 integer ops per
    index (negative-index wrap: lt, add, select; bounds check: ge, le, and) and 1 select per
    output element (NaN for an out-of-range id).
Counts are of the optimised HLO: work that a fusion recomputes is counted again (see the
student test), and a rewrite (e.g. a divide by a constant turned into a multiply) changes
what is counted, which is why the whole-model hand count below is of a model small enough
that nothing is recomputed.
"""

import jax
import jax.numpy as jnp
import time

import numpy as np
import pytest

from adabert_jax import array_utils
from adabert_jax.data import batching
from adabert_jax.eval import benchmark
from adabert_jax.nas import ops, testing
from adabert_jax.nas.genotype import Genotype
from adabert_jax.student import model

# random_batch draws ids from [1000, vocab_size), so the vocabulary must exceed 1000.
B, L, V = 4, 16, 1100


def _measure(apply, params, batch):
  return benchmark.measure(benchmark.BenchModel("tiny", apply, params), batch, repeats=1)


def test_flops_and_params_of_a_dense_model_equal_the_hand_count():
  H, F, C = 8, 12, 3  # embedding width, hidden width, classes

  def apply(p, batch):
    ids_BL = batch["input_ids"]
    x_BLH = jnp.take(p["word"], ids_BL, axis=0) + p["position"][None, :ids_BL.shape[1]]
    h_BLF = x_BLH @ p["w1"] + p["b1"]
    pooled_BF = jnp.mean(h_BLF, axis=1)
    return pooled_BF @ p["w2"] + p["b2"]

  rng = np.random.default_rng(0)
  shapes = {"word": (V, H), "position": (L, H), "w1": (H, F), "b1": (F,), "w2": (F, C),
            "b2": (C,)}
  params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
  row = _measure(apply, params, benchmark.random_batch(B, L, vocab_size=V))

  hand = {
      "take: index wrap + bounds check (6 per id)": 6 * B * L,
      "take: NaN-fill select (1 per element)": B * L * H,
      "+ position": B * L * H,
      "x @ w1": 2 * B * L * H * F,
      "+ b1": B * L * F,
      "mean: sum over L": B * (L - 1) * F,
      "mean: * 1/L": B * F,
      "pooled @ w2": 2 * B * F * C,
      "+ b2": B * C,
  }
  assert row["flops"] == sum(hand.values()), (row["flops"], hand)  # exact: 15532 here
  assert row["params"] == V * H + L * H + H * F + F + F * C + C == array_utils.count_params(
      params)


def _valid_taps(length: int, kernel_size: int, dilation: int) -> int:
  """(output position, kernel tap) pairs whose input is inside the sequence, not padding."""
  reach = kernel_size // 2
  return sum(1 for t in range(length) for j in range(kernel_size)
             if 0 <= t + dilation * (j - reach) < length)


def _student_row(op_name, hidden, batch, teacher_width=6, classes=2):
  """measure() of the exported one-cell student whose only edge is `op_name` (node 2 <- 0)."""
  geno = Genotype(ops=((2, 0, op_name),), depth=1, k_max=1, num_nodes=1)
  params = model.init_student(jax.random.key(0), geno, hidden, teacher_width, classes)
  emb_tables = testing.random_emb_tables(jax.random.key(1), V, L, teacher_width)
  params = model.export(params, emb_tables)
  # The apply the benchmark stage builds (stages.ensure_benchmark).
  return _measure(lambda p, b: model.student_apply(p, b, geno)["logits"], params, batch)


@pytest.mark.parametrize("op_name", ["conv3", "dil_conv5"])
def test_student_flops_are_the_conv_hand_count_plus_linear_elementwise_work(op_name):
  """A one-conv student. Its conv and dots are hand counted exactly; its elementwise work
  (the embedding lookup's checks, the embedding's LayerNorm and mask, ReLU, the conv's
  LayerNorm, the node and layer mixes, two masked means; ~30 ops per activation) is not: XLA's fusion recomputes
  some producers (the embedding is computed once for the conv's input and again inside the
  fusion that pools it), so that part depends on fusion decisions, not only on the maths.
  Everything but the conv is linear in the width H and the conv is quadratic, so:
  (1) the second difference of FLOPs over widths H, 2H, 3H isolates the conv's count, and
      it equals the hand count exactly (which also pins the valid-taps rule);
  (2) at a benchmark-like width the total is the conv plus the head, within 20%.
  """
  kernel_size, dilation = ops.CONV_SPECS[op_name]
  classes = 2
  batch = benchmark.random_batch(B, L, vocab_size=V)
  taps = _valid_taps(L, kernel_size, dilation)
  assert taps < L * kernel_size  # the padded taps are really excluded below

  def conv_flops(h):
    return 2 * B * taps * h * h  # one MAC per valid tap, input channel and output channel

  step = 8
  flops = {h: _student_row(op_name, h, batch)["flops"] for h in (step, 2 * step, 3 * step)}
  second_difference = flops[3 * step] - 2 * flops[2 * step] + flops[step]
  # conv(3s) - 2 conv(2s) + conv(s) = 2 * B * taps * s^2 * (9 - 8 + 1); linear terms cancel.
  assert second_difference == conv_flops(3 * step) - 2 * conv_flops(2 * step) + conv_flops(
      step) == 4 * B * taps * step ** 2

  hidden = 64
  row = _student_row(op_name, hidden, batch)
  head = 2 * B * hidden * classes + B * classes  # logits = mixed @ kernel + bias
  hand = conv_flops(hidden) + head
  assert hand < row["flops"] < 1.20 * hand, (row["flops"], hand)

  # Parameters of the exported form: projected tables, one conv edge, node and head logits.
  positions = L  # random_emb_tables(..., num_positions=L, ...)
  assert row["params"] == (
      V * hidden + positions * hidden                       # embedding word, position
      + 2 * hidden                                          # embedding LayerNorm scale+bias
      + kernel_size * hidden * hidden + 2 * hidden          # conv kernel, LayerNorm scale+bias
      + 1                                                    # node_logits (1 node)
      + 2 + hidden * classes + classes)                      # head: mix (K+1), kernel, bias


def test_serving_times_single_requests_and_batches():
  calls = []

  def runtime(batch):
    calls.append(batch["input_ids"].shape)
    # A call that takes at least 1 ms, so the timings have a floor the test can check
    # (an instant fake rounds to 0.000 ms on a fast machine).
    time.sleep(0.001)
    return np.zeros((batch["input_ids"].shape[0], 2))

  rows = benchmark.serving([("fake", runtime)], batch_size=4, max_len=8, requests=5,
                           pair=True, log=lambda _: None)
  # Warm-up of both shapes, then 5 single requests, then 3 batches.
  assert calls == [(1, 8), (4, 8)] + [(1, 8)] * 5 + [(4, 8)] * 3
  (row,) = rows
  assert row["name"] == "fake" and row["batch1_p99_ms"] >= row["batch1_median_ms"] >= 1.0
  assert row["batch1_examples_per_s"] <= 1000 and row["batch_examples_per_s"] <= 4000
  assert "| fake | full length |" in benchmark.format_serving(rows, 4)

  # On a task's real examples: a second row, every input cut to its length bucket (the
  # inference buckets, as Student.predict cuts them: 16, 24, 32 here).
  lengths = np.array([3, 5, 12, 20, 30, 7, 16, 9])
  mask = (np.arange(32)[None] < lengths[:, None]).astype(np.int32)
  real = {"input_ids": mask * 7, "token_type_ids": np.zeros_like(mask),
          "attention_mask": mask, "label": np.zeros(8, np.int32)}
  calls.clear()
  rows = benchmark.serving([("fake", runtime)], batch_size=4, max_len=32, requests=6,
                           real=real, log=lambda _: None)
  assert [r["inputs"] for r in rows] == ["full length", "dev lengths"]
  real_calls = calls[2 + 6 + 3:]  # after the full-length row's
  singles = [shape for shape in real_calls if shape[0] == 1]
  buckets = set(batching.inference_bucket_lengths(32))
  assert len(singles) >= 6 + 1 and {length for _, length in singles} <= buckets
  assert 16 in {length for _, length in singles}  # short requests are cut, not padded
  batches = [shape for shape in real_calls if shape[0] == 4]
  assert len(batches) == 1 + 3 and batches[0][1] in buckets
  assert "| fake | dev lengths |" in benchmark.format_serving(rows, 4)



def test_bert_random_builds_the_asked_shape():
  shape = dict(vocab_size=V, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=32, max_position_embeddings=L)
  teacher = benchmark.bert_random("tiny teacher", 3, **shape)
  assert len(teacher.params["bert"]["encoder"]["layer"]) == 2
  assert teacher.params["bert"]["embeddings"]["word_embeddings"]["embedding"].shape == (V, 24)
  assert teacher.params["bert"]["encoder"]["layer"]["0"]["intermediate"]["dense"][
      "kernel"].shape == (24, 32)
  assert teacher.apply(teacher.params, benchmark.random_batch(B, L, V)).shape == (B, 3)
