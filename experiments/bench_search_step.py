"""Search-step benchmark: compile time, step time and throughput of both supernet modes.

  python experiments/bench_search_step.py [--batch_size=64 --max_len=64 --repeats=10]
                                          [--out=bench_search_step.json]

Random inputs at the paper's supernet size (hidden 128, k_max 8) with a MiniLM-sized teacher
(width 384, vocabulary 30522, 6 layers), two classes. For each mode the step is jitted once
(AOT compile timed), warmed up, then timed over --repeats calls with advancing step numbers
(so the sampled architecture and depth change as in a real search) and new batches.

FLOPs: XLA's cost analysis counts a loop body once and a conditional at its most expensive
branch, so on the real (scanned, switched) step it is not the step's work; it is reported as
"xla_flops_raw" only. For the sampled mode the benchmark also compiles the same step with the
loops unrolled and the architecture indices pinned to one sample of the timed steps' median
depth (only that sample's ops are traced, so XLA counts exactly what it executes), times the
real step on that sample, and reports achieved GFLOP/s against a 2048 x 2048 float32 matmul
measured in the same run.
"""

import argparse
import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from adabert_jax import io_utils
from adabert_jax.nas import costs, gumbel, losses, search_step, supernet, testing

TOTAL_STEPS = 10_000  # the schedules' horizon; only the first few steps run
NUM_BATCHES = 4


def parse_args():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--max_len", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--hidden", type=int, default=128)
  parser.add_argument("--k_max", type=int, default=8)
  parser.add_argument("--teacher_width", type=int, default=384)
  parser.add_argument("--vocab_size", type=int, default=30522)
  parser.add_argument("--num_classes", type=int, default=2)
  parser.add_argument("--teacher_layers", type=int, default=6)
  parser.add_argument("--modes", default="sampled,all_ops")
  parser.add_argument("--remat", action="store_true", help="jax.checkpoint each cell")
  parser.add_argument("--no_flops", action="store_true",
                      help="skip the unrolled compile that counts the sampled step's FLOPs")
  parser.add_argument("--out", default="", help="write the results as JSON here")
  args = parser.parse_args()
  for name in ("batch_size", "max_len", "repeats", "hidden", "k_max"):
    if getattr(args, name) < 1:
      parser.error(f"--{name} must be >= 1")
  for mode in args.modes.split(","):
    if mode not in supernet.MODES:
      parser.error(f"--modes: unknown mode {mode!r}, use {','.join(supernet.MODES)}")
  return args


