"""Orbax checkpoints of pytrees, with JSON metadata beside them."""

from __future__ import annotations

import os
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp

from adabert_jax import io_utils


def save_pytree(path: str, tree: Any) -> None:
  """Saves `tree` at `path`, replacing what was there only once the new one is complete."""
  path = os.path.abspath(path)
  tmp = path + ".saving"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(tmp, jax.device_get(tree))
  checkpointer.wait_until_finished()
  old = path + ".old"
  if os.path.exists(path):
    os.replace(path, old)
  os.replace(tmp, path)
  if os.path.exists(old):
    shutil.rmtree(old)


def restore_pytree(path: str, like: Any | None = None) -> Any:
  """Restores the pytree at `path`; with `like`, into its structure, shapes and dtypes."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    old = path + ".old"  # a kill between the two renames of save_pytree
    if os.path.isdir(old):
      path = old
    else:
      raise FileNotFoundError(path)
  checkpointer = ocp.StandardCheckpointer()
  if like is None:
    return checkpointer.restore(path)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  return checkpointer.restore(path, abstract)


def write_meta(path: str, meta: dict) -> None:
  io_utils.save_json_atomic(path, meta)
