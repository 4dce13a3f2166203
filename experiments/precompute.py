"""Train the knowledge probes on the fine-tuned teacher and precompute its knowledge.

Needs (or reuses) the fine-tuned teacher of the same --workdir. Writes
<workdir>/knowledge/{train,dev}.npz, embeddings.npz, probes.npz, probes.json, probes.png.

  python experiments/precompute.py --task=sst2 --glue_dir=../shared/glue \
      --workdir=runs/sst2 --config=experiments/configs/default.py:cpu
"""

import time

from absl import flags

from adabert_jax import cli
from adabert_jax.pipeline import stages
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.teacher import probes

_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir = cli.require_workdir()
  overwrite = flags.FLAGS.overwrite
  task, splits, vocab = data_pipeline.load_task_data(config)
  teacher = stages.ensure_teacher(config, task, splits, workdir, overwrite)
  start = time.time()
  knowledge = stages.ensure_knowledge(config, task, splits, vocab, workdir, teacher,
                                      overwrite)
  summary = knowledge["summary"]
  print(f"precompute: {time.time() - start:.0f} s")
  print(f"teacher dev: {summary['teacher'][task.main_dev_split]}")
  print(probes.format_probe_table(summary["probes"][task.main_dev_split]))


if __name__ == "__main__":
  cli.run(main)
