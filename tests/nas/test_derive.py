"""The measured derive rule: candidates, coordinate descent, the held-out loss, L_E."""

import json

import jax
import numpy as np
import pytest

from adabert_jax import config_check
from adabert_jax.data import batching
from adabert_jax.errors import UserError
from adabert_jax.nas import costs, derive, genotype, losses, ops, supernet, testing
from tests.helpers import load_config

CFG = supernet.SupernetConfig(hidden=16, k_max=3, num_nodes=3)


def test_with_edge_op_replaces_removes_and_keeps_every_node_fed():
  geno = genotype.plain_cnn_genotype(2, CFG.k_max, CFG.num_nodes)  # 1->2, 2->3, 3->4
  wider = derive.with_edge_op(geno, (3, 0), "max_pool3")
  assert wider.ops == ((2, 1, "conv3"), (3, 0, "max_pool3"), (3, 2, "conv3"),
                       (4, 3, "conv3"))
  assert derive.with_edge_op(wider, (3, 2), "zero").ops == (
      (2, 1, "conv3"), (3, 0, "max_pool3"), (4, 3, "conv3"))
  assert derive.with_edge_op(geno, (4, 3), "identity").ops[-1] == (4, 3, "identity")
  assert derive.with_edge_op(geno, (4, 3), "zero") is None  # node 4 would get no input
  assert derive.with_edge_op(geno, (3, 2), "conv3") == geno


def test_coordinate_descent_finds_the_optimum_of_a_separable_objective():
  """Each edge's op and the depth score independently (zero = edge absent), as a supernet's
  loss roughly would: one round must reach the brute-force optimum over all genotypes."""
  rng = np.random.default_rng(0)
  edge_op_cost = rng.normal(size=(CFG.num_edges, ops.NUM_OPS))
  depth_cost = np.array([0.3, -0.2, 0.1])
  edge_index = {edge: e for e, edge in enumerate(CFG.edges)}
  calls = []

  def objective(geno):
    calls.append(geno)
    chosen = {(node, src): name for node, src, name in geno.ops}
    return depth_cost[geno.depth - 1] + sum(
        edge_op_cost[e, ops.OP_NAMES.index(chosen.get(edge, "zero"))]
        for edge, e in edge_index.items())

  starts = [derive.uniform_genotype("max_pool3", d, CFG) for d in (1, 2, 3)]
  best = derive.coordinate_descent(objective, starts, CFG, passes=2, log=lambda _: None)
  # The unconstrained optimum per edge; it feeds every node here (checked), so it is the
  # constrained optimum too.
  best_ops = [ops.OP_NAMES[i] for i in edge_op_cost.argmin(1)]
  for node in (2, 3, 4):
    assert any(o != "zero" for (n, _), o in zip(CFG.edges, best_ops) if n == node)
  expected = genotype.Genotype(
      tuple((n, s, o) for (n, s), o in zip(CFG.edges, best_ops) if o != "zero"),
      int(depth_cost.argmin()) + 1, CFG.k_max, CFG.num_nodes)
  assert best == expected


def test_efficiency_of_a_fixed_genotype_is_the_search_term():
  table = costs.op_cost_table(CFG.hidden, 32).normalised
  conv3 = table[ops.OP_NAMES.index("conv3")]
  full = derive.uniform_genotype("conv3", 2, CFG)
  assert derive.efficiency_of(full, CFG, table) == pytest.approx(2 / 3 * conv3)
  chain = genotype.plain_cnn_genotype(3, CFG.k_max, CFG.num_nodes)  # 3 of the 9 edges
  assert derive.efficiency_of(chain, CFG, table) == pytest.approx(
      3 / CFG.num_edges * conv3, rel=1e-6)


