"""Data parallelism over every device of the run (every process's, after
distributed.initialize) with jax.jit and NamedSharding on a one-axis mesh.

Parameters are replicated, batches are split along their first axis; jit's partitioner
inserts the gradient all-reduce, so a step computes exactly what one device would on the
whole batch. With several processes, every process computes the same global batch order
(a pure function of the key, epoch and step), gathers only the rows of its own devices
(`process_rows`, which the batch iterators of data/batching.py take) and hands them over
(`shard_batch`), so a run sees the same examples per step on any number of processes.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from adabert_jax.errors import UserError

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D mesh over every device of the run (the default), or over the first
  `num_devices` of this process's own (a computation each process does alone)."""
  devices = jax.devices() if num_devices is None else jax.local_devices()
  n = len(devices) if num_devices is None else num_devices
  if not 1 <= n <= len(devices):
    raise UserError(f"Asked for {n} devices but {len(devices)} are available.")
  # Auto axis types: jit propagates the shardings we place inputs with (JAX 0.10
  # defaults to Explicit, which would require sharding annotations inside the model).
  return jax.make_mesh((n,), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices[:n])


def check_batch_size(batch_size: int, mesh: Mesh, flag: str = "batch_size") -> None:
  n = mesh.devices.size
  if batch_size % n:
    raise UserError(
        f"Batch size {batch_size} does not divide across {n} devices: set "
        f"--config.{flag} to a multiple of {n}.")


def process_rows(mesh: Mesh, batch_size: int) -> slice | None:
  """The rows of a global batch of `batch_size` that this process's devices hold (a
  contiguous block: the mesh lists each process's devices together); None when the mesh is
  all this process's, which then feeds whole batches."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  if sharding.is_fully_addressable:
    return None
  check_batch_size(batch_size, mesh)
  starts = sorted(index[0].start or 0 for index in
                  sharding.addressable_devices_indices_map((batch_size,)).values())
  per_device = batch_size // mesh.devices.size
  if starts != list(range(starts[0], starts[0] + per_device * len(starts), per_device)):
    raise UserError("This process's devices are not one block of the run's device mesh: "
                    "launch one process per machine with all its devices.")
  return slice(starts[0], starts[0] + per_device * len(starts))


def shard_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Puts each array's first axis across the mesh's data axis. With several processes,
  `batch` is this process's rows of the global batch (`process_rows`), and every process
  passes its own."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  devices = (mesh.devices.size if sharding.is_fully_addressable
             else len(sharding.addressable_devices))
  for name, value in batch.items():
    if np.ndim(value) and np.shape(value)[0] % devices:
      raise UserError(
          f"Batch of {np.shape(value)[0]} examples ({name!r}) does not divide across "
          f"{devices} devices: use a batch size that is a multiple of "
          f"{mesh.devices.size}.")
  if sharding.is_fully_addressable:
    return jax.device_put(dict(batch), sharding)
  return {name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for name, value in batch.items()}


def replicate(tree: Any, mesh: Mesh) -> Any:
  """A full copy of `tree` on every device of the mesh."""
  return _put(tree, NamedSharding(mesh, P()))


def _put(tree: Any, sharding: NamedSharding) -> Any:
  """device_put, or with several processes each one's own copies of the (same) host
  values: device_put cannot place data on another process's devices."""
  if sharding.is_fully_addressable:
    return jax.device_put(tree, sharding)

  def put(value):
    value = np.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(put, tree)


def to_host(x: jax.Array) -> np.ndarray:
  """The whole of a (possibly multi-process) array as NumPy, on every process."""
  if x.is_fully_addressable or x.sharding.is_fully_replicated:
    return np.asarray(x)
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
