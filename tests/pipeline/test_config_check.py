"""Every config value is checked once, before any stage runs or any folder is touched."""

import os
import subprocess
import sys

import pytest

from adabert_jax import config_check
from adabert_jax.errors import UserError
from tests.helpers import REPO_ROOT, load_config

PRESETS = ("paper", "quick", "cpu", "pairs", "tiny")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_passes(preset):
  config_check.check(load_config(preset))


@pytest.mark.parametrize("field,value,message", [
    ("teacher.batch_size", 0, "--config.teacher.batch_size=0: must be >= 1."),
    ("search.batch_size", 0, "--config.search.batch_size=0: must be >= 1."),
    ("student.batch_size", 0, "--config.student.batch_size=0: must be >= 1."),
    ("bench.batch_size", 0, "--config.bench.batch_size=0: must be >= 1."),
    ("teacher.epochs", 0, "--config.teacher.epochs=0: must be >= 1."),
    ("data.train_subset", -1, "--config.data.train_subset=-1: must be >= 0."),
    ("student.train_subset", -5, "--config.student.train_subset=-5: must be >= 0."),
    ("student.seed_offset", -1, "--config.student.seed_offset=-1: must be >= 0."),
    ("data.max_len", 4, "--config.data.max_len=4: must be >= 8."),
    ("data.max_len", 600, "--config.data.max_len=600 is longer than the teacher's 512 "
                          "positions: use <= 512."),
    ("data.max_len", 100000, "is longer than the teacher's 512 positions"),
    ("bench.max_len", 1024, "--config.bench.max_len=1024 is longer than the 512 positions"),
    ("teacher.max_len", 256, "--config.teacher.max_len=256 is longer than "
                             "--config.data.max_len=128"),
    ("search.dropout", 1.0, "--config.search.dropout=1.0: must be in [0, 1)."),
    ("augment.replace_prob", 0.0, "--config.augment.replace_prob=0.0: must be in (0, 1]."),
    ("search.gamma", 1.5, "--config.search.gamma=1.5: must be in [0, 1]."),
    ("student.learning_rate", 0.0, "--config.student.learning_rate=0.0: must be > 0."),
    ("search.temperature_end", -0.1, "--config.search.temperature_end=-0.1: must be > 0."),
    ("data.dev_fraction", 1.0, "--config.data.dev_fraction=1.0: must be in (0, 1)."),
    ("derive.tie_se", -1.0, "--config.derive.tie_se=-1.0: must be >= 0."),
    ("search.num_nodes", 2, "--config.search.num_nodes=2: must be >= 3."),
    ("student.learning_rate", float("nan"), "--config.student.learning_rate=nan: must be > 0."),
    ("search.depth_mix", "mean", "--config.search.depth_mix='mean': use one of losses, logits."),
    ("search.cost_norm", "sum", "--config.search.cost_norm='sum': use one of max, softmax."),
    ("search.temperature_schedule", "cosine",
     "--config.search.temperature_schedule='cosine': use one of per_epoch, exponential, "
     "linear."),
    ("search.arch_weight_decay_mode", "l2",
     "--config.search.arch_weight_decay_mode='l2': use one of coupled, decoupled."),
    ("search.layer_kd_map", "floor", "--config.search.layer_kd_map='floor': use one of"),
    ("search.pair_mode", "cross", "--config.search.pair_mode='cross': use one of siamese,"),
    ("search.warmup_sampling", "round_robin",
     "--config.search.warmup_sampling='round_robin': use one of gumbel, fair."),
    ("search.warmup_sampling", "fair", "--config.search.warmup_sampling=fair samples during "
                                       "the architecture warm-up, and "
                                       "--config.search.arch_warmup_epochs is 0: set it > 0."),
    ("search.alpha_regulariser", -1.0, "--config.search.alpha_regulariser=-1.0: must be >= 0."),
    ("derive.no_signal", "alpha", "--config.derive.no_signal='alpha': use one of one_se, "
                                  "plain_cnn."),
    ("derive.signal_test", "worst", "--config.derive.signal_test='worst': use one of kept, "
                                    "best."),
])
def test_a_value_out_of_range_names_its_field_and_range(field, value, message):
  config = load_config("paper")
  section, name = field.split(".")
  config[section][name] = value
  with pytest.raises(UserError) as raised:
    config_check.check(config)
  assert message in str(raised.value)
  assert "\n" not in str(raised.value)


def test_the_teachers_own_position_table_bounds_max_len(tiny_bert_dir):
  """The tiny teacher has 64 positions: 64 passes, 65 does not."""
  config = load_config("tiny")
  config.teacher.checkpoint = tiny_bert_dir
  config.data.max_len, config.bench.max_len = 64, 32
  config_check.check(config)
  config.data.max_len = 65
  with pytest.raises(UserError, match="teacher's 64 positions: use <= 64"):
    config_check.check(config)


@pytest.mark.parametrize("script,override", [
    ("search.py", "--config.search.batch_size=0"),
    ("train_student.py", "--config.student.batch_size=0"),
    ("benchmark.py", "--config.bench.batch_size=0"),
])
def test_overwrite_with_a_bad_value_touches_nothing(tmp_path, script, override):
  """--overwrite discards a stage only after the new config has passed the check: every file
  of the run is byte-identical afterwards."""
  workdir = tmp_path / "run"
  for stage in ("teacher", "knowledge", "search", "derive", "student", "benchmark"):
    (workdir / stage).mkdir(parents=True)
    (workdir / stage / "config.json").write_text(f'{{"made_by": "{stage}"}}')
    (workdir / stage / "result.json").write_text('{"dev": 1}')
  before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
  done = subprocess.run(
      [sys.executable, os.path.join(REPO_ROOT, "experiments", script), f"--workdir={workdir}",
       override, "--overwrite"], capture_output=True, text=True, timeout=120)
  assert done.returncode == 2, done.stderr
  assert done.stderr.strip() == f"error: {override}: must be >= 1.", done.stderr
  after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
  assert after == before
