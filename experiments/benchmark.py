"""Time the student, the teacher and a random-weight BERT-base in one run (batch 128,
max_len 128 by default: --config.bench.*), and print the speed and size ratios.

  python experiments/benchmark.py --task=sst2 --glue_dir=../shared/glue --workdir=runs/sst2 \
      --config=experiments/configs/default.py:cpu
"""

import os

from absl import flags

from adabert_jax import artefacts, cli, io_utils
from adabert_jax.pipeline import stages
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.eval import benchmark

_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir = cli.require_workdir()
  task, splits, _ = data_pipeline.load_task_data(config)
  student_result = os.path.join(artefacts.student_dir(workdir), artefacts.RESULT_FILE)
  if not os.path.isfile(student_result):
    raise UserError(f"No trained student in {workdir}: run experiments/train_student.py.")
  teacher = io_utils.load_json(os.path.join(artefacts.teacher_dir(workdir),
                                            artefacts.RESULT_FILE))
  bench = stages.ensure_benchmark(config, task, splits, workdir, teacher,
                                  io_utils.load_json(student_result), flags.FLAGS.overwrite)
  print(benchmark.format_table(bench, tuple(m["name"] for m in bench["models"][1:])))
  if bench.get("serving"):
    print(benchmark.format_serving(bench["serving"], bench["batch_size"]))


if __name__ == "__main__":
  cli.run(main)