def test_heldout_scorer_matches_the_loss_on_one_unpadded_batch():
  """Bucketed, padded batches of 8 must give the example-weighted mean of the search's task
  loss, (1 - gamma) CE + gamma KD, computed on all 21 examples at once."""
  key = jax.random.key(0)
  params = supernet.init_supernet(key, CFG, teacher_width=24, num_classes=2)
  emb = testing.random_emb_tables(jax.random.key(1), 50, 32, 24)
  held = {k: np.asarray(v) for k, v in testing.random_search_batch(
      2, 21, 32, 50, 2, num_teacher_layers=2).items()}
  loss_cfg = losses.LossConfig(beta=4.0)
  geno = genotype.Genotype(((2, 1, "conv3"), (3, 0, "max_pool3"), (3, 2, "conv5"),
                            (4, 3, "identity")), 2, CFG.k_max, CFG.num_nodes)
  score = derive.heldout_scorer(params, emb, held, CFG, loss_cfg, batch_size=8, max_len=32)
  measured = score(geno)
  sample = genotype.genotype_to_onehots(geno, CFG)
  outputs = supernet.supernet_apply(params, emb, held, sample, CFG, train=False)
  _, terms = losses.adabert_loss(outputs, held, sample, np.zeros(ops.NUM_OPS), loss_cfg)
  expected = (1 - loss_cfg.gamma) * terms["ce"] + loss_cfg.gamma * terms["kd"]
  assert measured["loss"] == pytest.approx(float(expected), rel=1e-4)
  accuracy = 100 * np.mean(np.asarray(outputs["logits"]).argmax(-1) == held["label"])
  assert measured["accuracy"] == pytest.approx(accuracy)
  # Per example and in the order of `held`, though the batches were sorted by length.
  per_example = losses.task_loss_per_example(outputs, held, loss_cfg)["task"]
  np.testing.assert_allclose(measured["per_example"], per_example, rtol=1e-4, atol=1e-6)
  # Another architecture gives another loss: the sample reaches the compiled function.
  assert score(derive.uniform_genotype("avg_pool3", 1, CFG))["loss"] != measured["loss"]


def test_one_se_rule_takes_the_cheapest_statistical_tie():
  """Three candidates on 400 shared examples: 'deep' is best; 'shallow' is cheaper and worse
  by far less than its paired standard error; 'tiny' is cheapest but clearly worse."""
  rng = np.random.default_rng(0)
  base = rng.exponential(0.3, size=400)  # per-example losses shared by all candidates
  noise = rng.normal(0.0, 0.05, size=(2, 400))
  noise -= noise.mean(1, keepdims=True)  # mean differences exactly 0.001 and 0.05
  per_example = {"deep": base, "shallow": base + 0.001 + noise[0], "tiny": base + 0.05 + noise[1]}
  efficiency = {"deep": 0.3, "shallow": 0.2, "tiny": 0.1}

  def records():
    return {k: {"objective": float(v.mean()), "efficiency": efficiency[k]}
            for k, v in per_example.items()}

  assert records()["shallow"]["objective"] > records()["deep"]["objective"]
  chosen = records()
  assert derive.one_se_choice(chosen, per_example, "deep", 1.0) == "shallow"
  se = np.std(per_example["tiny"] - base, ddof=1) / np.sqrt(400)
  assert chosen["tiny"]["paired_se"] == pytest.approx(se) and chosen["deep"]["paired_se"] == 0
  # A tolerance too small for the shallow net's deficit keeps the best.
  assert derive.one_se_choice(records(), per_example, "deep", 0.01) == "deep"
  # Wide enough to cover 'tiny' too, the cheapest wins.
  assert derive.one_se_choice(records(), per_example, "deep", 100.0) == "tiny"


def test_signal_means_beating_the_majority_class_after_bonferroni():
  labels = np.array([0] * 70 + [1] * 30)  # majority 70%, SE sqrt(0.7 * 0.3 / 100) = 4.58%
  se = 100 * np.sqrt(0.21 / 100)
  # One candidate at level 0.05: z = 1.645, threshold 77.54%.
  record = derive.signal_over_majority(77.0, labels, candidates=1, level=0.05)
  assert record["majority"] == pytest.approx(70.0) and record["se"] == pytest.approx(se)
  assert record["z"] == pytest.approx(1.6449, abs=1e-4)
  assert record["threshold"] == pytest.approx(70.0 + 1.6449 * se, abs=1e-3)
  assert not record["signal"]
  assert derive.signal_over_majority(78.0, labels, candidates=1, level=0.05)["signal"]
  # The same best accuracy out of 160 candidates: z = 3.42 (quantile at 1 - 0.05 / 160).
  many = derive.signal_over_majority(78.0, labels, candidates=160, level=0.05)
  assert many["z"] == pytest.approx(3.4205, abs=1e-3) and not many["signal"]


