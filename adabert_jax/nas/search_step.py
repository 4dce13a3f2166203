"""The search update: one architecture sample, the AdaBERT loss, one update of both groups.

First-order DARTS as in the authors' code: the op weights and the architecture logits are
updated in the same step from the same training batch (no unrolled bilevel step; search_step).
make_separate_batches_step takes alpha's gradient from a batch of its own instead (DARTS's
and GDAS's split of the training data). Each group has its own optimizer, through
optax.partition on the params' top-level key:
  "weights": clip global norm 5 -> L2 weight decay 3e-4 (added to the gradient, as torch SGD)
             -> SGD momentum 0.9, lr 0.02 cosine-decayed to 0 over total_steps;
  "arch":    Adam lr 3e-4, b1 0.5, b2 0.999, weight decay 1e-3: "coupled" (the authors' torch
             Adam(weight_decay=...): 1e-3 * alpha added to the gradient before Adam's
             normalisation, a real pull towards uniform) or "decoupled" (AdamW: alpha shrunk
             by lr * 1e-3 per step, ~3e-7, next to nothing).
The step is pure; jit it once (make_search_step does) and call it with new batches of the same
shape: the step number and keys are traced arguments, so nothing recompiles.
"""

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from adabert_jax.nas import gumbel, losses, supernet

Params = dict[str, Any]
Metrics = dict[str, jax.Array]
Sampler = Callable[[jax.Array, Params, jax.Array], dict[str, jax.Array]]
WEIGHT_DECAY_MODES = ("coupled", "decoupled")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """The two optimizers' settings (the authors' code's values are the defaults)."""
  weights_lr: float = 0.02
  weights_momentum: float = 0.9
  weights_weight_decay: float = 3e-4
  weights_grad_clip: float = 5.0
  arch_lr: float = 3e-4
  arch_b1: float = 0.5
  arch_b2: float = 0.999
  arch_weight_decay: float = 1e-3
  arch_weight_decay_mode: str = "coupled"

  def __post_init__(self):
    if self.arch_weight_decay_mode not in WEIGHT_DECAY_MODES:
      raise ValueError(f"OptimizerConfig.arch_weight_decay_mode must be one of "
                       f"{WEIGHT_DECAY_MODES}, got {self.arch_weight_decay_mode!r}")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Everything static about a search step besides the supernet and the loss; the Gumbel
  temperature follows gumbel.temperature_at (schedule "per_epoch" needs steps_per_epoch)."""
  total_steps: int
  temperature_start: float = 1.0
  temperature_end: float = 0.1
  temperature_schedule: str = "exponential"
  temperature_anneal_rate: float = 0.02
  steps_per_epoch: int = 0
  # Alpha is held still (its learning rate 0, make_optimizer) for these first steps; the
  # driver feeds a split step no alpha batch then.
  arch_warmup_steps: int = 0
  # Those steps sample fairly (gumbel.fair_sample) instead of from alpha.
  fair_warmup: bool = False
  # beta-DARTS: + lambda * mean over edges of logsumexp(alpha_ops), lambda ramped linearly
  # from 0 to this over total_steps (0: off).
  alpha_regulariser: float = 0.0

  def temperature(self, step: jax.Array | int) -> jax.Array:
    return gumbel.temperature_at(step, self.total_steps, self.temperature_start,
                                 self.temperature_end, schedule=self.temperature_schedule,
                                 anneal_rate=self.temperature_anneal_rate,
                                 steps_per_epoch=self.steps_per_epoch)

  @property
  def samples_fairly(self) -> bool:
    """Whether any step samples fairly (a fair warm-up of at least one step)."""
    return self.fair_warmup and self.arch_warmup_steps > 0

  def in_fair_warmup(self, step: jax.Array | int) -> jax.Array | bool:
    return step < self.arch_warmup_steps if self.samples_fairly else False

  def regulariser_weight(self, step: jax.Array | int) -> jax.Array:
    progress = jnp.clip(jnp.asarray(step, jnp.float32) / self.total_steps, 0.0, 1.0)
    return self.alpha_regulariser * progress


def alpha_regulariser(arch_params: Params) -> jax.Array:
  """beta-DARTS's regulariser (Ye et al., 2022): the mean over edges of logsumexp(alpha_ops).
  Its gradient, softmax(alpha) per edge, pulls hardest on the op that dominates an edge, so
  no op's weight runs away before the others have trained."""
  return jnp.mean(jax.nn.logsumexp(arch_params["alpha_ops"], axis=-1))


