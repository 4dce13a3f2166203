"""Shared fixtures. Four host CPU devices are forced so data-parallel code is tested."""

import os

# Must happen before jax is imported anywhere: lets tests build 1- and 4-device meshes.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Nothing in the test suite may reach for a model or data hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
  from adabert_jax.teacher import assets

  return tokenization.load_vocab(assets.default_teacher_dir())


@pytest.fixture
def cache_dir(tmp_path):
  return str(tmp_path / "cache")
