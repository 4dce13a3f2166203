"""Imports point down: entry points, then the pipeline, then the stage libraries, then the
shared foundations. A module may import from its own folder and from any lower layer."""

import ast
import os

from tests.helpers import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "adabert_jax")

# Lower numbers are lower layers; a module's layer is that of its longest listed prefix.
LAYERS = {
    "errors": 0, "io_utils": 1, "array_utils": 2, "artefacts": 2, "assets": 2, "plots": 2,
    "configs": 2,
    "train": 3,
    "data": 4,
    "teacher": 5, "nas": 5,
    "student": 6, "eval": 6,
    "predictors": 7, "config_check": 7,
    "pipeline": 8,
    "cli": 9,
    "__init__": 10,  # the package's public names
}


def _layer(module: str) -> tuple[int, str]:
  parts = module.split(".")
  for n in range(len(parts), 0, -1):
    prefix = ".".join(parts[:n])
    if prefix in LAYERS:
      return LAYERS[prefix], parts[0]
  raise AssertionError(f"adabert_jax.{module} is in no layer: add it to LAYERS")


def _imports(path: str) -> list[str]:
  """The adabert_jax modules (or names in them) `path` imports, without the prefix."""
  found = []
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
        "adabert_jax"):
      base = node.module.removeprefix("adabert_jax").lstrip(".")
      found += [f"{base}.{a.name}" if base else a.name for a in node.names]
    elif isinstance(node, ast.Import):
      found += [a.name.removeprefix("adabert_jax.") for a in node.names
                if a.name.startswith("adabert_jax.")]
  return found


def _upward_imports() -> list[str]:
  bad = []
  for folder, _, files in os.walk(PACKAGE):
    for name in files:
      if not name.endswith(".py"):
        continue
      path = os.path.join(folder, name)
      module = os.path.relpath(path, PACKAGE)[:-3].replace(os.sep, ".")
      module = module.removesuffix(".__init__")
      if module == "__version__":
        continue
      layer, top = _layer(module)
      for target in _imports(path):
        if target == "__version__":  # the package's version string
          continue
        target_layer, target_top = _layer(target)
        if target_top != top and target_layer >= layer:
          bad.append(f"adabert_jax.{module} (layer {layer}) imports adabert_jax.{target} "
                     f"(layer {target_layer})")
  return bad


def test_every_import_points_down():
  assert _upward_imports() == []


def test_the_check_sees_an_upward_import(monkeypatch):
  monkeypatch.setitem(LAYERS, "nas", 4)  # as if nas sat beside data: it imports data.batching
  assert any("adabert_jax.nas." in line and "adabert_jax.data." in line
             for line in _upward_imports())
