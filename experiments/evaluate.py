"""Evaluate a trained model of a run directory on every dev split; writes metrics.json
(the task, the data's fingerprints and the scores). A run is only scored on the task and
data its teacher was made from.

  python experiments/evaluate.py --task=sst2 --glue_dir=../shared/glue --workdir=runs/sst2 \
      --model=teacher          # or --model=student (or student_scratch, ...)
"""

import os

from absl import flags

from adabert_jax import artefacts, cli, io_utils
from adabert_jax.pipeline import stages
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.student import train as student_train
from adabert_jax.teacher import finetune
from adabert_jax.train import sharding

flags.DEFINE_string("model", "student", "teacher, or the name of a student folder.")
_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir, which = cli.require_workdir(), flags.FLAGS.model
  task, splits, _ = data_pipeline.load_task_data(config)
  data_files = stages.check_run_data(config, task, workdir)
  mesh = sharding.make_mesh(1)
  metrics = {}
  if which == "teacher":
    if not os.path.isfile(os.path.join(artefacts.teacher_dir(workdir), artefacts.RESULT_FILE)):
      raise UserError(f"No fine-tuned teacher in {workdir} (--workdir).")
    teacher, params, _ = finetune.load_finetuned(workdir, config.teacher.checkpoint)
    for split in task.dev_splits:
      metrics[split] = finetune.evaluate(teacher, params, task, splits[split], 64,
                                         config.data.max_len, mesh)
    out_dir = artefacts.teacher_dir(workdir)
  else:
    out_dir = artefacts.student_dir(workdir, which)
    if not os.path.isfile(os.path.join(out_dir, artefacts.RESULT_FILE)):
      raise UserError(f"No trained model {which!r} in {workdir} (--model, --workdir).")
    geno, params, _ = stages.load_student(workdir, which)
    for split in task.dev_splits:
      metrics[split] = student_train.evaluate(params, geno, task, splits[split], None, 64,
                                              mesh)
  io_utils.save_json_atomic(os.path.join(out_dir, "metrics.json"),
                            {"task": task.name, "data_files": data_files, "metrics": metrics})
  for split, m in metrics.items():
    print(f"{which} {task.name} {split}: " + ", ".join(
        f"{k} {v:.2f}" for k, v in m.items() if k != "num_examples"))


if __name__ == "__main__":
  cli.run(main)