def test_the_best_of_many_chance_level_candidates_is_no_signal():
  """160 candidates, each right on an example with the majority class's rate (51% of 400,
  RTE's holdout): no better than always answering the majority. Their best accuracy clears
  majority + 1 SE in nearly every draw, which made the uncorrected test report a signal
  that was not there; the corrected one reports one in about 5% of draws or fewer."""
  rng = np.random.default_rng(0)
  labels = np.array([0] * 204 + [1] * 196)
  majority = 204 / 400
  one_se = 100 * (majority + np.sqrt(majority * (1 - majority) / 400))
  found_by_one_se = found = 0
  for _ in range(200):
    best = 100 * float((rng.random((160, 400)) < majority).mean(axis=1).max())
    found_by_one_se += best > one_se
    found += derive.signal_over_majority(best, labels, 160, 0.05)["signal"]
  assert found_by_one_se >= 190 and found <= 20


@pytest.mark.parametrize("signal_test", derive.SIGNAL_TESTS)
def test_the_fallback_tests_the_kept_cell_or_the_best(signal_test):
  """The one-SE rule keeps a cheap cell at chance while a costlier one is clearly above it
  (the demo on 2026-12-06: 53.6% kept, 59.2% best, threshold 58.6%). Testing the kept cell
  falls back to the plain CNN; testing the best does not."""
  labels = np.array([0] * 255 + [1] * 245)  # majority 51%, 500 held-out examples
  evaluated = {f"c{i}": {"accuracy": 50.0 + 0.02 * i} for i in range(157)}
  evaluated.update(kept={"accuracy": 53.6}, conv5={"accuracy": 59.2})
  config = load_config("tiny").derive
  config.update(no_signal="plain_cnn", signal_test=signal_test)
  signal = derive.signal_of(evaluated, "kept", labels, config)
  assert signal["candidates"] == 159 and signal["threshold"] == pytest.approx(58.64, abs=0.01)
  assert signal["tested"] == signal_test
  assert signal["accuracy"] == (53.6 if signal_test == "kept" else 59.2)
  assert signal["signal"] == (signal_test == "best")
  assert signal["fallback"] == (signal_test == "kept")
  config.no_signal = "one_se"  # the test is recorded, but nothing falls back
  assert not derive.signal_of(evaluated, "kept", labels, config)["fallback"]
  # A kept cell that clears the threshold itself is kept, under either test.
  config.no_signal = "plain_cnn"
  evaluated["kept"]["accuracy"] = 59.0
  assert not derive.signal_of(evaluated, "kept", labels, config)["fallback"]


@pytest.mark.parametrize("rule", derive.NO_SIGNAL_RULES)
def test_without_signal_the_plain_cnn_replaces_the_cheapest_tie(rule):
  """A random supernet on a holdout of 38 zeros and 2 ones cannot beat answering 0 (95%)
  by a standard error: with no_signal=plain_cnn the derive takes the plain CNN at alpha's
  depth; with one_se it takes what the one-SE rule gives."""
  from adabert_jax.nas import search

  config = load_config("tiny")
  config.derive.update(passes=0, no_signal=rule)
  setup = search.setup_from_config(config.search, is_pair=False)
  params = supernet.init_supernet(jax.random.key(0), setup.supernet, 24, 2)
  emb = testing.random_emb_tables(jax.random.key(1), 50, config.data.max_len, 24)
  held = {k: np.asarray(v) for k, v in testing.random_search_batch(
      3, 40, config.data.max_len, 50, 2, num_teacher_layers=2).items()}
  held["label"] = np.array([0] * 38 + [1] * 2, np.int32)
  alpha_genotype = genotype.Genotype(((2, 1, "avg_pool3"), (3, 2, "identity"),
                                      (4, 3, "max_pool3")), 2, setup.supernet.k_max,
                                     setup.supernet.num_nodes)
  chosen, best, evaluated, signal = derive.measured_derive(
      config, params, emb, held, alpha_genotype, setup, log=lambda _: None)
  assert not signal["signal"] and signal["majority"] == pytest.approx(95.0)
  plain = genotype.plain_cnn_genotype(2, setup.supernet.k_max, setup.supernet.num_nodes)
  assert signal["fallback"] == (rule == "plain_cnn")
  assert (chosen == plain) == (rule == "plain_cnn")
  record = next(r for r in evaluated if r["genotype"] == json.loads(chosen.to_json()))
  assert "paired_se" in record  # every record the report prints has one
  # The report says which rule chose, and why.
  from adabert_jax.eval import report

  text = "\n".join(report._derive_lines({
      "method": "measured", "heldout_examples": 40, "beta": config.derive.beta,
      "tie_se": config.derive.tie_se, "chosen": record, "signal": signal,
      "alpha_genotype": json.loads(alpha_genotype.to_json()),
      "genotype": json.loads(chosen.to_json()),
      "best_objective_genotype": json.loads(best.to_json()), "evaluated": evaluated}))
  assert ("the cell the rule would keep cannot be told from the majority class" in text
          ) == (rule == "plain_cnn")  # (signal_test=kept, the default)
  # A record made with the best candidate's test (or before signal_test) says so.
  old_text = report._tie_sentence({"signal": {**signal, "tested": "best"}})
  assert ("the supernet ranked nothing" in old_text) == (rule == "plain_cnn")
  if rule == "plain_cnn":
    legacy = {k: v for k, v in signal.items() if k not in ("tested", "accuracy")}
    legacy["best_accuracy"] = signal["accuracy"]
    assert "the best candidate did not beat" in report._tie_sentence({"signal": legacy})
  assert ("The one-SE rule took" in text or "the best J was kept" in text) == (rule == "one_se")
  # ... and what the supernet ranked: one row per op, the uniform candidates by depth.
  grid = derive.format_uniform_grid({"evaluated": evaluated})
  assert grid in text
  assert sorted(line.split(" | ")[0].strip("| ") for line in grid.splitlines()[2:]) == sorted(
      name for name in ops.OP_NAMES if name != "zero")


