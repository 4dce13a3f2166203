"""One check of the whole config, at every entry point, before any stage runs or any folder
is touched: a value that cannot work (a zero batch, a negative subset, a max_len beyond the
teacher's positions) ends the run with one line naming the field and its range, instead of
a ZeroDivisionError after --overwrite has already discarded a finished stage.

It holds the numeric ranges in one table that reads like the config, and the search's
named choices, each list imported from the module that implements it (derive.method and
student.init are checked by their stages' own check_config before those run).
"""

from __future__ import annotations

import math
import os

import ml_collections

from adabert_jax.errors import UserError

# (field, lowest, highest, lowest allowed?, highest allowed?): None = unbounded. Integers
# and floats alike; ml_collections has already checked each override's type.
_AT_LEAST_1 = (1, None, True, True)
_AT_LEAST_0 = (0, None, True, True)
_POSITIVE = (0, None, False, True)
_FRACTION = (0, 1, True, True)          # [0, 1]
_PROBABILITY = (0, 1, False, True)      # (0, 1]
_DROPOUT = (0, 1, True, False)          # [0, 1)
_MOMENTUM = (0, 1, True, False)         # [0, 1)

RANGES: dict[str, tuple] = {
    "data.max_len": (8, None, True, True),
    "data.train_subset": _AT_LEAST_0,
    "data.dev_fraction": (0, 1, False, False),
    "teacher.epochs": _AT_LEAST_1,
    "teacher.batch_size": _AT_LEAST_1,
    "teacher.learning_rate": _POSITIVE,
    "teacher.weight_decay": _AT_LEAST_0,
    "teacher.warmup_fraction": _FRACTION,
    "teacher.dropout": _DROPOUT,
    "teacher.max_len": _AT_LEAST_0,
    "teacher.eval_every_steps": _AT_LEAST_0,
    "teacher.checkpoint_every_steps": _AT_LEAST_1,
    "teacher.keep_checkpoints": _AT_LEAST_1,
    "probes.epochs": _AT_LEAST_1,
    "probes.batch_size": _AT_LEAST_1,
    "probes.learning_rate": _POSITIVE,
    "search.epochs": _AT_LEAST_1,
    "search.batch_size": _AT_LEAST_1,
    "search.hidden": _AT_LEAST_1,
    "search.k_max": _AT_LEAST_1,
    "search.num_nodes": (3, None, True, True),
    "search.dropout": _DROPOUT,
    "search.temperature_start": _POSITIVE,
    "search.temperature_end": _POSITIVE,
    "search.temperature_anneal_rate": _AT_LEAST_0,
    "search.gamma": _FRACTION,
    "search.beta": _AT_LEAST_0,
    "search.kd_temperature": _POSITIVE,
    "search.final_kd_weight": _FRACTION,
    "search.weights_lr": _POSITIVE,
    "search.weights_momentum": _MOMENTUM,
    "search.weights_weight_decay": _AT_LEAST_0,
    "search.weights_grad_clip": _POSITIVE,
    "search.arch_lr": _POSITIVE,
    "search.arch_b1": _MOMENTUM,
    "search.arch_weight_decay": _AT_LEAST_0,
    "search.arch_warmup_epochs": _AT_LEAST_0,
    "search.alpha_regulariser": _AT_LEAST_0,
    "search.arch_split": (0, 1, True, False),
    "search.holdout": _AT_LEAST_0,
    "search.train_subset": _AT_LEAST_0,
    "search.seed_offset": _AT_LEAST_0,
    "search.max_steps": _AT_LEAST_0,
    "search.checkpoint_every_steps": _AT_LEAST_1,
    "search.keep_checkpoints": _AT_LEAST_1,
    "derive.batch_size": _AT_LEAST_1,
    "derive.beta": _AT_LEAST_0,
    "derive.passes": _AT_LEAST_0,
    "derive.tie_se": _AT_LEAST_0,
    "derive.proxy_candidates": _AT_LEAST_0,
    "derive.proxy_steps": _AT_LEAST_1,
    "derive.proxy_rounds": _AT_LEAST_0,
    "derive.proxy_seeds": _AT_LEAST_1,
    "derive.proxy_neighbours": _AT_LEAST_1,
    "augment.copies": _AT_LEAST_0,
    "augment.neighbours": _AT_LEAST_1,
    "augment.replace_prob": _PROBABILITY,
    "augment.pair_replace_prob": _PROBABILITY,
    "student.epochs": _AT_LEAST_1,
    "student.batch_size": _AT_LEAST_1,
    "student.learning_rate": _POSITIVE,
    "student.momentum": _MOMENTUM,
    "student.weight_decay": _AT_LEAST_0,
    "student.grad_clip": _POSITIVE,
    "student.dropout": _DROPOUT,
    "student.gamma": _FRACTION,
    "student.kd_temperature": _POSITIVE,
    "student.final_kd_weight": _FRACTION,
    "student.train_subset": _AT_LEAST_0,
    "student.seed_offset": _AT_LEAST_0,
    "student.checkpoint_every_steps": _AT_LEAST_1,
    "student.keep_checkpoints": _AT_LEAST_1,
    "bench.batch_size": _AT_LEAST_1,
    "bench.max_len": (8, None, True, True),
    "bench.repeats": _AT_LEAST_1,
    "bench.serving_requests": _AT_LEAST_0,
}


