"""The shared training loop: when it evaluates, when it saves, and that a run resumed at any
saved step makes the same calls from there as a run that never stopped."""

import types

from adabert_jax.train import loop


class _Ring:
  """Records saves, as CheckpointRing would make them."""

  def __init__(self, calls):
    self.calls, self.directory = calls, "ring"

  def save(self, step, state):
    self.calls.append(("save", step, state))

  def close(self):
    self.calls.append(("close",))


def _bar():
  return types.SimpleNamespace(update=lambda n: None, close=lambda: None)


def _run(schedule, start_step=0, start_state=0):
  """The calls a run makes; the state is the sum of the batches seen, a batch is
  100 * epoch + position, so a wrong batch after a resume changes every later state."""
  calls = []
  batches = lambda epoch, first: (100 * epoch + i  # noqa: E731
                                  for i in range(first, schedule.steps_per_epoch))
  train_step = lambda state, batch, step: (state + batch, {"step": step})  # noqa: E731
  on_step = lambda step, epoch, state, m: calls.append(("step", step, epoch, state))  # noqa: E731
  on_eval = lambda step, epoch, state, m: calls.append(("eval", step, epoch, state))  # noqa: E731
  final = loop.run(start_state, start_step, schedule, bar=_bar(), batches=batches,
                   train_step=train_step, ring=_Ring(calls), on_step=on_step, on_eval=on_eval)
  return calls, final


def test_evaluates_every_epoch_and_at_the_end_and_saves_after_each_evaluation():
  schedule = loop.Schedule(total_steps=7, steps_per_epoch=3, batch_size=2, eval_every_steps=0,
                           checkpoint_every_steps=2)
  calls, final = _run(schedule)
  assert [c[1] for c in calls if c[0] == "eval"] == [3, 6, 7]  # epoch ends, and the last step
  assert [c[1] for c in calls if c[0] == "save"] == [2, 3, 4, 6, 7]
  for i, call in enumerate(calls):  # the state an evaluation saw is the one saved next
    if call[0] == "eval":
      assert calls[i + 1] == ("save", call[1], call[3])
  assert calls[-1] == ("close",)
  assert final == (0 + 1 + 2) + (100 + 101 + 102) + 200


def test_evaluates_every_n_steps_when_asked():
  schedule = loop.Schedule(total_steps=10, steps_per_epoch=4, batch_size=1, eval_every_steps=3,
                           checkpoint_every_steps=100)
  calls, _ = _run(schedule)
  assert [c[1] for c in calls if c[0] == "eval"] == [3, 6, 9, 10]
  assert schedule.saves_at(9) and not schedule.saves_at(4)


def test_a_run_resumed_at_any_saved_step_continues_exactly():
  schedule = loop.Schedule(total_steps=8, steps_per_epoch=3, batch_size=1, eval_every_steps=0,
                           checkpoint_every_steps=2)
  straight, final = _run(schedule)
  for save in [c for c in straight if c[0] == "save"]:
    _, step, state = save
    resumed, resumed_final = _run(schedule, start_step=step, start_state=state)
    after = straight[straight.index(save) + 1:]
    assert resumed == after and resumed_final == final, step


def test_a_finished_run_makes_no_step():
  schedule = loop.Schedule(total_steps=4, steps_per_epoch=2, batch_size=1, eval_every_steps=0,
                           checkpoint_every_steps=1)
  calls, final = _run(schedule, start_step=4, start_state=5)
  assert calls == [("close",)] and final == 5
