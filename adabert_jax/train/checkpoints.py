"""Orbax checkpoints of pytrees, with JSON metadata beside them."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
import time
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp

from adabert_jax import errors, io_utils
from adabert_jax.errors import UserError
from adabert_jax.train import distributed


def _os_error_in(e: BaseException) -> OSError | None:
  """The OSError behind `e` (orbax may wrap it), if there is one."""
  seen = set()
  while e is not None and id(e) not in seen:
    if isinstance(e, OSError):
      return e
    seen.add(id(e))
    e = e.__cause__ or e.__context__
  return None


@contextlib.contextmanager
def _reporting_write_errors(path: str):
  """An I/O failure inside (orbax wraps them in its own types) becomes one UserError."""
  try:
    yield
  except Exception as e:  # noqa: BLE001
    os_error = _os_error_in(e)
    if os_error is None:
      raise
    raise _write_failed(path, os_error) from e


def _write_failed(path: str, error: OSError) -> UserError:
  if error.errno == errno.ENOSPC:
    reason = "the disk is full"
  elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
    reason = "no permission to write there"
  else:
    reason = os.strerror(error.errno) if error.errno else str(error)
  return UserError(
      f"Cannot write the checkpoint {path}: {reason} ({error}). Nothing was overwritten: "
      "the previous checkpoint is intact. Free disk space or make the folder writable (or "
      "use another --workdir), then rerun the same command to resume.")


# Config fields that say how often training state is kept, not what is trained: stage
# fingerprints leave them out, so changing them never invalidates a finished stage.
OPERATIONAL_KEYS = ("checkpoint_every_steps", "keep_checkpoints")


def without_operational_keys(fields: dict) -> dict:
  """A stage config's fields minus OPERATIONAL_KEYS, for its fingerprint."""
  return {k: v for k, v in fields.items() if k not in OPERATIONAL_KEYS}


def save_pytree(path: str, tree: Any) -> None:
  """Saves `tree` at `path`, replacing what was there only once the new one is complete.
  In a multi-process run every process calls it (orbax saves together); process 0 moves
  the folders, and all leave once the new one is in place."""
  path = os.path.abspath(path)
  tmp = path + ".saving"
  main = io_utils.writes_artefacts()
  if main and os.path.exists(tmp):
    shutil.rmtree(tmp)
  distributed.barrier(f"save_pytree start {path}")
  checkpointer = ocp.StandardCheckpointer()
  try:
    with _reporting_write_errors(path):
      checkpointer.save(tmp, jax.device_get(tree))
      checkpointer.wait_until_finished()
  except BaseException:
    if main:
      shutil.rmtree(tmp, ignore_errors=True)  # never leave a partial .saving behind
    raise
  if main:
    old = path + ".old"
    if os.path.exists(path):
      os.replace(path, old)
    os.replace(tmp, path)
    if os.path.exists(old):
      shutil.rmtree(old)
  distributed.barrier(f"save_pytree done {path}")


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
  try:
    with _quiet_if_it_fails(path):
      if like is None:
        restored = checkpointer.restore(path)
      else:
        restored = checkpointer.restore(path,
                                        jax.tree.map(ocp.utils.to_shape_dtype_struct, like))
  except Exception as e:  # noqa: BLE001  (orbax and tensorstore raise many kinds)
    raise io_utils.damaged(path, f"the checkpoint cannot be restored: {errors.summary(e)}"
                           ) from None
  checkpointer.close()  # releases its background threads
  return restored


@contextlib.contextmanager
def _quiet_if_it_fails(path: str, grace_s: float = 0.5):
  """Standard error goes nowhere while a restore runs and, if it fails, for `grace_s` after.

  When one read of a damaged checkpoint fails, orbax closes its event loop while
  tensorstore's threads are still finishing the other reads; their callbacks into the closed
  loop print tracebacks (1 run in ~25 here), before or after the one error we report, and
  asyncio later logs their exceptions as never retrieved. None says more than that error."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  except BaseException:
    logging.getLogger("asyncio").addFilter(_NeverRetrievedAbout(path))
    time.sleep(grace_s)
    raise
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


class _NeverRetrievedAbout(logging.Filter):
  """Drops asyncio's 'Task exception was never retrieved' records that name `path`."""

  def __init__(self, path: str):
    super().__init__()
    self.path = path

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("never retrieved" in message and self.path in message)


def write_meta(path: str, meta: dict) -> None:
  io_utils.save_json_atomic(path, meta)


class CheckpointRing:
  """The last `keep` training states of a run, for resuming after a kill.

  Orbax finalises a checkpoint by renaming it, so a kill mid-save leaves no step behind;
  a latest step that is damaged anyway (disk trouble, a hand edit) falls back to the
  previous one with a warning.
  """

  def __init__(self, directory: str, keep: int = 3):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any) -> None:
    if step in self._manager.all_steps():
      return  # already saved (e.g. a periodic save that fell on an epoch end)
    with _reporting_write_errors(os.path.join(self.directory, str(step))):
      self._manager.save(step, args=ocp.args.StandardSave(jax.device_get(state)), force=True)
      self._manager.wait_until_finished()

  def restore_latest(self, like: Any) -> tuple[int, Any] | None:
    """(step, state) of the newest readable checkpoint, or None when there is none."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    for step in reversed(self.steps()):
      try:
        state = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        return step, state
      except Exception as e:  # noqa: BLE001  (any damage means: try the one before)
        warnings.warn(f"checkpoint step {step} in {self.directory} is unreadable "
                      f"({type(e).__name__}: {e}); falling back to the previous one.")
    return None

  def close(self) -> None:
    self._manager.close()
