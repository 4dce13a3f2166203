"""The supernet: params layout, shapes, both modes, fixed architectures, masking, gradients."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adabert_jax import array_utils
from adabert_jax.nas import costs, genotype, gumbel, losses, ops, search_step, supernet, testing

TEACHER_WIDTH, VOCAB, POSITIONS, CLASSES, TEACHER_LAYERS = 24, 50, 32, 3, 4
BATCH, LENGTH = 3, 12
CFG = supernet.SupernetConfig(hidden=16, k_max=3, num_nodes=3, dropout=0.3, mode="sampled")
MODES = ("sampled", "all_ops")


def _cfg(mode, **kw):
  return dataclasses.replace(CFG, mode=mode, **kw)


@pytest.fixture(scope="module")
def setup():
  params = supernet.init_supernet(jax.random.key(0), CFG, TEACHER_WIDTH, CLASSES)
  emb_tables = testing.random_emb_tables(jax.random.key(1), VOCAB, POSITIONS, TEACHER_WIDTH)
  # Single sentences (CFG's input mode); tests/nas/test_pairs.py covers the pair modes.
  batch = testing.random_search_batch(0, BATCH, LENGTH, VOCAB, CLASSES, TEACHER_LAYERS)
  return params, emb_tables, batch


@functools.lru_cache(maxsize=None)
def _forward(mode, train=False):
  """One jitted forward per mode, shared by the tests (compiling is the slow part)."""
  return jax.jit(functools.partial(supernet.supernet_apply, cfg=_cfg(mode), train=train))


GENOTYPE = genotype.Genotype(
    ops=((2, 0, "conv3"), (2, 1, "dil_conv5"), (3, 1, "max_pool3"), (3, 2, "avg_pool3"),
         (4, 0, "identity"), (4, 3, "conv7")),
    depth=2, k_max=CFG.k_max, num_nodes=CFG.num_nodes)


def _layer_norm(x, scale=1.0, bias=0.0):
  mean = x.mean(-1, keepdims=True)
  return (x - mean) / jnp.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-5) * scale + bias


def _discrete_forward(params, emb_tables, batch, geno):
  """A plain reference of the discrete network a genotype describes (no supernet machinery),
  for a single sentence: the projected embedding layer-normalised, both inputs of the first
  cell the whole sentence, tanh before the head."""
  weights, mask = params["weights"], batch["attention_mask"]
  emb = weights["embedding"]
  x = _layer_norm(supernet.embed(emb, emb_tables, batch["input_ids"]), emb["ln_scale"],
                  emb["ln_bias"]) * mask[:, :, None]
  prev2, prev1 = x, x
  edge_of = {edge: e for e, edge in enumerate(supernet.cell_edges(geno.num_nodes))}
  pooled = [array_utils.masked_mean(x, mask)]
  for c in range(geno.depth):
    cell = jax.tree.map(lambda a, c=c: a[c], weights["cells"])
    states = {0: prev2, 1: prev1}
    for node in range(2, 2 + geno.num_nodes):
      states[node] = jnp.zeros_like(x)
      for dst, src, name in geno.ops:
        if dst == node:
          op_params = jax.tree.map(lambda a, e=edge_of[(dst, src)]: a[e], cell["ops"][name])
          states[node] = states[node] + ops.apply_op(name, op_params, states[src], mask)
    node_w = jax.nn.softmax(cell["node_logits"])
    out = sum(node_w[j] * states[2 + j] for j in range(geno.num_nodes))
    out = _layer_norm(out)  # cell outputs: per token, no affine; padding stays zero
    prev2, prev1 = prev1, out
    pooled.append(array_utils.masked_mean(out, mask))
  heads, k = weights["heads"], geno.depth - 1
  mix = jax.nn.softmax(heads["mix_logits"][k, :geno.depth + 1])
  head_in = sum(mix[j] * pooled[j] for j in range(geno.depth + 1))
  return jnp.tanh(head_in) @ heads["kernel"][k] + heads["bias"][k], pooled


def test_params_layout(setup):
  params, emb_tables, _ = setup
  assert set(params) == {"weights", "arch"}
  chex.assert_shape(params["arch"]["alpha_ops"], (9, ops.NUM_OPS))
  chex.assert_shape(params["arch"]["alpha_depth"], (CFG.k_max,))
  chex.assert_shape(params["weights"]["embedding"]["kernel"], (TEACHER_WIDTH, CFG.hidden))
  chex.assert_shape(params["weights"]["cells"]["ops"]["conv5"]["kernel_KIO"],
                    (CFG.k_max, 9, 5, CFG.hidden, CFG.hidden))
  chex.assert_shape(params["weights"]["cells"]["node_logits"], (CFG.k_max, CFG.num_nodes))
  # The teacher's tables are not parameters.
  vocab_sized = [a for a in jax.tree.leaves(params) if VOCAB in a.shape]
  assert not vocab_sized
  assert CFG.num_edges == 9
  assert supernet.cell_edges(3) == ((2, 0), (2, 1), (3, 0), (3, 1), (3, 2), (4, 0), (4, 1),
                                    (4, 2), (4, 3))


@pytest.mark.parametrize("mode", MODES)
def test_output_shapes(setup, mode):
  params, emb_tables, batch = setup
  sample = gumbel.sample_architecture(jax.random.key(3), params["arch"], 1.0)
  out = _forward(mode)(params, emb_tables, batch, sample)
  chex.assert_shape(out["logits"], (BATCH, CLASSES))
  chex.assert_shape([out["layer_logits"], out["head_logits"]], (BATCH, CFG.k_max, CLASSES))
  chex.assert_shape(out["depth_weights"], (CFG.k_max,))
  chex.assert_shape(out["pooled"], (BATCH, CFG.k_max + 1, CFG.hidden))
  chex.assert_tree_all_finite(out)


@pytest.mark.parametrize("mode", MODES)
def test_fixed_architecture_equals_the_discrete_network(setup, mode):
  params, emb_tables, batch = setup
  sample = genotype.genotype_to_onehots(GENOTYPE, CFG)
  out = _forward(mode)(params, emb_tables, batch, sample)
  expected_logits, expected_pooled = _discrete_forward(params, emb_tables, batch, GENOTYPE)
  np.testing.assert_allclose(out["logits"], expected_logits, rtol=1e-4, atol=1e-5)
  for layer, pooled in enumerate(expected_pooled):
    np.testing.assert_allclose(out["pooled"][:, layer], pooled, rtol=1e-4, atol=1e-5)


def test_unrolled_supernet_with_a_constant_architecture_traces_only_its_ops(setup):
  params, emb_tables, batch = setup
  sample = genotype.genotype_to_onehots(GENOTYPE, CFG)  # NumPy: constants when closed over
  cfg = _cfg("sampled", unroll=True)
  fwd = jax.jit(lambda p, e, b: supernet.supernet_apply(p, e, b, sample, cfg, train=False))
  hlo = fwd.lower(params, emb_tables, batch).compile().as_text()
  # 2 cells x (3 chosen convs, the only convolutions): no switch or cond left.
  assert hlo.count(" convolution(") == 2 * 3 and " conditional(" not in hlo
  np.testing.assert_allclose(fwd(params, emb_tables, batch)["logits"],
                             _forward("sampled")(params, emb_tables, batch, sample)["logits"],
                             rtol=1e-5, atol=1e-6)


def test_modes_agree_on_the_forward_value(setup):
  params, emb_tables, batch = setup
  for seed in range(2):
    sample = gumbel.sample_architecture(jax.random.key(seed), params["arch"], 1.0)
    depth = int(sample["depth_index"]) + 1
    sampled = _forward("sampled")(params, emb_tables, batch, sample)
    all_ops = _forward("all_ops")(params, emb_tables, batch, sample)
    np.testing.assert_allclose(sampled["logits"], all_ops["logits"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sampled["pooled"][:, :depth + 1],
                               all_ops["pooled"][:, :depth + 1], rtol=1e-4, atol=1e-5)


def test_sampled_mode_skips_cells_deeper_than_the_sampled_depth(setup):
  params, emb_tables, batch = setup
  sample = genotype.genotype_to_onehots(GENOTYPE, CFG)  # depth 2 of 3
  sampled = _forward("sampled")(params, emb_tables, batch, sample)
  all_ops = _forward("all_ops")(params, emb_tables, batch, sample)
  np.testing.assert_array_equal(sampled["pooled"][:, 3], 0.0)
  assert np.abs(np.asarray(all_ops["pooled"][:, 3])).max() > 0
  np.testing.assert_array_equal(sampled["depth_weights"], [0.0, 1.0, 0.0])


@pytest.mark.parametrize("mode", MODES)
def test_padding_never_changes_the_outputs(setup, mode):
  params, emb_tables, batch = setup
  sample = gumbel.sample_architecture(jax.random.key(4), params["arch"], 1.0)
  padded = batch["attention_mask"] == 0
  assert padded.any()
  junk = dict(batch, input_ids=jnp.where(padded, 7, batch["input_ids"]),
              token_type_ids=jnp.where(padded, 1, batch["token_type_ids"]))
  out = _forward(mode)(params, emb_tables, batch, sample)
  out_junk = _forward(mode)(params, emb_tables, junk, sample)
  for name in ("logits", "layer_logits", "pooled"):
    np.testing.assert_allclose(out_junk[name], out[name], rtol=1e-5, atol=1e-6)


def test_ran_depth_weights_cover_the_heads_whose_cells_ran(setup):
  params, emb_tables, batch = setup
  sample = gumbel.sample_architecture(jax.random.key(5), params["arch"], 1.0)
  k = int(sample["depth_index"])
  ran = {mode: supernet.ran_depth_weights(sample, _cfg(mode)) for mode in MODES}
  # The same forward value as the depth one-hot in both modes...
  np.testing.assert_array_equal(ran["sampled"], sample["depth"])
  # ...and a gradient to every depth up to the sampled one (sampled), to all (all_ops).
  def jacobian(mode):
    return np.asarray(jax.jacobian(lambda a: supernet.ran_depth_weights(
        gumbel.sample_architecture(jax.random.key(5), {**params["arch"], "alpha_depth": a},
                                   1.0), _cfg(mode)))(params["arch"]["alpha_depth"]))

  assert np.all(np.abs(jacobian("all_ops")).sum(-1) > 0)
  sampled = jacobian("sampled")
  np.testing.assert_array_equal(sampled[k + 1:], 0.0)
  assert np.all(np.abs(sampled[:k + 1]).sum(-1) > 0)


def test_embedding_probe_reads_layer_0_and_leaves_the_other_parameters_alone(setup):
  params, emb_tables, batch = setup  # CFG has the probe (the default)
  probes = params["weights"]["probes"]
  chex.assert_shape(probes["embedding_kernel"], (CFG.hidden, CLASSES))
  cfg = _cfg("sampled", embedding_probe=False)
  without = supernet.init_supernet(jax.random.key(0), cfg, TEACHER_WIDTH, CLASSES)
  rest = jax.tree.map(lambda x: x, params)
  del rest["weights"]["probes"]["embedding_kernel"], rest["weights"]["probes"]["embedding_bias"]
  chex.assert_trees_all_equal(rest, without)
  sample = genotype.genotype_to_onehots(GENOTYPE, CFG)
  out = _forward("sampled")(params, emb_tables, batch, sample)
  expected = (jnp.tanh(out["pooled"][:, 0]) @ probes["embedding_kernel"]
              + probes["embedding_bias"])
  np.testing.assert_allclose(out["embedding_probe_logits"], expected, rtol=1e-5, atol=1e-6)
  out = supernet.supernet_apply(without, emb_tables, batch, sample, cfg, train=False)
  assert "embedding_probe_logits" not in out


def test_embedding_is_a_projection_of_the_frozen_tables(setup):
  params, emb_tables, batch = setup
  emb = params["weights"]["embedding"]
  x = supernet.embed(emb, emb_tables, batch["input_ids"])
  ids = np.asarray(batch["input_ids"])
  summed = np.asarray(emb_tables["word"])[ids] + np.asarray(emb_tables["position"])[:LENGTH]
  np.testing.assert_allclose(x, summed @ np.asarray(emb["kernel"]) + np.asarray(emb["bias"]),
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="longer than the teacher's 4 positions"):
    supernet.embed(emb, dict(emb_tables, position=emb_tables["position"][:4]),
                   batch["input_ids"])


def test_dropout_uses_the_explicit_key(setup):
  params, emb_tables, batch = setup
  sample = genotype.genotype_to_onehots(GENOTYPE, CFG)
  fwd = _forward("sampled", train=True)
  a = fwd(params, emb_tables, batch, sample, dropout_key=jax.random.key(0))["logits"]
  b = fwd(params, emb_tables, batch, sample, dropout_key=jax.random.key(0))["logits"]
  c = fwd(params, emb_tables, batch, sample, dropout_key=jax.random.key(1))["logits"]
  np.testing.assert_array_equal(a, b)
  assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-6
  with pytest.raises(ValueError, match="dropout_key"):
    supernet.supernet_apply(params, emb_tables, batch, sample, CFG, train=True)


def test_config_is_validated():
  with pytest.raises(ValueError, match="mode"):
    supernet.SupernetConfig(mode="everything")
  with pytest.raises(ValueError, match="dropout"):
    supernet.SupernetConfig(dropout=1.0)


def _arch_grads(setup, cfg):
  """d loss / d arch through the straight-through sample (weights held fixed: cheaper).

  beta = 0: the efficiency term alone would give every alpha a gradient; without it, only the
  supernet's path can.
  """
  params, emb_tables, batch = setup
  op_costs = costs.op_cost_table(CFG.hidden, LENGTH).normalised

  @jax.jit
  def grads(arch):
    def loss(arch):
      sample = gumbel.sample_architecture(jax.random.key(5), arch, 1.0)
      total = search_step.search_loss(dict(params, arch=arch), emb_tables, batch, sample,
                                      jax.random.key(6), supernet_cfg=cfg,
                                      loss_cfg=losses.LossConfig(beta=0.0),
                                      op_costs=op_costs)[0]
      return total, sample["ops_index"]
    return jax.grad(loss, has_aux=True)(arch)

  return grads(params["arch"])


def test_gradient_reaches_every_alpha_in_both_modes(setup):
  # all_ops: every entry, since every op's output reaches its one-hot entry.
  g, _ = _arch_grads(setup, _cfg("all_ops"))
  assert np.all(np.asarray(g["alpha_ops"]) != 0)
  assert np.all(np.asarray(g["alpha_depth"]) != 0)
  # sampled: only the sampled entry's output is known, and the row's softmax passes it to the
  # whole row; a row whose sampled op is zero has no path (its output is 0 whatever alpha).
  g, ops_index = _arch_grads(setup, _cfg("sampled"))
  live = np.asarray(ops_index) != ops.ZERO_INDEX
  assert live.sum() >= 5
  assert np.all(np.asarray(g["alpha_ops"])[live] != 0)
  np.testing.assert_array_equal(np.asarray(g["alpha_ops"])[~live], 0.0)
  assert np.all(np.asarray(g["alpha_depth"]) != 0)
