"""Teacher labelling speed with the inference buckets against the training ones, in one run.

The augment stage labels every copy with the teacher (probes.teacher_and_probe_logits), in
length-sorted batches trimmed to a bucket. This times that call on a finished run's
augmented copies twice over, alternating: with batching.inference_bucket_lengths (what the
pipeline uses) and with the training buckets alone (what it used before 2026-12-07), and
checks that both give the same logits.

  python experiments/bench_inference_buckets.py --workdir=runs/demo \
      --config=experiments/configs/default.py:quick   # the config the run was made with
"""

import os
import time

import numpy as np
from absl import flags

from adabert_jax import artefacts, cli, io_utils
from adabert_jax.data import batching, pipeline as data_pipeline
from adabert_jax.teacher import finetune, probes

flags.DEFINE_integer("examples", 8192, "Augmented copies timed (a seeded sample).")
flags.DEFINE_integer("repeats", 2, "Timed passes of each bucket set, alternating.")
_CONFIG = cli.define_config_flag(cli.default_config("quick"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir = cli.require_workdir()
  _, splits, _ = data_pipeline.load_task_data(config)
  teacher, params, _ = finetune.load_finetuned(workdir, config.teacher.checkpoint)
  trained_probes = io_utils.load_npz(os.path.join(artefacts.knowledge_dir(workdir),
                                                  "probes.npz"))
  copies = io_utils.load_npz(os.path.join(artefacts.augment_dir(workdir),
                                          artefacts.AUGMENTED_FILE))
  n = len(copies["input_ids"])
  idx = np.sort(np.random.default_rng(0).choice(n, min(flags.FLAGS.examples, n),
                                                replace=False))
  source = copies["source"][idx]  # segments and mask are the source row's (load_augmented)
  arrays = {"input_ids": copies["input_ids"][idx],
            "token_type_ids": splits["train"]["token_type_ids"][source],
            "attention_mask": splits["train"]["attention_mask"][source],
            "label": np.zeros(len(idx), np.int32)}
  max_len = config.data.max_len
  fine = batching.inference_bucket_lengths

  def label(bucket_set):
    batching.inference_bucket_lengths = bucket_set
    start = time.perf_counter()
    logits, _ = probes.teacher_and_probe_logits(
        teacher, params, trained_probes, arrays, batch_size=config.probes.batch_size,
        max_len=max_len)
    return time.perf_counter() - start, logits

  sets = {"training buckets " + str(batching.bucket_lengths(max_len)): batching.bucket_lengths,
          "inference buckets " + str(fine(max_len)): fine}
  for name, bucket_set in sets.items():  # compile every shape once, untimed
    label(bucket_set)
  times = {name: [] for name in sets}
  outputs = {}
  for _ in range(flags.FLAGS.repeats):
    for name, bucket_set in sets.items():
      seconds, outputs[name] = label(bucket_set)
      times[name].append(seconds)
  batching.inference_bucket_lengths = fine
  coarse, finer = (min(t) for t in times.values())
  print(f"{len(idx)} augmented copies of {workdir}, max_len {max_len}, batch "
        f"{config.probes.batch_size}, {os.cpu_count()} CPUs; best of {flags.FLAGS.repeats}:")
  for name, t in times.items():
    print(f"  {name}: {min(t):.1f} s ({', '.join(f'{s:.1f}' for s in t)}), "
          f"{len(idx) / min(t):.0f} examples/s")
  print(f"  inference buckets / training buckets: {finer / coarse:.3f} of the time")
  a, b = outputs.values()
  print(f"  largest logit difference: {np.abs(a - b).max():.2e}")


if __name__ == "__main__":
  cli.run(main)
