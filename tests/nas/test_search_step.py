"""The search step: optimiser partition, loss decrease in both modes, a single compilation."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adabert_jax.nas import costs, gumbel, losses, search_step, supernet, testing

TEACHER_WIDTH, VOCAB, POSITIONS, CLASSES, TEACHER_LAYERS = 24, 50, 32, 2, 4
BATCH, LENGTH, STEPS = 4, 12, 20
CFG = supernet.SupernetConfig(hidden=16, k_max=2, dropout=0.3)


@pytest.fixture(scope="module")
def setup():
  emb_tables = testing.random_emb_tables(jax.random.key(1), VOCAB, POSITIONS, TEACHER_WIDTH)
  op_costs = costs.op_cost_table(CFG.hidden, LENGTH).normalised
  return emb_tables, op_costs


def _batch(seed):
  return testing.random_search_batch(seed, BATCH, LENGTH, VOCAB, CLASSES, TEACHER_LAYERS,
                                     pair=seed % 2 == 1)


def test_param_labels_split_by_top_level_key():
  params = {"weights": {"a": jnp.ones(2), "b": {"c": jnp.ones(1)}},
            "arch": {"alpha_ops": jnp.ones((9, 10))}}
  assert search_step.param_labels(params) == {
      "weights": {"a": "weights", "b": {"c": "weights"}}, "arch": {"alpha_ops": "arch"}}


def test_optimizer_updates_each_group_with_its_own_rule():
  params = {"weights": {"w": jnp.ones(3)}, "arch": {"alpha": jnp.ones(3)}}
  grads = {"weights": {"w": jnp.full(3, 100.0)}, "arch": {"alpha": jnp.full(3, 100.0)}}
  tx = search_step.make_optimizer(search_step.OptimizerConfig(), total_steps=10)
  updates, _ = tx.update(grads, tx.init(params), params)
  # weights: clipped to global norm 5, + 3e-4 * w, times -lr 0.02 (first step: no momentum).
  expected_w = -0.02 * (100.0 * 5.0 / np.sqrt(3 * 100.0 ** 2) + 3e-4)
  np.testing.assert_allclose(updates["weights"]["w"], expected_w, rtol=1e-5)
  # arch: Adam's first step is lr * sign(g) (the L2 term 1e-3 * alpha is inside g).
  np.testing.assert_allclose(updates["arch"]["alpha"], -3e-4, rtol=1e-4)
  # The weights' learning rate is cosine-decayed to 0 over total_steps (update 11 uses
  # step 10's rate; momentum alone would still move the weights).
  state = tx.init(params)
  for _ in range(11):
    updates, state = tx.update(grads, state, params)
  np.testing.assert_allclose(updates["weights"]["w"], 0.0, atol=1e-9)


def test_arch_weight_decay_coupled_inside_adam_or_decoupled_after_it():
  alpha = jnp.asarray([1.0, -2.0, 0.5])
  params = {"weights": {"w": jnp.ones(1)}, "arch": {"alpha": alpha}}
  grads = {"weights": {"w": jnp.zeros(1)}, "arch": {"alpha": jnp.zeros(3)}}
  lr, wd, eps = 3e-4, 1e-3, 1e-8

  def first_update(mode):
    tx = search_step.make_optimizer(search_step.OptimizerConfig(arch_weight_decay_mode=mode),
                                    total_steps=10)
    return tx.update(grads, tx.init(params), params)[0]["arch"]["alpha"]

  # Coupled (torch Adam's weight_decay): g = 0 + wd * alpha goes through Adam, whose first
  # step is -lr * m / (sqrt(v) + eps) with m = g, v = g^2: a full lr-sized pull to 0.
  g = wd * np.asarray(alpha)
  np.testing.assert_allclose(first_update("coupled"), -lr * g / (np.abs(g) + eps), rtol=1e-5)
  # Decoupled (AdamW): Adam of a zero gradient is 0; the decay is lr * wd * alpha.
  np.testing.assert_allclose(first_update("decoupled"), -lr * wd * np.asarray(alpha),
                             rtol=1e-5)
  with pytest.raises(ValueError, match="arch_weight_decay_mode"):
    search_step.OptimizerConfig(arch_weight_decay_mode="l2")


@pytest.mark.parametrize("mode, remat", [("sampled", False), ("all_ops", True)])
def test_jitted_step_decreases_the_loss_and_compiles_once(setup, mode, remat):
  emb_tables, op_costs = setup
  cfg = dataclasses.replace(CFG, mode=mode, remat=remat)
  optimizer = search_step.make_optimizer(search_step.OptimizerConfig(), STEPS)
  state = search_step.init_search_state(jax.random.key(0), cfg, TEACHER_WIDTH, CLASSES,
                                        optimizer)
  assert isinstance(state, search_step.SearchState)
  step_fn = search_step.make_search_step(cfg, losses.LossConfig(),
                                         search_step.SearchConfig(total_steps=STEPS),
                                         optimizer, op_costs, jit=False)
  traces = []

  @jax.jit
  def counted_step(*args):
    traces.append(1)  # a Python side effect: runs only while tracing
    return step_fn(*args)

  key, batch = jax.random.key(3), _batch(0)
  # 1) Optimisation: hold the step number (hence the architecture sample, dropout mask and
  # temperature) fixed, so sampling noise does not hide whether the update lowers the loss.
  fixed_state, totals = state, []
  for _ in range(STEPS):
    fixed_state, metrics = counted_step(fixed_state, batch, emb_tables, key, 0)
    totals.append(float(metrics["total"]))
  assert np.all(np.isfinite(totals))
  assert totals[-1] < 0.75 * totals[0], totals
  # SGD with momentum 0.9 overshoots after its first big step, then settles below it.
  assert totals[-1] <= min(totals[:3]), totals

  # 2) Real use: advancing steps and new batches of the same shape never retrace.
  depths = set()
  for step in range(STEPS):
    state, metrics = counted_step(state, _batch(step), emb_tables, key, step)
    depths.add(int(metrics["depth"]))
  assert len(traces) == 1 and counted_step._cache_size() == 1
  assert depths <= {1, 2}
  chex.assert_tree_all_finite(state)
  for name in ("ce", "kd", "kd_layers", "kd_final", "efficiency", "total", "temperature",
               "weights_grad_norm", "arch_grad_norm"):
    chex.assert_shape(metrics[name], ())
  chex.assert_shape(metrics["ops_index"], (CFG.num_edges,))
  assert float(metrics["temperature"]) == pytest.approx(0.1 ** ((STEPS - 1) / STEPS),
                                                        rel=1e-5)
  assert float(metrics["arch_grad_norm"]) > 0 and float(metrics["weights_grad_norm"]) > 0

  # 3) Determinism: the same (key, step) draws the same architecture and dropout.
  a = counted_step(state, batch, emb_tables, key, 5)
  b = counted_step(state, batch, emb_tables, key, 5)
  c = counted_step(state, batch, emb_tables, key, 6)
  chex.assert_trees_all_equal(a, b)
  assert float(a[1]["total"]) != float(c[1]["total"])
  assert len(traces) == 1


def test_arch_warmup_holds_alpha_still_then_releases_it():
  params = {"weights": {"w": jnp.ones(3)}, "arch": {"alpha": jnp.ones(3)}}
  grads = {"weights": {"w": jnp.ones(3)}, "arch": {"alpha": jnp.ones(3)}}
  tx = search_step.make_optimizer(search_step.OptimizerConfig(), total_steps=10,
                                  arch_warmup_steps=2)
  state = tx.init(params)
  moved = []
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    moved.append(bool(np.any(updates["arch"]["alpha"] != 0)))
    assert np.all(updates["weights"]["w"] != 0)  # the weights train throughout
  assert moved == [False, False, True]


def test_fair_warmup_trains_every_op_of_every_edge_equally_often(setup):
  arch = supernet.init_supernet(jax.random.key(0), CFG, TEACHER_WIDTH, CLASSES)["arch"]
  key, num_ops = jax.random.key(7), arch["alpha_ops"].shape[1]
  samples = [gumbel.fair_sample(key, arch, step) for step in range(3 * num_ops)]
  for sample in samples:
    assert int(sample["depth_index"]) == CFG.k_max - 1  # every cell runs
    np.testing.assert_allclose(sample["depth"], 1.0 / CFG.k_max)  # every head's loss counts
    np.testing.assert_array_equal(sample["ops"], jax.nn.one_hot(sample["ops_index"], num_ops))
  index = np.stack([s["ops_index"] for s in samples])  # [steps, E]
  for block in range(3):  # each edge takes every op once in each block of NUM_OPS steps
    for edge in index[block * num_ops:(block + 1) * num_ops].T:
      assert sorted(edge) == list(range(num_ops))
  assert not np.array_equal(index[:num_ops], index[num_ops:2 * num_ops])  # fresh orders
  np.testing.assert_array_equal(  # a pure function of (key, step)
      gumbel.fair_sample(key, arch, 4)["ops_index"], index[4])

  # In the step: fair samples in the arch warm-up, alpha's Gumbel samples after.
  emb_tables, op_costs = setup
  optimizer = search_step.make_optimizer(search_step.OptimizerConfig(), STEPS)
  state = search_step.init_search_state(jax.random.key(0), CFG, TEACHER_WIDTH, CLASSES,
                                        optimizer)
  fair_cfg = search_step.SearchConfig(total_steps=STEPS, arch_warmup_steps=3,
                                       fair_warmup=True)
  plain_cfg = search_step.SearchConfig(total_steps=STEPS)
  run = {c: search_step.make_search_step(CFG, losses.LossConfig(), c, optimizer, op_costs)
         for c in (fair_cfg, plain_cfg)}
  for step in (0, 2, 3, 5):
    fair = run[fair_cfg](state, _batch(0), emb_tables, key, step)[1]
    plain = run[plain_cfg](state, _batch(0), emb_tables, key, step)[1]
    assert bool(fair["fair"]) == (step < 3) and not plain["fair"]
    if step < 3:
      np.testing.assert_array_equal(fair["ops_index"], index[step])
      assert int(fair["depth"]) == CFG.k_max
    else:
      np.testing.assert_array_equal(fair["ops_index"], plain["ops_index"])
      assert float(fair["total"]) == float(plain["total"])


@pytest.mark.parametrize("depth_mix", ["losses", "logits"])
def test_fair_steps_train_every_head_whatever_the_depth_mix(setup, depth_mix):
  # A one-hot at k_max (and, under depth_mix="logits", the deepest head's loss alone) left
  # the shallower heads untrained, so a search sampled fairly throughout could only derive
  # K = k_max (runs/sst2_fair, 2026-12-06).
  emb_tables, op_costs = setup
  loss_cfg = losses.LossConfig(depth_mix=depth_mix)
  optimizer = search_step.make_optimizer(search_step.OptimizerConfig(), STEPS)
  state = search_step.init_search_state(jax.random.key(0), CFG, TEACHER_WIDTH, CLASSES,
                                        optimizer)
  key, step, batch = jax.random.key(7), 1, _batch(0)
  sample = gumbel.fair_sample(key, state.params["arch"], step)
  dropout_key = jax.random.split(jax.random.fold_in(key, step))[1]  # as search_step's

  def loss(params, per_head):
    return search_step.search_loss(params, emb_tables, batch, sample, dropout_key,
                                   supernet_cfg=CFG, loss_cfg=loss_cfg, op_costs=op_costs,
                                   per_head=per_head)[0]
  head_grads_KFC = jax.grad(loss)(state.params, True)["weights"]["heads"]["kernel"]
  for k in range(CFG.k_max):
    assert np.any(head_grads_KFC[k] != 0), f"head {k + 1} gets no gradient"
  # The step (jitted, step traced) takes that loss on its fair steps.
  fair_cfg = search_step.SearchConfig(total_steps=STEPS, arch_warmup_steps=3,
                                       fair_warmup=True)
  run = search_step.make_search_step(CFG, loss_cfg, fair_cfg, optimizer, op_costs)
  total = float(run(state, batch, emb_tables, key, step)[1]["total"])
  assert total == pytest.approx(float(loss(state.params, True)), rel=1e-5)
  if depth_mix == "logits":  # ... which is not the deepest head's loss alone
    assert total != pytest.approx(float(loss(state.params, False)), rel=1e-3)
  # The output logits are still the deepest head's, not 1/k_max of them.
  outputs = supernet.supernet_apply(state.params, emb_tables, batch, sample, CFG, train=False)
  np.testing.assert_allclose(outputs["logits"], outputs["head_logits"][:, -1], rtol=1e-6)


def test_alpha_regulariser_is_beta_darts_ramped_over_the_search():
  alpha = jax.random.normal(jax.random.key(0), (CFG.num_edges, 10))
  arch = {"alpha_ops": alpha, "alpha_depth": jnp.zeros(CFG.k_max)}
  expected = np.mean(np.log(np.sum(np.exp(np.asarray(alpha, np.float64)), -1)))
  assert float(search_step.alpha_regulariser(arch)) == pytest.approx(expected, rel=1e-6)
  grad = jax.grad(search_step.alpha_regulariser)(arch)
  np.testing.assert_allclose(grad["alpha_ops"], jax.nn.softmax(alpha, -1) / CFG.num_edges,
                             rtol=1e-5)
  assert not np.any(grad["alpha_depth"])
  cfg = search_step.SearchConfig(total_steps=100, alpha_regulariser=2.0)
  assert [float(cfg.regulariser_weight(s)) for s in (0, 25, 100, 150)] == [0, 0.5, 2, 2]


def test_alpha_regulariser_enters_the_step(setup):
  emb_tables, op_costs = setup
  optimizer = search_step.make_optimizer(search_step.OptimizerConfig(), STEPS)
  state = search_step.init_search_state(jax.random.key(0), CFG, TEACHER_WIDTH, CLASSES,
                                        optimizer)
  # alpha away from uniform, so the regulariser's gradient is not the same on every op
  alpha = jax.random.normal(jax.random.key(5), state.params["arch"]["alpha_ops"].shape)
  state = state._replace(params={**state.params, "arch": {**state.params["arch"],
                                                         "alpha_ops": alpha}})
  out = {}
  for weight in (0.0, 3.0):
    cfg = search_step.SearchConfig(total_steps=STEPS, alpha_regulariser=weight)
    step_fn = search_step.make_search_step(CFG, losses.LossConfig(), cfg, optimizer,
                                           op_costs)
    out[weight] = step_fn(state, _batch(0), emb_tables, jax.random.key(3), STEPS // 2)
  assert "alpha_regulariser" not in out[0.0][1]
  assert float(out[3.0][1]["alpha_regulariser"]) == pytest.approx(
      float(search_step.alpha_regulariser({"alpha_ops": alpha})), rel=1e-6)
  assert float(out[3.0][1]["arch_grad_norm"]) != float(out[0.0][1]["arch_grad_norm"])
  chex.assert_trees_all_equal(out[3.0][0].params["weights"], out[0.0][0].params["weights"])


def test_separate_batches_step_takes_alphas_gradient_from_its_own_batch(setup):
  """search.arch_split: alpha's update reads alpha's batch alone, the weights' update the
  weights' batch alone, and the weights' half is the same-batch step's (the authors')."""
  emb_tables, op_costs = setup
  optimizer = search_step.make_optimizer(search_step.OptimizerConfig(arch_lr=0.05), STEPS)
  state = search_step.init_search_state(jax.random.key(0), CFG, TEACHER_WIDTH, CLASSES,
                                        optimizer)
  search_cfg = search_step.SearchConfig(total_steps=STEPS)
  step_fn = search_step.make_separate_batches_step(CFG, losses.LossConfig(), search_cfg,
                                                   optimizer, op_costs)
  key = jax.random.key(3)
  a, b, c = _batch(0), _batch(2), _batch(4)  # single sentences, one shape
  ab, ab_metrics = step_fn(state, a, b, emb_tables, key, 5)
  cb, _ = step_fn(state, c, b, emb_tables, key, 5)
  ac, _ = step_fn(state, a, c, emb_tables, key, 5)

  def differs(x, y):
    return any(jax.tree.leaves(jax.tree.map(lambda u, v: not np.array_equal(u, v), x, y)))

  chex.assert_trees_all_equal(ab.params["arch"], cb.params["arch"])
  chex.assert_trees_all_equal(ab.params["weights"], ac.params["weights"])
  assert differs(ab.params["arch"], ac.params["arch"])
  assert differs(ab.params["weights"], cb.params["weights"])
  assert float(ab_metrics["arch_batch_total"]) != float(ab_metrics["total"])
  same_batch = search_step.make_search_step(CFG, losses.LossConfig(), search_cfg, optimizer,
                                            op_costs)
  same, same_metrics = same_batch(state, a, emb_tables, key, 5)
  chex.assert_trees_all_close(same.params["weights"], ab.params["weights"], atol=1e-6)
  assert float(same_metrics["total"]) == pytest.approx(float(ab_metrics["total"]), rel=1e-6)
  # With alpha's batch the same as the weights', alpha still draws its own architecture.
  aa, _ = step_fn(state, a, a, emb_tables, key, 5)
  assert differs(aa.params["arch"], same.params["arch"])


def test_separate_batches_step_without_alphas_batch_holds_alpha_in_the_warmup(setup):
  emb_tables, op_costs = setup
  optimizer = search_step.make_optimizer(search_step.OptimizerConfig(), STEPS,
                                         arch_warmup_steps=10)
  state = search_step.init_search_state(jax.random.key(0), CFG, TEACHER_WIDTH, CLASSES,
                                        optimizer)
  step_fn = search_step.make_separate_batches_step(
      CFG, losses.LossConfig(), search_step.SearchConfig(total_steps=STEPS), optimizer,
      op_costs)
  after, metrics = step_fn(state, _batch(0), None, emb_tables, jax.random.key(3), 2)
  chex.assert_trees_all_equal(after.params["arch"], state.params["arch"])
  assert "arch_batch_total" not in metrics and float(metrics["arch_grad_norm"]) == 0
  assert float(metrics["weights_grad_norm"]) > 0
