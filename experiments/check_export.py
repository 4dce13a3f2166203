r"""A student's export folder in each runtime (JAX weights, the StableHLO module, the ONNX graph
on onnxruntime) on the task's real dev examples: the largest logit difference from JAX, the
share of identical predictions, the dev score of each, and the folder's size.

  python experiments/check_export.py --export_dir=runs/sst2/student/export \
      --glue_dir=../shared/glue [--output=runs/sst2/student/export_check.json]
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import flags

from adabert_jax import cli, io_utils, predictors
from adabert_jax.data import metrics, sources
from adabert_jax.data.tasks import get_task
from adabert_jax.errors import UserError

flags.DEFINE_string("export_dir", None, "A student's export folder (<workdir>/student/export).")
flags.DEFINE_string("output", "", "Also write the figures to this JSON file.")
flags.DEFINE_integer("batch_size", 64, "Inputs per batch.")


def folder_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(path, name)) for name in os.listdir(path))


def main(argv) -> None:
  del argv
  f = flags.FLAGS
  if not f.export_dir or not f.glue_dir:
    raise UserError("Give --export_dir (a student's export folder) and --glue_dir (the "
                    "GLUE folder with the task's dev file).")
  students = {runtime: predictors.Student.load(f.export_dir, runtime)
              for runtime in predictors.Student.RUNTIMES}
  task = get_task(students["jax"].task_name)
  raw = sources.GlueDirSource(f.glue_dir).read(task, task.main_dev_split)
  texts = list(zip(*raw.texts)) if task.is_pair else list(raw.texts[0])
  logits = {runtime: s.logits(texts, f.batch_size)[0] for runtime, s in students.items()}
  reference = logits["jax"].argmax(-1)
  report = {"export_dir": f.export_dir, "task": task.name, "examples": len(texts),
            "export_bytes": folder_bytes(f.export_dir), "runtimes": {}}
  for runtime, values in logits.items():
    predictions = values.argmax(-1)
    report["runtimes"][runtime] = {
        "max_abs_logit_diff_vs_jax": float(np.abs(values - logits["jax"]).max()),
        "same_prediction_as_jax": float((predictions == reference).mean()),
        "dev": metrics.compute_metrics(task, predictions, raw.labels)}
  text = json.dumps(report, indent=1)
  print(text)
  if f.output:
    io_utils.save_text_atomic(f.output, text + "\n")
  worst = max(r["max_abs_logit_diff_vs_jax"] for r in report["runtimes"].values())
  if worst > 1e-4 or min(r["same_prediction_as_jax"] for r in report["runtimes"].values()) < 1:
    print(f"the runtimes disagree (largest logit difference {worst:.2e})", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  cli.run(main)
