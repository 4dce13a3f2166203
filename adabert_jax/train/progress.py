"""Progress bars with throughput, and metrics appended to a JSON-lines log file."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from tqdm.auto import tqdm


def progress(total: int, desc: str, unit: str = "ex"):
  """A tqdm bar counting examples, so its rate reads as examples/s."""
  return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, dynamic_ncols=True,
              file=sys.stderr, mininterval=2.0, disable=os.environ.get("ADABERT_QUIET") == "1")


class MetricsLog:
  """Appends one JSON object per line to `path` (created with its folder)."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

  def write(self, **record: Any) -> None:
    record = {"time": round(time.time(), 3), **record}
    with open(self.path, "a") as f:
      f.write(json.dumps(record, default=float) + "\n")
