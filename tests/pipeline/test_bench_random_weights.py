"""experiments/bench_random_weights.py: the benchmark's protocol on random weights."""

import json
import os
import subprocess
import sys

import jax
import numpy as np

from adabert_jax.eval import benchmark
from adabert_jax.nas.genotype import Genotype
from adabert_jax.student import model
from adabert_jax.teacher import bert
from tests.helpers import REPO_ROOT, load_script

SCRIPT = os.path.join(REPO_ROOT, "experiments", "bench_random_weights.py")
B, L, V = 4, 16, 1100  # random_batch draws ids from [1000, V)


def _script():
  return load_script("bench_random_weights")


def test_the_random_student_is_the_exported_form_of_the_training_form():
  """Embedding folded into the teacher's tables, no probes, the same logits as the training
  form reading those tables."""
  teacher = benchmark.bert_random("tiny", 3, vocab_size=V, hidden_size=24, num_hidden_layers=1,
                                  num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=L)
  geno = Genotype(ops=((2, 0, "conv3"), (2, 1, "max_pool3"), (3, 2, "identity")), depth=2,
                  k_max=3, num_nodes=2)
  student = _script().student_random(geno, 8, teacher, 3, seed=5)
  assert student.params["embedding"]["word"].shape == (V, 8)
  assert "probes" not in student.params
  batch = benchmark.random_batch(B, L, V)
  expected = model.student_apply(model.init_student(jax.random.key(5), geno, 8, 24, 3), batch,
                                 geno, emb_tables=bert.embedding_tables(teacher.params))
  np.testing.assert_allclose(student.apply(student.params, batch), expected["logits"],
                             atol=1e-5)


def test_the_script_times_pair_students_against_the_teacher_shape(tmp_path):
  out = tmp_path / "bench.json"
  done = subprocess.run(
      [sys.executable, SCRIPT, "--genotypes=plain_cnn:2", "--pair", "--batch_size=2",
       "--max_len=16", "--repeats=1", "--no_bert_base", f"--out={out}"],
      capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
  assert done.returncode == 0, done.stderr[-2000:]
  result = json.loads(out.read_text())
  assert result["pair_mode"] == "siamese"
  names = [m["name"] for m in result["models"]]
  assert names == ["student plain_cnn_k2 (K=2)", "teacher shape (6x384, random weights)"]
  assert result["models"][1]["params"] > 20e6  # all-MiniLM-L6-v2's shape, 22.57M
  assert result["models"][0]["speedup_vs"][names[1]] > 0
