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
