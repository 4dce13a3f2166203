"""Train the discrete student of the derived genotype (runs or reuses earlier stages, the
derive stage included).

  python experiments/train_student.py --task=sst2 --glue_dir=../shared/glue \
      --workdir=runs/sst2 --config=experiments/configs/default.py:cpu \
      [--config.student.init=scratch]

--genotype trains another architecture with the same data, loss and budget: a genotype.json
file, or plain_cnn:K (a chain of conv3 in each of K cells). Its weights are inherited from
the search's supernet (which holds every op of every edge) or, with
--config.student.init=scratch, fresh; then no search runs (a workdir with only a teacher,
its knowledge and the augmented copies is enough). It goes to --workdir/<name>, by default
<genotype>_<init>:

  python experiments/train_student.py ... --genotype=plain_cnn:3 --config.student.init=scratch

--config.student.seed_offset=N retrains the same student with another initialisation, batch
order and dropout (nothing upstream changes), into <name>_seedN: how far one training's
noise moves the dev score.
"""

from absl import flags

from adabert_jax import cli
from adabert_jax.pipeline import stages
from adabert_jax.data import pipeline as data_pipeline
from adabert_jax.errors import UserError
from adabert_jax.nas import derive, genotype as genotype_lib
from adabert_jax.nas import search as search_lib

flags.DEFINE_string("genotype", "", "Train this architecture instead of the searched one: a "
                    "genotype.json file, or plain_cnn:K.")
flags.DEFINE_string("name", "", "Output folder under --workdir (default: student, "
                    "student_<init>, or <genotype>_<init> with --genotype; then _seed<N> with "
                    "--config.student.seed_offset=N).")
_CONFIG = cli.define_config_flag(cli.default_config("paper"))


def main(argv):
  del argv
  config = cli.config_with_flags(_CONFIG.value)
  derive.check_config(config)
  workdir, overwrite = cli.require_workdir(), flags.FLAGS.overwrite
  init = config.student.init
  stages.check_student_init(init)  # before the name below is built from it
  is_pair = data_pipeline.task_from_config(config).is_pair
  supernet_cfg = search_lib.setup_from_config(config.search, is_pair).supernet
  geno, name = None, "student" if init == "inherit" else f"student_{init}"
  if flags.FLAGS.genotype:
    geno, label = genotype_lib.genotype_from_spec(flags.FLAGS.genotype, supernet_cfg.k_max,
                                                  supernet_cfg.num_nodes,
                                                  supernet_cfg.input_mode)
    if init == "inherit" and (geno.k_max, geno.num_nodes) != (supernet_cfg.k_max,
                                                             supernet_cfg.num_nodes):
      raise UserError(
          f"--genotype={flags.FLAGS.genotype} has k_max {geno.k_max} and num_nodes "
          f"{geno.num_nodes}, the search's supernet {supernet_cfg.k_max} and "
          f"{supernet_cfg.num_nodes}: inheriting needs the same; use "
          "--config.student.init=scratch.")
    name = f"{label}_{init}"
  if config.student.seed_offset:
    name += f"_seed{config.student.seed_offset}"
  name = flags.FLAGS.name or name
  task, splits, vocab = data_pipeline.load_task_data(config)
  teacher = stages.ensure_teacher(config, task, splits, workdir, overwrite)
  knowledge = stages.ensure_knowledge(config, task, splits, vocab, workdir, teacher,
                                      overwrite)
  if flags.FLAGS.genotype and init == "scratch":
    # A given architecture from fresh weights needs no search: only its fingerprint, the
    # same one the search would record, so a pipeline baseline of it is this very student.
    search_fingerprint = search_lib.search_fingerprint(config, teacher["checkpoint_id"],
                                                       is_pair)
  else:
    search = stages.ensure_search(config, task, splits, knowledge, workdir, teacher,
                                  overwrite, vocab=vocab)
    search_fingerprint = search["fingerprint"]
    if not flags.FLAGS.genotype:
      stages.ensure_derive(config, task, splits, knowledge, workdir, search, overwrite)
  augmented = stages.ensure_augmented(config, splits, vocab, workdir, teacher, knowledge,
                                      overwrite)
  result = stages.ensure_student(config, task, splits, knowledge, workdir, search_fingerprint,
                                 geno=geno, name=name, augmented=augmented, overwrite=overwrite)
  print(f"{name}: dev {result['dev']}, {result['params_exported'] / 1e6:.2f}M parameters "
        f"(exported), genotype {result['genotype']}")


if __name__ == "__main__":
  cli.run(main)
