"""experiments/bench_inference_buckets.py on a finished tiny run (one augmented copy of each
sentence), as a user runs it."""

import os
import re
import subprocess

import pytest

from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.xdist_group("tiny_run")


def test_it_times_both_bucket_sets_and_they_give_the_same_logits(tiny_run):
  args = [a for a in tiny_run.args if a != "--baselines"]
  args[1] = os.path.join(REPO_ROOT, "experiments", "bench_inference_buckets.py")
  done = subprocess.run(args + ["--examples=64", "--repeats=1"], capture_output=True,
                        text=True, env=tiny_run.env, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  out = done.stdout
  assert "64 augmented copies" in out
  # The tiny preset's max_len 32: the training buckets, and the inference ones between them.
  assert "training buckets (16, 32):" in out and "inference buckets (16, 24, 32):" in out
  assert re.search(r"inference buckets / training buckets: \d\.\d{3} of the time", out)
  difference = float(re.search(r"largest logit difference: (\S+)", out).group(1))
  assert difference < 1e-4
