"""The derive stage: from a finished search to the discrete architecture (genotype).

Three rules (config.derive.method):
  alpha     the paper's: per edge the top op of alpha excluding zero, per intermediate node
            the 2 strongest incoming edges, K = argmax alpha_K + 1 (genotype.derive_genotype).
  measured  the supernet's own loss under each candidate architecture, measured on training
            examples the search never saw (search.holdout):
              J(g) = (1 - gamma) CE + gamma KD  (held-out mean, the search's loss terms)
                     + derive.beta * L_E(g)     (the search's efficiency term, exact for g)
            Candidates: one op on every edge at every depth, and the alpha genotype; from the
            best of those, derive.passes rounds of coordinate descent (each edge in turn set
            to the best of all ops, zero removing the edge; then the best depth).
            With derive.tie_se > 0, the one-standard-error rule (Breiman et al., 1984) then
            trades statistical ties for speed: of the measured candidates whose J exceeds
            the best's by at most tie_se paired standard errors (the per-example loss
            differences on the same held-out examples), the one with the lowest L_E wins.
  proxy     the measured rule's choice and derive.proxy_candidates random cells of its depth
            (none of them a baseline's cell, so a random one never makes the student a
            baseline), each trained on its own from scratch for derive.proxy_steps batches
            of the search's training examples with the student's loss and optimiser, then
            scored on the held-out examples; the lowest held-out cross-entropy against the
            labels (the mean over derive.proxy_seeds trainings) wins. With
            derive.proxy_rounds > 0, rounds of local search follow: each trains
            derive.proxy_neighbours random one-op changes of the best cell so far, until a
            round finds nothing lower (local search is a strong NAS baseline: White et al.,
            2021). Each trained cell's record is kept in derive/proxy/, so a killed derive
            resumes.

Why "measured" exists: on a CPU-length search the first-order straight-through gradient to
alpha drifts to parameter-free ops even with beta = 0, while the supernet's weights, scored
under fixed architectures, rank convolutions first (docs/search-on-cpu.md). Scoring the
candidates directly replaces the biased gradient with the quantity it estimates, much as
DARTS-PT (Wang et al., 2021) selects ops by their measured effect on the supernet.
Why "proxy" exists: on SST-2 the supernet's held-out loss ranks four trained cells in the
reverse order of their dev scores (its convolutions are trained in a fraction of its steps),
while 5,000 batches of training on their own rank them in the right one
(docs/search-on-cpu.md); DARTS likewise picks its final cell by short standalone training.

Writes <workdir>/derive/: genotype.json, cell.png, result.json (the rule, the genotype, and
for "measured" and "proxy" every evaluated candidate with its held-out loss, accuracy and
L_E; for "proxy" each trained candidate's held-out cross-entropy and accuracy).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from adabert_jax import artefacts, io_utils, plots
from adabert_jax.data import batching
from adabert_jax.data.tasks import Task
from adabert_jax.errors import UserError
from adabert_jax.nas import costs, genotype as genotype_lib, inputs, losses, ops, supernet
from adabert_jax.nas.supernet import NUM_INPUT_NODES
from adabert_jax.train import sharding

METHODS = ("alpha", "measured", "proxy")
HELDOUT_METHODS = ("measured", "proxy")  # the rules that score the search.holdout examples
PROXY_SEED_OFFSET = 1000  # the proxy's random cells: random_genotype(seed + 1000 + i)


def check_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, before any stage runs, on a derive config that cannot work."""
  cfg = config.derive
  if cfg.method not in METHODS:
    raise UserError(f"--config.derive.method={cfg.method!r}: use one of "
                    f"{', '.join(METHODS)}.")
  if cfg.method in HELDOUT_METHODS:
    if config.search.holdout <= 0:
      raise UserError(f"--config.derive.method={cfg.method} scores architectures on training "
                      "examples kept out of the search: set --config.search.holdout (e.g. "
                      "2000; the search then reruns), or use --config.derive.method=alpha.")


