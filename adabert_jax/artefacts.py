"""Where a run keeps its artefacts: a folder per stage under --workdir, and the files in them
that other stages, the entry points and the report read. Named here only, so that they agree.
"""

from __future__ import annotations

import os

RESULT_FILE = "result.json"  # every stage's summary (the benchmark's is BENCH_FILE)
CONFIG_FILE = "config.json"  # the fingerprint of the config that made a stage folder
BEST_FILE = "best.json"  # the teacher's best dev evaluation, beside its weights in best/
GENOTYPE_FILE = "genotype.json"  # the run's architecture (the derive stage's)
FINAL_PARAMS = "final_params"  # the supernet's weights at the end of the search
AUGMENTED_FILE = "augmented.npz"  # the augmented copies with their teacher knowledge
EXPORT_DIR = "export"  # a trained student's self-contained folder
BENCH_FILE = "bench.json"
RESULTS_FILE = "results.json"  # the run's headline numbers, beside report.md
REPORT_FILE = "report.md"
LOG_FILE = "log.jsonl"  # a training stage's record per evaluation (a student's: dev per epoch)


def teacher_dir(workdir: str) -> str:
  return os.path.join(workdir, "teacher")


def knowledge_dir(workdir: str) -> str:
  return os.path.join(workdir, "knowledge")


def augment_dir(workdir: str) -> str:
  return os.path.join(workdir, "augment")


def search_dir(workdir: str) -> str:
  return os.path.join(workdir, "search")


def derive_dir(workdir: str) -> str:
  return os.path.join(workdir, "derive")


def student_dir(workdir: str, name: str = "student") -> str:
  """The searched student's folder, or a baseline's (student_scratch, random_arch, ...)."""
  return os.path.join(workdir, name)


def bench_dir(workdir: str) -> str:
  return os.path.join(workdir, "bench")
