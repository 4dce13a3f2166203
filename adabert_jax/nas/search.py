"""The search stage: train the supernet on the precomputed teacher knowledge, resumably,
then derive the architecture.

Writes <workdir>/search/: checkpoints/ (the last few states), history.jsonl (per epoch:
alpha probabilities, depth distribution, sampled depths and fair steps, every loss term,
dev metric of the derived architecture), cell.png, alpha.png and result.json (with alpha's
genotype; the run's genotype.json is the derive stage's).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from adabert_jax import artefacts, io_utils, plots
from adabert_jax.data import batching, metrics as metrics_lib
from adabert_jax.data.tasks import Task
from adabert_jax.errors import UserError
from adabert_jax.nas import (costs, genotype as genotype_lib, inputs, losses, ops, search_step,
                             supernet)
from adabert_jax.train import checkpoints, loop, progress, sharding


@dataclasses.dataclass(frozen=True)
class SearchSetup:
  supernet: supernet.SupernetConfig
  loss: losses.LossConfig
  optimizer: search_step.OptimizerConfig


def setup_from_config(cfg: ml_collections.ConfigDict, is_pair: bool) -> SearchSetup:
  """The search's static setup from config.search, for a single-sentence or a pair task
  (search.pair_mode applies to pairs only)."""
  try:
    input_mode = inputs.input_mode(cfg.pair_mode, is_pair)
    return SearchSetup(
        supernet.SupernetConfig(hidden=cfg.hidden, k_max=cfg.k_max, num_nodes=cfg.num_nodes,
                                dropout=cfg.dropout, mode=cfg.mode, remat=cfg.remat,
                                input_mode=input_mode,
                                embedding_probe=cfg.layer_kd_map == "authors",
                                exact_match=cfg.exact_match and inputs.reads_views(input_mode)),
        losses.LossConfig(gamma=cfg.gamma, beta=cfg.beta, temperature=cfg.kd_temperature,
                          final_kd_weight=cfg.final_kd_weight, depth_mix=cfg.depth_mix,
                          layer_kd_map=cfg.layer_kd_map),
        search_step.OptimizerConfig(
            weights_lr=cfg.weights_lr, weights_momentum=cfg.weights_momentum,
            weights_weight_decay=cfg.weights_weight_decay,
            weights_grad_clip=cfg.weights_grad_clip, arch_lr=cfg.arch_lr,
            arch_b1=cfg.arch_b1, arch_weight_decay=cfg.arch_weight_decay,
            arch_weight_decay_mode=cfg.arch_weight_decay_mode))
  except ValueError as e:
    raise UserError(f"Bad --config.search.* value: {e}") from None


# Fields added after runs were made, with the value that reproduces those runs: at that value
# a field is left out of the fingerprint, so the older runs stay reusable.
_ADDED_LATER = {"holdout": 0, "depth_mix": "logits", "layer_kd_map": "ceil",
                "cost_norm": "max", "arch_weight_decay_mode": "decoupled",
                "temperature_schedule": "exponential", "warmup_sampling": "gumbel",
                "alpha_regulariser": 0.0, "train_data": "train", "seed_offset": 0,
                "exact_match": False, "arch_split": 0.0}

TRAIN_DATA = ("train", "augmented")  # what the supernet trains on (config.search.train_data)


def search_fingerprint(config: ml_collections.ConfigDict, teacher_checkpoint_id: str,
                       is_pair: bool) -> dict:
  search_fields = config.search.to_dict()
  # The value the supernet used: exact_match is on by default, and ignored where the input
  # has no two views (single sentences, the masked form), which runs made before it keep.
  search_fields["exact_match"] = setup_from_config(config.search, is_pair).supernet.exact_match
  search_fields = {k: v for k, v in search_fields.items()
                   if k not in _ADDED_LATER or v != _ADDED_LATER[k]}
  if search_fields.get("temperature_schedule", "exponential") != "per_epoch":
    search_fields.pop("temperature_anneal_rate", None)  # unused by the other schedules
  fingerprint = {"search": search_fields, "teacher_checkpoint_id": teacher_checkpoint_id,
                 "max_len": config.data.max_len, "train_subset": config.data.train_subset,
                 "seed": config.seed, "task": config.task}
  if config.search.train_data == "augmented":
    fingerprint["augment"] = config.augment.to_dict()
  return fingerprint


def step_schedules(cfg: ml_collections.ConfigDict, setup: SearchSetup, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, search_step.SearchConfig]:
  """The optimizer and the step's schedules (learning rates, arch warm-up, temperature, fair
  sampling, regulariser ramp) of a search of cfg.epochs epochs of steps_per_epoch steps."""
  total_steps = steps_per_epoch * cfg.epochs
  warmup_steps = steps_per_epoch * cfg.arch_warmup_epochs
  optimizer = search_step.make_optimizer(setup.optimizer, total_steps, warmup_steps)
  return optimizer, search_step.SearchConfig(
      total_steps=total_steps, temperature_start=cfg.temperature_start,
      temperature_end=cfg.temperature_end, temperature_schedule=cfg.temperature_schedule,
      temperature_anneal_rate=cfg.temperature_anneal_rate, steps_per_epoch=steps_per_epoch,
      arch_warmup_steps=warmup_steps, fair_warmup=cfg.warmup_sampling == "fair",
      alpha_regulariser=cfg.alpha_regulariser)


def with_knowledge(arrays: dict[str, np.ndarray], knowledge: dict[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
  """Token arrays plus the teacher's logits and probe logits, example by example."""
  n = len(arrays["label"])
  if len(knowledge["teacher_logits"]) != n:
    raise UserError(f"Precomputed knowledge has {len(knowledge['teacher_logits'])} examples "
                    f"but the split has {n}: rerun precompute for this data.")
  return {**arrays, "teacher_logits": knowledge["teacher_logits"],
          "probe_logits": knowledge["probe_logits"]}