def derive_fingerprint(config: ml_collections.ConfigDict, search_result: dict) -> dict:
  # The other derive fields do not change an alpha genotype; tie_se = 0 (off) is left out so
  # measured derives made before it existed are still reused.
  from adabert_jax.train import checkpoints

  fields = (config.derive.to_dict() if config.derive.method in HELDOUT_METHODS
            else {"method": config.derive.method})
  if config.derive.method != "proxy":  # the proxy fields change only a proxy derive
    for name in ("proxy_steps", "proxy_candidates", "proxy_rounds", "proxy_neighbours",
                 "proxy_seeds"):
      fields.pop(name, None)
  if not fields.get("proxy_rounds", 1):  # proxy derives made before local search existed
    fields.pop("proxy_rounds")
    fields.pop("proxy_neighbours", None)
  if fields.get("proxy_seeds") == 1:  # likewise, before seeds could be averaged
    del fields["proxy_seeds"]
  if not fields.get("tie_se", 1):
    del fields["tie_se"]
  if fields.get("signal_test") == "best":  # likewise, before the kept cell was tested
    del fields["signal_test"]
  if fields.get("no_signal") == "one_se":  # likewise, derives made before it existed
    del fields["no_signal"]
    for name in ("signal_level", "signal_test"):  # the test matters to the fallback only
      fields.pop(name, None)
  fingerprint = {"derive": fields, "search": search_result["fingerprint"]}
  if config.derive.method == "proxy":  # the proxy trains students, with this seed
    # Its trainings take their own seeds (derive.proxy_seeds), not student.seed_offset.
    student = checkpoints.without_operational_keys(config.student.to_dict())
    student.pop("seed_offset", None)
    fingerprint.update(seed=config.seed, student=student)
  return fingerprint


# Candidate architectures.


def uniform_genotype(op_name: str, depth: int, cfg: supernet.SupernetConfig
                     ) -> genotype_lib.Genotype:
  """op_name on every edge of the cell (the supernet's full cell), depth K."""
  return genotype_lib.Genotype(ops=tuple((node, src, op_name) for node, src in cfg.edges),
                               depth=depth, k_max=cfg.k_max, num_nodes=cfg.num_nodes,
                               input_mode=cfg.input_mode)


def with_edge_op(geno: genotype_lib.Genotype, edge: tuple[int, int], op_name: str
                 ) -> genotype_lib.Genotype | None:
  """geno with `edge` (node, from_node) set to op_name ("zero" removes it); None when that
  would leave an intermediate node without an incoming edge, or (input mode "aligned", where
  the first cell's input nodes are the two sentences) a cell that reads only one input node."""
  kept = [op for op in geno.ops if (op[0], op[1]) != edge]
  if op_name != "zero":
    kept.append((edge[0], edge[1], op_name))
  kept.sort(key=lambda op: (op[0], op[1]))
  fed = {node for node, _, _ in kept}
  if any(node not in fed
         for node in range(NUM_INPUT_NODES, NUM_INPUT_NODES + geno.num_nodes)):
    return None
  if geno.input_mode == "aligned" and not {0, 1} <= {src for _, src, _ in kept}:
    return None
  return dataclasses.replace(geno, ops=tuple(kept))


def genotype_key(geno: genotype_lib.Genotype) -> str:
  return geno.to_json()


def coordinate_descent(objective: Callable[[genotype_lib.Genotype], float],
                       starts: list[genotype_lib.Genotype], cfg: supernet.SupernetConfig,
                       passes: int, log: Callable[[str], None] = print
                       ) -> genotype_lib.Genotype:
  """The best of `starts` under `objective`, then `passes` rounds of: each edge in turn set
  to its best op (zero included), then the best depth. A change is kept only when it
  lowers the objective; the rounds stop early when one changes nothing."""
  best = min(starts, key=objective)
  log(f"best start: K={best.depth}, {genotype_lib.ops_summary(best)}, J={objective(best):.4f}")
  for round_index in range(passes):
    changed = False
    for edge in cfg.edges:
      for name in ops.OP_NAMES:
        candidate = with_edge_op(best, edge, name)
        if candidate is not None and objective(candidate) < objective(best):
          best, changed = candidate, True
    for depth in range(1, cfg.k_max + 1):
      candidate = dataclasses.replace(best, depth=depth)
      if objective(candidate) < objective(best):
        best, changed = candidate, True
    log(f"round {round_index + 1}: K={best.depth}, {genotype_lib.ops_summary(best)}, "
        f"J={objective(best):.4f}")
    if not changed:
      break
  return best


# Measuring the supernet.


