"""Train the knowledge probes on the fine-tuned teacher and precompute its knowledge.

Needs the teacher of the same --workdir (experiments/finetune_teacher.py). Writes
<workdir>/knowledge/{train,dev}.npz, embeddings.npz, probes.json and probes.png.

  python experiments/precompute.py --task=sst2 --glue_dir=../shared/glue \
      --workdir=runs/sst2 --config.data.max_len=64
"""

import os
import time

from adabert_jax import cli
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.teacher import finetune, probes

_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir = cli.require_workdir()
  task, splits, vocab = data_pipeline.load_task_data(config)
  if not os.path.isfile(os.path.join(finetune.teacher_dir(workdir), finetune.RESULT_FILE)):
    raise UserError(f"No fine-tuned teacher in {workdir}: run "
                    "experiments/finetune_teacher.py with the same --workdir first.")
  teacher, params, result = finetune.load_finetuned(workdir, config.teacher.checkpoint)
  start = time.time()
  summary = probes.run_precompute(config, task, splits, vocab.hash, teacher, params, result,
                                  workdir)
  elapsed = time.time() - start
  n = len(splits["train"]["label"]) + len(splits[task.main_dev_split]["label"])
  print(f"precompute: {elapsed:.0f} s for {n} examples (teacher pass + probes + arrays)")
  print(f"teacher dev: {summary['teacher'][task.main_dev_split]}")
  print(probes.format_probe_table(summary["probes"][task.main_dev_split]))


if __name__ == "__main__":
  cli.run(main)
