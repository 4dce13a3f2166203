"""experiments/colab.ipynb, executed top to bottom on CPU with the tiny preset."""

import json
import os
import sys

import nbformat
from nbclient import NotebookClient
import pytest

from tests.helpers import REPO_ROOT

NOTEBOOK = os.path.join(REPO_ROOT, "experiments", "colab.ipynb")


def _outputs(cell, output_type):
  return [o for o in cell.get("outputs", []) if o["output_type"] == output_type]


# The tiny pipeline itself takes 55-85 s on 2 busy CPU cores; the notebook adds ~3 s.
@pytest.mark.slow
def test_colab_notebook_runs_the_tiny_pipeline_and_shows_the_report(tmp_path, tiny_bert_dir,
                                                                    monkeypatch):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbformat.validate(nb)
  assert all(not c.get("outputs") and not c.get("execution_count")
             for c in nb.cells if c.cell_type == "code"), "the notebook is stored with outputs"
  tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
  assert len(tagged) == 1
  # As papermill does: a cell after the parameters cell overrides them.
  workdir = tmp_path / "run"
  params = {"TASK": "rotten_tomatoes", "PRESET": "tiny", "GLUE_DIR": "", "INSTALL": False,
            "WORKDIR": str(workdir),
            "EXTRA_FLAGS": [f"--config.teacher.checkpoint={tiny_bert_dir}",
                            "--config.bench.bert_base=false"]}
  nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(
      "\n".join(f"{k} = {v!r}" for k, v in params.items()),
      metadata={"tags": ["injected-parameters"]}))
  # The kernel, and through it the pipeline, inherit these (and conftest's 4 CPU devices).
  monkeypatch.setenv("ADABERT_QUIET", "1")
  monkeypatch.setenv("ADABERT_CACHE_DIR", str(tmp_path / "cache"))

  client = NotebookClient(nb, kernel_name="python3", timeout=600,
                          resources={"metadata": {"path": REPO_ROOT}})
  client.execute()  # raises CellExecutionError at the first failing cell

  code = [c for c in nb.cells if c.cell_type == "code"]
  errors = [o for c in code for o in _outputs(c, "error")]
  assert not errors, errors
  # A cell's stream outputs are chunks of one text: joined as they came.
  text = "\n".join("".join(o["text"] for o in _outputs(c, "stream")) for c in code)
  # The kernel is this interpreter (the repository's .venv), run from the repository.
  assert f"python: {sys.executable}" in text
  assert f"repository: {REPO_ROOT}" in text
  assert "CpuDevice" in text  # jax.devices() from the devices cell
  for stage in ("teacher", "precompute", "search", "student", "benchmark"):
    assert f"[{stage}] running" in text
  results = json.load(open(workdir / "results.json"))
  assert results["task"] == "rotten_tomatoes"

  report = code[-1]
  shown = [o["data"] for o in _outputs(report, "display_data")]
  markdown = [d["text/markdown"] for d in shown if "text/markdown" in d]
  assert markdown and markdown[0].startswith("# AdaBERT run: rotten_tomatoes")
  assert "| model | params |" in markdown[0] and "![" not in markdown[0]
  images = [d["image/png"] for d in shown if "image/png" in d]
  assert len(images) == 4  # cell, alpha, accuracy_latency, probes
  shown_text = "".join(o["text"] for o in _outputs(report, "stream"))
  assert "student against teacher: speedup" in shown_text
