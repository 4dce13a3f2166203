"""The discrete student, and the whole pipeline on a tiny teacher."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from adabert_jax import artefacts
from adabert_jax.nas import genotype as genotype_lib, supernet, testing
from adabert_jax.student import export, model
from tests.helpers import REPO_ROOT


def _searched(seed=0):
  cfg = supernet.SupernetConfig(hidden=16, k_max=3, num_nodes=3, dropout=0.0)
  params = supernet.init_supernet(jax.random.key(seed), cfg, 24, 2)
  params["arch"]["alpha_ops"] = jax.random.normal(jax.random.key(seed + 3), (9, 10))
  params["arch"]["alpha_depth"] = jnp.array([0.0, 2.0, 0.0])
  return cfg, params


def test_student_equals_supernet_under_the_same_architecture_and_weights():
  cfg, params = _searched()
  emb = testing.random_emb_tables(jax.random.key(1), 100, 32, 24)
  batch = testing.random_search_batch(0, 4, 12, 100, 2, 6, pair=True)
  geno = genotype_lib.derive_genotype(params["arch"], cfg)
  fixed = supernet.supernet_apply(params, emb, batch,
                                  genotype_lib.genotype_to_onehots(geno, cfg), cfg,
                                  train=False)
  student = model.from_supernet(params, geno, cfg)
  out = model.student_apply(student, batch, geno, emb_tables=emb)
  chex.assert_shape(out["logits"], (4, 2))
  chex.assert_shape(out["layer_logits"], (4, geno.depth, 2))
  np.testing.assert_allclose(out["logits"], fixed["logits"], atol=1e-5)
  np.testing.assert_allclose(out["layer_logits"], fixed["layer_logits"][:, :geno.depth],
                             atol=1e-5)
  # The exported form (projected [V, H] table, no probes) computes the same logits.
  exported = model.export(student, emb)
  chex.assert_shape(exported["embedding"]["word"], (100, 16))
  assert "probes" not in exported
  np.testing.assert_allclose(model.student_apply(exported, batch, geno)["logits"],
                             fixed["logits"], atol=1e-5)
  # Only the chosen edges are in the student: 6 per cell, K cells.
  assert len(student["cells"]) == geno.depth
  assert all(len(c["edges"]) == 6 for c in student["cells"])


def test_genotype_round_trip_through_the_model():
  cfg, params = _searched(seed=5)
  geno = genotype_lib.derive_genotype(params["arch"], cfg)
  again = genotype_lib.Genotype.from_json(geno.to_json())
  assert again == geno
  fresh = model.init_student(jax.random.key(0), again, 16, 24, 2)
  ops_in_model = [(dst, src, name) for (dst, src, name), p in
                  zip(again.ops, fresh["cells"][0]["edges"])]
  assert genotype_lib.Genotype(tuple(ops_in_model), len(fresh["cells"]), cfg.k_max,
                               cfg.num_nodes).to_json() == geno.to_json()


@pytest.mark.xdist_group("tiny_run")
def test_pipeline_end_to_end_and_rerun_reuses_every_stage(tiny_run):
  args, env, first, run = tiny_run.args, tiny_run.env, tiny_run.first, tiny_run.dir
  for stage in ("teacher", "precompute", "search", "derive", "augment", "student",
                "benchmark"):
    assert f"[{stage}] running" in first.stdout
  results = json.load(open(run / "results.json"))
  assert results["task"] == "rotten_tomatoes"
  assert results["speed"]["speedup_vs_teacher"] > 0
  # The student trained on the 256 training examples plus one augmented copy of each.
  assert results["student"]["train_examples"] == 2 * 256
  # The baselines: same depth as the searched student, trained and reported beside it.
  assert set(results["baselines"]) == {"student_scratch", "random_arch", "plain_cnn"}
  assert results["baselines"]["plain_cnn"]["genotype"]["depth"] == (
      results["student"]["genotype"]["depth"])
  assert "| baseline: random_arch |" in (run / "report.md").read_text()
  # The score each kept is the best of its epoch ends, which the report lists.
  for model in (results["student"], *results["baselines"].values()):
    assert len(model["dev_by_epoch"]) == results["student"]["epochs"]
    assert max(model["dev_by_epoch"]) == pytest.approx(model["dev"]["score"])
  # The report pairs the student with the teacher and each baseline on the dev examples.
  comparisons = results["comparisons"]
  assert set(comparisons) == {"teacher", "student_scratch", "random_arch", "plain_cnn"}
  dev_n = results["student"]["dev"]["num_examples"]
  assert comparisons["plain_cnn"]["accuracy_a"] == pytest.approx(
      results["student"]["dev"]["accuracy"])
  assert comparisons["plain_cnn"]["accuracy_b"] == pytest.approx(
      results["baselines"]["plain_cnn"]["dev"]["accuracy"])
  # (the teacher's from its precomputed logits: at most one example flips with batching)
  assert abs(comparisons["teacher"]["accuracy_b"] - results["teacher"]["dev"]["accuracy"]) \
      <= 100 / dev_n + 1e-9
  assert "## Are the differences real?" in (run / "report.md").read_text()
  assert (run / "report.md").read_text().startswith("# AdaBERT run: rotten_tomatoes")
  assert os.path.getsize(run / "accuracy_latency.png") > 1000
  # Serving figures: the student in JAX and on onnxruntime (its export folder), the teacher;
  # on full-length inputs, then on dev examples cut to their length buckets.
  serving = json.load(open(run / "bench" / "bench.json"))["serving"]
  assert [r["name"] for r in serving] == ["student, JAX", "student, onnxruntime",
                                          "teacher, JAX"] * 2
  assert [r["inputs"] for r in serving] == ["full length"] * 3 + ["dev lengths"] * 3
  assert all(r["batch1_p99_ms"] >= r["batch1_median_ms"] > 0 for r in serving)
  assert "| student, onnxruntime |" in (run / "report.md").read_text()
  # Every student and baseline has a complete export folder that predict can load.
  for name in ("student", "plain_cnn"):
    assert sorted(os.listdir(run / name / "export")) == sorted(
        export.FILES + (export.MANIFEST,))
  # The tiny preset derives by measured held-out loss with the one-SE rule: the student is
  # the cheapest candidate within one paired standard error of the best J.
  derived = json.load(open(run / "derive" / "result.json"))
  assert derived["method"] == "measured" and derived["heldout_examples"] == 16
  # ... 16 training examples the search never saw: it trained on 15 batches of 16.
  assert json.load(open(run / "search" / "result.json"))["train_examples"] == 240
  assert results["student"]["genotype"] == derived["genotype"]
  assert derived["evaluated"][0]["genotype"] == derived["best_objective_genotype"]
  objectives = [r["objective"] for r in derived["evaluated"]]
  assert objectives == sorted(objectives) and len(objectives) > 20
  ties = [r for r in derived["evaluated"]
          if r["objective"] - objectives[0] <= derived["tie_se"] * r["paired_se"]]
  chosen = next(r for r in ties if r["genotype"] == derived["genotype"])
  assert chosen["efficiency"] == min(r["efficiency"] for r in ties)
  assert "held-out training examples" in (run / "report.md").read_text()
  assert os.path.getsize(run / "derive" / "cell.png") > 1000
  # The paired comparison reproduces every model's recorded dev accuracy.
  compared = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "compare.py"), *args[2:5],
       "--models=student,plain_cnn,teacher"], capture_output=True, text=True, env=env,
      timeout=900)
  assert compared.returncode == 0, compared.stderr[-3000:]
  comparison = json.load(open(run / "comparison.json"))["comparisons"]
  assert set(comparison) == {"plain_cnn", "teacher"}
  assert comparison["teacher"]["accuracy_b"] == pytest.approx(
      results["teacher"]["dev"]["accuracy"])
  assert comparison["plain_cnn"]["accuracy_a"] == pytest.approx(
      results["student"]["dev"]["accuracy"])
  # Means over seeds: the same run given twice is two identical "seeds", so each model's SD
  # is 0 and the difference of the means is the single run's paired difference.
  seeds = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "compare.py"), *args[2:5],
       "--models=student,plain_cnn", f"--seed_runs={run},{run}"],
      capture_output=True, text=True, env=env, timeout=900)
  assert seeds.returncode == 0, seeds.stderr[-3000:]
  seed_json = json.load(open(run / "seed_comparison.json"))
  by_seed = seed_json["comparisons"]["plain_cnn"]
  assert seed_json["metrics"]["student"]["accuracy"]["per_seed"] == pytest.approx(
      [comparison["plain_cnn"]["accuracy_a"]] * 2)
  assert by_seed["accuracies_a"] == [comparison["plain_cnn"]["accuracy_a"]] * 2
  assert by_seed["sd_a"] == 0 and by_seed["sd_b"] == 0
  assert by_seed["difference"] == pytest.approx(comparison["plain_cnn"]["difference"])
  assert "| plain_cnn |" in seeds.stdout
  mixed = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "compare.py"), *args[2:5],
       f"--models=student,{run}:plain_cnn", f"--seed_runs={run},{run}"],
      capture_output=True, text=True, env=env, timeout=900)
  assert mixed.returncode == 2 and "names models by folder only" in mixed.stderr
  # A rerun (as after a kill between stages) redoes nothing.
  second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "running" not in second.stdout
  for stage in ("teacher", "precompute", "search", "derive", "augment", "student",
                "benchmark", "plain_cnn"):
    assert f"[{stage}] done already" in second.stdout
  # The collapse diagnostic scores the finished supernet under uniform architectures.
  rank = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "rank_supernet.py"),
       *args[2:5], "--ops=conv3,max_pool3", "--depths=1,2"],
      capture_output=True, text=True, env=env, timeout=900)
  assert rank.returncode == 0, rank.stderr[-3000:]
  assert "running" not in rank.stdout
  rows = [line for line in rank.stdout.splitlines() if line.startswith(("| conv3", "| max_"))]
  assert len(rows) == 2
  scores = [float(x) for row in rows for x in row.strip("| ").split(" | ")[1:]]
  assert len(scores) == 4 and all(0.0 <= s <= 100.0 for s in scores)
  mismatched = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "rank_supernet.py"),
       *args[2:5], "--config.search.beta=1.5"],
      capture_output=True, text=True, env=env, timeout=900)
  assert mismatched.returncode == 2
  assert "ran with other flags" in mismatched.stderr and "beta" in mismatched.stderr
  # Another architecture trained beside the searched one, reusing every earlier stage.
  other = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "train_student.py"),
       *args[2:5], "--config.augment.copies=1", "--genotype=plain_cnn:2",
       "--config.student.init=scratch"],
      capture_output=True, text=True, env=env, timeout=900)
  assert other.returncode == 0, other.stderr[-3000:]
  assert "[search]" not in other.stdout and "[augment] done already" in other.stdout
  trained = json.load(open(run / "plain_cnn_k2_scratch" / "result.json"))
  searched = results["student"]["genotype"]
  assert trained["genotype"] == json.loads(genotype_lib.plain_cnn_genotype(
      2, searched["k_max"], searched["num_nodes"]).to_json())
  assert trained["train_examples"] == 2 * 256
  # ... and it needed no search: it records the fingerprint the search recorded, so the
  # pipeline's plain-CNN baseline of the same depth would be this student.
  fingerprint = lambda name: json.load(open(run / name / artefacts.CONFIG_FILE))
  assert fingerprint("plain_cnn_k2_scratch")["search"] == fingerprint("plain_cnn")["search"]
  assert fingerprint("plain_cnn_k2_scratch")["search"] == json.load(
      open(run / "search" / "result.json"))["fingerprint"]


def test_rank_supernet_refuses_a_workdir_without_a_finished_search(tmp_path):
  result = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", "rank_supernet.py"),
       f"--config={os.path.join(REPO_ROOT, 'experiments', 'configs', 'default.py')}:tiny",
       f"--workdir={tmp_path / 'empty'}"],
      capture_output=True, text=True, env={**os.environ, "ADABERT_QUIET": "1"}, timeout=300)
  assert result.returncode != 0
  assert "No finished search" in result.stderr and "final_params" in result.stderr


def test_results_table_shows_current_scores_over_a_reused_benchmark():
  """A student retrained on the same genotype reuses the benchmark (speed does not depend
  on the weights); the table must show the student's score now, not the one the benchmark
  recorded."""
  from adabert_jax.data.tasks import get_task
  from adabert_jax.eval import report

  def row(name, metric, ms):
    return {"name": name, "metric": metric, "latency_ms": ms, "params": 1e6,
            "speedup_vs": {"teacher": 1.0, "bert": 1.0}}

  bench = {"batch_size": 128, "models": [row("student", 80.0, 1.0), row("teacher", 90.0, 9.0),
                                         row("bert", None, 50.0)]}
  results = {"student": {"dev": {"score": 85.5}}, "teacher": {"dev": {"score": 90.0}},
             "baselines": {}}
  table = report.results_table(get_task("sst2"), results, bench)
  assert "| student | 1.00M | 85.50 |" in table
  assert "80.00" not in table


def test_report_shows_every_epoch_end_beside_the_score_kept_on_dev(tmp_path):
  """A student keeps its best epoch by dev score; the table shows the epoch ends from each
  model's training log beside it, so a reader sees what that choice on dev bought."""
  from adabert_jax.data.tasks import get_task
  from adabert_jax.eval import report

  for name, scores in (("student", [84.0, 86.0, 85.0]), ("plain_cnn", [83.5, 82.0, 84.25])):
    (tmp_path / name).mkdir()
    (tmp_path / name / artefacts.LOG_FILE).write_text("".join(
        json.dumps({"epoch": e, "step": 10 * (e + 1), "dev": {"score": s}}) + "\n"
        for e, s in enumerate(scores)))
  assert report.dev_by_epoch(str(tmp_path), "student") == [84.0, 86.0, 85.0]
  assert report.dev_by_epoch(str(tmp_path), "random_arch") == []  # never trained here

  def row(name, ms):
    return {"name": name, "metric": None, "latency_ms": ms, "params": 1e6,
            "speedup_vs": {"teacher": 1.0}}

  bench = {"batch_size": 128, "models": [row("student", 1.0), row("teacher", 9.0)]}
  results = {"student": {"dev": {"score": 86.0},
                         "dev_by_epoch": report.dev_by_epoch(str(tmp_path), "student")},
             "teacher": {"dev": {"score": 90.0}},
             "baselines": {"plain_cnn": {"dev": {"score": 84.25}, "params": 1e6,
                                         "dev_by_epoch": report.dev_by_epoch(str(tmp_path),
                                                                             "plain_cnn")}}}
  table = report.results_table(get_task("sst2"), results, bench)
  assert "| student | 1.00M | 86.00 | 84.00, 86.00, 85.00 |" in table
  assert "| baseline: plain_cnn | 1.00M | 84.25 | 83.50, 82.00, 84.25 |" in table
  assert "| teacher | 1.00M | 90.00 | - |" in table