def _choices() -> dict[str, tuple[str, ...]]:
  from adabert_jax.nas import (costs, derive, gumbel, inputs, losses, search, search_step,
                               supernet)

  return {"search.mode": supernet.MODES, "search.pair_mode": inputs.PAIR_MODES,
          "search.depth_mix": losses.DEPTH_MIXES, "search.layer_kd_map": losses.LAYER_KD_MAPS,
          "search.cost_norm": costs.COST_NORMS,
          "search.temperature_schedule": gumbel.TEMPERATURE_SCHEDULES,
          "search.warmup_sampling": gumbel.WARMUP_SAMPLINGS,
          "search.train_data": search.TRAIN_DATA,
          "derive.no_signal": derive.NO_SIGNAL_RULES, "derive.signal_test": derive.SIGNAL_TESTS,
          "search.arch_weight_decay_mode": search_step.WEIGHT_DECAY_MODES}


# BERT-base's position table: the benchmark builds one, whatever the teacher.
BERT_BASE_POSITIONS = 512


def _describe(low, high, low_in: bool, high_in: bool) -> str:
  if high is None:
    return f">= {low}" if low_in else f"> {low}"
  return f"in {'[' if low_in else '('}{low}, {high}{']' if high_in else ')'}"


def _in_range(value, low, high, low_in: bool, high_in: bool) -> bool:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
    return False
  above = value >= low if low_in else value > low
  below = high is None or (value <= high if high_in else value < high)
  return above and below


def _lookup(config: ml_collections.ConfigDict, field: str):
  node = config
  for part in field.split("."):
    if part not in node:
      return None
    node = node[part]
  return node


def _local_teacher_positions(checkpoint: str) -> int | None:
  """max_position_embeddings of a teacher on this machine, or None when reading it would
  need the network (a hub name) or the folder is not there (its stage says so)."""
  from adabert_jax import assets

  try:
    if assets.is_default_teacher(checkpoint):
      folder = assets.default_teacher_dir()
    elif os.path.isdir(checkpoint):
      folder = checkpoint
    else:
      return None
    return int(assets.read_bert_config(folder).get("max_position_embeddings", 512))
  except (UserError, OSError, ValueError):
    return None  # the teacher stage reports a missing or broken checkpoint itself


def check(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first field outside its range."""
  for field, (low, high, low_in, high_in) in RANGES.items():
    value = _lookup(config, field)
    if value is not None and not _in_range(value, low, high, low_in, high_in):
      raise UserError(f"--config.{field}={value!r}: must be "
                      f"{'a number ' if not isinstance(value, (int, float)) else ''}"
                      f"{_describe(low, high, low_in, high_in)}.")
  for field, choices in _choices().items():
    value = _lookup(config, field)
    if value is not None and value not in choices:
      raise UserError(f"--config.{field}={value!r}: use one of {', '.join(choices)}.")
  if config.search.warmup_sampling == "fair" and not config.search.arch_warmup_epochs:
    raise UserError("--config.search.warmup_sampling=fair samples during the architecture "
                    "warm-up, and --config.search.arch_warmup_epochs is 0: set it > 0.")
  if config.search.train_data == "augmented" and config.augment.copies <= 0:
    raise UserError("--config.search.train_data=augmented searches on the augmented copies, "
                    "and --config.augment.copies is 0: set it > 0, or use train_data=train.")
  if config.teacher.max_len > config.data.max_len:
    raise UserError(f"--config.teacher.max_len={config.teacher.max_len} is longer than "
                    f"--config.data.max_len={config.data.max_len}: use 0 (= data.max_len) "
                    "or a shorter length.")
  positions = _local_teacher_positions(config.teacher.checkpoint)
  if positions is not None and config.data.max_len > positions:
    raise UserError(f"--config.data.max_len={config.data.max_len} is longer than the "
                    f"teacher's {positions} positions: use <= {positions}.")
  bench_positions = min(positions or BERT_BASE_POSITIONS, BERT_BASE_POSITIONS)
  if config.bench.max_len > bench_positions:
    raise UserError(f"--config.bench.max_len={config.bench.max_len} is longer than the "
                    f"{bench_positions} positions of the BERTs it times: use <= "
                    f"{bench_positions}.")