def _block(tree):
  return jax.block_until_ready(tree)


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
  """Achieved GFLOP/s of an n x n float32 matmul (median of `repeats`)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  _block(matmul(a, b))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    _block(matmul(a, b))
    times.append(time.perf_counter() - start)
  return 2 * n ** 3 / statistics.median(times) / 1e9


def pinned_sampler(ops_index, depth_index):
  """A sampler whose indices are trace-time constants (the one-hots keep their gradient).

  NumPy, not jnp: inside jit, jnp.asarray of a constant is a tracer, which the supernet cannot
  dispatch on in Python.
  """
  def sample(key, arch, temperature):
    drawn = gumbel.sample_architecture(key, arch, temperature)
    return dict(drawn, ops_index=np.asarray(ops_index, np.int32),
                depth_index=np.asarray(depth_index, np.int32))
  return sample


def bench_mode(mode, args, emb_tables, batches, op_costs):
  cfg = supernet.SupernetConfig(hidden=args.hidden, k_max=args.k_max, mode=mode,
                                remat=args.remat)
  loss_cfg, search_cfg = losses.LossConfig(), search_step.SearchConfig(TOTAL_STEPS)
  optimizer = search_step.make_optimizer(search_step.OptimizerConfig(), TOTAL_STEPS)
  state = search_step.init_search_state(jax.random.key(0), cfg, args.teacher_width,
                                        args.num_classes, optimizer)
  step_fn = search_step.make_search_step(cfg, loss_cfg, search_cfg, optimizer, op_costs,
                                         jit=False)
  traces = []

  def counted_step(*step_args):
    traces.append(1)  # Python side effect: runs once per trace
    return step_fn(*step_args)

  jitted = jax.jit(counted_step)
  key = jax.random.key(1)
  start = time.perf_counter()
  compiled = jitted.lower(state, batches[0], emb_tables, key, 0).compile()
  compile_s = time.perf_counter() - start
  xla_flops_raw = costs.flops_from_cost_analysis(compiled.cost_analysis())

  for step in range(args.warmup):
    state, _ = _block(jitted(state, batches[step % NUM_BATCHES], emb_tables, key, step))
  times, depths = [], []
  for r in range(args.repeats):
    step = args.warmup + r
    start = time.perf_counter()
    state, metrics = _block(jitted(state, batches[step % NUM_BATCHES], emb_tables, key, step))
    times.append(time.perf_counter() - start)
    depths.append(int(metrics["depth"]))
  median_s = statistics.median(times)
  result = {
      "mode": mode, "compile_s": compile_s, "median_step_s": median_s,
      "mean_step_s": statistics.mean(times), "examples_per_s": args.batch_size / median_s,
      "sampled_depths": depths, "xla_flops_raw": xla_flops_raw,
      "traces": len(traces), "cache_size": jitted._cache_size(),
      "steps_run": args.warmup + args.repeats + 1,
  }

  if mode == "sampled" and not args.no_flops:
    result.update(_fixed_sample_flops(cfg, loss_cfg, search_cfg, optimizer, op_costs, state,
                                      jitted, key, args, emb_tables, batches,
                                      target_depth=int(statistics.median_low(depths))))
    result["traces"], result["cache_size"] = len(traces), jitted._cache_size()
  return result


def _fixed_sample_flops(cfg, loss_cfg, search_cfg, optimizer, op_costs, state, jitted, key,
                        args, emb_tables, batches, target_depth):
  """FLOPs of the sampled step on one architecture sample, and the real step's time on it.

  The sample is the first one after the timed steps whose depth is target_depth (the timed
  steps' median), so that its GFLOP/s is representative: a shallow sample's step is dominated
  by the optimizer's pass over every op's weights, which costs no FLOPs to speak of.
  """
  def draw(step):
    sample_key, _ = jax.random.split(jax.random.fold_in(key, step))
    temperature = search_cfg.temperature(step)
    return gumbel.sample_architecture(sample_key, state.params["arch"], temperature)

  first = args.warmup + args.repeats  # step numbers not timed above
  step = next((s for s in range(first, first + 500)
               if int(draw(s)["depth_index"]) + 1 == target_depth), first)
  sample = draw(step)
  ops_index, depth_index = np.asarray(sample["ops_index"]), int(sample["depth_index"])
  unrolled = dataclasses.replace(cfg, unroll=True)
  counting_step = search_step.make_search_step(
      unrolled, loss_cfg, search_cfg, optimizer, op_costs,
      sampler=pinned_sampler(ops_index, depth_index))
  start = time.perf_counter()
  flops = costs.flops_from_cost_analysis(
      counting_step.lower(state, batches[0], emb_tables, key, step).compile().cost_analysis())
  count_compile_s = time.perf_counter() - start
  # The real (scanned) step on the same sample: same state, key and step each time.
  times = []
  for r in range(max(3, args.repeats // 2)):
    start = time.perf_counter()
    _, metrics = _block(jitted(state, batches[r % NUM_BATCHES], emb_tables, key, step))
    times.append(time.perf_counter() - start)
  assert int(metrics["depth"]) == depth_index + 1
  median_s = statistics.median(times)
  return {"fixed_sample": {"step": step, "depth": depth_index + 1,
                           "ops_index": ops_index.tolist(), "flops": flops,
                           "median_step_s": median_s, "gflops_per_s": flops / median_s / 1e9,
                           "counting_compile_s": count_compile_s}}


def main():
  args = parse_args()
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} x{jax.device_count()}, "
        f"{os.cpu_count()} CPUs; batch {args.batch_size}, max_len {args.max_len}, hidden "
        f"{args.hidden}, k_max {args.k_max}, teacher width {args.teacher_width}, vocab "
        f"{args.vocab_size}, remat {args.remat}", flush=True)
  emb_tables = testing.random_emb_tables(jax.random.key(2), args.vocab_size,
                                         max(512, args.max_len), args.teacher_width)
  batches = [testing.random_search_batch(seed, args.batch_size, args.max_len,
                                         args.vocab_size, args.num_classes,
                                         args.teacher_layers, pair=seed % 2 == 1)
             for seed in range(NUM_BATCHES)]
  op_costs = costs.op_cost_table(args.hidden, args.max_len).normalised

  matmul = matmul_gflops()
  results = {}
  for mode in args.modes.split(","):
    print(f"benchmarking {mode} ...", flush=True)
    results[mode] = bench_mode(mode, args, emb_tables, batches, op_costs)

  print()
  print(f"{'mode':8s} {'compile s':>9s} {'median step s':>13s} {'examples/s':>10s} "
        f"{'traces':>6s} {'cache':>5s}  sampled depths")
  for mode, r in results.items():
    print(f"{mode:8s} {r['compile_s']:9.1f} {r['median_step_s']:13.4f} "
          f"{r['examples_per_s']:10.1f} {r['traces']:6d} {r['cache_size']:5d}  "
          f"{r['sampled_depths'] if mode == 'sampled' else '(all cells run)'}")
  summary = {"matmul_2048_gflops_per_s": matmul}
  if "sampled" in results and "all_ops" in results:
    ratio = results["sampled"]["examples_per_s"] / results["all_ops"]["examples_per_s"]
    summary["sampled_over_all_ops_speed"] = ratio
    print(f"sampled / all_ops speed: {ratio:.1f}x")
  fixed = results.get("sampled", {}).get("fixed_sample")
  if fixed:
    summary["sampled_gflops_fraction_of_matmul"] = fixed["gflops_per_s"] / matmul
    print(f"sampled step on one sample (depth {fixed['depth']}): "
          f"{fixed['flops'] / 1e9:.2f} GFLOP (XLA, unrolled and pinned), "
          f"{fixed['median_step_s']:.4f} s -> {fixed['gflops_per_s']:.1f} GFLOP/s")
  print(f"2048x2048 float32 matmul: {matmul:.1f} GFLOP/s"
        + (f"; the sampled step reaches {summary['sampled_gflops_fraction_of_matmul']:.1%} "
           "of it" if fixed else ""))
  for mode, r in results.items():
    print(f"{mode}: XLA raw cost analysis of the scanned step {r['xla_flops_raw'] / 1e9:.3f} "
          "GFLOP (a loop body counted once: not the step's work)")
  if args.out:
    io_utils.save_json_atomic(args.out, {"args": vars(args), "jax": jax.__version__,
                                         "results": results, "summary": summary})
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