@pytest.mark.parametrize("plain_first", [True, False])
def test_uniform_grid_shows_one_op_on_every_edge_only(plain_first):
  """The plain CNN has conv3 on three of the nine edges: it is not the conv3 row's entry,
  whichever of the two the measured list holds first."""
  cfg = supernet.SupernetConfig(hidden=16, k_max=3, num_nodes=3)
  record = lambda geno, loss, acc: {"genotype": json.loads(geno.to_json()), "loss": loss,
                                    "accuracy": acc}
  uniform = [record(derive.uniform_genotype("conv3", 2, cfg), 0.5, 60.0),
             record(derive.uniform_genotype("identity", 1, cfg), 0.4, 70.0)]
  plain = record(genotype.plain_cnn_genotype(2, cfg.k_max, cfg.num_nodes), 0.1, 90.0)
  grid = derive.format_uniform_grid(
      {"evaluated": [plain, *uniform] if plain_first else [*uniform, plain]})
  assert grid.splitlines() == ["| op on every edge | K=1 | K=2 |", "|---|---|---|",
                               "| identity | 0.400 / 70.0 |  |",
                               "| conv3 |  | 0.500 / 60.0 |"]
  assert derive.format_uniform_grid({"evaluated": [plain]}) == ""


def test_holdout_split_is_disjoint_fixed_and_complete():
  arrays = {"x": np.arange(100), "y": np.arange(100) * 2}
  rest, held = batching.holdout_split(arrays, 25, seed=3)
  assert len(held["x"]) == 25 and len(rest["x"]) == 75
  assert sorted(np.concatenate([rest["x"], held["x"]])) == list(range(100))
  assert np.all(np.diff(held["x"]) > 0) and np.array_equal(held["y"], held["x"] * 2)
  again, _ = batching.holdout_split(arrays, 25, seed=3)
  assert np.array_equal(again["x"], rest["x"])
  none_rest, none_held = batching.holdout_split(arrays, 0, seed=3)
  assert len(none_rest["x"]) == 100 and len(none_held["x"]) == 0
  with pytest.raises(UserError, match="search.holdout"):
    batching.holdout_split(arrays, 26, seed=3)


def test_measured_derive_without_holdout_fails_fast():
  config = load_config("paper")
  derive.check_config(config)  # alpha: nothing to check
  config.derive.method = "measured"
  with pytest.raises(UserError, match="search.holdout"):
    derive.check_config(config)
  config.search.holdout = 100
  derive.check_config(config)
  config.derive.method = "best"
  with pytest.raises(UserError, match="derive.method"):
    derive.check_config(config)