@functools.cache
def _jitted_heldout_losses(cfg: supernet.SupernetConfig, loss_cfg: losses.LossConfig):
  """(task loss [B], correct [B]) per example of a batch; the sample is an argument, so every
  candidate runs the same compiled function per batch length."""

  def per_example(params, emb, batch, sample):
    outputs = supernet.supernet_apply(params, emb, batch, sample, cfg, train=False)
    task_B = losses.task_loss_per_example(outputs, batch, loss_cfg)["task"]
    return task_B, jnp.argmax(outputs["logits"], -1) == batch["label"]

  return jax.jit(per_example)


def heldout_scorer(params, emb_tables, held: dict[str, np.ndarray],
                   cfg: supernet.SupernetConfig, loss_cfg: losses.LossConfig,
                   batch_size: int, max_len: int) -> Callable[[genotype_lib.Genotype], dict]:
  """genotype -> {"loss", "accuracy", "per_example"} of the supernet on the held-out
  examples; per_example [n] is each example's task loss, in the order of `held`."""
  fn = _jitted_heldout_losses(cfg, loss_cfg)
  mesh = sharding.make_mesh(1)
  batches = [(idx, sharding.shard_batch(inputs.host_batch(b, cfg.input_mode), mesh))
             for idx, b in
             batching.length_sorted_eval_batches(held, batch_size, max_len)]
  n = len(held["label"])

  def score(geno):
    sample = genotype_lib.genotype_to_onehots(geno, cfg)
    loss_n, correct_n = np.zeros(n), np.zeros(n, bool)
    for idx, batch in batches:
      task_B, correct_B = fn(params, emb_tables, batch, sample)
      # Padding rows come last in a batch; idx covers the real ones.
      loss_n[idx] = np.asarray(task_B)[:len(idx)]
      correct_n[idx] = np.asarray(correct_B)[:len(idx)]
    return {"loss": float(loss_n.mean()), "accuracy": 100.0 * float(correct_n.mean()),
            "per_example": loss_n}

  return score


def efficiency_of(geno: genotype_lib.Genotype, cfg: supernet.SupernetConfig,
                  op_costs_O: np.ndarray) -> float:
  """L_E of a fixed architecture: (K / k_max) * mean over the supernet's edges of the op's
  normalised cost (an absent edge is the zero op, cost 0)."""
  sample = genotype_lib.genotype_to_onehots(geno, cfg)
  return float(losses.efficiency_loss(sample, op_costs_O))


def paired_se(loss_a: np.ndarray, loss_b: np.ndarray) -> float:
  """The standard error of the mean per-example difference of two candidates' losses on
  the same held-out examples."""
  diff = loss_a - loss_b
  return float(np.std(diff, ddof=1) / np.sqrt(len(diff)))


def one_se_choice(records: dict[str, dict], per_example: dict[str, np.ndarray],
                  best_key: str, se_multiple: float) -> str:
  """The one-standard-error rule: of the records (key -> {"objective", "efficiency"}) whose
  objective exceeds the best's by at most se_multiple paired standard errors, the key of
  the cheapest (lowest efficiency; then lowest objective). Adds "paired_se" (the standard
  error of the mean per-example loss difference to the best) to every record."""
  ties = []
  for key, record in records.items():
    record["paired_se"] = (paired_se(per_example[key], per_example[best_key])
                           if key != best_key else 0.0)
    if record["objective"] - records[best_key]["objective"] <= se_multiple * record["paired_se"]:
      ties.append(key)
  return min(ties, key=lambda k: (records[k]["efficiency"], records[k]["objective"]))


NO_SIGNAL_RULES = ("one_se", "plain_cnn")
SIGNAL_TESTS = ("kept", "best")


def signal_over_majority(accuracy: float, labels: np.ndarray, candidates: int,
                         level: float) -> dict:
  """Whether a held-out accuracy (in %) picked from `candidates` measured architectures
  (the best one's, or the kept one's) beats always answering the holdout's majority class:
  by more than z binomial standard errors of that rate, z = the one-sided normal quantile
  at level / candidates. The Bonferroni correction is there because the best of many
  candidates that all predict by chance still clears the majority: the largest of 160
  independent standard normals is ~2.5 on average, so a one-SE margin on the maximum nearly
  always reports a signal that is not there."""
  n = len(labels)
  majority = float(np.bincount(labels).max() / n)
  se = float(np.sqrt(majority * (1 - majority) / n))
  z = statistics.NormalDist().inv_cdf(1.0 - level / max(candidates, 1))
  threshold = 100 * (majority + z * se)
  return {"accuracy": accuracy, "majority": 100 * majority, "se": 100 * se,
          "candidates": candidates, "level": level, "z": z, "threshold": threshold,
          "signal": accuracy > threshold}


