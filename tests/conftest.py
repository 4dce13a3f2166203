"""Shared fixtures. Four host CPU devices are forced so data-parallel code is tested."""

import os

# Must happen before jax is imported anywhere: lets tests build 1- and 4-device meshes.
# LLVM at -O0: the suite's time goes to compiling many small programs, not running them
# (~30% less wall time on 2 cores); the level changes speed, results at most by rounding.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4 "
                      "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Nothing in the test suite may reach for a model or data hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One persistent compilation cache for the session, the stage scripts the tests start in
# subprocesses included (they inherit the environment): the kill tests restart the same
# program several times and many tests compile the same steps; a warm start is ~3x faster.
# A fresh folder per session, so no test ever depends on what an earlier session compiled.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import atexit
  import shutil
  import tempfile

  _COMPILATION_CACHE = tempfile.mkdtemp(prefix="adabert-jax-test-xla-")
  atexit.register(shutil.rmtree, _COMPILATION_CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _COMPILATION_CACHE
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"

import pytest  # noqa: E402

from adabert_jax import cli  # noqa: E402
from tests.helpers import REPO_ROOT  # noqa: E402

# The stage scripts the tests start get the allocator settings a user's command runs with,
# without restarting themselves for them (tests/pipeline/test_cli.py tests the restart).
os.environ.setdefault("GLIBC_TUNABLES", cli.MALLOC_TUNABLES)


@pytest.fixture(scope="session")
def glue_dir():
  """The real GLUE files: $ADABERT_GLUE_DIR, else ../shared/glue beside the checkout."""
  path = os.environ.get("ADABERT_GLUE_DIR",
                        os.path.join(os.path.dirname(REPO_ROOT), "shared", "glue"))
  if not os.path.isdir(os.path.join(path, "SST-2")):
    pytest.skip(f"real GLUE data not found at {path} (set ADABERT_GLUE_DIR)")
  return path


@pytest.fixture(scope="session")
def vocab():
  """The offline teacher's real WordPiece vocabulary."""
  from adabert_jax.data import tokenization
  from adabert_jax import assets

  return tokenization.load_vocab(assets.default_teacher_dir())


@pytest.fixture
def cache_dir(tmp_path):
  return str(tmp_path / "cache")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, vocab):
  """A randomly initialised 2-layer, 16-wide BERT with the real vocabulary, saved as a
  Hugging Face checkpoint folder (safetensors), like a user's local checkpoint."""
  import shutil

  from transformers import BertConfig, FlaxBertModel

  path = tmp_path_factory.mktemp("tiny_bert")
  config = BertConfig(vocab_size=vocab.size, hidden_size=16, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=32,
                      max_position_embeddings=64)
  FlaxBertModel(config, seed=0).save_pretrained(str(path), safe_serialization=True)
  shutil.copy(vocab.path, path / "vocab.txt")
  return str(path)


@pytest.fixture(scope="session")
def tiny_splits(vocab):
  """A small balanced two-class task: tokenized rotten_tomatoes examples (train 64, dev 24).
  The corpus is sorted by label, so examples are taken half from each class."""
  import numpy as np

  from adabert_jax.data import sources, tokenization
  from adabert_jax.data.tasks import get_task

  task = get_task("rotten_tomatoes")
  source = sources.MovieReviewsSource()
  splits = {}
  for split, n in (("train", 64), ("dev", 24)):
    raw = source.read(task, split)
    pick = np.concatenate([np.flatnonzero(raw.labels == c)[:n // 2] for c in (0, 1)])
    pick = np.random.default_rng(0).permutation(pick)
    raw = sources.RawSplit(task.name, split, ([raw.texts[0][i] for i in pick],),
                           raw.labels[pick])
    splits[split] = tokenization.tokenize(raw, vocab, max_len=32)
  return task, splits


def _built_once_per_session(tmp_path_factory, name):
  """Fails when a second xdist worker builds the session fixture `name`: its tests carry
  xdist_group(name) so that one worker builds it, and a pytest/pytest-xdist pairing that
  ignores the mark would silently double the suite's longest setup."""
  run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID")
  if run_id is None:  # one process: a session fixture is built once by construction
    return
  marker = tmp_path_factory.getbasetemp().parent / f"{name}.{run_id}.built_by"
  worker = os.environ.get("PYTEST_XDIST_WORKER", "?")
  try:
    with open(marker, "x") as f:
      f.write(worker)
  except FileExistsError:
    pytest.fail(f"{name} is being built by {worker} after {marker.read_text()}: --dist "
                "loadgroup ignored xdist_group; pin pytest/pytest-xdist to a pair that honours "
                "it (setup.cfg)")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_bert_dir):
  """The whole tiny pipeline (with one augmented copy and the baselines), run once per
  session as a user runs it: (the run folder, the command, its environment, the finished
  process). Tests that change the run work on a copy."""
  import subprocess
  import sys
  import types

  _built_once_per_session(tmp_path_factory, "tiny_run")
  base = tmp_path_factory.mktemp("tiny_run")
  args = [sys.executable, os.path.join(REPO_ROOT, "experiments", "pipeline.py"),
          f"--config={os.path.join(REPO_ROOT, 'experiments', 'configs', 'default.py')}:tiny",
          f"--workdir={base / 'run'}", f"--config.teacher.checkpoint={tiny_bert_dir}",
          "--config.bench.bert_base=false", "--config.augment.copies=1", "--baselines"]
  env = {**os.environ, "ADABERT_QUIET": "1", "ADABERT_CACHE_DIR": str(base / "cache")}
  done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  return types.SimpleNamespace(dir=base / "run", args=args, env=env, first=done)