def test_baselines_train_in_the_order_named_and_once_each(monkeypatch):
  """--baseline_names=plain_cnn,random_arch trains the plain CNN first, so a user who puts
  the short baseline first gets its result first; a name given twice trains once."""
  from adabert_jax.pipeline import stages
  trained = []
  searched = genotype_lib.plain_cnn_genotype(depth=2, k_max=3, num_nodes=3)
  monkeypatch.setattr(stages, "searched_genotype", lambda workdir: searched)
  monkeypatch.setattr(stages, "ensure_student",
                      lambda *args, name, **kwargs: trained.append(name) or {"name": name})
  config = ml_collections.ConfigDict({"seed": 0})
  results = stages.ensure_baselines(config, None, None, None, "unused", None,
                                    names=["plain_cnn", "random_arch", "plain_cnn"])
  assert trained == ["plain_cnn", "random_arch"]
  assert list(results) == trained


@pytest.mark.xdist_group("tiny_run")
def test_student_seed_offset_retrains_the_same_cell_alone(tiny_run, tmp_path):
  """student.seed_offset=1 retrains the plain-CNN baseline's cell from other initial
  weights, batches and dropout, into its own folder, reusing every stage before it; at 0 the
  same command gives the baseline's weights bit for bit (the offset is all that differs)."""
  import shutil

  run = tmp_path / "run"
  shutil.copytree(tiny_run.dir, run)
  shutil.rmtree(run / "plain_cnn_k2_scratch", ignore_errors=True)  # the e2e test's, if first
  args = [a.replace(str(tiny_run.dir), str(run)) for a in tiny_run.args[2:5]]
  trained = {}
  for offset in (1, 0):
    done = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "experiments", "train_student.py"), *args,
         "--config.augment.copies=1", "--genotype=plain_cnn:2", "--config.student.init=scratch",
         f"--config.student.seed_offset={offset}"],
        capture_output=True, text=True, env=tiny_run.env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    name = "plain_cnn_k2_scratch" + ("_seed1" if offset else "")
    assert f"[{name}] running" in done.stdout and "[teacher] done already" in done.stdout
    trained[offset] = export.load_export(str(run / name / "export"))[0]
    student = json.load(open(run / name / artefacts.CONFIG_FILE))["student"]
    assert student.get("seed_offset", 0) == offset and ("seed_offset" in student) == bool(offset)
  baseline = export.load_export(str(run / "plain_cnn" / "export"))[0]
  jax.tree.map(np.testing.assert_array_equal, trained[0], baseline)
  differs = jax.tree.leaves(jax.tree.map(lambda a, b: not np.array_equal(a, b),
                                         trained[1], baseline))
  assert np.mean(differs) > 0.5