def test_proxy_config_fails_fast_on_steps_candidates_and_holdout():
  config = load_config("paper")
  config.derive.method = "proxy"
  with pytest.raises(UserError, match="derive.method=proxy scores .*search.holdout"):
    derive.check_config(config)
  config.search.holdout = 100
  derive.check_config(config)
  config_check.check(config)
  config.derive.proxy_steps = 0
  with pytest.raises(UserError, match=r"derive.proxy_steps=0: must be >= 1"):
    config_check.check(config)
  config.derive.proxy_steps, config.derive.proxy_candidates = 10, -1
  with pytest.raises(UserError, match=r"derive.proxy_candidates=-1: must be >= 0"):
    config_check.check(config)
  config.derive.proxy_candidates, config.derive.proxy_rounds = 5, -1
  with pytest.raises(UserError, match=r"derive.proxy_rounds=-1: must be >= 0"):
    config_check.check(config)
  config.derive.proxy_rounds, config.derive.proxy_neighbours = 2, 0
  with pytest.raises(UserError, match=r"derive.proxy_neighbours=0: must be >= 1"):
    config_check.check(config)
  config.derive.proxy_neighbours, config.derive.proxy_seeds = 4, 0
  with pytest.raises(UserError, match=r"derive.proxy_seeds=0: must be >= 1"):
    config_check.check(config)


def test_proxy_fields_change_only_a_proxy_derives_fingerprint():
  config = load_config("cpu")
  search_result = {"fingerprint": {"x": 1}}
  measured = derive.derive_fingerprint(config, search_result)
  assert "proxy_steps" not in json.dumps(measured)  # measured derives made before stay valid
  config.derive.proxy_steps += 1
  assert derive.derive_fingerprint(config, search_result) == measured
  config.derive.method = "proxy"
  proxy = derive.derive_fingerprint(config, search_result)
  config.student.learning_rate *= 2  # the proxy trains students: their config counts
  assert derive.derive_fingerprint(config, search_result) != proxy
  assert proxy["derive"]["proxy_steps"] == config.derive.proxy_steps
  # Without local search or seeds the fingerprint is the one proxy derives had before.
  assert not {"proxy_rounds", "proxy_neighbours", "proxy_seeds"} & set(proxy["derive"])
  config.derive.proxy_seeds = 3
  assert derive.derive_fingerprint(config, search_result)["derive"]["proxy_seeds"] == 3
  config.derive.proxy_seeds = 1
  without_rounds = derive.derive_fingerprint(config, search_result)
  config.derive.proxy_neighbours += 1  # without rounds the neighbours are never drawn
  assert derive.derive_fingerprint(config, search_result) == without_rounds
  config.derive.proxy_rounds = 2
  with_rounds = derive.derive_fingerprint(config, search_result)
  assert with_rounds != without_rounds
  assert with_rounds["derive"]["proxy_neighbours"] == config.derive.proxy_neighbours


def test_the_signal_test_counts_only_where_a_fallback_reads_it():
  """The `:cpu` preset never falls back (no_signal=one_se): its measured derives stay valid.
  Under the fallback, testing the kept cell is a new derive; testing the best, the old one."""
  config = load_config("cpu")
  search_result = {"fingerprint": {"x": 1}}
  cpu = derive.derive_fingerprint(config, search_result)
  assert not {"signal_test", "signal_level", "no_signal"} & set(cpu["derive"])
  config.derive.signal_test = "best"
  assert derive.derive_fingerprint(config, search_result) == cpu
  config.derive.no_signal = "plain_cnn"
  best = derive.derive_fingerprint(config, search_result)
  assert "signal_test" not in best["derive"]  # as plain_cnn derives were before the field
  config.derive.signal_test = "kept"
  assert derive.derive_fingerprint(config, search_result)["derive"]["signal_test"] == "kept"


def test_proxy_candidates_start_with_the_measured_choice_and_skip_the_baselines():
  first = genotype.plain_cnn_genotype(2, CFG.k_max, CFG.num_nodes, op="max_pool3")
  baselines = genotype.baseline_genotypes(first, seed=0)
  # The baseline's own random cell is among the draws (seed 1) and must be skipped.
  candidates = derive.proxy_candidates(first, 4, seed=1, exclude=list(baselines.values()))
  assert candidates[0] == first and len(candidates) == 5
  assert all(g.depth == 2 for g in candidates)
  keys = {json.dumps(sorted(g.ops)) for g in candidates}
  assert len(keys) == 5
  assert not any(derive.same_cell(g, b) for g in candidates for b in baselines.values())
  assert derive.proxy_candidates(first, 0, seed=1, exclude=[]) == [first]


