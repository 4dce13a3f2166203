"""Training and evaluating the discrete student with the search's KD loss (no efficiency
term): L = (1 - gamma) CE + gamma * ((1 - w) attentive layer KD + w final KD)."""

from __future__ import annotations

import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from adabert_jax import array_utils, artefacts, io_utils
from adabert_jax.data import batching, metrics as metrics_lib
from adabert_jax.data.tasks import Task
from adabert_jax.data.tokenization import Vocab
from adabert_jax.nas import inputs, losses
from adabert_jax.nas.genotype import Genotype
from adabert_jax.student import export, model
from adabert_jax.train import checkpoints, loop, progress, sharding


def kd_loss(out: dict, batch: dict, cfg: ml_collections.ConfigDict
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The search's loss (nas/losses.py) at the student's one depth K, without the efficiency
  term: the layer KD uses all K student layers. Each term is averaged over the batch before
  the terms are mixed (the search mixes per example, then averages: equal up to float
  rounding; kept so that earlier students reproduce bit for bit)."""
  ce = losses.cross_entropy(out["logits"], batch["label"]).mean()
  layer_kd = losses.layer_kd_per_depth(out["layer_logits"], batch["probe_logits"],
                                       batch["label"], cfg.kd_temperature)[:, -1].mean()
  final_kd = losses.kl_divergence(batch["teacher_logits"], out["logits"],
                                  cfg.kd_temperature).mean()
  total = losses.mix_task(ce, losses.mix_kd(layer_kd, final_kd, cfg.final_kd_weight),
                          cfg.gamma)
  return total, {"total": total, "ce": ce, "kd_layers": layer_kd, "kd_final": final_kd}


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int):
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                     optax.add_decayed_weights(cfg.weight_decay),
                     optax.sgd(optax.cosine_decay_schedule(cfg.learning_rate, total_steps),
                               momentum=cfg.momentum))


def predict_logits(params, geno: Genotype, arrays, emb_tables, batch_size: int, mesh
                   ) -> np.ndarray:
  """The student's logits [N, C] on every example of `arrays`, in order."""
  fn = _jitted_logits(geno)
  n = len(arrays["label"])
  logits_NC = []
  for start, batch in zip(range(0, n, batch_size), batching.eval_batches(
      arrays, batch_size, sharding.process_rows(mesh, batch_size))):
    del batch["weight"]  # the real examples are the first min(batch_size, N - start)
    batch = inputs.host_batch(batch, geno.input_mode)
    logits = fn(params, sharding.shard_batch(batch, mesh), emb_tables)
    logits_NC.append(sharding.to_host(logits)[:n - start])
  return np.concatenate(logits_NC)


def predict(params, geno: Genotype, arrays, emb_tables, batch_size: int, mesh) -> np.ndarray:
  return predict_logits(params, geno, arrays, emb_tables, batch_size,
                        mesh).argmax(-1).astype(np.int32)


@functools.cache
def _jitted_logits(geno: Genotype):
  return jax.jit(lambda params, batch, emb: model.student_apply(
      params, batch, geno, emb_tables=emb)["logits"])


def evaluate(params, geno, task: Task, arrays, emb_tables, batch_size, mesh) -> dict:
  preds = predict(params, geno, arrays, emb_tables, batch_size, mesh)
  return metrics_lib.compute_metrics(task, preds, arrays["label"])


def make_train_step(cfg: ml_collections.ConfigDict, geno: Genotype,
                    tx: optax.GradientTransformation, emb: dict[str, jax.Array]):
  """The jitted student update: (params, opt_state, batch, dropout key) -> (params,
  opt_state, loss terms); it donates the params and optimiser state it is given."""

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step_fn(params, opt_state, batch, key):

    def loss_fn(p):
      out = model.student_apply(p, batch, geno, emb_tables=emb, train=True,
                                dropout=cfg.dropout, dropout_key=key)
      return kd_loss(out, batch, cfg)

    (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, terms

  return step_fn


def train_briefly(config: ml_collections.ConfigDict, geno: Genotype, init_params: dict,
                  train: dict[str, np.ndarray], emb_tables: dict[str, np.ndarray], steps: int,
                  key: jax.Array) -> dict:
  """The student's training (loss, optimiser, cosine schedule over `steps`), for `steps`
  batches of `train` and nothing else: no dev, checkpoints or export. For ranking cells by
  a short training on their own (experiments/proxy_rank.py)."""
  cfg = config.student
  mesh = sharding.make_mesh(1)
  tx = make_optimizer(cfg, steps)
  emb = {k: jnp.asarray(v) for k, v in emb_tables.items()}
  params = jax.tree.map(jnp.array, init_params)  # a copy: the step donates what it is given
  step_fn = make_train_step(cfg, geno, tx, emb)
  data_key, dropout_key = jax.random.split(key)
  schedule = loop.Schedule(total_steps=steps,
                           steps_per_epoch=batching.steps_per_epoch(train, cfg.batch_size),
                           batch_size=cfg.batch_size, eval_every_steps=0,
                           checkpoint_every_steps=steps)

  def train_step(state, batch, step):
    batch = inputs.host_batch(batch, geno.input_mode)
    params, opt_state, terms = step_fn(state["params"], state["opt_state"],
                                       sharding.shard_batch(batch, mesh),
                                       jax.random.fold_in(dropout_key, step))
    return {"params": params, "opt_state": opt_state}, terms

  return loop.run({"params": params, "opt_state": tx.init(params)}, 0, schedule,
                  bar=loop.progress_bar(schedule, f"{geno.depth}-cell proxy", 0, None),
                  ring=None, train_step=train_step, on_eval=lambda *_: None,
                  batches=lambda epoch, in_epoch: batching.epoch_batches(
                      train, cfg.batch_size, data_key, epoch, config.data.max_len,
                      bucket=cfg.bucket_lengths, start_step=in_epoch))["params"]


def train_student(config: ml_collections.ConfigDict, task: Task, geno: Genotype,
                  init_params: dict, train: dict[str, np.ndarray], dev: dict[str, np.ndarray],
                  emb_tables: dict[str, np.ndarray], out_dir: str, name: str = "student", *,
                  vocab: Vocab) -> dict:
  """Trains a student (from `init_params`) on train + precomputed knowledge; keeps the best
  dev checkpoint. Writes <out_dir>/{params/, export/, result.json, log.jsonl (dev at each
  epoch end, which the report shows beside the kept score)}; export/ is
  the self-contained folder of student/export.py (`vocab` is the teacher's)."""
  cfg = config.student
  os.makedirs(out_dir, exist_ok=True)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(cfg.batch_size, mesh, "student.batch_size")
  steps_per_epoch = batching.steps_per_epoch(train, cfg.batch_size)
  total_steps = max(1, steps_per_epoch * cfg.epochs)
  tx = make_optimizer(cfg, total_steps)
  emb = sharding.replicate({k: jnp.asarray(v) for k, v in emb_tables.items()}, mesh)
  params = sharding.replicate(jax.tree.map(jnp.asarray, init_params), mesh)
  opt_state = tx.init(params)
  step_fn = make_train_step(cfg, geno, tx, emb)

  key = jax.random.key(config.seed + cfg.seed_offset + 7)
  data_key, dropout_key = jax.random.split(key)
  # A killed run resumes from its newest training state: the log is cut back to that step
  # and the best epoch so far is read from it (its weights are in params/ already).
  ring = checkpoints.CheckpointRing(os.path.join(out_dir, "checkpoints"),
                                    keep=cfg.keep_checkpoints)
  step = 0
  restored = ring.restore_latest({"params": params, "opt_state": opt_state})
  if restored is not None:
    step, state = restored
    params, opt_state = (sharding.replicate(state[k], mesh) for k in ("params", "opt_state"))
  log_path = os.path.join(out_dir, artefacts.LOG_FILE)
  records = progress.cut_records_to_step(log_path, step)
  log = progress.MetricsLog(log_path)
  best = {"score": -np.inf, "dev": None, "epoch": -1}
  for record in records:
    if record["dev"]["score"] > best["score"]:
      best = {"score": record["dev"]["score"], "dev": record["dev"], "epoch": record["epoch"]}
  before = evaluate(params, geno, task, dev, emb, cfg.batch_size, mesh) if cfg.epochs == 0 \
      else None
  schedule = loop.Schedule(total_steps=steps_per_epoch * cfg.epochs,
                           steps_per_epoch=steps_per_epoch, batch_size=cfg.batch_size,
                           eval_every_steps=0, checkpoint_every_steps=cfg.checkpoint_every_steps)
  start, start_step = time.time(), step
  bar = loop.progress_bar(schedule, f"{name} {task.name}", step, ring)

  def train_step(state, batch, step):
    params, opt_state = state["params"], state["opt_state"]
    batch = inputs.host_batch(batch, geno.input_mode)
    params, opt_state, terms = step_fn(params, opt_state, sharding.shard_batch(batch, mesh),
                                       jax.random.fold_in(dropout_key, step))
    return {"params": params, "opt_state": opt_state}, terms

  def on_eval(step, epoch, state, terms):
    nonlocal best
    terms = {k: float(v) for k, v in jax.device_get(terms).items()}
    dev_metrics = evaluate(state["params"], geno, task, dev, emb, cfg.batch_size, mesh)
    bar.set_postfix(loss=f"{terms['total']:.3f}", dev=f"{dev_metrics['score']:.2f}")
    # Best weights, then the record, then the state: a kill between any two resumes from
    # an earlier state and redoes the epoch, which gives the same weights again.
    if dev_metrics["score"] > best["score"]:
      best = {"score": dev_metrics["score"], "dev": dev_metrics, "epoch": epoch}
      checkpoints.save_pytree(os.path.join(out_dir, "params"), state["params"])
    log.write(epoch=epoch, step=step, loss=terms, dev=dev_metrics)

  params = loop.run({"params": params, "opt_state": opt_state}, step, schedule, bar=bar,
                    ring=ring, train_step=train_step, on_eval=on_eval,
                    batches=lambda epoch, in_epoch: batching.epoch_batches(
                        train, cfg.batch_size, data_key, epoch, config.data.max_len,
                        bucket=cfg.bucket_lengths, start_step=in_epoch,
                        rows=sharding.process_rows(mesh, cfg.batch_size)))["params"]
  if cfg.epochs == 0:  # inherit-only: the searched weights as they are
    best = {"score": before["score"], "dev": before, "epoch": -1}
    checkpoints.save_pytree(os.path.join(out_dir, "params"), params)
  best_params = checkpoints.restore_pytree(os.path.join(out_dir, "params"))
  exported = model.export(best_params, emb_tables)
  export.write_export(os.path.join(out_dir, artefacts.EXPORT_DIR), exported, geno, task, vocab,
                      config.data.max_len)
  result = {"name": name, "task": task.name, "genotype": json.loads(geno.to_json()),
            "dev": best["dev"], "best_epoch": best["epoch"], "epochs": cfg.epochs,
            "train_examples": batching.num_examples(train),
            "params_exported": array_utils.count_params(exported),
            "params_training": array_utils.count_params(best_params),
            "wall_time_s": round(time.time() - start, 1), "resumed_from_step": start_step}
  io_utils.save_json_atomic(os.path.join(out_dir, artefacts.RESULT_FILE), result)
  # The training states only served a resume; the student is done.
  io_utils.remove(ring.directory)
  return result