def signal_of(evaluated: dict[str, dict], kept_key: str, labels: np.ndarray,
              derive_config: ml_collections.ConfigDict) -> dict:
  """signal_over_majority for the accuracy derive_config.signal_test names (the kept
  record's, or the best of `evaluated`), plus "tested" and "fallback" (no signal, and
  derive_config.no_signal=plain_cnn)."""
  accuracy = (evaluated[kept_key]["accuracy"] if derive_config.signal_test == "kept"
              else max(r["accuracy"] for r in evaluated.values()))
  signal = signal_over_majority(accuracy, labels, len(evaluated), derive_config.signal_level)
  signal["tested"] = derive_config.signal_test
  signal["fallback"] = derive_config.no_signal == "plain_cnn" and not signal["signal"]
  return signal


def signal_subject(signal: dict) -> str:
  """What a signal record tested, for logs and the report. Records made before the kept
  cell was tested have "best_accuracy" and no "tested"."""
  return "the kept cell" if signal.get("tested") == "kept" else "the best candidate"


def signal_figures(signal: dict) -> str:
  """The test's figures, for logs and the report: "53.60% of 158 measured, against majority
  51.00% + 3.42 SE of 2.24 = 58.64%"."""
  accuracy = signal.get("accuracy", signal.get("best_accuracy"))
  return (f"{accuracy:.2f}% of {signal['candidates']} measured, against majority "
          f"{signal['majority']:.2f}% + {signal['z']:.2f} SE of {signal['se']:.2f} = "
          f"{signal['threshold']:.2f}%")


def measured_derive(config: ml_collections.ConfigDict, params, emb_tables,
                    held: dict[str, np.ndarray], alpha_genotype: genotype_lib.Genotype,
                    setup, log: Callable[[str], None] = print
                    ) -> tuple[genotype_lib.Genotype, genotype_lib.Genotype, list[dict]]:
  """(the chosen genotype, the genotype minimising J, every evaluated candidate sorted by J,
  signal_over_majority's record plus "fallback"). The two genotypes differ when
  derive.tie_se > 0 finds a cheaper statistical tie, or when derive.no_signal=plain_cnn
  replaces a choice the supernet could not make (no candidate beats the majority class)."""
  cfg = setup.supernet
  op_costs = costs.op_cost_table(cfg.hidden, config.data.max_len,
                                 config.search.cost_norm).normalised
  score = heldout_scorer(params, emb_tables, held, cfg, setup.loss, config.derive.batch_size,
                         config.data.max_len)
  evaluated: dict[str, dict] = {}
  per_example: dict[str, np.ndarray] = {}

  def objective(geno):
    key = genotype_key(geno)
    if key not in evaluated:
      measured = score(geno)
      per_example[key] = measured.pop("per_example")
      efficiency = efficiency_of(geno, cfg, op_costs)
      evaluated[key] = {"genotype": json.loads(key), **measured, "efficiency": efficiency,
                        "objective": measured["loss"] + config.derive.beta * efficiency}
      if len(evaluated) % 20 == 0:
        log(f"  {len(evaluated)} architectures measured")
    return evaluated[key]["objective"]

  starts = [uniform_genotype(name, depth, cfg)
            for name in ops.OP_NAMES if name != "zero"
            for depth in range(1, cfg.k_max + 1)] + [alpha_genotype]
  best = coordinate_descent(objective, starts, cfg, config.derive.passes, log)
  chosen = best
  if config.derive.tie_se > 0:
    chosen_key = one_se_choice(evaluated, per_example, genotype_key(best),
                               config.derive.tie_se)
    chosen = genotype_lib.Genotype.from_json(chosen_key)
    record = evaluated[chosen_key]
    log(f"one-SE rule ({config.derive.tie_se:g} SE): K={chosen.depth}, "
        f"{genotype_lib.ops_summary(chosen)}, J={record['objective']:.4f} "
        f"(+{record['objective'] - objective(best):.4f}, "
        f"SE {record['paired_se']:.4f}), L_E {record['efficiency']:.3f} "
        f"(best J's: {evaluated[genotype_key(best)]['efficiency']:.3f})")
  signal = signal_of(evaluated, genotype_key(chosen), held["label"], config.derive)
  if signal["fallback"]:
    chosen = genotype_lib.plain_cnn_genotype(alpha_genotype.depth, cfg.k_max, cfg.num_nodes,
                                             input_mode=cfg.input_mode)
    objective(chosen)  # measured too, for the record
    key = genotype_key(chosen)
    evaluated[key]["paired_se"] = paired_se(per_example[key], per_example[genotype_key(best)])
    log(f"the held-out accuracy of {signal_subject(signal)} does not beat the majority "
        f"class ({signal_figures(signal)}): the plain CNN at alpha's depth, K={chosen.depth}")
  return chosen, best, sorted(evaluated.values(), key=lambda r: r["objective"]), signal


