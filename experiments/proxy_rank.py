"""Would a short training of each cell on its own rank cells as their full training does?

DARTS picks its final cell among a few candidates by training each briefly on its own and
scoring it on held-out data. Here the supernet's held-out loss ranks cells in the reverse
order of their students' dev scores (docs/search-on-cpu.md), so this asks whether that
cheaper proxy agrees instead. Each model's cell (a student folder of --workdir, or
RUNDIR:name, as in experiments/compare.py) is trained from scratch for --proxy_steps
batches of the search's training split, with the student's loss and optimiser, and scored
on the search's held-out examples (search.holdout; no dev data): cross-entropy against the
labels, accuracy. Use the --config the search ran with (for its held-out split):

  python experiments/proxy_rank.py --task=sst2 --glue_dir=../shared/glue --workdir=runs/sst2 \\
      --config=experiments/configs/default.py:cpu --models=student,random_arch,plain_cnn

The dev column is each model's recorded dev score after its full training, for comparison.
--seeds trains each cell once per seed (its initialisation and batch order; the held-out
split stays the config's), to show how far the proxy's own noise reaches.
"""

import time

from absl import flags

from adabert_jax import cli
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.nas import genotype as genotype_lib, search
from adabert_jax.pipeline import stages

flags.DEFINE_list("models", "student,random_arch,plain_cnn",
                  "Trained models whose cells to train briefly (a student folder of "
                  "--workdir, or RUNDIR:name).")
flags.DEFINE_integer("proxy_steps", 500, "Training batches per cell (student.batch_size "
                     "each).")
flags.DEFINE_list("seeds", [], "Seeds of the brief training, one row per cell and seed "
                  "(default: the config's seed, as the proxy derive uses).")
flags.DEFINE_integer("min_tokens", 0, "Also score the held-out examples of at least this "
                     "many tokens on their own (0 = no).")
_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  workdir = cli.require_workdir()
  if flags.FLAGS.proxy_steps < 1:
    raise UserError(f"--proxy_steps must be at least 1, got {flags.FLAGS.proxy_steps}.")
  try:
    seeds = [int(s) for s in flags.FLAGS.seeds] or [config.seed]
  except ValueError:
    raise UserError(f"--seeds={','.join(flags.FLAGS.seeds)}: give integers, e.g. "
                    "--seeds=0,1,2.") from None
  task, splits, vocab = data_pipeline.load_task_data(config)
  teacher = stages.ensure_teacher(config, task, splits, workdir)
  knowledge = stages.ensure_knowledge(config, task, splits, vocab, workdir, teacher)
  train, held = search.search_and_holdout(config, splits, knowledge["knowledge"])
  if not len(held["label"]):
    raise UserError("proxy_rank.py scores the search's held-out examples, and this config "
                    "keeps none: pass the search's --config.search.holdout (> 0).")
  emb_tables = knowledge["emb_tables"]
  print(f"{task.name}: each cell trained from scratch for {flags.FLAGS.proxy_steps} batches "
        f"of {config.student.batch_size} from the search's {len(train['label'])} training "
        f"examples, scored on its {len(held['label'])} held-out ones")
  min_tokens = flags.FLAGS.min_tokens
  long_held = stages.long_examples(held, min_tokens) if min_tokens else None
  long_columns = (f" CE, acc on the {len(long_held['label'])} of >= {min_tokens} tokens |"
                  if min_tokens else "")
  print("| model | K | ops | seed | held-out CE | held-out acc |" + long_columns
        + " seconds | dev after full training |")
  print("|---|---|---|---|---|---|" + ("---|" if min_tokens else "") + "---|---|")
  for spec in flags.FLAGS.models:
    geno, result = stages.trained_cell(spec, workdir, "--models")
    for seed in seeds:
      start = time.time()
      params = stages.proxy_trained(config, task, geno, train, emb_tables,
                                    flags.FLAGS.proxy_steps, seed)
      scores = stages.heldout_scores(params, geno, held, emb_tables,
                                     config.student.batch_size)
      long = (stages.heldout_scores(params, geno, long_held, emb_tables,
                                    config.student.batch_size) if min_tokens else None)
      print(f"| {spec} | {geno.depth} | {genotype_lib.ops_summary(geno)} | {seed} | "
            f"{scores['ce']:.4f} | {scores['accuracy']:.2f} |"
            + (f" {long['ce']:.4f}, {long['accuracy']:.2f} |" if long else "")
            + f" {time.time() - start:.0f} | {result['dev']['score']:.2f} |", flush=True)


if __name__ == "__main__":
  cli.run(main)
