"""Train the discrete student of the searched genotype (runs or reuses earlier stages).

  python experiments/train_student.py --task=sst2 --glue_dir=../shared/glue \
      --workdir=runs/sst2 --config=experiments/configs/default.py:cpu \
      [--config.student.init=scratch]
"""

from absl import flags

from adabert_jax import cli, stages
from adabert_jax.data import pipeline as data_pipeline

_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir, overwrite = cli.require_workdir(), flags.FLAGS.overwrite
  task, splits, vocab = data_pipeline.load_task_data(config)
  teacher = stages.ensure_teacher(config, task, splits, workdir, overwrite)
  knowledge = stages.ensure_knowledge(config, task, splits, vocab, workdir, teacher,
                                      overwrite)
  search = stages.ensure_search(config, task, splits, knowledge, workdir, teacher, overwrite)
  name = "student" if config.student.init == "inherit" else f"student_{config.student.init}"
  augmented = stages.ensure_augmented(config, splits, vocab, workdir, teacher, knowledge,
                                      overwrite)
  result = stages.ensure_student(config, task, splits, knowledge, workdir, search,
                                 name=name, augmented=augmented, overwrite=overwrite)
  print(f"{name}: dev {result['dev']}, {result['params_exported'] / 1e6:.2f}M parameters "
        f"(exported), genotype {result['genotype']}")


if __name__ == "__main__":
  cli.run(main)
