"""Does a finished search's supernet tell architectures apart? A diagnostic for collapses.

Scores the supernet's shared weights on dev under fixed uniform architectures (the same op on
every edge of every cell) at several depths. Use the flags the search ran with:

  python experiments/rank_supernet.py --task=sst2 --glue_dir=../shared/glue \
      --workdir=runs/sst2 --config=experiments/configs/default.py:cpu

If every row scores about the same, CE and KD cannot prefer one architecture over another
and alpha follows the efficiency term; if the rows rank architectures the derived genotype
does not resemble, the gradient to alpha, not the supernet, is at fault (see
docs/search-on-cpu.md).
"""

import os

import jax.numpy as jnp
from absl import flags

from adabert_jax import artefacts, cli, io_utils
from adabert_jax.pipeline import runner, stages
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.nas import derive, genotype as genotype_lib, ops, search
from adabert_jax.train import checkpoints, sharding

flags.DEFINE_list("ops", ["conv3", "conv5", "dil_conv3", "max_pool3", "avg_pool3",
                          "identity"], "Operations to try, each on every edge.")
flags.DEFINE_list("depths", [], "Depths K to try (default: 1, 2, 3, 4, 6, 8 up to "
                  "search.k_max).")
_CONFIG = cli.define_config_flag(cli.default_config("paper"))


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
  fingerprint = search.search_fingerprint(config, teacher["checkpoint_id"])
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