def search_and_holdout(config: ml_collections.ConfigDict,
                       splits: dict[str, dict[str, np.ndarray]], knowledge: dict[str, dict],
                       augmented: dict[str, np.ndarray] | None = None
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """(the search's training examples, the held-out ones), with the teacher's knowledge:
  search.holdout examples of train kept out, then the search.train_subset of the rest,
  then (with `augmented`, stages.ensure_augmented's copies and their "source" rows) the
  copies of exactly those examples, so no copy of a held-out example reaches the search."""
  rest, held = _search_rows(config, splits, knowledge)
  return _with_copies(rest, augmented), held


def weights_arch_and_holdout(config: ml_collections.ConfigDict,
                             splits: dict[str, dict[str, np.ndarray]],
                             knowledge: dict[str, dict],
                             augmented: dict[str, np.ndarray] | None = None
                             ) -> tuple[dict, dict | None, dict]:
  """search_and_holdout's training examples split in two for search.arch_split > 0: (the
  weights', alpha's, held out). A search.arch_split fraction of the rows, chosen at random,
  is alpha's, with the copies of those rows; alpha's part is None at arch_split = 0."""
  rest, held = _search_rows(config, splits, knowledge)
  fraction = config.search.arch_split
  if not fraction:
    return _with_copies(rest, augmented), None, held
  n = batching.num_examples(rest)
  arch_rows = np.zeros(n, bool)
  arch_rows[np.random.default_rng(config.seed + 11).permutation(n)[:round(fraction * n)]] = True
  parts = [_with_copies({k: a[rows] for k, a in rest.items()}, augmented)
           for rows in (~arch_rows, arch_rows)]
  too_small = [name for name, part in zip(("weights'", "alpha's"), parts)
               if batching.num_examples(part) < config.search.batch_size]
  if too_small:
    raise UserError(f"--config.search.arch_split={fraction} leaves the {too_small[0]} part "
                    f"of the {n} search examples smaller than one batch "
                    f"({config.search.batch_size}): move it towards 0.5.")
  return parts[0], parts[1], held


def _search_rows(config, splits, knowledge):
  """(the search's training rows, the held-out rows), each with a "row" column (the index
  in train) for the copies to find their sources by."""
  train = with_knowledge(splits["train"], knowledge["train"])
  train["row"] = np.arange(len(train["label"]))
  rest, held = batching.holdout_split(train, config.search.holdout, config.seed + 7)
  rest = batching.fixed_subset(rest, config.search.train_subset, config.seed)
  held.pop("row")
  return rest, held


def _with_copies(rows: dict[str, np.ndarray], augmented: dict[str, np.ndarray] | None
                 ) -> dict[str, np.ndarray]:
  """The rows without their "row" column, plus (with `augmented`) the copies of them."""
  rows = dict(rows)
  row = rows.pop("row")
  if augmented is None:
    return rows
  keep = np.isin(augmented["source"], row)
  return {k: np.concatenate([rows[k], augmented[k][keep]]) for k in rows}


def evaluate_fixed(params, emb_tables, arrays, sample, cfg: supernet.SupernetConfig,
                   task: Task, batch_size: int, mesh) -> dict:
  """The task metric of the supernet under a fixed architecture (e.g. the derived one)."""
  fn = _jitted_fixed_logits(cfg)
  preds, n = [], batching.num_examples(arrays)
  for start, batch in zip(range(0, n, batch_size), batching.eval_batches(
      arrays, batch_size, sharding.process_rows(mesh, batch_size))):
    del batch["weight"]  # the real examples are the first min(batch_size, n - start)
    batch = inputs.host_batch(batch, cfg.input_mode)
    logits = fn(params, emb_tables, sharding.shard_batch(batch, mesh), sample)
    preds.append(sharding.to_host(logits).argmax(-1)[:n - start])
  return metrics_lib.compute_metrics(task, np.concatenate(preds), arrays["label"])


@functools.cache
def _jitted_fixed_logits(cfg: supernet.SupernetConfig):
  return jax.jit(lambda params, emb, batch, sample: supernet.supernet_apply(
      params, emb, batch, sample, cfg, train=False)["logits"])


def _stop_if_not_finite(metrics: dict, step: int, ring: checkpoints.CheckpointRing,
                        state: Any) -> None:
  """Stops the run at the first non-finite loss term or gradient norm, after a debug
  checkpoint."""
  terms = ("ce", "kd_layers", "kd_final", "efficiency", "total")

  def error(bad: list[str], debug: str) -> str:
    bad_terms = [name for name in bad if name in terms]
    what = f"loss term(s) {', '.join(bad_terms)}" if bad_terms else "gradient norm"
    return (f"Non-finite {what} at search step {step}. The state after that step is in "
            f"{debug} for inspection; the last good checkpoint was not touched. Lower "
            "--config.search.weights_lr or --config.search.arch_lr, or check the precomputed "
            "knowledge for NaNs.")

  loop.stop_if_not_finite(
      {name: metrics[name] for name in (*terms, "weights_grad_norm", "arch_grad_norm")},
      step=step, ring=ring, debug_state=state, error=error)


def run_search(config: ml_collections.ConfigDict, task: Task,
               splits: dict[str, dict[str, np.ndarray]], knowledge: dict[str, dict],
               emb_tables: dict[str, np.ndarray], teacher_result: dict, workdir: str,
               augmented: dict[str, np.ndarray] | None = None) -> dict:
  """Runs (or resumes) the search; returns result.json's content. `augmented` (the augment
  stage's copies) is what search.train_data=augmented adds to the training examples."""
  cfg = config.search
  setup = setup_from_config(cfg, task.is_pair)
  out_dir = artefacts.search_dir(workdir)
  os.makedirs(out_dir, exist_ok=True)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(cfg.batch_size, mesh, "search.batch_size")
  if (cfg.train_data == "augmented") != (augmented is not None):
    raise ValueError(f"search.train_data={cfg.train_data!r} with "
                     f"{'no ' if augmented is None else ''}augmented copies passed")
  train, arch_data, _ = weights_arch_and_holdout(config, splits, knowledge, augmented)
  dev = splits[task.main_dev_split]
  steps_per_epoch = batching.steps_per_epoch(train, cfg.batch_size)
  total_steps = steps_per_epoch * cfg.epochs
  if cfg.max_steps:
    total_steps = min(total_steps, cfg.max_steps)
  cost_table = costs.op_cost_table(cfg.hidden, config.data.max_len, cfg.cost_norm)
  optimizer, search_cfg = step_schedules(cfg, setup, steps_per_epoch)
  if arch_data is None:
    step_fn = search_step.make_search_step(setup.supernet, setup.loss, search_cfg, optimizer,
                                           cost_table.normalised, donate_state=True)
  else:
    step_fn = search_step.make_separate_batches_step(
        setup.supernet, setup.loss, search_cfg, optimizer, cost_table.normalised,
        donate_state=True)

  base_key = jax.random.key(config.seed + cfg.seed_offset)
  init_key, data_key, search_key = (jax.random.fold_in(base_key, i) for i in range(3))
  teacher_width = emb_tables["word"].shape[1]
  state = search_step.init_search_state(init_key, setup.supernet, teacher_width,
                                        task.num_classes, optimizer)
  ring = checkpoints.CheckpointRing(os.path.join(out_dir, "checkpoints"),
                                    keep=cfg.keep_checkpoints)
  step = 0
  restored = ring.restore_latest(state)
  if restored is not None:
    step, state = restored
  history_path = os.path.join(out_dir, "history.jsonl")
  history = progress.cut_records_to_step(history_path, step)

  emb = sharding.replicate({k: jnp.asarray(v) for k, v in emb_tables.items()}, mesh)
  state = sharding.replicate(state, mesh)
  log = progress.MetricsLog(os.path.join(out_dir, "log.jsonl"))
  schedule = loop.Schedule(total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                           batch_size=cfg.batch_size, eval_every_steps=0,
                           checkpoint_every_steps=cfg.checkpoint_every_steps)
  bar = loop.progress_bar(schedule, f"search {task.name}", step, ring)
  start_time, start_step = time.time(), step
  epoch_terms: list[dict] = []

  def device_batch(batch):
    return sharding.shard_batch(inputs.host_batch(batch, setup.supernet.input_mode), mesh)

  if arch_data is not None:
    # alpha's batches: its own part of the data, its own order (a key of its own), epoch
    # after epoch, indexed by the step so a resumed run reads the same ones.
    arch_batches = _BatchesByStep(lambda epoch, in_epoch: batching.epoch_batches(
        arch_data, cfg.batch_size, jax.random.fold_in(base_key, 3), epoch,
        config.data.max_len, bucket=cfg.bucket_lengths, start_step=in_epoch,
        rows=sharding.process_rows(mesh, cfg.batch_size)),
        batching.steps_per_epoch(arch_data, cfg.batch_size))

  def train_step(state, batch, step):
    if arch_data is None:
      state, metrics = step_fn(state, device_batch(batch), emb, search_key, step)
    else:
      # No alpha batch while alpha is held still: its learning rate is 0 then.
      warmup_steps = search_cfg.arch_warmup_steps
      arch_batch = (device_batch(arch_batches.at(step - warmup_steps))
                    if step >= warmup_steps else None)
      state, metrics = step_fn(state, device_batch(batch), arch_batch, emb, search_key, step)
    return state, jax.device_get(metrics)

  def on_step(step, epoch, state, metrics):
    _stop_if_not_finite(metrics, step, ring, state)
    epoch_terms.append(metrics)
    if step % 20 == 0:
      bar.set_postfix(loss=f"{metrics['total']:.3f}", T=f"{metrics['temperature']:.3f}",
                      K="fair" if metrics["fair"] else int(metrics["depth"]))

  def on_eval(step, epoch, state, metrics):
    # The record is appended before the state is saved: a kill between the two resumes
    # from an earlier step, drops the record and recomputes it, so none goes missing.
    record = _epoch_record(state.params["arch"], setup.supernet, epoch_terms,
                           epoch=(step - 1) // steps_per_epoch, step=step)
    geno = genotype_lib.derive_genotype(jax.device_get(state.params["arch"]), setup.supernet)
    record["dev_derived"] = evaluate_fixed(
        state.params, emb, dev, genotype_lib.genotype_to_onehots(geno, setup.supernet),
        setup.supernet, task, cfg.batch_size, mesh)
    history.append(record)
    progress.append_jsonl(history_path, record)
    log.write(**{k: v for k, v in record.items() if k not in ("op_probs",)})
    bar.write(f"epoch {record['epoch']}: loss {record['loss']['total']:.3f} "
              f"(ce {record['loss']['ce']:.3f}, kd {record['loss']['kd']:.3f}, "
              f"eff {record['loss']['efficiency']:.3f}), T {record['temperature']:.3f}, "
              f"sampled K {record['sampled_depths']}"
              + (f", {record['fair_steps']} fair steps" if record["fair_steps"] else "")
              + ", derived dev "
              f"{record['dev_derived']['score']:.2f}")
    epoch_terms.clear()

  state = loop.run(state, step, schedule, bar=bar, ring=ring, train_step=train_step,
                   on_step=on_step, on_eval=on_eval,
                   batches=lambda epoch, in_epoch: batching.epoch_batches(
                       train, cfg.batch_size, data_key, epoch, config.data.max_len,
                       bucket=cfg.bucket_lengths, start_step=in_epoch,
                       rows=sharding.process_rows(mesh, cfg.batch_size)))
  step = max(step, total_steps)
  elapsed = time.time() - start_time
  # With alpha's own batches, every step after the arch warm-up also read one of those.
  arch_steps = (max(0, step - max(start_step, search_cfg.arch_warmup_steps))
                if arch_data is not None else 0)
  return _finish(config, task, setup, state, history, cost_table, teacher_result, out_dir,
                 elapsed, step - start_step, arch_steps, steps_per_epoch)


class _BatchesByStep:
  """Batches indexed by a step counter over epochs of `steps_per_epoch`: at(i) is always
  the same batch, read in order from batches(epoch, in_epoch) (loop.Batches' signature),
  which is reopened only on a jump (a resume) or at an epoch's start."""

  def __init__(self, batches: loop.Batches, steps_per_epoch: int):
    self._batches, self._steps_per_epoch = batches, steps_per_epoch
    self._iterator, self._next = None, None

  def at(self, i: int) -> dict[str, np.ndarray]:
    epoch, in_epoch = divmod(i, self._steps_per_epoch)
    if i != self._next or in_epoch == 0:
      self._iterator = iter(self._batches(epoch, in_epoch))
    self._next = i + 1
    return next(self._iterator)


def _epoch_record(arch, cfg: supernet.SupernetConfig, terms: list[dict], *, epoch: int,
                  step: int) -> dict:
  arch = jax.device_get(arch)
  # A fair step runs every cell and trains every head, so it has no sampled depth.
  depths = np.bincount([int(t["depth"]) for t in terms if not t["fair"]],
                       minlength=cfg.k_max + 1)[1:]
  record = {
      "epoch": epoch, "step": step,
      "op_probs": genotype_lib.op_probabilities(arch).round(5).tolist(),
      "depth_probs": np.asarray(jax.nn.softmax(arch["alpha_depth"])).round(5).tolist(),
      "sampled_depths": {str(k + 1): int(c) for k, c in enumerate(depths) if c},
      "fair_steps": sum(bool(t["fair"]) for t in terms),
      "loss": {name: float(np.mean([t[name] for t in terms])) if terms else float("nan")
               for name in ("total", "ce", "kd", "kd_layers", "kd_final", "efficiency")},
      "temperature": float(terms[-1]["temperature"]) if terms else float("nan"),
  }
  # search.arch_split > 0: the loss on alpha's own batches (none in the arch warm-up)
  arch_losses = [t["arch_batch_total"] for t in terms if "arch_batch_total" in t]
  if arch_losses:
    record["loss"]["arch_batch_total"] = float(np.mean(arch_losses))
  return record


def _finish(config, task, setup, state, history, cost_table, teacher_result, out_dir,
            elapsed, steps_run, arch_steps_run, steps_per_epoch) -> dict:
  arch = jax.device_get(state.params["arch"])
  geno = genotype_lib.derive_genotype(arch, setup.supernet)
  plots.plot_cell(geno.ops, geno.num_nodes, geno.depth, os.path.join(out_dir, "cell.png"),
                  title=f"{task.name}: searched cell, K = {geno.depth}")
  if history:
    plots.plot_alpha_history([h["epoch"] for h in history],
                             np.array([h["op_probs"] for h in history]),
                             np.array([h["depth_probs"] for h in history]), ops.OP_NAMES,
                             os.path.join(out_dir, "alpha.png"))
  checkpoints.save_pytree(os.path.join(out_dir, artefacts.FINAL_PARAMS), state.params)
  result = {
      "task": task.name, "genotype": json.loads(geno.to_json()),
      "op_probs": genotype_lib.op_probabilities(arch).round(4).tolist(),
      "op_names": list(ops.OP_NAMES), "edges": [list(e) for e in setup.supernet.edges],
      "depth_probs": np.asarray(jax.nn.softmax(arch["alpha_depth"])).round(4).tolist(),
      "sampled_depths_last_epoch": history[-1]["sampled_depths"] if history else {},
      "dev_derived": history[-1]["dev_derived"] if history else None,
      "cost_table": cost_table.as_dict(),
      "wall_time_s_this_run": round(elapsed, 1), "steps_this_run": steps_run,
      # The weights' examples; with search.arch_split, examples_read_per_s adds alpha's.
      "examples_per_s": round(steps_run * config.search.batch_size / max(elapsed, 1e-9), 1),
      "examples_read_per_s": round((steps_run + arch_steps_run) * config.search.batch_size
                                   / max(elapsed, 1e-9), 1),
      "steps_per_epoch": steps_per_epoch,
      "train_examples": steps_per_epoch * config.search.batch_size,
      "fingerprint": search_fingerprint(config, teacher_result["checkpoint_id"],
                                         task.is_pair),
  }
  io_utils.save_json_atomic(os.path.join(out_dir, artefacts.RESULT_FILE), result)
  return result


def format_alpha_table(result: dict) -> str:
  """Markdown: softmax(alpha) per edge (rows) and op (columns)."""
  names = result["op_names"]
  lines = ["| edge | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
  for (node, src), probs in zip(result["edges"], result["op_probs"]):
    lines.append(f"| {src}->{node} | " + " | ".join(f"{p:.3f}" for p in probs) + " |")
  return "\n".join(lines)
