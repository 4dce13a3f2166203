"""A run is never reused on, or scored with, other data than its teacher was made from.

The teacher's stage fingerprint records each split's content digest (data.pipeline.data_files);
every later stage names the teacher's checkpoint id, so this one record covers them all.
evaluate and compare check the task and data before scoring and record them.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import REPO_ROOT

_WORDS = ("good great fine dull bad awful film movie plot actors story scenes the a very "
          "not quite").split()


def _sst2_folder(root, flip=False):
  rng = np.random.default_rng(0)
  for split, n in (("train", 48), ("dev", 16)):
    rows = []
    for i in range(n):
      words = rng.choice(_WORDS, size=6)
      label = i % 2
      rows.append(f"{' '.join(words)}\t{1 - label if flip and split == 'train' else label}")
    os.makedirs(root / "SST-2", exist_ok=True)
    (root / "SST-2" / f"{split}.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
  (root / "RTE").mkdir(exist_ok=True)
  for split in ("train", "dev"):
    (root / "RTE" / f"{split}.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\tthe film is good\tit is good\tentailment\n"
        "1\tthe plot is dull\tit is great\tnot_entailment\n")
  return str(root)


def _script(name, *args, env):
  return subprocess.run([sys.executable, os.path.join(REPO_ROOT, "experiments", name), *args],
                        capture_output=True, text=True, env=env, timeout=600)


def _files(folder):
  out = {}
  for dirpath, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[path] = f.read()
  return out


def _refused(done, message):
  assert done.returncode == 2, done.stderr[-2000:]
  assert message in done.stderr, done.stderr
  assert "Traceback" not in done.stderr
  assert len([line for line in done.stderr.splitlines() if line.strip()]) == 1, done.stderr


@pytest.mark.slow
def test_a_run_is_not_reused_or_scored_on_other_data(tmp_path, tiny_bert_dir):
  glue = _sst2_folder(tmp_path / "glue")
  flipped = _sst2_folder(tmp_path / "glue_flipped", flip=True)
  run = tmp_path / "run"
  config = f"--config={os.path.join(REPO_ROOT, 'experiments', 'configs', 'default.py')}:tiny"
  common = [config, "--task=sst2", f"--workdir={run}",
            f"--config.teacher.checkpoint={tiny_bert_dir}", "--config.data.train_subset=0"]
  env = {**os.environ, "ADABERT_QUIET": "1", "ADABERT_CACHE_DIR": str(tmp_path / "cache")}

  done = _script("finetune_teacher.py", *common, f"--glue_dir={glue}", env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  recorded = json.loads((run / "teacher" / "config.json").read_text())["data_files"]
  assert sorted(recorded) == ["dev", "train"] and recorded["train"].startswith("glue:")

  done = _script("evaluate.py", *common, f"--glue_dir={glue}", "--model=teacher", env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  metrics = json.loads((run / "teacher" / "metrics.json").read_text())
  assert metrics["task"] == "sst2" and metrics["data_files"] == recorded
  assert metrics["metrics"]["dev"]["num_examples"] == 16

  before = _files(run)
  # The same config on the label-flipped copy: refused, naming what differs.
  _refused(_script("finetune_teacher.py", *common, f"--glue_dir={flipped}", env=env),
           "data_files.train: ")
  _refused(_script("evaluate.py", *common, f"--glue_dir={flipped}", "--model=teacher",
                   env=env), "was made from other data")
  _refused(_script("compare.py", *common, f"--glue_dir={flipped}", "--models=teacher,teacher",
                   env=env), "was made from other data")
  # Another task on the same run: refused before anything is scored.
  rte = [a.replace("--task=sst2", "--task=rte") for a in common]
  _refused(_script("evaluate.py", *rte, f"--glue_dir={glue}", "--model=teacher", env=env),
           "was made for task 'sst2', not 'rte'")
  assert _files(run) == before

  # A teacher from before the record: taken as made from today's data, said on stderr, and
  # recorded, so other data is refused from then on.
  path = run / "teacher" / "config.json"
  legacy = json.loads(path.read_text())
  del legacy["data_files"]
  path.write_text(json.dumps(legacy))
  done = _script("finetune_teacher.py", *common, f"--glue_dir={glue}", env=env)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "records no data fingerprint" in done.stderr
  assert json.loads(path.read_text())["data_files"] == recorded
  _refused(_script("finetune_teacher.py", *common, f"--glue_dir={flipped}", env=env),
           "data_files.train: ")