# Training the candidates on their own.


def same_cell(a: genotype_lib.Genotype, b: genotype_lib.Genotype) -> bool:
  return a.depth == b.depth and sorted(a.ops) == sorted(b.ops)


def proxy_candidates(first: genotype_lib.Genotype, count: int, seed: int,
                     exclude: list[genotype_lib.Genotype]) -> list[genotype_lib.Genotype]:
  """`first`, then `count` random cells of its depth (random_genotype with seeds seed,
  seed + 1, ...), no two alike and none like a cell of `exclude`. Fewer when the space at
  this shape has no more (after 100 draws per cell asked for)."""
  chosen = [first]
  for draw in range(100 * count):
    if len(chosen) == count + 1:
      break
    geno = genotype_lib.random_genotype(seed + draw, first.depth, first.k_max,
                                        first.num_nodes, first.input_mode)
    if not any(same_cell(geno, other) for other in chosen + exclude):
      chosen.append(geno)
  return chosen


def op_changes(geno: genotype_lib.Genotype,
               exclude: list[genotype_lib.Genotype]) -> list[genotype_lib.Genotype]:
  """Every cell that is `geno` with one edge's op changed to another non-zero op (the same
  edges, the same depth), none like a cell of `exclude`: a local search's neighbours."""
  changes = []
  for node, src, op in geno.ops:
    for name in ops.OP_NAMES:
      if name in ("zero", op):
        continue
      candidate = with_edge_op(geno, (node, src), name)  # each (edge, op) a distinct cell
      if not any(same_cell(candidate, other) for other in exclude):
        changes.append(candidate)
  return changes


def proxy_derive(candidates: list[genotype_lib.Genotype],
                 score: Callable[[genotype_lib.Genotype], dict], cache_dir: str,
                 log: Callable[[str], None] = print, *, rounds: int = 0,
                 neighbours: int = 0, seed: int = 0,
                 exclude: list[genotype_lib.Genotype] = ()
                 ) -> tuple[genotype_lib.Genotype, list[dict]]:
  """(the cell of lowest held-out cross-entropy, every trained cell's record in order).
  score(geno) -> {"ce", "accuracy"} trains and scores one. First the `candidates`; then up
  to `rounds` rounds of local search: `neighbours` op_changes of the best cell so far,
  drawn at random (seed + round), none tried before or like a cell of `exclude`, stopping
  after a round that finds nothing better. Each record is saved to cache_dir/<i>.json as
  it is made and reused from there by a resumed derive (the draws depend only on the
  records, so a resumed search draws the same cells)."""
  os.makedirs(cache_dir, exist_ok=True)
  records: list[dict] = []
  tried: list[genotype_lib.Genotype] = []

  def train(geno: genotype_lib.Genotype, origin: str) -> None:
    index = len(records)
    path = os.path.join(cache_dir, f"{index}.json")
    cached = io_utils.load_json(path) if os.path.isfile(path) else None
    if cached is not None and cached["genotype"] == json.loads(geno.to_json()):
      record = cached
    else:
      start = time.time()
      record = {"genotype": json.loads(geno.to_json()), "origin": origin, **score(geno),
                "seconds": round(time.time() - start, 1)}
      io_utils.save_json_atomic(path, record)
    records.append(record)
    tried.append(geno)
    log(f"proxy {index + 1} ({origin}): K={geno.depth}, {genotype_lib.ops_summary(geno)}: "
        f"held-out CE {record['ce']:.4f}, accuracy {record['accuracy']:.2f} "
        f"({record['seconds']:.0f} s)")

  def best_index() -> int:
    return min(range(len(records)), key=lambda i: records[i]["ce"])

  for geno in candidates:
    train(geno, "candidate")
  for round_index in range(rounds):
    before = best_index()
    pool = op_changes(tried[before], list(exclude) + tried)
    if not pool:
      log(f"proxy round {round_index + 1}: every op change of the best cell was tried")
      break
    rng = np.random.default_rng(seed + round_index)
    for pick in rng.choice(len(pool), size=min(neighbours, len(pool)), replace=False):
      train(pool[pick], f"round {round_index + 1}, a change of #{before + 1}")
    if best_index() == before:
      log(f"proxy round {round_index + 1}: no op change of #{before + 1} scored lower; stop")
      break
  return tried[best_index()], records


