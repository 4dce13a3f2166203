"""The benchmark's speed protocol without a trained run: student architectures, a
MiniLM-shaped teacher and BERT-base, all with random weights, timed in one run on one device.

  python experiments/bench_random_weights.py --genotypes=plain_cnn:5,runs/sst2/search/genotype.json \
      [--batch_size=128 --max_len=128 --pair --hidden=128 --repeats=5 --out=bench.json]

Speed does not depend on the weights' values, so this measures on a machine that has no
trained artefacts (a borrowed GPU, a new laptop) what experiments/benchmark.py measures on a
finished run: every model jitted, warmed up, the median of --repeats calls on one batch of
full-length examples; the students in their exported form (embedding folded into the
teacher's tables). --pair gives every example two sentences of max_len / 2 tokens, which
the pair students read as two views of max_len, as the pipeline's benchmark does.
"""

import argparse

import jax

from adabert_jax import io_utils
from adabert_jax.eval import benchmark
from adabert_jax.nas import genotype, inputs
from adabert_jax.student import model
from adabert_jax.teacher import bert


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--genotypes", default="plain_cnn:3",
                      help="comma-separated: plain_cnn:K or a genotype.json path")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--max_len", type=int, default=128)
  parser.add_argument("--pair", action="store_true", help="sentence-pair inputs")
  parser.add_argument("--pair_mode", default=inputs.DEFAULT_PAIR_MODE,
                      choices=inputs.PAIR_MODES, help="the students' pair input (with --pair)")
  parser.add_argument("--hidden", type=int, default=128, help="the students' width")
  parser.add_argument("--k_max", type=int, default=8)
  parser.add_argument("--num_nodes", type=int, default=3)
  parser.add_argument("--num_classes", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--no_bert_base", action="store_true", help="skip BERT-base")
  parser.add_argument("--out", default="", help="write the results as JSON here")
  args = parser.parse_args()
  for name in ("batch_size", "max_len", "hidden", "repeats"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be >= 1")
  return args


def student_random(geno: genotype.Genotype, hidden: int, teacher: benchmark.BenchModel,
                   num_classes: int = 2, seed: int = 0, name: str = ""
                   ) -> benchmark.BenchModel:
  """A student of genotype `geno` with random weights in its exported form (the embedding
  folded into `teacher`'s word and position tables, as a trained student ships)."""
  emb_tables = bert.embedding_tables(teacher.params)
  params = model.export(
      model.init_student(jax.random.key(seed), geno, hidden, emb_tables["word"].shape[1],
                         num_classes), emb_tables)
  return benchmark.BenchModel(name or f"student (K={geno.depth})",
                              lambda p, b: model.student_apply(p, b, geno)["logits"], params)


def main():
  args = parse_args()
  mode = inputs.input_mode(args.pair_mode, args.pair)
  genotypes = [genotype.genotype_from_spec(spec.strip(), args.k_max, args.num_nodes, mode)
               for spec in args.genotypes.split(",") if spec.strip()]
  teacher = benchmark.bert_random("teacher shape (6x384, random weights)", args.num_classes,
                                  **benchmark.MINILM_SHAPE)
  models = [student_random(geno, args.hidden, teacher, args.num_classes,
                           name=f"student {label} (K={geno.depth})")
            for geno, label in genotypes]
  models.append(teacher)
  if not args.no_bert_base:
    models.append(benchmark.bert_base_random(args.num_classes))
  result = benchmark.compare(models, args.batch_size, args.max_len, args.repeats,
                             pair=args.pair)
  result["pair_mode"] = mode
  references = tuple(m.name for m in models[len(genotypes):])
  print(benchmark.format_table(result, references))
  if args.out:
    io_utils.save_json_atomic(args.out, result)


if __name__ == "__main__":
  main()
