"""experiments/rank_supernet.py and experiments/proxy_rank.py on a finished tiny run, as a
user runs them: each mode prints its table."""

import os
import subprocess

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.xdist_group("tiny_run")

# The run's flags that the ranking scripts do not take.
_PIPELINE_ONLY = ("--baselines", "--config.bench.bert_base", "--config.augment.copies")


def _run(tiny_run, script, *extra):
  args = [a for a in tiny_run.args if not a.startswith(_PIPELINE_ONLY)]
  args[1] = os.path.join(REPO_ROOT, "experiments", script)
  done = subprocess.run(args + list(extra), capture_output=True, text=True,
                        env=tiny_run.env, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def _table_rows(text, first_cell):
  return [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]


def test_rank_supernet_scores_trained_cells_and_still_gives_the_op_signal(tiny_run):
  out = _run(tiny_run, "rank_supernet.py", "--genotypes=student,plain_cnn")
  [row] = _table_rows(out, "plain_cnn")
  assert " of " in row.split(" | ")[-2]  # its rank among the derive's candidates
  out = _run(tiny_run, "rank_supernet.py", "--genotypes=student", "--min_tokens=8")
  [row] = _table_rows(out, "student")
  assert row.split(" | ")[-2] == "-"  # measured on other examples than the derive's
  assert "of at least 8 tokens" in out
  out = _run(tiny_run, "rank_supernet.py", "--signal_architectures=10")
  assert "what the loss and alpha's gradient say about each op" in out
  assert len(_table_rows(out, "conv3")) == 1


def test_proxy_rank_trains_each_cell_and_scores_the_long_examples_apart(tiny_run):
  out = _run(tiny_run, "proxy_rank.py", "--models=student,random_arch", "--proxy_steps=2",
             "--min_tokens=8", "--seeds=0,5")
  for name in ("student", "random_arch"):
    rows = [row.strip("|").split(" | ") for row in _table_rows(out, name)]
    assert [len(row) for row in rows] == [9, 9]  # a row per seed, the long examples' column
    assert [row[3] for row in rows] == ["0", "5"]
    assert rows[0][4] != rows[1][4]  # the seed changes the brief training, so its CE


def test_proxy_derive_trains_the_candidates_and_its_student_uses_the_lowest_ce(tiny_run,
                                                                                 tmp_path):
  """derive.method=proxy on the tiny run's finished search, as a user runs it: every
  candidate and a round of local search are trained (each twice, with two seeds) and
  recorded, the derived cell is the lowest mean held-out CE among them, and the student
  stage trains that cell."""
  import json
  import shutil

  run = tmp_path / "run"
  run.mkdir()
  for stage in ("teacher", "knowledge", "augment", "search"):
    shutil.copytree(tiny_run.dir / stage, run / stage)
  args = [a for a in tiny_run.args if not a.startswith(("--workdir", "--baselines"))]
  done = subprocess.run(args + [f"--workdir={run}", "--config.derive.method=proxy",
                                "--config.derive.proxy_steps=2",
                                "--config.derive.proxy_candidates=2",
                                "--config.derive.proxy_rounds=1",
                                "--config.derive.proxy_neighbours=1",
                                "--config.derive.proxy_seeds=2", "--stop_after=student"],
                        capture_output=True, text=True, env=tiny_run.env, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  result = json.loads((run / "derive" / "result.json").read_text())
  assert result["method"] == "proxy" and len(result["proxy"]) == 4
  for record in result["proxy"]:  # each cell trained twice, scored by the mean
    assert len(record["ce_per_seed"]) == 2 and record["ce_per_seed"][0] != record["ce_per_seed"][1]
    assert record["ce"] == pytest.approx(sum(record["ce_per_seed"]) / 2)
  assert result["proxy"][0]["genotype"] == result["measured_genotype"]
  # The round's cell is the best of the first three with one edge's op changed.
  best = min(range(3), key=lambda i: result["proxy"][i]["ce"])
  assert result["proxy"][3]["origin"] == f"round 1, a change of #{best + 1}"
  changed = [a != b for a, b in zip(result["proxy"][3]["genotype"]["ops"],
                                    result["proxy"][best]["genotype"]["ops"])]
  assert sum(changed) == 1
  lowest = min(result["proxy"], key=lambda r: r["ce"])
  assert result["genotype"] == lowest["genotype"]
  student = json.loads((run / "student" / "result.json").read_text())
  assert student["genotype"] == lowest["genotype"]
  assert sorted((run / "derive" / "proxy").iterdir()) == [
      run / "derive" / "proxy" / f"{i}.json" for i in range(4)]
  # The report says how the cell was chosen: every candidate's row, the kept one in bold.
  from adabert_jax.eval import report
  from adabert_jax.nas import derive

  text = "\n".join(report._derive_lines(result))
  assert "Derived by the proxy" in text and "The measured choice from the supernet" in text
  table = derive.format_proxy(result)
  assert table in text and "held-out CE (mean of 2 seeds)" in table
  rows = table.splitlines()[2:]
  assert len(rows) == 4 and rows[0].startswith("| 1 (measured) |")
  assert rows[3].startswith(f"| 4 (round 1, a change of #{best + 1}) |")
  [bold] = [row for row in rows if "**" in row]
  assert f"| {lowest['ce']:.4f} |" in bold
