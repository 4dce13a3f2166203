"""Classify text with a trained model, or write GLUE test submissions.

  # an export folder (it needs nothing of the run that made it)
  python experiments/predict.py --export_dir=runs/sst2/student/export --input=sentences.txt \
      --output=predictions.tsv
  echo "a gripping film" | python experiments/predict.py --export_dir=runs/sst2/student/export
  # a run's student, baseline (--model=plain_cnn, ...) or teacher (--model=teacher)
  python experiments/predict.py --workdir=runs/mrpc --model=teacher --input=pairs.tsv
  # GLUE's unlabelled test file -> <output_dir>/<TASK>.tsv, the server's submission format
  python experiments/predict.py --workdir=runs/rte --split=test --glue_dir=../shared/glue \
      --output_dir=submission
  # your own test file (CSV, TSV or JSONL with the model's text column names) -> <TASK>.tsv
  python experiments/predict.py --workdir=runs/reviews --split=test --test_file=test.csv

Input: one sentence per line, or a tab-separated pair per line (TSV, or standard input with
--input=-), or JSONL objects {"text": ...} / {"text_a": ..., "text_b": ...}. Output: TSV
with the label and each class's probability, or JSONL for a .jsonl --output.
"""

import os
import sys

from absl import flags

from adabert_jax import artefacts, cli, predictors
from adabert_jax.data import custom, sources, text_files
from adabert_jax.data.tasks import get_task
from adabert_jax.errors import UserError
from adabert_jax.student import export
from adabert_jax.train import progress

flags.DEFINE_string("export_dir", None, "A student's export folder (<workdir>/student/export).")
flags.DEFINE_string("model", "student", "With --workdir: teacher, or a student folder "
                    "(student, plain_cnn, random_arch, student_scratch).")
flags.DEFINE_string("input", "-", "Text to classify: a TSV/text or .jsonl file, - for stdin.")
flags.DEFINE_string("output", "-", "Where the predictions go: a .tsv or .jsonl file, - for "
                    "stdout.")
flags.DEFINE_enum("split", None, ["test"], "test: classify GLUE's unlabelled test file(s) "
                  "of the model's task (--glue_dir), or --test_file, and write "
                  "<output_dir>/<TASK>.tsv.")
flags.DEFINE_string("test_file", None, "With --split=test: a CSV, TSV or JSONL file with a "
                    "header (or keys) naming the model's text column(s), e.g. a custom "
                    "task's test file; the rows are numbered by their line in the file.")
flags.DEFINE_string("test_format", "", "csv, tsv or jsonl; '' = from the extension.")
flags.DEFINE_string("output_dir", "glue_submission", "With --split=test: the folder for "
                    "<TASK>.tsv.")
flags.DEFINE_integer("batch_size", 64, "Inputs per batch.")
flags.DEFINE_enum("runtime", "jax", list(predictors.Student.RUNTIMES), "A student's runtime: "
                  "jax (from its weights) or stablehlo (the export folder's serialised module).")


def load_predictor() -> predictors.Predictor:
  f = flags.FLAGS
  if bool(f.export_dir) == bool(f.workdir):
    raise UserError("Give one of --export_dir (a student's export folder) or --workdir "
                    "(a run directory, with --model).")
  if f.export_dir:
    return predictors.Student.load(f.export_dir, f.runtime)
  if f.model == "teacher":
    return predictors.RunTeacher(f.workdir)
  folder = os.path.join(artefacts.student_dir(f.workdir, f.model), artefacts.EXPORT_DIR)
  if not os.path.isfile(os.path.join(folder, export.MANIFEST)):
    raise UserError(f"{folder} does not exist: the {f.model!r} of {f.workdir} has not "
                    "finished training (--workdir, --model).")
  return predictors.Student.load(folder, f.runtime)


def _predict(predictor, texts, desc: str):
  bar = progress.progress(len(texts), desc)
  out = predictor.predict(texts, flags.FLAGS.batch_size, on_batch=bar.update)
  bar.close()
  if out.truncated:
    print(f"{out.truncated} of {len(texts)} inputs were longer than max_len "
          f"{predictor.max_len} tokens and were cut to fit.", file=sys.stderr)
  return out


def main(argv):
  del argv
  f = flags.FLAGS
  predictor = load_predictor()
  if f.split == "test" and f.test_file:
    columns, lines = custom.read_rows(f.test_file, f.test_format, predictor.text_columns)
    texts = list(zip(*columns)) if predictor.is_pair else columns[0]
    out = _predict(predictor, texts, f"{predictor.task_name} test")
    path = os.path.join(f.output_dir, f"{predictor.task_name}.tsv")
    sources.write_glue_submission(path, [str(n) for n in lines], out.labels)
    print(f"{path}: {len(lines)} predictions (index = line in {f.test_file})",
          file=sys.stderr)
    return
  if f.split == "test":
    if not f.glue_dir:
      raise UserError("--split=test reads GLUE's test files (--glue_dir) or your own "
                      "(--test_file).")
    task = get_task(predictor.task_name)
    if not task.glue_test_files:
      raise UserError(f"Task {task.name!r} is not a GLUE task: it has no test submission.")
    source = sources.GlueDirSource(f.glue_dir)
    for stem, submission in task.glue_test_files:
      indices, columns = source.read_test(task, stem)
      texts = list(zip(*columns)) if task.is_pair else columns[0]
      out = _predict(predictor, texts, f"{task.name} {stem}")
      path = os.path.join(f.output_dir, f"{submission}.tsv")
      sources.write_glue_submission(path, indices, out.labels)
      print(f"{path}: {len(indices)} predictions", file=sys.stderr)
    return
  texts = text_files.read_inputs(f.input, predictor.is_pair)
  out = _predict(predictor, texts, "predict")
  text_files.write_predictions(f.output, out.labels, out.probabilities, out.label_names)


if __name__ == "__main__":
  cli.run(main)
