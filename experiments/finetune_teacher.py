"""Fine-tune the BERT teacher on a task and keep its best dev checkpoint.

Reuses a finished fine-tune of the same config in --workdir.

  python experiments/finetune_teacher.py --task=sst2 --glue_dir=../shared/glue \
      --workdir=runs/sst2 --config=experiments/configs/default.py:cpu
"""

from absl import flags

from adabert_jax import cli
from adabert_jax.pipeline import stages
from adabert_jax.data import pipeline as data_pipeline

_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir = cli.require_workdir()
  task, splits, _ = data_pipeline.load_task_data(config)
  result = stages.ensure_teacher(config, task, splits, workdir, flags.FLAGS.overwrite)
  print(f"teacher {task.name}: best dev {result['dev']} at step {result['best_step']}, "
        f"{result['wall_time_s']:.0f} s, {result['train_examples_per_s']} train examples/s")


if __name__ == "__main__":
  cli.run(main)
