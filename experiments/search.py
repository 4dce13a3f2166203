"""Search a task-specific small CNN (AdaBERT's differentiable NAS) from the teacher.

Runs the earlier stages it needs in the same --workdir (teacher fine-tune, probes and
precompute), or reuses them; resumes from the last search checkpoint when restarted.

  python experiments/search.py --task=sst2 --glue_dir=../shared/glue --workdir=runs/sst2 \
      --config=experiments/configs/default.py:cpu
  python experiments/search.py --task=qnli --glue_dir=/data/glue --workdir=runs/qnli
"""

from absl import flags

from adabert_jax import cli
from adabert_jax.pipeline import stages
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.nas import derive, search

_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  derive.check_config(config)
  workdir = cli.require_workdir()
  overwrite = flags.FLAGS.overwrite
  task, splits, vocab = data_pipeline.load_task_data(config)
  teacher = stages.ensure_teacher(config, task, splits, workdir, overwrite)
  knowledge = stages.ensure_knowledge(config, task, splits, vocab, workdir, teacher,
                                      overwrite)
  result = stages.ensure_search(config, task, splits, knowledge, workdir, teacher, overwrite,
                                vocab=vocab)
  print(f"alpha's genotype ({workdir}/search/result.json): {result['genotype']}")
  print("(the derive stage of pipeline.py or train_student.py makes the one students use, "
        f"by --config.derive.method={config.derive.method})")
  print(f"depth probabilities: {result['depth_probs']}")
  print(search.format_alpha_table(result))


if __name__ == "__main__":
  cli.run(main)
