"""What word overlap alone scores on a sentence-pair task: a yardstick for pair students.

  python experiments/overlap_baseline.py --task=rte --glue_dir=../shared/glue \
      --config=experiments/configs/default.py:pairs [--out=overlap.json]

Each pair is read as the student reads it (the teacher's WordPiece ids at data.max_len) and
reduced to one number: the share of sentence B's distinct tokens that occur in sentence A
(`coverage`, how much of a hypothesis its premise contains), or the Jaccard index of the two
token sets. One threshold on that number, the one with the best training accuracy, is the
whole model; it is then scored on the dev split with the task's metrics. No parameters are
learnt beyond the threshold, and dev is read once, after the threshold is fixed.
"""

import os

import numpy as np
from absl import flags

from adabert_jax import cli, io_utils
from adabert_jax.data import metrics, pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.nas import inputs

flags.DEFINE_string("out", "", "Also write the results as JSON here.")
_CONFIG = cli.define_config_flag(cli.default_config("pairs"))

FEATURES = ("coverage", "jaccard")


def sentence_words(arrays: dict[str, np.ndarray]) -> list[tuple[set[int], set[int]]]:
  """Per pair, the distinct token ids of sentence A and of sentence B without [CLS] and [SEP]:
  the words the student's exact-match flags compare (inputs.split_pair, inputs.content_mask)."""
  ids_a, mask_a, ids_b, mask_b = inputs.split_pair(
      arrays["input_ids"], arrays["token_type_ids"], arrays["attention_mask"], xp=np)
  words_a, words_b = (inputs.content_mask(m, xp=np) > 0 for m in (mask_a, mask_b))
  return [(set(a[wa].tolist()), set(b[wb].tolist()))
          for a, wa, b, wb in zip(ids_a, words_a, ids_b, words_b)]


def overlap_features(arrays: dict[str, np.ndarray]) -> np.ndarray:
  """[N, 2] float: each pair's coverage (|A & B| / |B|) and Jaccard index (|A & B| / |A | B|);
  0 where B (or both) is empty."""
  out = np.zeros((len(arrays["input_ids"]), len(FEATURES)), np.float64)
  for i, (a, b) in enumerate(sentence_words(arrays)):
    shared = len(a & b)
    out[i] = (shared / len(b) if b else 0.0, shared / len(a | b) if a | b else 0.0)
  return out


def fit_threshold(x_N: np.ndarray, label_N: np.ndarray) -> tuple[float, bool]:
  """(threshold, at_least) of the rule `class 1 iff x >= threshold` (at_least True) or
  `iff x < threshold` (False) with the highest accuracy on (x, label); ties go to the lower
  threshold. Every distinct value of x is tried, and one above them all."""
  candidates = np.append(np.unique(x_N), np.inf)
  order = np.argsort(x_N, kind="stable")
  sorted_x, sorted_label = x_N[order], label_N[order].astype(np.int64)
  # For threshold t, the examples below t are sorted_x[:k] with k = searchsorted(t, left).
  below = np.searchsorted(sorted_x, candidates, side="left")
  ones_below = np.concatenate([[0], np.cumsum(sorted_label)])[below]
  zeros_below = below - ones_below
  total_ones = sorted_label.sum()
  correct_at_least = zeros_below + (total_ones - ones_below)  # 0 below t, 1 at or above
  correct_below = len(x_N) - correct_at_least
  best_at_least, best_below = correct_at_least.argmax(), correct_below.argmax()
  if correct_below[best_below] > correct_at_least[best_at_least]:
    return float(candidates[best_below]), False
  return float(candidates[best_at_least]), True


def predict(x_N: np.ndarray, threshold: float, at_least: bool) -> np.ndarray:
  return ((x_N >= threshold) == at_least).astype(np.int32)


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  task, splits, _ = data_pipeline.load_task_data(config)
  if not task.is_pair or task.num_classes != 2:
    raise UserError(f"--task={task.name}: the overlap rule is for two-class sentence-pair "
                    "tasks (mrpc, rte, qnli, qqp).")
  train, dev = splits["train"], splits[task.main_dev_split]
  x_train, x_dev = overlap_features(train), overlap_features(dev)
  majority = int(np.bincount(train["label"], minlength=2).argmax())
  results = {"task": task.name, "dev_split": task.main_dev_split,
             "majority_class": metrics.compute_metrics(
                 task, np.full(len(dev["label"]), majority), dev["label"])}
  for j, name in enumerate(FEATURES):
    threshold, at_least = fit_threshold(x_train[:, j], train["label"])
    results[name] = {
        "threshold": threshold, "class_1_when": ">=" if at_least else "<",
        "train": metrics.compute_metrics(task, predict(x_train[:, j], threshold, at_least),
                                         train["label"]),
        "dev": metrics.compute_metrics(task, predict(x_dev[:, j], threshold, at_least),
                                       dev["label"])}
  print(f"{task.name}: one threshold on word overlap, fit on train "
        f"({len(train['label'])} pairs), scored on {task.main_dev_split} "
        f"({len(dev['label'])} pairs)")
  for name in ("majority_class",) + FEATURES:
    row = results[name]
    scores = row.get("dev", row)
    rule = (f" (class 1 when {name} {row['class_1_when']} {row['threshold']:.3f}; train "
            f"accuracy {row['train']['accuracy']:.2f})" if name in FEATURES else "")
    print(f"  {name:<15} dev " + ", ".join(f"{k} {scores[k]:.2f}" for k in ("accuracy", "f1")
                                           if k in scores) + rule)
  if flags.FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(flags.FLAGS.out)), exist_ok=True)
    io_utils.save_json_atomic(flags.FLAGS.out, results)


if __name__ == "__main__":
  cli.run(main)
