"""Progress bars with throughput, and metrics appended to a JSON-lines log file."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from tqdm.auto import tqdm

from adabert_jax import io_utils
from adabert_jax.errors import UserError


def progress(total: int, desc: str, unit: str = "ex"):
  """A tqdm bar counting examples, so its rate reads as examples/s."""
  return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True,
              file=sys.stderr, mininterval=2.0,
              disable=os.environ.get("ADABERT_QUIET") == "1" or not io_utils.writes_artefacts())


class MetricsLog:
  """Appends one JSON object per line to `path` (created with its folder)."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

  def write(self, **record: Any) -> None:
    record = {"time": round(time.time(), 3), **record}
    append_jsonl(self.path, record)


def append_jsonl(path: str, record: dict) -> None:
  """Appends one JSON line (process 0 only in a multi-process run)."""
  if io_utils.writes_artefacts():
    with open(path, "a") as f:
      f.write(json.dumps(record, default=float) + "\n")


def read_records(path: str) -> list[dict]:
  """The JSON-lines records of `path` ([] when there is none). A last line cut short by a
  kill is dropped; a damaged line before it is an error."""
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i < len(lines) - 1:
        raise UserError(f"{path} line {i + 1} is not JSON; delete the file's damaged "
                        "lines (or the stage's folder) and rerun.") from None
  return records


def records_up_to_step(path: str, step: int) -> list[dict]:
  """The records of `path` (read_records) made at or before `step`, for a run resumed there
  (it redoes the rest)."""
  return [r for r in read_records(path) if r.get("step", 0) <= step]


def cut_records_to_step(path: str, step: int) -> list[dict]:
  """For a run resumed at `step`: rewrites `path` (when it exists) with only its records made
  at or before `step` (records_up_to_step) and returns them."""
  kept = records_up_to_step(path, step)
  if os.path.isfile(path):
    io_utils.save_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
  return kept
