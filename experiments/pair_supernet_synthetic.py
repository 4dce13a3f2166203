"""Does the pair supernet learn a pair task that only a comparing model can learn?

  python experiments/pair_supernet_synthetic.py [--dropouts=0.3,0.1,0.0] [--fixed]
                                                [--seeds=0] [--steps=600] [--out=out.json]

The task is the one tests/nas/test_pairs.py gives the student (nas/testing.synthetic_pairs: is
sentence B sentence A's words shuffled?), with a teacher that knows the answer (logits +-2,
every probe the same). The supernet is the `:pairs` preset's search (its loss, optimizers,
schedules, arch warm-up share; siamese) at a smaller width, trained by the search step for
--steps batches of 64, once per dropout and seed; --fixed trains it under one architecture,
the plain CNN of depth 3 (k_max if less), instead of sampling. It is then scored on 1,024 new pairs
under that plain CNN and under alpha's genotype. Random embedding tables stand in for the
teacher's, so this needs no run folder and takes 6 to 12 minutes per dropout on 2 CPU cores.
"""

import argparse
import dataclasses
import time
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from adabert_jax import io_utils
from adabert_jax.configs import default as default_config
from adabert_jax.nas import genotype as genotype_lib, ops, search, search_step, supernet, testing

VOCAB, POSITIONS, TEACHER_WIDTH, TEACHER_LAYERS, CLASSES = 60, 64, 24, 6, 2
BATCH_SIZE, TEST_PAIRS = 64, 1024


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dropouts", default="0.3,0.1,0.0",
                      help="comma-separated search.dropout values, one run each")
  parser.add_argument("--fixed", action="store_true",
                      help="train under the plain CNN of depth 3 (k_max if less), no sampling")
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--hidden", type=int, default=64)
  parser.add_argument("--k_max", type=int, default=0, help="0: the preset's (8)")
  parser.add_argument("--seeds", default="0", help="comma-separated; one search each")
  parser.add_argument("--out", default="", help="write the results as JSON here")
  args = parser.parse_args()
  if args.hidden < 1 or args.k_max < 0:
    parser.error("--hidden must be >= 1 and --k_max >= 0")
  epochs = default_config.get_config("pairs").search.epochs
  if args.steps < 200 or args.steps % epochs:
    parser.error(f"--steps must be >= 200 (the report averages the first and last 100) and a "
                 f"multiple of the preset's search.epochs, {epochs} (its schedules run by epoch)")
  try:
    args.dropouts = [float(d) for d in args.dropouts.split(",")]
    args.seeds = [int(seed) for seed in args.seeds.split(",")]
  except ValueError:
    parser.error(f"--dropouts and --seeds: expected comma-separated numbers such as 0.3,0.1 "
                 f"and 0,1,2, got {args.dropouts!r} and {args.seeds!r}")
  if not all(0.0 <= d < 1.0 for d in args.dropouts):
    parser.error("--dropouts must each be in [0, 1)")
  return args


def with_teacher(pairs: dict) -> dict:
  """A teacher that knows the answer: logits +-2 towards the label, every probe the same."""
  sign = 2.0 * np.asarray(pairs["label"], np.float32) - 1.0
  logits = np.stack([-2.0 * sign, 2.0 * sign], axis=-1)
  return {**pairs, "teacher_logits": jnp.asarray(logits),
          "probe_logits": jnp.asarray(np.repeat(logits[:, None], TEACHER_LAYERS + 1, 1))}


def accuracy(params, emb, pairs, geno, cfg) -> float:
  sample = {k: jnp.asarray(v) for k, v in genotype_lib.genotype_to_onehots(geno, cfg).items()}
  logits = supernet.supernet_apply(params, emb, pairs, sample, cfg, train=False)["logits"]
  return float(np.mean(np.asarray(logits).argmax(-1) == np.asarray(pairs["label"])))


