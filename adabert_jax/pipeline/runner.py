"""Resumable stages: a stage folder records the fingerprint (config.json) of what made it,
a finished stage under the same fingerprint is reused, and another one is refused (or
wiped with --overwrite). Process 0 writes; every process decides from what it read."""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, Callable

from adabert_jax import artefacts, io_utils
from adabert_jax.errors import UserError
from adabert_jax.train import distributed


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  if not isinstance(d, dict):
    return {prefix: d}
  out = {}
  for k, v in d.items():
    out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
  return out


def fingerprint_diff(old: dict, new: dict) -> list[str]:
  a, b = _flatten(json.loads(json.dumps(old))), _flatten(json.loads(json.dumps(new)))
  return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
          if a.get(k) != b.get(k)]


def check_or_claim(stage_dir: str, fingerprint: dict, overwrite: bool) -> None:
  """Claims `stage_dir` for a config: refuses a folder claimed by another config (or wipes
  it with overwrite=True), then records the fingerprint in <stage_dir>/config.json.
  In a multi-process run every process decides from what it read before any of them
  writes (the first barrier), and process 0 alone writes."""
  path = os.path.join(stage_dir, artefacts.CONFIG_FILE)
  diff = fingerprint_diff(io_utils.load_json(path), fingerprint) if os.path.isfile(path) \
      else None
  if diff and not overwrite:
    raise UserError(
        f"{stage_dir} was made by a different config ({'; '.join(diff[:6])}"
        f"{'; ...' if len(diff) > 6 else ''}). Use a fresh --workdir, or pass --overwrite "
        "to discard it.")
  distributed.barrier(f"read {stage_dir}")
  if diff == [] or not io_utils.writes_artefacts():
    distributed.barrier(f"claimed {stage_dir}")
    return
  if diff:
    shutil.rmtree(stage_dir)
  os.makedirs(stage_dir, exist_ok=True)
  io_utils.save_json_atomic(path, fingerprint)
  distributed.barrier(f"claimed {stage_dir}")


def done(stage_dir: str, result_file: str, fingerprint: dict) -> dict | None:
  """The stage's result if it finished under this fingerprint, else None."""
  path = os.path.join(stage_dir, result_file)
  config_path = os.path.join(stage_dir, artefacts.CONFIG_FILE)
  if not (os.path.isfile(path) and os.path.isfile(config_path)):
    return None
  if fingerprint_diff(io_utils.load_json(config_path), fingerprint):
    return None
  return io_utils.load_json(path)


def run_stage(name: str, stage_dir: str, result_file: str, fingerprint: dict,
              overwrite: bool, fn: Callable[[], dict], log: Callable[[str], None] = print
              ) -> dict:
  """Runs `fn` unless the stage already finished with this fingerprint."""
  previous = done(stage_dir, result_file, fingerprint)
  distributed.barrier(f"looked at {stage_dir}")  # before check_or_claim may write there
  if previous is not None:
    log(f"[{name}] done already: reusing {stage_dir}")
    return previous
  check_or_claim(stage_dir, fingerprint, overwrite)
  log(f"[{name}] running -> {stage_dir}")
  result = fn()
  distributed.barrier(f"finished {stage_dir}")  # its files are written for every process
  return result


def record_legacy_data_files(stage_dir: str, fingerprint: dict) -> None:
  """A teacher made before stages recorded their data (no "data_files" in its config.json)
  cannot be checked against it: it is taken as made from today's data, said once on
  stderr, and the record is added so every later run checks it."""
  path = os.path.join(stage_dir, artefacts.CONFIG_FILE)
  if not os.path.isfile(path):
    return
  old = io_utils.load_json(path)
  if "data_files" in old or fingerprint_diff({**old, "data_files": fingerprint["data_files"]},
                                             fingerprint):
    return
  print(f"warning: {stage_dir} records no data fingerprint (made by an older version); "
        "recording today's data as its own. If it was made from other data, rerun with "
        "--overwrite.", file=sys.stderr)
  io_utils.save_json_atomic(path, fingerprint)
