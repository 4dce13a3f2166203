"""Helpers the tests import (fixtures live in conftest.py)."""

import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(preset: str = "tiny"):
  """experiments/configs/default.py:<preset>, as the entry points see it."""
  import importlib.util

  spec = importlib.util.spec_from_file_location(
      "default_config", os.path.join(REPO_ROOT, "experiments", "configs", "default.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(preset)
