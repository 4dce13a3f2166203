"""The entry points: a user mistake is one line on stderr and exit code 2; each command
restarts itself once with the malloc tunables."""

import os
import platform
import subprocess
import sys

import pytest

from adabert_jax import cli
from tests.helpers import REPO_ROOT

PIPELINE = os.path.join(REPO_ROOT, "experiments", "pipeline.py")


def _run(*args, cwd=None):
  return subprocess.run([sys.executable, PIPELINE, *args], capture_output=True,
                        text=True, cwd=cwd or REPO_ROOT, timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--task=sst3"], "Unknown task 'sst3' (--task)"),
    (["--task=qnli"], "needs its GLUE data: pass --glue_dir=DIR"),
    (["--task=sst2", "--glue_dir=/nonexistent/glue"], "does not exist (--glue_dir)"),
    (["--config.data.no_such_key=1"], "unknown config key in --config.data.no_such_key=1"),
    ([f"--config={os.path.join(REPO_ROOT, 'experiments', 'configs', 'default.py')}:tiny",
      "--config.bench.nope=1"], "unknown config key in --config.bench.nope=1"),
    (["--config.bench.repeats=abc"],
     "flag --config.bench.repeats=abc: invalid literal for int()"),
    (["--config=experiments/configs/default.py:huge"], "Unknown preset 'huge'"),
    (["--config.derive.method=measured", "--config.search.holdout=0"],
     "set --config.search.holdout"),
    (["--config.derive.method=best"], "--config.derive.method='best': use one of alpha, measured, proxy"),
    (["--baselines", "--baseline_names=random_arch,bert"],
     "--baseline_names=random_arch,bert: use some of"),
    ([], "--workdir is required"),
])
def test_bad_input_gets_one_line_and_exit_2(tmp_path, args, message):
  if "--workdir" not in " ".join(args) and args:
    args = args + [f"--workdir={tmp_path}"]
  result = _run(*args)
  assert result.returncode == 2, result.stderr
  assert message in result.stderr
  assert "Traceback" not in result.stderr


def test_data_stage_on_the_offline_default_from_another_cwd(tmp_path):
  env_cache = {"ADABERT_CACHE_DIR": str(tmp_path / "cache")}
  result = subprocess.run(
      [sys.executable, PIPELINE, f"--workdir={tmp_path / 'run'}",
       "--config.data.max_len=32", "--stop_after=data"], capture_output=True, text=True, cwd=str(tmp_path),
      timeout=300, env={**os.environ, **env_cache})
  assert result.returncode == 0, result.stderr
  assert "task rotten_tomatoes" in result.stdout
  assert "7677" in result.stdout and "853" in result.stdout


@pytest.mark.parametrize("environ,libc,restarts", [
    ({}, "glibc", True),
    ({"GLIBC_TUNABLES": ""}, "glibc", False),  # the user's own settings, even none, stand
    ({}, "", False),  # another C library (macOS): nothing to set
])
def test_a_command_restarts_once_with_the_malloc_tunables(monkeypatch, environ, libc,
                                                          restarts):
  monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
  for name, value in environ.items():
    monkeypatch.setenv(name, value)
  monkeypatch.setattr(cli.platform, "libc_ver", lambda: (libc, ""))
  calls = []
  monkeypatch.setattr(cli.os, "execv", lambda path, argv: calls.append((path, argv)))
  cli.restart_with_malloc_tunables()
  assert calls == ([(sys.executable, sys.orig_argv)] if restarts else [])
  assert os.environ.get("GLIBC_TUNABLES") == (cli.MALLOC_TUNABLES if restarts
                                              else environ.get("GLIBC_TUNABLES"))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's tunables only")
def test_the_restarted_command_runs_with_the_malloc_tunables(tmp_path):
  """A real restart: the command's process (the same pid) ends up with the tunables."""
  script = tmp_path / "show.py"
  script.write_text("import os, sys\n"
                    "from adabert_jax import cli\n"
                    "print(os.getpid(), os.environ.get('GLIBC_TUNABLES'))\n"
                    "cli.restart_with_malloc_tunables()\n")
  env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
  env["PYTHONPATH"] = REPO_ROOT
  out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       env=env, timeout=120, check=True).stdout.split("\n")
  assert out[0].split()[1] == "None"  # the first start, without them
  assert out[1].split()[0] == out[0].split()[0]  # exec: the same process
  assert out[1].split(None, 1)[1] == cli.MALLOC_TUNABLES
  assert out[2] == ""  # and only once