class SearchState(NamedTuple):
  params: Params
  opt_state: optax.OptState


def param_labels(params: Params) -> Params:
  """'weights' or 'arch' for every leaf, from its top-level key."""
  return {group: jax.tree.map(lambda _, g=group: g, subtree)
          for group, subtree in params.items()}


def make_optimizer(cfg_opt: OptimizerConfig, total_steps: int, arch_warmup_steps: int = 0
                   ) -> optax.GradientTransformation:
  """The partitioned optimizer: SGD-momentum for "weights", Adam for "arch" (the module
  docstring says how each decays).

  arch_warmup_steps > 0 holds alpha still (learning rate 0) for the first steps, so the
  architecture is judged by weights that have learnt something: before that the CE and KD
  gradients reaching alpha are noise and only the efficiency term pushes it, towards
  parameter-free ops and the smallest depth.
  """
  if total_steps < 1:
    raise ValueError(f"total_steps must be >= 1, got {total_steps}")
  if arch_warmup_steps < 0:
    raise ValueError(f"arch_warmup_steps must be >= 0, got {arch_warmup_steps}")
  weights_lr = optax.cosine_decay_schedule(cfg_opt.weights_lr, total_steps)
  weights_tx = optax.chain(
      optax.clip_by_global_norm(cfg_opt.weights_grad_clip),
      optax.add_decayed_weights(cfg_opt.weights_weight_decay),
      optax.sgd(weights_lr, momentum=cfg_opt.weights_momentum),
  )
  arch_lr = (cfg_opt.arch_lr if not arch_warmup_steps else optax.join_schedules(
      [optax.constant_schedule(0.0), optax.constant_schedule(cfg_opt.arch_lr)],
      [arch_warmup_steps]))
  if cfg_opt.arch_weight_decay_mode == "coupled":
    arch_tx = optax.chain(optax.add_decayed_weights(cfg_opt.arch_weight_decay),
                          optax.adam(arch_lr, b1=cfg_opt.arch_b1, b2=cfg_opt.arch_b2))
  else:
    arch_tx = optax.adamw(arch_lr, b1=cfg_opt.arch_b1, b2=cfg_opt.arch_b2,
                          weight_decay=cfg_opt.arch_weight_decay)
  return optax.partition({"weights": weights_tx, "arch": arch_tx}, param_labels)


def init_search_state(key: jax.Array, supernet_cfg: supernet.SupernetConfig,
                      teacher_width: int, num_classes: int,
                      optimizer: optax.GradientTransformation) -> SearchState:
  params = supernet.init_supernet(key, supernet_cfg, teacher_width, num_classes)
  return SearchState(params=params, opt_state=optimizer.init(params))


