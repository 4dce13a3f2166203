"""Tokenization speed: SST-2 train from the TSV (fresh cache), then the cached reload.

  python experiments/bench_tokenize.py --glue_dir=../shared/glue
"""

import argparse
import os
import tempfile
import time

from adabert_jax import assets
from adabert_jax.data import sources, tokenization
from adabert_jax.data.tasks import get_task


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--glue_dir", default="../shared/glue")
  parser.add_argument("--task", default="sst2")
  parser.add_argument("--max_len", type=int, default=128)
  args = parser.parse_args()
  task, source = get_task(args.task), sources.GlueDirSource(args.glue_dir)
  vocab = tokenization.load_vocab(assets.default_teacher_dir())
  with tempfile.TemporaryDirectory() as cache_dir:
    start = time.perf_counter()
    arrays = tokenization.load_tokenized(task, "train", source, vocab, args.max_len,
                                         cache_dir)
    fresh = time.perf_counter() - start
    start = time.perf_counter()
    tokenization.load_tokenized(task, "train", source, vocab, args.max_len, cache_dir)
    cached = time.perf_counter() - start
  n = len(arrays["label"])
  print(f"{task.name} train: {n} examples, max_len {args.max_len}, {os.cpu_count()} CPUs")
  print(f"read + tokenize + write cache: {fresh:6.2f} s ({n / fresh:,.0f} examples/s)")
  print(f"cached reload:                 {cached:6.2f} s")


if __name__ == "__main__":
  main()