def run(dropout: float, args) -> Iterator[dict]:
  """One search per seed in args.seeds (the step compiled once), yielding a result each."""
  config = default_config.get_config("pairs").search
  setup = search.setup_from_config(config, is_pair=True)
  # Without the exact-match flags (on in the preset): they would mark every word of a
  # shuffled copy and give the answer away, and the question is whether the cells compare.
  cfg = dataclasses.replace(setup.supernet, hidden=args.hidden, dropout=dropout,
                            k_max=args.k_max or setup.supernet.k_max, exact_match=False)
  plain = genotype_lib.plain_cnn_genotype(min(3, cfg.k_max), cfg.k_max, cfg.num_nodes,
                                          input_mode=cfg.input_mode)
  # The preset's schedules over args.steps, as search.epochs epochs.
  optimizer, search_cfg = search.step_schedules(config, setup, args.steps // config.epochs)
  sampler_kw = {}
  if args.fixed:
    fixed = {k: jnp.asarray(v) for k, v in genotype_lib.genotype_to_onehots(plain, cfg).items()}
    sampler_kw["sampler"] = lambda key, arch, temperature: fixed
  # beta is 0 in the preset, so the op costs never enter the loss.
  step_fn = search_step.make_search_step(cfg, setup.loss, search_cfg, optimizer,
                                         np.zeros(ops.NUM_OPS), **sampler_kw)
  for seed in args.seeds:
    emb = testing.random_emb_tables(jax.random.key(seed + 1), VOCAB, POSITIONS, TEACHER_WIDTH)
    state = search_step.init_search_state(jax.random.key(seed), cfg, TEACHER_WIDTH, CLASSES,
                                          optimizer)
    train = with_teacher(testing.synthetic_pairs(args.steps * BATCH_SIZE, seed))
    test = testing.synthetic_pairs(TEST_PAIRS, seed + 1000)
    key, ce, start = jax.random.key(seed + 2), [], time.perf_counter()
    for step in range(args.steps):
      batch = {k: v[step * BATCH_SIZE:(step + 1) * BATCH_SIZE] for k, v in train.items()}
      state, metrics = step_fn(state, batch, emb, key, step)
      ce.append(float(metrics["ce"]))
    alpha_geno = genotype_lib.derive_genotype(state.params["arch"], cfg)
    yield {
        "dropout": dropout, "seed": seed, "fixed": args.fixed, "steps": args.steps,
        "hidden": args.hidden, "k_max": cfg.k_max, "plain_cnn_depth": plain.depth,
        "ce_first_100": float(np.mean(ce[:100])), "ce_last_100": float(np.mean(ce[-100:])),
        "accuracy_plain_cnn": accuracy(state.params, emb, test, plain, cfg),
        "accuracy_alpha_genotype": accuracy(state.params, emb, test, alpha_geno, cfg),
        "alpha_genotype": f"K={alpha_geno.depth} {genotype_lib.ops_summary(alpha_geno)}",
        "seconds": time.perf_counter() - start}


def main():
  args = parse_args()
  results = []
  for dropout in args.dropouts:
    for r in run(dropout, args):
      results.append(r)
      how = "fixed: the plain CNN" if r["fixed"] else "sampled"
      print(f"dropout {r['dropout']:.2f}, seed {r['seed']} ({how}): "
            f"training CE {r['ce_first_100']:.3f} -> {r['ce_last_100']:.3f}; held-out "
            f"accuracy under the plain CNN K={r['plain_cnn_depth']} "
            f"{100 * r['accuracy_plain_cnn']:.1f}, under alpha's genotype "
            f"{100 * r['accuracy_alpha_genotype']:.1f} ({r['alpha_genotype']}); "
            f"{r['seconds']:.0f} s", flush=True)
      if args.out:  # after every search, so a cut run keeps what it finished
        io_utils.save_json_atomic(args.out, {"results": results})


if __name__ == "__main__":
  main()
