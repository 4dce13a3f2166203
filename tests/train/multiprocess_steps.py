"""A few search steps and a few student steps on every device of the run, as run_search and
train_student set them up (each process feeding its own rows of every batch), and a split
tokenized through the token cache: run by tests/train/test_multiprocess.py in 1 process x 4
devices and in 2 processes x 2 devices (this file is the worker: `python
tests/train/multiprocess_steps.py PROCESS_ID NUM_PROCESSES PORT OUT`), whose results must
agree. Every process writes what it tokenized to OUT.tokens<PROCESS_ID>."""

import os
import pickle
import sys

STEPS = 3
TIMED_STEPS = 20
BATCH, LENGTH = 8, 12  # 2 examples per device on 4 devices
TEACHER_WIDTH, VOCAB, POSITIONS, CLASSES, TEACHER_LAYERS = 24, 50, 32, 2, 4
DEVICES = 4


def local_rows(batch, mesh):
  """This process's rows of a global batch, as the batch iterators give them
  (data/batching.py with rows=sharding.process_rows)."""
  import numpy as np

  from adabert_jax.data import batching
  from adabert_jax.train import sharding

  n = len(next(iter(batch.values())))
  return batching.take(batch, np.arange(n), sharding.process_rows(mesh, n))


def search_steps():
  import jax
  import jax.numpy as jnp
  import numpy as np

  from adabert_jax.nas import costs, losses, search_step, supernet, testing
  from adabert_jax.train import sharding

  cfg = supernet.SupernetConfig(hidden=16, k_max=2, dropout=0.3)
  emb_tables = testing.random_emb_tables(jax.random.key(1), VOCAB, POSITIONS, TEACHER_WIDTH)
  op_costs = costs.op_cost_table(cfg.hidden, LENGTH).normalised
  batches = [jax.tree.map(np.asarray, testing.random_search_batch(
      seed, BATCH, LENGTH, VOCAB, CLASSES, TEACHER_LAYERS, pair=seed % 2 == 1))
             for seed in range(2)]
  mesh = sharding.make_mesh()
  optimizer = search_step.make_optimizer(search_step.OptimizerConfig(), STEPS)
  step_fn = search_step.make_search_step(cfg, losses.LossConfig(),
                                         search_step.SearchConfig(total_steps=STEPS),
                                         optimizer, op_costs, donate_state=True)
  state = search_step.init_search_state(jax.random.key(0), cfg, TEACHER_WIDTH, CLASSES,
                                        optimizer)
  emb = sharding.replicate({k: jnp.asarray(np.asarray(v)) for k, v in emb_tables.items()},
                           mesh)
  state = sharding.replicate(state, mesh)
  history = []
  for step in range(STEPS):
    batch = sharding.shard_batch(local_rows(batches[step % 2], mesh), mesh)
    state, metrics = step_fn(state, batch, emb, jax.random.key(2), step)
    history.append({k: sharding.to_host(v) for k, v in metrics.items()})
  final = jax.tree.map(sharding.to_host, state)
  # Step time once compiled (the figure docs/multi-host.md reports; not asserted).
  import time
  batch = sharding.shard_batch(local_rows(batches[0], mesh), mesh)
  jax.block_until_ready(step_fn(state, batch, emb, jax.random.key(2), STEPS))
  state = search_step.init_search_state(jax.random.key(0), cfg, TEACHER_WIDTH, CLASSES,
                                        optimizer)
  state = sharding.replicate(state, mesh)
  start = time.perf_counter()
  for step in range(TIMED_STEPS):
    state, metrics = step_fn(state, batch, emb, jax.random.key(2), 0)
  jax.block_until_ready(metrics)
  history[-1]["ms_per_step"] = 1000 * (time.perf_counter() - start) / TIMED_STEPS
  return history, final


