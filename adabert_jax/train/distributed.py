"""Several processes (hosts) as one run, on JAX's multi-controller runtime.

Every process runs the same program. `initialize` joins them through jax.distributed, after
which jax.devices() lists every device of every process and the one-axis data mesh
(sharding.make_mesh) spans them all; each process feeds its own devices' rows of every
batch (sharding.shard_batch). A single process (no flags, no cluster) is left exactly as
before: nothing is initialised.

Started from:
  flags   --coordinator_address=HOST:PORT --num_processes=N --process_id=I (any machines);
  --distributed  the cluster's own environment, which JAX reads itself (Cloud TPU pod
          slices, SLURM, Open MPI, ...; jax.distributed.initialize with no arguments).
"""

from __future__ import annotations

import jax
import numpy as np

from adabert_jax.errors import UserError

# How long the others wait for a process that stopped answering before they fail (JAX's
# heartbeat; its default is 100 s). A dead process ends the run, it does not hang it.
HEARTBEAT_TIMEOUT_S = 60


def initialize(coordinator_address: str | None, num_processes: int | None,
               process_id: int | None, from_environment: bool = False) -> None:
  """Joins the processes of a multi-process run (a no-op for a single process)."""
  given = [v is not None for v in (coordinator_address, num_processes, process_id)]
  if any(given) and not all(given):
    raise UserError("A multi-process run needs all three of --coordinator_address, "
                    "--num_processes and --process_id (or --distributed on a cluster "
                    "JAX detects).")
  if not any(given) and not from_environment:
    return
  if all(given) and not 0 <= process_id < num_processes:
    raise UserError(f"--process_id={process_id} must be in [0, {num_processes}).")
  # CPU devices of several processes talk through gloo (TPU and GPU have their own).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
  except (ValueError, RuntimeError) as e:
    raise UserError(f"Could not join the multi-process run ({str(e).splitlines()[0]}). "
                    "Check --coordinator_address (HOST:PORT of process 0, reachable from "
                    "every process), --num_processes and --process_id.") from None


def is_main_process() -> bool:
  """Process 0 writes the run's artefacts, logs and progress bars; the others compute."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all have arrived (a no-op for one process): after
  process 0 has written files the others are about to read."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def process_part(n: int) -> tuple[int, int]:
  """[lo, hi): this process's contiguous share of n rows (all of them for one process)."""
  per = -(-n // jax.process_count())
  index = jax.process_index()
  return min(index * per, n), min((index + 1) * per, n)


def all_processes(flag: bool) -> bool:
  """Whether `flag` holds on every process (for one process, `flag`): a decision all must
  take together, such as whether a collective is needed."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils

  return bool(np.all(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


def gather_parts(part: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
  """Every process's `part` (its rows process_part(n) of the same arrays), joined in order
  into the n rows, on every process."""
  if jax.process_count() == 1:
    return part
  from jax.experimental import multihost_utils

  per = -(-n // jax.process_count())
  padded = {name: np.concatenate([a, np.zeros((per - len(a),) + a.shape[1:], a.dtype)])
            for name, a in part.items()}
  joined = multihost_utils.process_allgather(padded)  # [processes, per, ...]
  return {name: np.asarray(a).reshape((-1,) + a.shape[2:])[:n] for name, a in joined.items()}
