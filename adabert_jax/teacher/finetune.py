"""Fine-tuning the BERT teacher on a task: AdamW, warm-up + linear decay, dev evaluation,
the best checkpoint kept."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from adabert_jax import artefacts, io_utils
from adabert_jax.data import batching, metrics as metrics_lib
from adabert_jax.data.tasks import Task
from adabert_jax.teacher import bert
from adabert_jax.train import checkpoints, loop, progress, sharding


# Settings that change how often state is saved, not what is learnt: outside the fingerprint.
def teacher_fingerprint(config: ml_collections.ConfigDict, task: Task,
                        data_files: dict[str, str]) -> dict:
  """What the fine-tuned teacher depends on; a result with another one is stale.

  `data_files` ({split: content digest}, data.pipeline.data_files) says what the data is;
  every later stage names the teacher's checkpoint id, so it covers them too."""
  # Where the data lives (cache, GLUE folder, a custom task's files) is not what it is:
  # left out; data_files and a custom task's definition say what it is.
  data = {k: v for k, v in config.data.to_dict().items()
          if k not in ("cache_dir", "glue_dir", "tfds_data_dir", "custom")}
  teacher = checkpoints.without_operational_keys(config.teacher.to_dict())
  fingerprint = {"task": task.name, "teacher": teacher, "data": data,
                 "data_files": data_files, "seed": config.seed}
  if task.custom:  # the run's record of the labels and text fields (predict reads it)
    fingerprint["task_definition"] = task.definition()
  return fingerprint


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int
                   ) -> optax.GradientTransformation:
  warmup = max(1, int(cfg.warmup_fraction * total_steps))
  schedule = optax.join_schedules([
      optax.linear_schedule(0.0, cfg.learning_rate, warmup),
      optax.linear_schedule(cfg.learning_rate, 0.0, max(1, total_steps - warmup))], [warmup])
  # No weight decay on biases and LayerNorm parameters (BERT's recipe).
  decay_mask = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
      lambda path, x: x.ndim > 1, params)
  return optax.chain(optax.clip_by_global_norm(1.0),
                     optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=decay_mask))


def make_train_step(teacher: bert.Teacher, tx: optax.GradientTransformation,
                    dropout: float) -> Callable:

  def train_step(state, batch, key):
    params, opt_state, step = state["params"], state["opt_state"], state["step"]

    def loss_fn(p):
      logits = teacher.logits(p, batch, train=True, dropout_rate=dropout,
                              dropout_key=jax.random.fold_in(key, step))
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return {"params": params, "opt_state": opt_state, "step": step + 1}, loss

  return jax.jit(train_step, donate_argnums=(0,))


def predict_logits(teacher: bert.Teacher, params: Any, arrays: dict[str, np.ndarray],
                   batch_size: int, max_len: int, mesh) -> np.ndarray:
  """Task logits [N, C] for every example, in the original order."""
  logits_fn = _jitted_logits(teacher)
  out = np.zeros((len(arrays["label"]), teacher.num_classes), np.float32)
  for idx, batch in batching.length_sorted_eval_batches(
      arrays, batch_size, max_len, sharding.process_rows(mesh, batch_size)):
    logits = sharding.to_host(logits_fn(params, sharding.shard_batch(batch, mesh)))
    out[idx] = logits[:len(idx)]
  return out


@functools.cache
def _jitted_logits(teacher: bert.Teacher) -> Callable:
  return jax.jit(lambda params, batch: teacher.logits(params, batch))


def evaluate(teacher, params, task: Task, arrays, batch_size, max_len, mesh) -> dict:
  logits = predict_logits(teacher, params, arrays, batch_size, max_len, mesh)
  return metrics_lib.compute_metrics(task, logits.argmax(-1), arrays["label"])


def _resume(ring: checkpoints.CheckpointRing, state: dict, out_dir: str
            ) -> tuple[int, dict, dict]:
  """(step, state, best-so-far) from the newest readable training state, or a fresh start.

  best.json is written right after best/, so a kill between the two leaves best/ newer than
  best.json: replaying from the ring's step reaches the same dev score again and rewrites
  both. The log keeps only what happened up to the restored step.
  """
  best_path = os.path.join(out_dir, artefacts.BEST_FILE)
  log_path = os.path.join(out_dir, "log.jsonl")
  restored = ring.restore_latest(state)
  if restored is None:
    for stale in (best_path, log_path):
      io_utils.remove(stale)
    return 0, state, {"score": -np.inf}
  step, state = restored
  best = io_utils.load_json(best_path) if os.path.isfile(best_path) else {"score": -np.inf}
  progress.cut_records_to_step(log_path, step)
  return step, state, best