def run_derive(config: ml_collections.ConfigDict, task: Task,
               splits: dict[str, dict[str, np.ndarray]], knowledge: dict[str, dict],
               emb_tables: dict[str, np.ndarray], workdir: str, setup,
               log: Callable[[str], None] = print,
               proxy_score: Callable[[genotype_lib.Genotype, dict, dict], dict] | None = None
               ) -> dict:
  """Derives the genotype by config.derive.method; returns result.json's content.
  proxy_score(geno, train, held) -> {"ce", "accuracy"} (method "proxy" only) trains the
  cell on its own on `train` and scores it on `held` (stages.ensure_derive gives it)."""
  from adabert_jax.nas import search
  from adabert_jax.train import checkpoints

  out_dir = artefacts.derive_dir(workdir)
  os.makedirs(out_dir, exist_ok=True)
  start = time.time()
  search_result = io_utils.load_json(os.path.join(artefacts.search_dir(workdir),
                                                  artefacts.RESULT_FILE))
  alpha_genotype = genotype_lib.Genotype.from_json(json.dumps(search_result["genotype"]))
  result: dict[str, Any] = {"method": config.derive.method,
                            "alpha_genotype": json.loads(alpha_genotype.to_json())}
  geno = alpha_genotype
  if config.derive.method in HELDOUT_METHODS:
    params = checkpoints.restore_pytree(os.path.join(artefacts.search_dir(workdir),
                                                     artefacts.FINAL_PARAMS))
    train, held = search.search_and_holdout(config, splits, knowledge)
    emb = {k: jnp.asarray(v) for k, v in emb_tables.items()}
    geno, best, evaluated, signal = measured_derive(config, params, emb, held,
                                                    alpha_genotype, setup, log)
    chosen = next(r for r in evaluated if r["genotype"] == json.loads(geno.to_json()))
    result.update(beta=config.derive.beta, tie_se=config.derive.tie_se,
                  heldout_examples=len(held["label"]),
                  chosen={k: chosen[k] for k in ("loss", "accuracy", "efficiency",
                                                 "objective") + (("paired_se",)
                                                 if "paired_se" in chosen else ())},
                  best_objective_genotype=json.loads(best.to_json()),
                  signal=signal, evaluated=evaluated)
  if config.derive.method == "proxy":
    if proxy_score is None:
      raise ValueError("derive.method=proxy needs proxy_score (stages.ensure_derive)")
    result["measured_genotype"] = json.loads(geno.to_json())
    exclude = list(genotype_lib.baseline_genotypes(geno, config.seed).values())
    candidates = proxy_candidates(geno, config.derive.proxy_candidates,
                                  config.seed + PROXY_SEED_OFFSET, exclude)
    cfg = config.derive
    rounds = (f", then up to {cfg.proxy_rounds} rounds of {cfg.proxy_neighbours} op changes "
              "of the best" if cfg.proxy_rounds else "")
    seeds = f"{cfg.proxy_seeds} times " if cfg.proxy_seeds > 1 else ""
    epochs = cfg.proxy_steps * config.student.batch_size / len(train["label"])
    log(f"proxy: {len(candidates)} cells of depth {geno.depth} (the measured choice first)"
        f"{rounds}, each trained on its own {seeds}for {cfg.proxy_steps} batches (about "
        f"{epochs:.1f} epochs of the {len(train['label']):,} training examples)")
    geno, result["proxy"] = proxy_derive(
        candidates, lambda g: proxy_score(g, train, held), os.path.join(out_dir, "proxy"),
        log, rounds=cfg.proxy_rounds, neighbours=cfg.proxy_neighbours,
        seed=config.seed + PROXY_SEED_OFFSET, exclude=exclude)
    log(f"proxy: lowest held-out CE: K={geno.depth}, {genotype_lib.ops_summary(geno)}")
  geno.save(os.path.join(out_dir, artefacts.GENOTYPE_FILE))
  plots.plot_cell(geno.ops, geno.num_nodes, geno.depth, os.path.join(out_dir, "cell.png"),
                  title=f"{task.name}: derived cell ({config.derive.method}), K = {geno.depth}")
  result.update(genotype=json.loads(geno.to_json()), wall_time_s=round(time.time() - start, 1))
  io_utils.save_json_atomic(os.path.join(out_dir, artefacts.RESULT_FILE), result)
  return result


