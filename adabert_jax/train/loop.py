"""The one training loop the teacher fine-tune, the search and the student share.

A run is a number of steps over epochs of batches. At its evaluation points (every
`eval_every_steps`, and the last step) the caller evaluates, logs and keeps its best, and
then the training state is saved; between them the state is saved every
`checkpoint_every_steps`. Restarted after a kill, a run resumes from the newest saved state
(`CheckpointRing.restore_latest`), drops the log records made after it and redoes the rest:
every step is a pure function of the state, the batch (a function of the epoch and the
position in it) and the step number, so it ends with the same weights as a run that never
stopped.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable

import numpy as np

from adabert_jax.errors import UserError
from adabert_jax.train import checkpoints, progress


@dataclasses.dataclass(frozen=True)
class Schedule:
  total_steps: int
  steps_per_epoch: int
  batch_size: int
  eval_every_steps: int  # 0: at the end of every epoch
  checkpoint_every_steps: int

  def evaluates_at(self, step: int) -> bool:
    every = self.eval_every_steps or self.steps_per_epoch
    return step % every == 0 or step >= self.total_steps

  def saves_at(self, step: int) -> bool:
    return self.evaluates_at(step) or step % self.checkpoint_every_steps == 0


# (state, batch, step) -> (state, metrics): the jitted update, given the step it makes.
TrainStep = Callable[[Any, dict, int], tuple[Any, Any]]
# (epoch, first step in it) -> that epoch's batches from there on.
Batches = Callable[[int, int], Iterable[dict]]
# (step, epoch, state, metrics of the last step) -> None.
Hook = Callable[[int, int, Any, Any], None]


def progress_bar(schedule: Schedule, name: str, step: int,
                 ring: checkpoints.CheckpointRing | None):
  """The run's bar, counting examples; says where a resumed run (step > 0, from `ring`)
  starts."""
  bar = progress.progress(schedule.total_steps * schedule.batch_size, name)
  bar.update(step * schedule.batch_size)
  if step:
    bar.write(f"resumed the {name} at step {step} from {ring.directory}")
  return bar


def run(state: Any, step: int, schedule: Schedule, *, bar, batches: Batches,
        train_step: TrainStep, ring: checkpoints.CheckpointRing | None,
        on_step: Hook | None = None, on_eval: Hook) -> Any:
  """Trains from `step` (0, or where `ring` resumed) to the schedule's end and returns the
  state; closes `bar` (progress_bar) and `ring`. `on_step` runs after every step (checks,
  progress), before anything is saved; `on_eval` at the evaluation points, before the
  state they end is saved. ring=None saves nothing (a short run with nothing to resume)."""
  while step < schedule.total_steps:
    epoch, in_epoch = divmod(step, schedule.steps_per_epoch)
    for batch in batches(epoch, in_epoch):
      state, metrics = train_step(state, batch, step)
      step += 1
      bar.update(schedule.batch_size)
      if on_step is not None:
        on_step(step, epoch, state, metrics)
      if schedule.evaluates_at(step):
        on_eval(step, epoch, state, metrics)
      if ring is not None and schedule.saves_at(step):
        ring.save(step, state)
      if step >= schedule.total_steps:
        break
  bar.close()
  if ring is not None:
    ring.close()
  return state


def stop_if_not_finite(values: dict[str, Any], *, step: int,
                       ring: checkpoints.CheckpointRing, debug_state: Any,
                       error: Callable[[list[str], str], str]) -> None:
  """Stops a run at the first non-finite value after `step`: `debug_state` is saved to
  debug_nonfinite_step<step>/ beside `ring` (whose last good state is not touched) and the
  UserError says error(names of the non-finite values, that folder)."""
  bad = [name for name, value in values.items() if not np.isfinite(value)]
  if not bad:
    return
  debug = os.path.join(os.path.dirname(ring.directory), f"debug_nonfinite_step{step}")
  checkpoints.save_pytree(debug, debug_state)
  raise UserError(error(bad, debug))
