"""Does a finished search's supernet tell architectures apart? A diagnostic for collapses.

Scores the supernet's shared weights on dev under fixed uniform architectures (the same op on
every edge of every cell) at several depths. Use the flags the search ran with:

  python experiments/rank_supernet.py --task=sst2 --glue_dir=../shared/glue \
      --workdir=runs/sst2 --config=experiments/configs/default.py:cpu

If every row scores about the same, CE and KD cannot prefer one architecture over another
and alpha follows the efficiency term; if the rows rank architectures the derived genotype
does not resemble, the gradient to alpha, not the supernet, is at fault (see
docs/search-on-cpu.md).

With --genotypes=MODEL,... it scores the cells of trained models (a student folder of
--workdir, or RUNDIR:name, as in experiments/compare.py) the way the measured derive scores
its candidates: J = held-out loss + derive.beta * L_E on the search's held-out examples,
with the rank J would have among the derive's candidates. Set beside the models' dev
scores, it says whether the supernet ranks cells as training them on their own does.

With --signal_architectures=N it asks the second question directly: over N architectures
that put each op on each edge equally often, scored on the search's held-out examples, what
the task loss says about each op (its mean loss when on an edge) against the first-order
signal alpha learns from (the gradient of the loss to the op's straight-through weight
h_{e,o}: negative = more of that op, so alpha_{e,o} grows), in both search modes.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from adabert_jax import artefacts, cli, io_utils
from adabert_jax.pipeline import runner, stages
from adabert_jax.data import batching, pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.nas import (costs, derive, genotype as genotype_lib, gumbel, inputs, ops,
                             search, search_step)
from adabert_jax.train import checkpoints, sharding

flags.DEFINE_list("ops", ["conv3", "conv5", "dil_conv3", "max_pool3", "avg_pool3",
                          "identity"], "Operations to try, each on every edge.")
flags.DEFINE_list("depths", [], "Depths K to try (default: 1, 2, 3, 4, 6, 8 up to "
                  "search.k_max).")
flags.DEFINE_list("genotypes", [], "Trained models whose cells to score as the measured "
                  "derive scores its candidates (a student folder of --workdir, or "
                  "RUNDIR:name).")
flags.DEFINE_integer("min_tokens", 0, "With --genotypes: score only the held-out examples "
                     "of at least this many tokens (0 = all; the rank among the derive's "
                     "candidates, measured on all, is then left out).")
flags.DEFINE_integer("signal_architectures", 0,
                     "> 0: instead of the table, what alpha's gradient says about each op "
                     "against what the loss says, over this many architectures (a multiple "
                     "of 10 puts each op on each edge equally often), on the search's "
                     "held-out examples (search.holdout).")
flags.DEFINE_integer("signal_depth", 0, "The depth K of those architectures (0 = k_max).")
flags.DEFINE_integer("signal_batches", 2, "Held-out batches scored per architecture.")
flags.DEFINE_string("signal_out", "", "Also write the per-op signal here, as JSON.")
_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def op_signal(params, emb, batches, cfg, loss_cfg, *, depth: int, architectures: int,
              key) -> dict:
  """Per op, over `architectures` fair architectures (gumbel.fair_sample's orders) at depth
  K, each scored on every batch of `batches` with the task loss alone (beta 0):
    loss_vs_mean: the mean loss of the architectures with the op on an edge, minus the mean
      of all (lower = the loss prefers it);
    grad_sampled: the mean dL/dh_{e,o} where the op was sampled, in sampled mode (the only
      op of an edge with a gradient there);
    grad_all_ops: the mean dL/dh_{e,o} of every edge, in all_ops mode (every op computed).
  Per edge e, alpha's first-order update follows -(g_o - the mean of g): the op with the
  most negative g gains. Both modes run the same forward (the losses must agree)."""
  loss_cfg = dataclasses.replace(loss_cfg, beta=0.0)
  shapes = {"alpha_ops": jnp.zeros((cfg.num_edges, ops.NUM_OPS)),
            "alpha_depth": jnp.zeros((cfg.k_max,))}
  depth_onehot = jax.nn.one_hot(depth - 1, cfg.k_max)
  grad_fns = {}
  for mode in ("sampled", "all_ops"):
    def loss_of(h, index, batch, mode_cfg=dataclasses.replace(cfg, mode=mode)):
      sample = {"ops": h, "ops_index": index, "depth": depth_onehot,
                "depth_index": jnp.asarray(depth - 1, jnp.int32)}
      total, _ = search_step.search_loss(params, emb, batch, sample, key,
                                         supernet_cfg=mode_cfg, loss_cfg=loss_cfg,
                                         op_costs=jnp.zeros(ops.NUM_OPS), train=False)
      return total
    grad_fns[mode] = jax.jit(jax.value_and_grad(loss_of))
  index_AE = np.stack([np.asarray(gumbel.fair_sample(key, shapes, a)["ops_index"])
                       for a in range(architectures)])
  loss_A, grad_sampled_AE, grad_all_AEO = [], [], []
  for a, index in enumerate(index_AE):
    h = jax.nn.one_hot(index, ops.NUM_OPS)
    losses_b, sampled_b, all_b = [], [], []
    for batch in batches:
      loss_s, g_s = grad_fns["sampled"](h, jnp.asarray(index), batch)
      loss_a, g_a = grad_fns["all_ops"](h, jnp.asarray(index), batch)
      if not np.isclose(float(loss_s), float(loss_a), rtol=1e-3, atol=1e-4):
        raise AssertionError(f"architecture {a}: sampled loss {float(loss_s)} != all_ops "
                             f"{float(loss_a)}")
      losses_b.append(float(loss_s))
      sampled_b.append(np.take_along_axis(np.asarray(g_s), index[:, None], 1)[:, 0])
      all_b.append(np.asarray(g_a))
    loss_A.append(np.mean(losses_b))
    grad_sampled_AE.append(np.mean(sampled_b, 0))
    grad_all_AEO.append(np.mean(all_b, 0))
    print(f"architecture {a + 1}/{architectures}: loss {loss_A[-1]:.4f}", flush=True)
  loss_A, grad_sampled_AE = np.array(loss_A), np.array(grad_sampled_AE)
  grad_all_AEO = np.array(grad_all_AEO)
  per_op = {}
  for o, name in enumerate(ops.OP_NAMES):
    chosen_AE = index_AE == o
    loss_when = (chosen_AE * loss_A[:, None]).sum() / max(chosen_AE.sum(), 1)
    per_op[name] = {
        "edge_samples": int(chosen_AE.sum()),
        "loss_vs_mean": float(loss_when - loss_A.mean()),
        "grad_sampled": float(grad_sampled_AE[chosen_AE].mean()) if chosen_AE.any()
                        else float("nan"),
        "grad_all_ops": float(grad_all_AEO[:, :, o].mean()),
        # all_ops's gradient where the op was the one sampled: grad_sampled again, since
        # the two modes run the same forward (a check, not a finding)
        "grad_all_ops_where_sampled": float(grad_all_AEO[chosen_AE, o].mean())
                                      if chosen_AE.any() else float("nan"),
    }
  return {"depth": depth, "architectures": architectures, "batches": len(batches),
          "mean_loss": float(loss_A.mean()), "ops": per_op}


def signal_table(signal: dict) -> str:
  lines = ["| op | edge samples | loss with it, minus the mean | dL/dh, sampled mode | "
           "dL/dh, all_ops mode |", "|---|---|---|---|---|"]
  for name, row in signal["ops"].items():
    lines.append(f"| {name} | {row['edge_samples']} | {row['loss_vs_mean']:+.4f} | "
                 f"{row['grad_sampled']:+.5f} | {row['grad_all_ops']:+.5f} |")
  return "\n".join(lines)


def score_trained_cells(specs: list[str], workdir: str, config, params, emb, held,
                        setup, with_rank: bool = True) -> list[dict]:
  """Per model spec: its cell's held-out loss, accuracy, L_E and J in this supernet, and
  (with_rank, when the derive ran) the rank J would take among the derive's candidates."""
  cfg = setup.supernet
  score = derive.heldout_scorer(params, emb, held, cfg, setup.loss, config.derive.batch_size,
                                config.data.max_len)
  op_costs = costs.op_cost_table(cfg.hidden, config.data.max_len,
                                 config.search.cost_norm).normalised
  derived_path = os.path.join(artefacts.derive_dir(workdir), artefacts.RESULT_FILE)
  evaluated = (io_utils.load_json(derived_path).get("evaluated", [])
               if with_rank and os.path.isfile(derived_path) else [])
  rows = []
  for spec in specs:
    geno, result = stages.trained_cell(spec, workdir, "--genotypes")
    if (geno.k_max, geno.num_nodes, geno.input_mode) != (cfg.k_max, cfg.num_nodes,
                                                        cfg.input_mode):
      raise UserError(f"--genotypes={spec}: its cell (k_max {geno.k_max}, {geno.num_nodes} "
                      f"nodes, input {geno.input_mode}) is not of this supernet's space.")
    measured = score(geno)
    efficiency = derive.efficiency_of(geno, cfg, op_costs)
    objective = measured["loss"] + config.derive.beta * efficiency
    rows.append({"model": spec, "depth": geno.depth, "ops": genotype_lib.ops_summary(geno),
                 "loss": measured["loss"], "accuracy": measured["accuracy"],
                 "efficiency": efficiency, "objective": objective,
                 "rank": (1 + sum(r["objective"] < objective for r in evaluated)
                          if evaluated else None),
                 # the cell counted once, whether or not the derive measured it
                 "candidates": len(evaluated) + (result["genotype"] not in
                                                 [r["genotype"] for r in evaluated]),
                 "dev": result["dev"]["score"]})
  return rows


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir = cli.require_workdir()
  search_dir = artefacts.search_dir(workdir)
  params_dir = os.path.join(search_dir, artefacts.FINAL_PARAMS)
  if not os.path.isdir(params_dir):
    raise UserError(f"No finished search in {workdir} ({params_dir} is missing): run "
                    "experiments/search.py with the same flags first.")
  setup = search.setup_from_config(config.search,
                                   data_pipeline.task_from_config(config).is_pair)
  cfg = setup.supernet
  unknown = [name for name in flags.FLAGS.ops if name not in ops.OP_NAMES]
  if unknown:
    raise UserError(f"--ops: unknown {unknown}; the operations are {', '.join(ops.OP_NAMES)}")
  depths = [d for d in (1, 2, 3, 4, 6, 8) if d <= cfg.k_max]
  if flags.FLAGS.depths:
    if not all(d.isdigit() for d in flags.FLAGS.depths):
      raise UserError(f"--depths must be integers, got {','.join(flags.FLAGS.depths)}")
    depths = [int(d) for d in flags.FLAGS.depths]
  if any(not 1 <= d <= cfg.k_max for d in depths):
    raise UserError(f"--depths must be in 1..{cfg.k_max} (search.k_max), got {depths}")

  task, splits, vocab = data_pipeline.load_task_data(config)
  teacher = stages.ensure_teacher(config, task, splits, workdir)
  fingerprint = search.search_fingerprint(config, teacher["checkpoint_id"], task.is_pair)
  if runner.done(search_dir, artefacts.RESULT_FILE, fingerprint) is None:
    diff = runner.fingerprint_diff(
        io_utils.load_json(os.path.join(search_dir, "config.json")), fingerprint)
    if not diff:
      raise UserError(f"The search in {search_dir} has not finished: rerun "
                      "experiments/search.py with the same flags.")
    raise UserError(f"The search in {search_dir} ran with other flags ({'; '.join(diff[:4])}): "
                    "pass the --config flags it ran with.")
  knowledge = stages.ensure_knowledge(config, task, splits, vocab, workdir, teacher)
  params = checkpoints.restore_pytree(params_dir)
  emb = {k: jnp.asarray(v) for k, v in knowledge["emb_tables"].items()}
  if flags.FLAGS.signal_architectures > 0 or flags.FLAGS.genotypes:
    _, held = search.search_and_holdout(config, splits, knowledge["knowledge"])
    if not len(held["label"]):
      raise UserError("--signal_architectures and --genotypes score the search's held-out "
                      "examples, and it kept none: pass the search's "
                      "--config.search.holdout (> 0).")
  if flags.FLAGS.genotypes:
    min_tokens = flags.FLAGS.min_tokens
    if min_tokens:
      held = stages.long_examples(held, min_tokens)
    rows = score_trained_cells(flags.FLAGS.genotypes, workdir, config, params, emb, held,
                               setup, with_rank=not min_tokens)
    print(f"trained models' cells in the supernet of {workdir} ({len(held['label'])} "
          f"held-out examples" + (f" of at least {min_tokens} tokens)" if min_tokens else
                                  "; rank among the derive's measured candidates by J)"))
    print("| model | K | ops | held-out loss / acc | L_E | J | rank | dev |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
      print(f"| {r['model']} | {r['depth']} | {r['ops']} | {r['loss']:.4f} / "
            f"{r['accuracy']:.1f} | {r['efficiency']:.3f} | {r['objective']:.4f} | "
            + (f"{r['rank']} of {r['candidates']}" if r["rank"] else "-")
            + f" | {r['dev']:.2f} |")
    return
  if flags.FLAGS.signal_architectures > 0:
    depth = flags.FLAGS.signal_depth or cfg.k_max
    if not 1 <= depth <= cfg.k_max:
      raise UserError(f"--signal_depth must be in 1..{cfg.k_max} (search.k_max), got {depth}")
    batches = [inputs.host_batch(b, cfg.input_mode) for b, _ in zip(
        batching.eval_batches(held, config.search.batch_size),
        range(max(flags.FLAGS.signal_batches, 1)))]
    signal = op_signal(params, emb, batches, cfg, setup.loss, depth=depth,
                       architectures=flags.FLAGS.signal_architectures,
                       key=jax.random.key(config.seed))
    print(f"what the loss and alpha's gradient say about each op ({workdir}, K={depth}, "
          f"{signal['architectures']} architectures x {signal['batches']} held-out batches, "
          f"mean loss {signal['mean_loss']:.4f})")
    print(signal_table(signal))
    if flags.FLAGS.signal_out:
      io_utils.save_json_atomic(flags.FLAGS.signal_out, signal)
    return
  dev, mesh = splits[task.main_dev_split], sharding.make_mesh(1)
  print(f"supernet dev score ({task.metric}) under uniform architectures ({workdir})")
  print("| op | " + " | ".join(f"K={d}" for d in depths) + " |")
  print("|---|" + "---|" * len(depths))
  for name in flags.FLAGS.ops:
    scores = [search.evaluate_fixed(params, emb, dev,
                                    genotype_lib.genotype_to_onehots(
                                        derive.uniform_genotype(name, d, cfg), cfg),
                                    cfg, task, config.search.batch_size, mesh)["score"]
              for d in depths]
    print(f"| {name} | " + " | ".join(f"{s:.2f}" for s in scores) + " |", flush=True)


if __name__ == "__main__":
  cli.run(main)
