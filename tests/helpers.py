"""Helpers the tests import (fixtures live in conftest.py)."""

import functools
import importlib.util
import os

from absl import flags

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


@functools.cache
def load_script(name: str):
  """experiments/<name>.py as a module, for tests of its functions; its main is not run.

  The script defines absl flags on the global registry, and most scripts define the same
  ``--config``, so two scripts in one pytest worker would collide. The flags it defined are
  unregistered again once it is loaded: tests call its functions, never read its flags.
  """
  before = set(flags.FLAGS)
  module = _module_from(os.path.join(REPO_ROOT, "experiments", f"{name}.py"), name)
  for flag_name in set(flags.FLAGS) - before:
    delattr(flags.FLAGS, flag_name)
  return module