def test_proxy_derive_takes_the_lowest_ce_and_resumes_from_its_records(tmp_path):
  candidates = [genotype.random_genotype(seed, 2, CFG.k_max, CFG.num_nodes)
                for seed in range(3)]
  ces = {candidates[0]: 0.5, candidates[1]: 0.3, candidates[2]: 0.4}
  trained = []

  def score(geno):
    trained.append(geno)
    return {"ce": ces[geno], "accuracy": 50.0}

  chosen, records = derive.proxy_derive(candidates, score, str(tmp_path), log=lambda _: None)
  assert chosen == candidates[1] and trained == candidates
  assert [r["ce"] for r in records] == [0.5, 0.3, 0.4]
  # A resumed derive trains nothing it has a record of, and reads the records it has.
  record = json.loads((tmp_path / "2.json").read_text())
  (tmp_path / "2.json").write_text(json.dumps({**record, "ce": 0.1}))
  (tmp_path / "0.json").unlink()
  trained.clear()
  chosen, _ = derive.proxy_derive(candidates, score, str(tmp_path), log=lambda _: None)
  assert trained == [candidates[0]] and chosen == candidates[2]
  # A record of another cell at that index is not reused.
  chosen, _ = derive.proxy_derive(candidates[1:], score, str(tmp_path), log=lambda _: None)
  assert trained == [candidates[0], candidates[1], candidates[2]]


def test_op_changes_change_one_edges_op_and_skip_the_excluded_cells():
  geno = genotype.random_genotype(3, 2, CFG.k_max, CFG.num_nodes)
  changes = derive.op_changes(geno, exclude=[])
  non_zero = [n for n in ops.OP_NAMES if n != "zero"]
  assert len(changes) == len(geno.ops) * (len(non_zero) - 1)  # each other op on each edge
  assert len({json.dumps(sorted(g.ops)) for g in changes}) == len(changes)
  for change in changes:
    assert change.depth == geno.depth
    assert [op[:2] for op in change.ops] == [op[:2] for op in geno.ops]  # the same edges
    assert sum(a[2] != b[2] for a, b in zip(change.ops, geno.ops)) == 1
    assert all(op[2] != "zero" for op in change.ops)
  excluded = derive.op_changes(geno, exclude=changes[:3] + [geno])
  assert excluded == changes[3:]


def test_proxy_local_search_moves_to_lower_ce_stops_and_resumes_the_same_draws(tmp_path):
  # CE falls with each edge that is not max_pool3, from an all-max_pool3 start: every op
  # change in round 1 is lower, and in round 2 at most 7 of the 23 untried changes are not,
  # so 8 draws must find a lower one. The search has to move twice.
  start = genotype.plain_cnn_genotype(2, CFG.k_max, CFG.num_nodes, op="max_pool3")
  trained = []

  def pooled_edges(geno):
    return sum(op == "max_pool3" for _, _, op in geno.ops)

  def score(geno):
    trained.append(geno)
    return {"ce": 0.1 * pooled_edges(geno), "accuracy": 50.0}

  def run(rounds, neighbours=8):
    return derive.proxy_derive([start], score, str(tmp_path), log=lambda _: None,
                               rounds=rounds, neighbours=neighbours, seed=3)

  chosen, records = run(rounds=0)
  assert chosen == start and len(records) == 1 and trained == [start]
  trained.clear()
  chosen, records = run(rounds=2)
  assert len(trained) == 16 and start not in trained  # two rounds of 8, the start reused
  assert len({json.dumps(sorted(g.ops)) for g in [start] + trained}) == 17  # none twice
  assert pooled_edges(chosen) == 1
  first = trained[int(np.argmin([r["ce"] for r in records[1:9]]))]
  assert all(sum(a != b for a, b in zip(g.ops, first.ops)) == 1 for g in trained[8:])
  assert records[9]["origin"].startswith("round 2, a change of #")
  # Resumed: the same draws, read from the records, nothing trained again.
  trained.clear()
  again, again_records = run(rounds=2)
  assert trained == [] and again == chosen and again_records == records
  # A round that finds nothing lower ends the search: a flat score stops after round 1.
  flat_dir = tmp_path / "flat"
  flat_trained = []

  def flat(geno):
    flat_trained.append(geno)
    return {"ce": 0.5, "accuracy": 50.0}

  chosen, records = derive.proxy_derive([start], flat, str(flat_dir), log=lambda _: None,
                                        rounds=5, neighbours=2, seed=0)
  assert len(records) == 3 and chosen == start
