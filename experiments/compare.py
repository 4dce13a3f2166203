"""Are the differences between trained models real? Each model against the first on the
task's dev split, paired on the same examples: accuracy difference with a bootstrap 95%
interval and McNemar's exact p-value (adabert_jax/eval/compare.py). Writes
<workdir>/comparison.json.

  python experiments/compare.py --task=sst2 --glue_dir=../shared/glue --workdir=runs/sst2_se \
      --config=experiments/configs/default.py:cpu \
      --models=student,random_arch,plain_cnn,teacher,runs/sst2_cpu:student

A model is `teacher`, the name of a student folder of --workdir (student, random_arch, ...),
or RUNDIR:name for one of another run on the same task data.

Models trained several times (`--config.student.seed_offset`, one run directory per offset):
--seed_runs lists those directories, each model is read from every one of them, and the
table gives each model's dev accuracy per seed, its mean and SD, and the difference of the
means against the first model, with an interval that resamples seeds and examples; for a
task with another metric (MRPC's F1) a second table gives it per seed, with its mean and SD:

  python experiments/compare.py --task=mrpc --glue_dir=../shared/glue --workdir=runs/mrpc_seeds0 \
      --config=experiments/configs/default.py:pairs --models=student,plain_cnn,random_arch \
      --seed_runs=runs/mrpc_seeds0,runs/mrpc_seeds1,runs/mrpc_seeds2
"""

import os

import numpy as np
from absl import flags

from adabert_jax import artefacts, cli, io_utils
from adabert_jax.pipeline import stages
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.eval import compare
from adabert_jax.student import train as student_train
from adabert_jax.teacher import finetune
from adabert_jax.train import sharding

flags.DEFINE_list("models", "student,random_arch,plain_cnn,teacher",
                  "The models to compare, the first being the reference.")
flags.DEFINE_list("seed_runs", [],
                  "Run directories that each hold the same models trained with another "
                  "seed; --models then names models by folder only, and the table gives "
                  "means over these runs.")
_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def predictions(spec: str, workdir: str, config, arrays, mesh) -> np.ndarray:
  """Class ids predicted on `arrays` by the model `spec` names; checks they reproduce the
  dev score the model's run recorded (else it was evaluated on other data)."""
  run_dir, name = spec.rsplit(":", 1) if ":" in spec else (workdir, spec)
  if name == "teacher":
    path = os.path.join(artefacts.teacher_dir(run_dir), artefacts.RESULT_FILE)
    if not os.path.isfile(path):
      raise UserError(f"--models={spec}: no fine-tuned teacher in {run_dir}.")
    teacher, params, result = finetune.load_finetuned(run_dir, config.teacher.checkpoint)
    pred = finetune.predict_logits(teacher, params, arrays, 64, config.data.max_len,
                                   mesh).argmax(-1)
  else:
    if not os.path.isfile(os.path.join(artefacts.student_dir(run_dir, name), artefacts.RESULT_FILE)):
      raise UserError(f"--models={spec}: no trained model {name!r} in {run_dir}.")
    geno, params, result = stages.load_student(run_dir, name)
    pred = student_train.predict(params, geno, arrays, None, 64, mesh)
  recorded = result["dev"]["accuracy"]
  accuracy = 100.0 * float(np.mean(pred == arrays["label"]))
  # Up to one example may flip between batchings (float rounding at a tie); more cannot.
  if abs(accuracy - recorded) > 100.0 / len(pred) + 1e-9:
    raise UserError(f"--models={spec} scores {accuracy:.2f} on this dev split, but its run "
                    f"recorded {recorded:.2f}: it was evaluated on other data (another "
                    "task, max_len or vocabulary). Pass the --config its run used.")
  return pred


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir, specs = cli.require_workdir(), flags.FLAGS.models
  if len(specs) < 2:
    raise UserError("--models needs at least two models: the reference, then the others.")
  seed_runs = flags.FLAGS.seed_runs
  if seed_runs:
    if len(seed_runs) < 2:
      raise UserError("--seed_runs needs at least two run directories, one per seed.")
    if any(":" in s for s in specs):
      raise UserError("With --seed_runs, --models names models by folder only (student, "
                      "plain_cnn, ...): each is read from every directory of --seed_runs.")
    specs = [f"{run}:{s}" for run in seed_runs for s in flags.FLAGS.models]
  task, splits, _ = data_pipeline.load_task_data(config)
  dev = splits[task.main_dev_split]
  run_dirs = {s.rsplit(":", 1)[0] if ":" in s else workdir for s in specs}
  for run_dir in sorted(run_dirs):  # the same data for all, or refused
    data_files = stages.check_run_data(config, task, run_dir)
  mesh = sharding.make_mesh(1)
  pred = {s: predictions(s, workdir, config, dev, mesh) for s in specs}
  correct = {s: p == dev["label"] for s, p in pred.items()}
  if seed_runs:
    models = flags.FLAGS.models
    by_model = {m: np.stack([correct[f"{run}:{m}"] for run in seed_runs]) for m in models}
    rows = [(m, compare.seed_mean_comparison(by_model[models[0]], by_model[m]))
            for m in models[1:]]
    task_metrics = {m: compare.seed_metrics(
        task, np.stack([pred[f"{run}:{m}"] for run in seed_runs]), dev["label"])
                    for m in models}
    io_utils.save_json_atomic(os.path.join(workdir, "seed_comparison.json"),
                              {"task": task.name, "split": task.main_dev_split,
                               "data_files": data_files, "seed_runs": seed_runs,
                               "reference": models[0], "comparisons": dict(rows),
                               "metrics": task_metrics})
    print(f"{task.name} {task.main_dev_split}, {len(seed_runs)} seeds a model:")
    print(compare.format_seed_comparisons(models[0], rows))
    other_metrics = compare.format_seed_metrics(task_metrics)
    if other_metrics:
      print(f"\nThe task's other metrics:\n{other_metrics}")
    return
  reference = specs[0]
  rows = [(s, compare.paired_comparison(correct[reference], correct[s])) for s in specs[1:]]
  io_utils.save_json_atomic(os.path.join(workdir, "comparison.json"),
                            {"task": task.name, "split": task.main_dev_split,
                             "data_files": data_files,
                             "reference": reference, "comparisons": dict(rows)})
  print(f"{task.name} {task.main_dev_split}: {reference} "
        f"{100 * correct[reference].mean():.2f}")
  print(compare.format_comparisons(reference, rows))


if __name__ == "__main__":
  cli.run(main)