def student_steps(pair: bool = False):
  """pair: a sentence-pair student (siamese), whose two views the host cuts from each
  process's rows (inputs.host_batch) at a length every process must agree on."""
  import jax
  import jax.numpy as jnp
  import ml_collections
  import numpy as np

  from adabert_jax.nas import genotype, inputs, testing
  from adabert_jax.student import model, train
  from adabert_jax.train import sharding

  geno = genotype.Genotype(ops=((2, 0, "conv3"), (2, 1, "max_pool3"), (3, 2, "conv5"),
                                (3, 0, "identity"), (4, 3, "dil_conv3"), (4, 1, "avg_pool3")),
                           depth=2, k_max=2, num_nodes=3,
                           input_mode="siamese" if pair else "single")
  # Pairs as long as the position table, so the sentences' views are 16 or 32 long.
  length = POSITIONS if pair else LENGTH
  cfg = ml_collections.ConfigDict(dict(learning_rate=0.02, momentum=0.9, weight_decay=3e-4,
                                       grad_clip=5.0, dropout=0.1, gamma=0.8,
                                       kd_temperature=1.0, final_kd_weight=0.5))
  emb_tables = testing.random_emb_tables(jax.random.key(1), VOCAB, POSITIONS, TEACHER_WIDTH)
  mesh = sharding.make_mesh()
  tx = train.make_optimizer(cfg, STEPS)
  emb = sharding.replicate({k: jnp.asarray(np.asarray(v)) for k, v in emb_tables.items()},
                           mesh)
  params = sharding.replicate(model.init_student(jax.random.key(3), geno, 16, TEACHER_WIDTH,
                                                 CLASSES), mesh)
  opt_state = tx.init(params)
  step_fn = train.make_train_step(cfg, geno, tx, emb)
  losses = []
  for step in range(STEPS):
    batch = jax.tree.map(np.asarray, testing.random_search_batch(
        10 + step, BATCH, length, VOCAB, CLASSES, TEACHER_LAYERS, pair=pair))
    batch = inputs.host_batch(local_rows(batch, mesh), geno.input_mode)
    params, opt_state, terms = step_fn(params, opt_state, sharding.shard_batch(batch, mesh),
                                       jax.random.fold_in(jax.random.key(4), step))
    losses.append({k: sharding.to_host(v) for k, v in terms.items()})
  return losses, jax.tree.map(sharding.to_host, params)


def tokenized(cache_dir: str) -> dict:
  """A split through the token cache twice (the second time every process finds it):
  how many examples this process tokenized each time, and the arrays."""
  from adabert_jax import assets
  from adabert_jax.data import sources, tokenization
  from adabert_jax.data.tasks import get_task

  task, source = get_task("rotten_tomatoes"), sources.MovieReviewsSource()
  vocab = tokenization.load_vocab(assets.default_teacher_dir())
  counts, tokenize = [], tokenization.tokenize

  def counting(raw, *args):
    counts.append(len(raw))
    return tokenize(raw, *args)

  tokenization.tokenize = counting
  first = tokenization.load_tokenized(task, "dev", source, vocab, 32, cache_dir)
  before_again = len(counts)
  again = tokenization.load_tokenized(task, "dev", source, vocab, 32, cache_dir)
  return {"first": counts[:before_again], "again": counts[before_again:], "arrays": first,
          "same_again": all((first[k] == again[k]).all() for k in first)}


def main(process_id: int, num_processes: int, port: int, out: str) -> None:
  os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count="
                             f"{DEVICES // num_processes}")
  os.environ["JAX_PLATFORMS"] = "cpu"
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  import jax

  from adabert_jax.train import distributed

  if num_processes > 1:
    distributed.initialize(f"127.0.0.1:{port}", num_processes, process_id)
  assert len(jax.devices()) == DEVICES and jax.process_count() == num_processes
  with open(f"{out}.tokens{process_id}", "wb") as f:
    pickle.dump(tokenized(f"{out}.cache"), f)
  results = {"search": search_steps(), "student": student_steps(),
             "pair_student": student_steps(pair=True),
             "local_devices": len(jax.local_devices())}
  if distributed.is_main_process():
    with open(out, "wb") as f:
      pickle.dump(results, f)


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
