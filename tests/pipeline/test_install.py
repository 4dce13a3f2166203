"""An installed (not editable) copy of the package runs the pipeline from another directory:
its configs travel inside it, and nothing reaches into the checkout for them."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT


@pytest.mark.slow
def test_a_non_editable_install_runs_the_tiny_pipeline_from_elsewhere(tmp_path, tiny_bert_dir):
  import shutil

  # From a copy of what the package is built from: setuptools writes build/ into the source.
  source = tmp_path / "source"
  shutil.copytree(os.path.join(REPO_ROOT, "adabert_jax"), source / "adabert_jax",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("setup.cfg", "pyproject.toml", "README.md"):
    shutil.copy(os.path.join(REPO_ROOT, name), source / name)
  target = tmp_path / "site"
  done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                         "--target", str(target), str(source)], capture_output=True,
                        text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = {**os.environ, "PYTHONPATH": str(target), "ADABERT_QUIET": "1",
         "ADABERT_CACHE_DIR": str(tmp_path / "cache")}
  where = subprocess.run(
      [sys.executable, "-c", "import adabert_jax, adabert_jax.cli as c; "
       "print(adabert_jax.__file__); print(c.default_config('tiny'))"],
      capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120)
  assert where.returncode == 0, where.stderr
  package_file, default_config = where.stdout.split()
  assert package_file.startswith(str(target)) and default_config.startswith(str(target))
  installed_config = default_config.rsplit(":", 1)[0]
  run = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "pipeline.py"),
       f"--config={installed_config}:tiny", "--workdir=run",
       f"--config.teacher.checkpoint={tiny_bert_dir}", "--config.bench.bert_base=false",
       "--config.derive.method=alpha"],  # the quicker derive: the install is under test
      capture_output=True, text=True, cwd=elsewhere, env=env, timeout=900)
  assert run.returncode == 0, run.stderr[-3000:]
  assert (elsewhere / "run" / "report.md").is_file()
  assert (elsewhere / "run" / "student" / "export" / "manifest.json").is_file()
