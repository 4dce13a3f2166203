"""Helpers the tests import (fixtures live in conftest.py)."""

import importlib.util
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _module_from(path: str, name: str):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(preset: str = "tiny"):
  """experiments/configs/default.py:<preset>, as the entry points see it."""
  return _module_from(os.path.join(REPO_ROOT, "experiments", "configs", "default.py"),
                      "default_config").get_config(preset)


def load_script(name: str):
  """experiments/<name>.py as a module, for tests of its functions (its flags are defined,
  its main is not run)."""
  return _module_from(os.path.join(REPO_ROOT, "experiments", f"{name}.py"), name)
