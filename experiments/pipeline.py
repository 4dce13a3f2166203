"""The whole AdaBERT pipeline as one command, resumable stage by stage.

data -> teacher fine-tune -> probes + precompute -> search -> derive -> augmented data
(when augment.copies > 0) -> student training -> benchmark -> report. Each stage is
skipped when its artefact in --workdir exists and matches the config, so a killed run
picks up where it stopped.

  python experiments/pipeline.py --workdir=runs/demo              # offline default, quick
  python experiments/pipeline.py --task=sst2 --glue_dir=../shared/glue --workdir=runs/sst2 \
      --config=experiments/configs/default.py:cpu
"""

import time

from absl import flags

from adabert_jax import cli
from adabert_jax.pipeline import stages
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.eval import report
from adabert_jax.nas import derive

flags.DEFINE_enum("stop_after", "report", ["data", "teacher", "precompute", "search",
                                           "derive", "student", "benchmark", "report"],
                  "Stop after this stage.")
flags.DEFINE_bool("baselines", False,
                  "Also train the baselines (the searched architecture from scratch, a random "
                  "architecture and a plain CNN of the same depth, same KD loss and budget) "
                  "and put them in the report.")
flags.DEFINE_list("baseline_names", list(stages.BASELINES),
                  "Which baselines --baselines trains, in this order (each takes as long as "
                  "the student).")
_CONFIG = cli.define_config_flag(cli.default_config("quick"))


def main(argv):
  del argv
  start = time.time()
  config = cli.config_with_flags(_CONFIG.value)
  derive.check_config(config)  # before a long search, not after it
  if flags.FLAGS.baselines:
    stages.check_baselines(flags.FLAGS.baseline_names)
  workdir = cli.require_workdir()
  overwrite, stop_after = flags.FLAGS.overwrite, flags.FLAGS.stop_after
  task, splits, vocab = data_pipeline.load_task_data(config)
  print(data_pipeline.describe(task, splits))
  if stop_after == "data":
    return
  teacher = stages.ensure_teacher(config, task, splits, workdir, overwrite)
  if stop_after == "teacher":
    return
  knowledge = stages.ensure_knowledge(config, task, splits, vocab, workdir, teacher,
                                      overwrite)
  if stop_after == "precompute":
    return
  search = stages.ensure_search(config, task, splits, knowledge, workdir, teacher, overwrite,
                                vocab=vocab)
  if stop_after == "search":
    return
  derived = stages.ensure_derive(config, task, splits, knowledge, workdir, search, overwrite)
  if stop_after == "derive":
    return
  augmented = stages.ensure_augmented(config, splits, vocab, workdir, teacher, knowledge,
                                      overwrite)
  student = stages.ensure_student(config, task, splits, knowledge, workdir, search["fingerprint"],
                                  augmented=augmented, overwrite=overwrite)
  baselines = (stages.ensure_baselines(config, task, splits, knowledge, workdir,
                                       search["fingerprint"],
                                       augmented, overwrite, flags.FLAGS.baseline_names)
               if flags.FLAGS.baselines else None)
  if stop_after == "student":
    return
  bench = stages.ensure_benchmark(config, task, splits, workdir, teacher, student, overwrite)
  if stop_after == "benchmark":
    return
  comparisons = stages.dev_comparisons(task, splits, knowledge, workdir, list(baselines or {}))
  results = report.build_report(task, workdir, teacher, knowledge["summary"], search,
                                derived, student, bench, baselines, comparisons,
                                data_pipeline.data_record(config, task))
  print()
  print(report.results_table(task, results, bench))
  print(f"\nreport: {workdir}/report.md ({time.time() - start:.0f} s)")


if __name__ == "__main__":
  cli.run(main)