def search_loss(params: Params, emb_tables: dict[str, jax.Array], batch: dict[str, Any],
                sample: dict[str, jax.Array], dropout_key: jax.Array, *,
                supernet_cfg: supernet.SupernetConfig, loss_cfg: losses.LossConfig,
                op_costs: Any, train: bool = True, per_head: jax.Array | bool = False
                ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The AdaBERT loss of the supernet under `sample`: (total, terms). per_head: as for
  losses.task_loss_per_example (true on the fair steps)."""
  outputs = supernet.supernet_apply(params, emb_tables, batch, sample, supernet_cfg,
                                    train=train, dropout_key=dropout_key)
  return losses.adabert_loss(outputs, batch, sample, op_costs, loss_cfg, per_head)


def _step_loss(params: Params, batch: dict[str, Any], emb_tables: dict[str, jax.Array],
               key: jax.Array, draw_key: jax.Array, step: jax.Array | int, *,
               supernet_cfg: supernet.SupernetConfig, loss_cfg: losses.LossConfig,
               search_cfg: SearchConfig, op_costs: Any, sampler: Sampler
               ) -> tuple[jax.Array, tuple[dict, dict]]:
  """The loss a search step differentiates: (total, (terms, sample)). draw_key draws the
  architecture and the dropout; the run's base `key` and the step number set the fair
  warm-up's orders, and the step the temperature and the regulariser's weight."""
  sample_key, dropout_key = jax.random.split(draw_key)
  # Sampling inside the differentiated function: the straight-through one-hots carry the
  # gradient back to alpha.
  sample = sampler(sample_key, params["arch"], search_cfg.temperature(step))
  in_fair_warmup = search_cfg.in_fair_warmup(step)
  if search_cfg.samples_fairly:
    fair = gumbel.fair_sample(key, params["arch"], step)
    sample = jax.tree.map(lambda f, s: jnp.where(in_fair_warmup, f, s), fair, sample)
  # Fair steps mix every head's loss (fair_sample's uniform depth weights), so every head
  # trains whatever loss_cfg.depth_mix is.
  total, terms = search_loss(params, emb_tables, batch, sample, dropout_key,
                             supernet_cfg=supernet_cfg, loss_cfg=loss_cfg, op_costs=op_costs,
                             per_head=in_fair_warmup)
  if search_cfg.alpha_regulariser:
    terms = {**terms, "alpha_regulariser": alpha_regulariser(params["arch"])}
    total = total + search_cfg.regulariser_weight(step) * terms["alpha_regulariser"]
  return total, (terms, sample)


def _step_metrics(terms: dict, sample: dict, grads: Params, step: jax.Array | int,
                  search_cfg: SearchConfig) -> Metrics:
  metrics = dict(terms)
  metrics.update(
      temperature=search_cfg.temperature(step),
      depth=sample["depth_index"] + 1,
      # every cell ran and every head's loss counted
      fair=jnp.asarray(search_cfg.in_fair_warmup(step)),
      ops_index=sample["ops_index"],
      weights_grad_norm=optax.tree.norm(grads["weights"]),
      arch_grad_norm=optax.tree.norm(grads["arch"]),
  )
  return metrics


def search_step(state: SearchState, batch: dict[str, Any], emb_tables: dict[str, jax.Array],
                key: jax.Array, step: jax.Array | int, *,
                supernet_cfg: supernet.SupernetConfig, loss_cfg: losses.LossConfig,
                search_cfg: SearchConfig, optimizer: optax.GradientTransformation,
                op_costs: Any, sampler: Sampler = gumbel.sample_architecture
                ) -> tuple[SearchState, Metrics]:
  """One search update, both groups from the same batch (the authors'). `key` is the run's
  base key; it is folded with `step`, so the same (key, step) always draws the same
  architecture and dropout.

  sampler(key, arch_params, temperature) -> sample draws the architecture (the hard
  straight-through Gumbel-softmax by default; the benchmark substitutes one that pins the
  indices to count a fixed sample's FLOPs).
  """
  loss_fn = functools.partial(_step_loss, supernet_cfg=supernet_cfg, loss_cfg=loss_cfg,
                              search_cfg=search_cfg, op_costs=op_costs, sampler=sampler)
  (_, (terms, sample)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params, batch, emb_tables, key, jax.random.fold_in(key, step), step)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return (SearchState(params=params, opt_state=opt_state),
          _step_metrics(terms, sample, grads, step, search_cfg))


def group_gradient(params: Params, batch: dict[str, Any], emb_tables: dict[str, jax.Array],
                   key: jax.Array, step: jax.Array | int, *, group: str,
                   supernet_cfg: supernet.SupernetConfig, loss_cfg: losses.LossConfig,
                   search_cfg: SearchConfig, op_costs: Any,
                   sampler: Sampler = gumbel.sample_architecture
                   ) -> tuple[Params, dict, dict]:
  """(the gradient of one group, "weights" or "arch", terms, sample) on `batch`: half of a
  step with separate batches (make_separate_batches_step). The weights' half draws its
  architecture and dropout as search_step does; alpha's half draws its own."""
  draw_key = jax.random.fold_in(key, step)
  if group == "arch":
    draw_key = jax.random.fold_in(draw_key, 1)

  def loss_of_group(subtree):
    return _step_loss({**params, group: subtree}, batch, emb_tables, key, draw_key, step,
                      supernet_cfg=supernet_cfg, loss_cfg=loss_cfg, search_cfg=search_cfg,
                      op_costs=op_costs, sampler=sampler)

  (_, (terms, sample)), grad = jax.value_and_grad(loss_of_group, has_aux=True)(params[group])
  return grad, terms, sample


def apply_gradients(state: SearchState, grads: Params, *,
                    optimizer: optax.GradientTransformation) -> SearchState:
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  return SearchState(params=optax.apply_updates(state.params, updates), opt_state=opt_state)


def make_search_step(supernet_cfg: supernet.SupernetConfig, loss_cfg: losses.LossConfig,
                     search_cfg: SearchConfig, optimizer: optax.GradientTransformation,
                     op_costs: Any, *, jit: bool = True, donate_state: bool = False,
                     sampler: Sampler = gumbel.sample_architecture
                     ) -> Callable[..., tuple[SearchState, Metrics]]:
  """search_step with its static arguments bound: fn(state, batch, emb_tables, key, step).

  jit=True returns it jitted (once; new batches of the same shape reuse the executable).
  donate_state=True lets XLA reuse the old state's buffers for the new state (the caller must
  not use the old state afterwards).
  """
  fn = functools.partial(search_step, supernet_cfg=supernet_cfg, loss_cfg=loss_cfg,
                         search_cfg=search_cfg, optimizer=optimizer,
                         op_costs=jnp.asarray(op_costs, jnp.float32), sampler=sampler)
  if not jit:
    return fn
  return jax.jit(fn, donate_argnums=(0,) if donate_state else ())


def make_separate_batches_step(supernet_cfg: supernet.SupernetConfig,
                               loss_cfg: losses.LossConfig, search_cfg: SearchConfig,
                               optimizer: optax.GradientTransformation, op_costs: Any, *,
                               donate_state: bool = False,
                               sampler: Sampler = gumbel.sample_architecture
                               ) -> Callable[..., tuple[SearchState, Metrics]]:
  """A search update with alpha's gradient from its own batch (DARTS's and GDAS's split;
  config search.arch_split): fn(state, batch, arch_batch, emb_tables, key, step) ->
  (state, metrics). Both gradients are taken at the same params and applied in one
  optimizer update, so the step differs from search_step only in where alpha's gradient
  comes from. arch_batch=None (alpha held still, e.g. in the arch warm-up) gives alpha a
  zero gradient and skips its forward pass.

  The halves and the update are jitted apart, so each compiles once per batch shape
  (length bucket) instead of once per pair of shapes.
  """
  kwargs = dict(supernet_cfg=supernet_cfg, loss_cfg=loss_cfg, search_cfg=search_cfg,
                op_costs=jnp.asarray(op_costs, jnp.float32), sampler=sampler)
  weights_half = jax.jit(functools.partial(group_gradient, group="weights", **kwargs))
  arch_half = jax.jit(functools.partial(group_gradient, group="arch", **kwargs))
  update = jax.jit(functools.partial(apply_gradients, optimizer=optimizer),
                   donate_argnums=(0,) if donate_state else ())
  # One compiled call per step, not a dozen eager ops on the hot path.
  step_metrics = jax.jit(functools.partial(_step_metrics, search_cfg=search_cfg))

  def step_fn(state, batch, arch_batch, emb_tables, key, step):
    weights_grad, terms, sample = weights_half(state.params, batch, emb_tables, key, step)
    if arch_batch is None:
      arch_grad, arch_terms = jax.tree.map(jnp.zeros_like, state.params["arch"]), None
    else:
      arch_grad, arch_terms, _ = arch_half(state.params, arch_batch, emb_tables, key, step)
    grads = {"weights": weights_grad, "arch": arch_grad}
    metrics = step_metrics(terms, sample, grads, step)
    if arch_terms is not None:
      metrics["arch_batch_total"] = arch_terms["total"]
    return update(state, grads), metrics

  return step_fn
