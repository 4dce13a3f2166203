"""Inference speed, size and FLOPs of models, compared in one run on one device.

The paper's protocol scaled to small machines: batch 128 at max_len 128 by default, every
model jitted, warmed up, then the median of repeated runs. Ratios within one run are what
to report: absolute times move with whatever else the machine is doing.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from adabert_jax import array_utils
from adabert_jax.data import batching
from adabert_jax.nas.costs import flops_from_cost_analysis


@dataclasses.dataclass
class BenchModel:
  name: str
  apply: Callable[[Any, dict], jax.Array]  # (params, batch) -> logits
  params: Any
  metric: float | None = None  # dev score, if known (None: speed only)


def random_batch(batch_size: int, max_len: int, vocab_size: int = 30522, seed: int = 0,
                 pair: bool = False) -> dict[str, np.ndarray]:
  """Token ids of full-length examples (every position real: the worst case)."""
  rng = np.random.default_rng(seed)
  ids = rng.integers(1000, vocab_size, (batch_size, max_len)).astype(np.int32)
  ids[:, 0] = 101
  types = np.zeros_like(ids)
  if pair:
    types[:, max_len // 2:] = 1
  return {"input_ids": ids, "token_type_ids": types,
          "attention_mask": np.ones_like(ids)}


def measure(model: BenchModel, batch: dict, repeats: int = 5, warmup: int = 1) -> dict:
  """Compile time, median latency, examples/s, parameters and XLA FLOPs of one model."""
  fn = jax.jit(model.apply)
  batch = jax.device_put(batch)
  params = jax.device_put(model.params)
  start = time.perf_counter()
  compiled = fn.lower(params, batch).compile()
  compile_s = time.perf_counter() - start
  flops = flops_from_cost_analysis(compiled.cost_analysis())
  for _ in range(warmup):
    jax.block_until_ready(compiled(params, batch))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(params, batch))
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  batch_size = int(batch["input_ids"].shape[0])
  return {"name": model.name, "params": array_utils.count_params(model.params), "flops": flops,
          # Microseconds kept: a tiny model's call is tens of them, and the speedups divide.
          "compile_s": round(compile_s, 2), "latency_ms": round(1000 * median, 3),
          "latency_ms_all": [round(1000 * t, 3) for t in times],
          "examples_per_s": round(batch_size / median, 1), "metric": model.metric}


def compare(models: list[BenchModel], batch_size: int = 128, max_len: int = 128,
            repeats: int = 5, pair: bool = False, log: Callable[[str], None] = print
            ) -> dict:
  """Measures every model on the same batch; speedup and size ratios against each one
  whose name is in the returned rows (the caller picks the references)."""
  batch = random_batch(batch_size, max_len, pair=pair)
  rows = []
  for model in models:
    log(f"benchmark: {model.name} (batch {batch_size}, max_len {max_len}) ...")
    rows.append(measure(model, batch, repeats))
    log(f"  {rows[-1]['latency_ms']:.1f} ms/batch, {rows[-1]['examples_per_s']:.0f} ex/s, "
        f"{rows[-1]['params'] / 1e6:.2f}M params, {rows[-1]['flops'] / 1e9:.2f} GFLOPs")
  for row in rows:
    row["speedup_vs"] = {r["name"]: round(r["latency_ms"] / row["latency_ms"], 2)
                         for r in rows}
    row["size_ratio_vs"] = {r["name"]: round(r["params"] / max(row["params"], 1), 2)
                            for r in rows}
  return {"batch_size": batch_size, "max_len": max_len, "repeats": repeats,
          "device": str(jax.devices()[0].device_kind), "backend": jax.default_backend(),
          "num_devices": 1, "models": rows}


def jitted_runtime(apply: Callable[[Any, dict], jax.Array], params: Any
                   ) -> Callable[[dict], np.ndarray]:
  """batch -> logits (blocking) of a JAX model, for `serving`."""
  fn, device_params = jax.jit(apply), jax.device_put(params)
  return lambda batch: np.asarray(fn(device_params, batch))


def serving(runtimes: list[tuple[str, Callable[[dict], Any]]], batch_size: int = 128,
            max_len: int = 128, requests: int = 200, pair: bool = False,
            log: Callable[[str], None] = print, real: dict[str, np.ndarray] | None = None
            ) -> list[dict]:
  """What a server sees, per runtime (name, batch -> logits, blocking): the median and p99
  latency of `requests` single requests one after another, and the throughput at
  `batch_size`; every input full length (the worst case). With `real` (a task's tokenized
  dev examples), each runtime gets a second row on those: the requests are random dev
  examples and the batches random dev batches, each cut to its length bucket
  (data/batching.py), as Student.predict cuts them. Only the figures, no ratios."""
  inputs = [("full length", [random_batch(1, max_len, seed=1, pair=pair)],
             random_batch(batch_size, max_len, seed=2, pair=pair))]
  if real is not None:
    inputs.append(("dev lengths", *_real_requests(real, batch_size, max_len, requests)))
  rows = []
  for lengths, singles, big in inputs:
    for name, call in runtimes:
      log(f"serving: {name} ({requests} requests of 1, then batches of {batch_size}, "
          f"{lengths}, max_len {max_len}) ...")
      for example in {b["input_ids"].shape: b for b in singles}.values():
        call(example)  # compile / warm up every shape
      call(big)
      times = []
      for i in range(requests):
        single = singles[i % len(singles)]
        start = time.perf_counter()
        call(single)
        times.append(time.perf_counter() - start)
      big_times = []
      for _ in range(3):
        start = time.perf_counter()
        call(big)
        big_times.append(time.perf_counter() - start)
      rows.append({"name": name, "inputs": lengths,
                   "batch1_median_ms": round(1000 * statistics.median(times), 3),
                   "batch1_p99_ms": round(1000 * float(np.percentile(times, 99)), 3),
                   "batch1_examples_per_s": round(1 / statistics.median(times), 1),
                   "batch_examples_per_s": round(batch_size / statistics.median(big_times),
                                                 1)})
      log(f"  batch 1: {rows[-1]['batch1_median_ms']:.2f} ms median, "
          f"{rows[-1]['batch1_p99_ms']:.2f} ms p99; batch {batch_size}: "
          f"{rows[-1]['batch_examples_per_s']:.0f} ex/s")
  return rows


def _real_requests(real: dict[str, np.ndarray], batch_size: int, max_len: int,
                   requests: int) -> tuple[list[dict], dict]:
  """(`requests` single dev examples, one dev batch of batch_size), seeded, each cut to its
  length bucket; examples are drawn with replacement when dev has fewer."""
  features = {name: real[name][:, :max_len] for name in batching.SEQUENCE_FEATURES}
  lengths = features["attention_mask"].sum(1)
  rng = np.random.default_rng(3)
  n = len(lengths)

  def cut(idx):
    return batching.trim(batching.take(features, idx), batching.bucket_for(
        lengths[idx], max_len, inference=True))

  singles = [cut(np.array([i])) for i in rng.choice(n, requests, replace=n < requests)]
  return singles, cut(np.sort(rng.choice(n, batch_size, replace=n < batch_size)))


def format_serving(rows: list[dict], batch_size: int) -> str:
  lines = [f"| runtime | inputs | batch 1 median ms | batch 1 p99 ms | batch 1 ex/s | batch "
           f"{batch_size} ex/s |", "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['name']} | {r.get('inputs', 'full length')} | "
                 f"{r['batch1_median_ms']:.2f} | {r['batch1_p99_ms']:.2f} | "
                 f"{r['batch1_examples_per_s']:.0f} | {r['batch_examples_per_s']:.0f} |")
  return "\n".join(lines)


# all-MiniLM-L6-v2's architecture (the offline teacher): 6 layers of width 384, 12 heads.
MINILM_SHAPE = {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                "intermediate_size": 1536}


def bert_random(name: str, num_classes: int = 2, seed: int = 0, **shape) -> BenchModel:
  """A BERT encoder with a mean-pooled head and random weights (speed does not depend on
  values); `shape` overrides BertConfig's defaults, which are bert-base-uncased's."""
  from transformers import BertConfig
  from transformers.models.bert import modeling_flax_bert

  from adabert_jax.teacher import bert

  config = BertConfig(**shape)
  module = modeling_flax_bert.FlaxBertModule(config=config, add_pooling_layer=False)
  ids = jnp.zeros((1, 8), jnp.int32)
  bert_params = jax.jit(module.init)(jax.random.key(seed), ids, ids, ids, ids, None)["params"]
  teacher = bert.Teacher(module, config.num_hidden_layers, config.hidden_size, num_classes,
                         name)
  params = {"bert": bert_params,
            "head": bert.init_head(jax.random.key(seed + 1), config.hidden_size, num_classes)}
  return BenchModel(name, lambda p, b: teacher.logits(p, b), params)


def bert_base_random(num_classes: int = 2, seed: int = 0) -> BenchModel:
  """BERT-base (12 x 768, 110M) with random weights, the paper's reference."""
  return bert_random("BERT-base (random weights)", num_classes, seed)


def format_table(bench: dict, references: tuple[str, ...] = ()) -> str:
  refs = [r for r in references if any(m["name"] == r for m in bench["models"])]
  head = ["model", "params", "GFLOPs", "ms/batch", "ex/s"] + [f"speedup vs {r}" for r in refs]
  lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
  for m in bench["models"]:
    cells = [m["name"], f"{m['params'] / 1e6:.2f}M", f"{m['flops'] / 1e9:.2f}",
             f"{m['latency_ms']:.1f}", f"{m['examples_per_s']:.0f}"]
    cells += [f"{m['speedup_vs'][r]:.1f}x" for r in refs]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)
