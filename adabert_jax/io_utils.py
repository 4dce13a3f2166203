"""Atomic file writes (a kill never leaves a half-written file that a later run trusts), and
reading users' and the stages' files with one clear line when they are broken."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np

from adabert_jax import errors
from adabert_jax.errors import UserError


def read_text(path: str, missing: str = "") -> str:
  """A user's UTF-8 text file (a byte-order mark dropped), or one line saying what is wrong:
  `missing` is said after "<path> does not exist" (which flag names it)."""
  if not os.path.isfile(path):
    raise UserError(f"{path} does not exist{f' ({missing})' if missing else ''}.")
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise UserError(f"{path} is not UTF-8 text ({e}).") from None


def writes_artefacts() -> bool:
  """Whether this process writes the run's files: always, but in a multi-process run
  (train/distributed.py) only process 0; the others compute the same values."""
  import jax  # here, not at the top: most of this module needs no JAX

  return jax.process_count() == 1 or jax.process_index() == 0


def remove(path: str) -> None:
  """Deletes a file or folder of the run, if there (process 0 only, as writes_artefacts)."""
  if not writes_artefacts():
    return
  if os.path.isdir(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.exists(path):
    os.remove(path)


@contextlib.contextmanager
def atomic_path(path: str, fixed_tmp: bool = False) -> Iterator[str]:
  """Yields a temporary path beside `path`; renames it over `path` only on success. On a
  process that does not write the run's files (writes_artefacts), a scratch path that is
  thrown away. fixed_tmp: the temporary is always `path`.tmp, so a killed write's is
  overwritten by the next rather than left beside it (for files of hundreds of MB)."""
  if not writes_artefacts():
    scratch = tempfile.mkdtemp(prefix="adabert-unwritten-")
    try:
      yield os.path.join(scratch, os.path.basename(path))
    finally:
      shutil.rmtree(scratch, ignore_errors=True)
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  if fixed_tmp:
    tmp = path + ".tmp"
  else:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make artefacts private
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def save_npz_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)


def save_json_atomic(path: str, obj: Any) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")


def damaged(path: str, reason: str) -> UserError:
  """The one message for an artefact that exists but cannot be read: the fix is to make its
  stage (the folder that holds it) again."""
  folder = os.path.dirname(os.path.abspath(path))
  return UserError(f"{path} is damaged ({reason}): delete {folder} and rerun the same "
                   "command, which makes it again.")


def load_json(path: str) -> Any:
  """The JSON file at `path`; a damaged one is a UserError naming it (a missing one stays
  FileNotFoundError: callers decide what absence means)."""
  with open(path, "rb") as f:
    try:
      return json.loads(f.read().decode("utf-8"))
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
      raise damaged(path, f"not valid JSON: {e}") from None


def load_npz(path: str, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
  """Every array (or `keys`) of an .npz file, read into memory; a damaged or incomplete
  file is a UserError naming it."""
  import zipfile

  try:
    with np.load(path) as data:
      missing = [k for k in keys or () if k not in data.files]
      if missing:
        raise damaged(path, f"it lacks {', '.join(missing)}")
      return {k: data[k] for k in (keys or data.files)}
  except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise damaged(path, errors.summary(e)) from None


def json_dumps(obj: Any) -> str:
  return json.dumps(obj, sort_keys=True)


def json_loads(text: str) -> Any:
  return json.loads(text)


def save_text_atomic(path: str, text: str) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)