def finetune(config: ml_collections.ConfigDict, task: Task,
             splits: dict[str, dict[str, np.ndarray]], workdir: str, *,
             data_files: dict[str, str]) -> dict:
  """Fine-tunes the teacher; keeps the checkpoint with the best dev score.

  Writes <workdir>/teacher/{best/, best.json, checkpoints/, result.json, log.jsonl};
  returns the result. Restarted after a kill, it resumes from the newest training state in
  checkpoints/ and ends with the same parameters as an uninterrupted run.
  """
  cfg = config.teacher
  out_dir = artefacts.teacher_dir(workdir)
  os.makedirs(out_dir, exist_ok=True)
  key = jax.random.key(config.seed)
  init_key, data_key, dropout_key = jax.random.split(key, 3)
  teacher, params, _ = bert.load_teacher(cfg.checkpoint, task.num_classes, init_key)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(cfg.batch_size, mesh, "teacher.batch_size")
  max_len = cfg.max_len or config.data.max_len
  train = {k: v[:, :max_len] if v.ndim == 2 else v for k, v in splits["train"].items()}
  dev = {k: v[:, :max_len] if v.ndim == 2 else v
         for k, v in splits[task.main_dev_split].items()}
  steps_per_epoch = batching.steps_per_epoch(train, cfg.batch_size)
  total_steps = steps_per_epoch * cfg.epochs
  tx = make_optimizer(cfg, total_steps)
  state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
  ring = checkpoints.CheckpointRing(os.path.join(out_dir, "checkpoints"),
                                    keep=cfg.keep_checkpoints)
  step, state, best = _resume(ring, state, out_dir)
  state = sharding.replicate(state, mesh)
  log = progress.MetricsLog(os.path.join(out_dir, "log.jsonl"))
  train_step = make_train_step(teacher, tx, cfg.dropout)
  schedule = loop.Schedule(total_steps=total_steps, steps_per_epoch=steps_per_epoch,
                           batch_size=cfg.batch_size, eval_every_steps=cfg.eval_every_steps,
                           checkpoint_every_steps=cfg.checkpoint_every_steps)
  start, start_step = time.time(), step
  bar = loop.progress_bar(schedule, f"teacher {task.name}", step, ring)

  def on_step(step, epoch, state, loss):
    if step % 50 and not schedule.saves_at(step):
      return
    # Checked before anything is saved, so no NaN reaches best/ or the ring.
    loss = float(loss)
    loop.stop_if_not_finite(
        {"loss": loss}, step=step, ring=ring, debug_state=state["params"],
        error=lambda _, debug: (
            f"Non-finite teacher loss (cross-entropy) at step {step}. The parameters after "
            f"that step are in {debug}; the last good training state in {ring.directory} "
            "was not touched. Lower --config.teacher.learning_rate."))
    if step % 50 == 0:
      bar.set_postfix(loss=f"{loss:.3f}", epoch=epoch)
      log.write(step=step, epoch=epoch, loss=loss)

  def on_eval(step, epoch, state, loss):
    nonlocal best
    dev_metrics = evaluate(teacher, state["params"], task, dev, 2 * cfg.batch_size, max_len,
                           mesh)
    log.write(step=step, epoch=epoch, dev=dev_metrics, elapsed_s=round(time.time() - start, 1))
    bar.write(f"step {step} epoch {epoch}: dev " + ", ".join(
        f"{k} {v:.2f}" for k, v in dev_metrics.items() if k != "num_examples"))
    if dev_metrics["score"] > best["score"]:
      best = {"score": dev_metrics["score"], "step": step, "epoch": epoch, "dev": dev_metrics}
      checkpoints.save_pytree(os.path.join(out_dir, "best"), state["params"])
      io_utils.save_json_atomic(os.path.join(out_dir, artefacts.BEST_FILE), best)

  loop.run(state, step, schedule, bar=bar, ring=ring, on_step=on_step, on_eval=on_eval,
           batches=lambda epoch, in_epoch: batching.epoch_batches(
               train, cfg.batch_size, data_key, epoch, max_len, bucket=cfg.bucket_lengths,
               start_step=in_epoch, rows=sharding.process_rows(mesh, cfg.batch_size)),
           train_step=lambda state, batch, step: train_step(
               state, sharding.shard_batch(batch, mesh), dropout_key))
  elapsed = time.time() - start
  result = {
      "task": task.name, "model_dir": teacher.model_dir, "num_layers": teacher.num_layers,
      "hidden_size": teacher.hidden_size, "num_classes": task.num_classes,
      "best_step": best["step"], "best_epoch": best["epoch"], "dev": best["dev"],
      "train_examples": int(len(train["label"])), "total_steps": total_steps,
      "resumed_from_step": start_step, "wall_time_s": round(elapsed, 1),
      "train_examples_per_s": round(
          (total_steps - start_step) * cfg.batch_size / max(elapsed, 1e-9), 1),
      "fingerprint": teacher_fingerprint(config, task, data_files),
  }
  # The id names the weights: the best step and its dev scores, not timings.
  identity = {k: result[k] for k in ("task", "model_dir", "best_step", "dev", "fingerprint")}
  result["checkpoint_id"] = hashlib.sha256(
      json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
  io_utils.save_json_atomic(os.path.join(out_dir, artefacts.RESULT_FILE), result)
  # The training states only serve a resume; a finished teacher needs best/ alone.
  io_utils.remove(ring.directory)
  return result


def load_finetuned(workdir: str, checkpoint: str, key: jax.Array | None = None
                   ) -> tuple[bert.Teacher, Any, dict]:
  """The fine-tuned teacher of a run directory: (teacher, params, result.json)."""
  out_dir = artefacts.teacher_dir(workdir)
  result = io_utils.load_json(os.path.join(out_dir, artefacts.RESULT_FILE))
  teacher, params, _ = bert.load_teacher(checkpoint, result["num_classes"],
                                         key if key is not None else jax.random.key(0))
  params = checkpoints.restore_pytree(os.path.join(out_dir, "best"), params)
  return teacher, params, result