def format_uniform_grid(result: dict) -> str:
  """Markdown: held-out loss / accuracy of each op on every edge, by depth (the measured
  starting points): what the supernet ranks, op by op, before the descent mixes them."""
  grid: dict[str, dict[int, dict]] = {}
  for r in result.get("evaluated", []):
    geno = genotype_lib.Genotype.from_json(json.dumps(r["genotype"]))
    names = {name for _, _, name in geno.ops}
    if (len(names) == 1 and {(node, src) for node, src, _ in geno.ops}
        == set(supernet.cell_edges(geno.num_nodes))):
      grid.setdefault(names.pop(), {})[geno.depth] = r
  if not grid:
    return ""
  depths = sorted({k for row in grid.values() for k in row})
  lines = ["| op on every edge | " + " | ".join(f"K={k}" for k in depths) + " |",
           "|---" * (len(depths) + 1) + "|"]
  for name in sorted(grid, key=lambda n: min(r["loss"] for r in grid[n].values())):
    lines.append(f"| {name} | " + " | ".join(
        f"{grid[name][k]['loss']:.3f} / {grid[name][k]['accuracy']:.1f}" if k in grid[name]
        else "" for k in depths) + " |")
  return "\n".join(lines)


def format_candidates(result: dict, top: int = 10) -> str:
  """Markdown: the best measured candidates."""
  with_se = bool(result.get("tie_se"))
  lines = ["| K | ops | held-out loss | held-out acc | L_E | J |" + (" paired SE |" if with_se
                                                                   else ""),
           "|---|---|---|---|---|---|" + ("---|" if with_se else "")]
  for r in result.get("evaluated", [])[:top]:
    geno = genotype_lib.Genotype.from_json(json.dumps(r["genotype"]))
    lines.append(f"| {geno.depth} | {genotype_lib.ops_summary(geno)} | {r['loss']:.4f} | "
                 f"{r['accuracy']:.2f} | {r['efficiency']:.3f} | {r['objective']:.4f} |"
                 + ((" - |" if r["genotype"] == result["best_objective_genotype"]
                     else f" {r['paired_se']:.4f} |") if with_se else ""))
  return "\n".join(lines)


def format_proxy(result: dict) -> str:
  """Markdown: each candidate of a proxy derive, trained on its own, the chosen one marked."""
  seeds = len(result["proxy"][0].get("ce_per_seed", [0]))
  mean = f" (mean of {seeds} seeds)" if seeds > 1 else ""
  lines = [f"| # | K | ops | held-out CE{mean} | held-out acc{mean} | seconds |",
           "|---|---|---|---|---|---|"]
  for index, r in enumerate(result["proxy"]):
    geno = genotype_lib.Genotype.from_json(json.dumps(r["genotype"]))
    mark = "**" if r["genotype"] == result["genotype"] else ""
    origin = (" (measured)" if r["genotype"] == result["measured_genotype"]
              else f" ({r['origin']})" if r.get("origin", "candidate") != "candidate" else "")
    lines.append(f"| {index + 1}{origin} | {geno.depth} | {mark}{genotype_lib.ops_summary(geno)}"
                 f"{mark} | {r['ce']:.4f} | {r['accuracy']:.2f} | {r['seconds']:.0f} |")
  return "\n".join(lines)
