"""The whole AdaBERT pipeline, one stage after another, resumable.

  python experiments/pipeline.py --config=experiments/configs/default.py:quick \
      --workdir=runs/demo
  python experiments/pipeline.py --task=sst2 --glue_dir=../shared/glue --workdir=runs/sst2
"""

from adabert_jax import cli
from adabert_jax.data import pipeline as data_pipeline

_CONFIG = cli.define_config_flag(cli.default_config("quick"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  cli.require_workdir()
  task, splits, vocab = data_pipeline.load_task_data(config)
  print(data_pipeline.describe(task, splits))


if __name__ == "__main__":
  cli.run(main)
