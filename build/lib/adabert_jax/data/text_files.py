"""Text to classify, read from a user's file, and the predictions written back.

Inputs (`-` is standard input):
  TSV or plain text   one sentence per line, or a tab-separated pair per line; no header
  JSONL (.jsonl)      one object per line: {"text": ...}, or {"text_a": ..., "text_b": ...}
Predictions (`-` is standard output):
  TSV                 a header `label<TAB>p_<label>...`, then a row per input
  JSONL (.jsonl)      {"label": ..., "probabilities": {label: p, ...}} per input
"""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable

import numpy as np

from adabert_jax import io_utils
from adabert_jax.errors import UserError

SINGLE_KEYS = ("text",)
PAIR_KEYS = ("text_a", "text_b")


def _is_jsonl(path: str) -> bool:
  return path.endswith((".jsonl", ".json"))


def _lines(path: str) -> list[str]:
  if path == "-":
    text = sys.stdin.read()
  else:
    text = io_utils.read_text(path, "--input")
  lines = [line.rstrip("\r") for line in text.split("\n")]
  while lines and not lines[-1].strip():
    lines.pop()
  return lines


def read_inputs(path: str, is_pair: bool) -> list[Any]:
  """Sentences (str), or (a, b) pairs for a pair task, from `path` in file order."""
  where = "standard input" if path == "-" else path
  lines = _lines(path)
  if not lines:
    raise UserError(f"{where} is empty: nothing to classify (--input).")
  keys = PAIR_KEYS if is_pair else SINGLE_KEYS
  shape = ("a tab-separated pair of sentences per line: this model compares two sentences"
           if is_pair else "one sentence per line: this model classifies single sentences")
  out = []
  for n, line in enumerate(lines, start=1):
    if not line.strip():
      raise UserError(f"{where} line {n} is empty: remove it, or give the sentence.")
    if _is_jsonl(path):
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise UserError(f"{where} line {n} is not JSON ({e.msg}).") from None
      if not isinstance(record, dict) or any(not isinstance(record.get(k), str)
                                             for k in keys):
        raise UserError(f"{where} line {n}: each line must be an object with "
                        f"{' and '.join(repr(k) for k in keys)} (strings); this one has "
                        f"{sorted(record) if isinstance(record, dict) else type(record)}.")
      parts = tuple(record[k] for k in keys)
    else:
      parts = tuple(line.split("\t"))
      if len(parts) != len(keys):
        raise UserError(f"{where} line {n} has {len(parts)} tab-separated field(s); give "
                        f"{shape}.")
    if any(not p.strip() for p in parts):
      raise UserError(f"{where} line {n} has an empty sentence.")
    out.append(parts if is_pair else parts[0])
  return out


def write_predictions(path: str, labels: list[str], probabilities: np.ndarray,
                      label_names: Iterable[str]) -> None:
  """The predictions as TSV (or JSONL for a .jsonl path); `-` prints them."""
  names = list(label_names)
  if _is_jsonl(path):
    rows = [json.dumps({"label": label, "probabilities": {
        name: round(float(p), 6) for name, p in zip(names, probs)}})
            for label, probs in zip(labels, probabilities)]
  else:
    rows = ["\t".join(["label"] + [f"p_{name}" for name in names])] + [
        "\t".join([label] + [f"{float(p):.6f}" for p in probs])
        for label, probs in zip(labels, probabilities)]
  text = "\n".join(rows) + "\n"
  if path == "-":
    sys.stdout.write(text)
  else:
    io_utils.save_text_atomic(path, text)
