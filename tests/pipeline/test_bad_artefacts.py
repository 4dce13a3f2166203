"""A broken file or place in a run ends with one line (exit 2) naming it and the fix, and
nothing that existed before is changed; a damaged cache entry is rebuilt with a warning;
Ctrl-C ends with one line saying the run resumes with the same command."""

import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest


# Every case reruns the session's finished tiny run: one worker builds it, once.
pytestmark = pytest.mark.xdist_group("tiny_run")


def _truncate(path, size):
  with open(path, "r+b") as f:
    f.truncate(size)


def _write(path, data: bytes):
  with open(path, "wb") as f:
    f.write(data)


def _keyless_npz(path):
  with open(path, "wb") as f:
    np.savez(f, meta=np.asarray("{}"))


def _garbage_teacher(run, tmp_path):
  """A teacher folder whose model.safetensors is garbage; returns its path."""
  bad = tmp_path / "bad_bert"
  shutil.copytree(_flag(run.args, "--config.teacher.checkpoint"), bad)
  _write(bad / "model.safetensors", b"not a safetensors file")
  return bad


def _flag(args, name):
  return next(a.split("=", 1)[1] for a in args if a.startswith(name + "="))


# (what is broken, how to break it in the run copy R, extra flags, the stderr line's start
# and a part of it). Each reruns the pipeline, which reuses the finished stages and so reads
# the broken file.
CASES = [
    ("a truncated stage result", lambda r, t: _truncate(r / "teacher" / "result.json", 20), [],
     "teacher/result.json is damaged (not valid JSON", "delete {R}/teacher and rerun"),
    ("a truncated stage config", lambda r, t: _truncate(r / "search" / "config.json", 5), [],
     "search/config.json is damaged (not valid JSON", "delete {R}/search and rerun"),
    ("a half-written knowledge file", lambda r, t: _truncate(r / "knowledge" / "train.npz", 100),
     [], "knowledge/train.npz is damaged (BadZipFile", "delete {R}/knowledge and rerun"),
    ("a knowledge file without its arrays", lambda r, t: _keyless_npz(r / "knowledge" / "dev.npz"),
     [], "knowledge/dev.npz is damaged (it lacks teacher_logits, probe_logits)",
     "delete {R}/knowledge and rerun"),
    ("a damaged orbax checkpoint",
     lambda r, t: (shutil.rmtree(r / "augment"), shutil.rmtree(r / "student"),
                   _truncate(r / "teacher" / "best" / "manifest.ocdbt", 10)),
     ["--stop_after=student"], "teacher/best is damaged (the checkpoint cannot be restored",
     "delete {R}/teacher and rerun"),
    ("a damaged embedding table", lambda r, t: _write(r / "knowledge" / "embeddings.npz", b"x"),
     [], "knowledge/embeddings.npz is damaged", "delete {R}/knowledge and rerun"),
    ("a workdir that is a file", lambda r, t: None, ["--workdir={T}/a_file"],
     "--workdir={T}/a_file: {T}/a_file is a file, not a folder", "pass a folder path"),
    ("a workdir under a file", lambda r, t: None, ["--workdir={T}/a_file/run"],
     "--workdir={T}/a_file/run: {T}/a_file is a file, not a folder", "pass a folder path"),
    ("a missing config file", lambda r, t: None, ["--config={T}/no_such_config.py:tiny"],
     "--config could not be loaded (", "No such file or directory"),
]


def _files(folder):
  return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("name,damage,extra,start,part", CASES, ids=[c[0] for c in CASES])
def test_a_broken_artefact_gets_one_line_and_changes_nothing(tiny_run, tmp_path, name, damage,
                                                            extra, start, part):
  run = tmp_path / "run"
  shutil.copytree(tiny_run.dir, run)
  (tmp_path / "a_file").write_text("a file, not a folder\n")
  damage(run, tmp_path)
  before = _files(tmp_path)
  fill = lambda s: s.replace("{R}", str(run)).replace("{T}", str(tmp_path))  # noqa: E731
  extra = [fill(e) for e in extra]
  args = [a.replace(str(tiny_run.dir), str(run)) for a in tiny_run.args]
  for flag in extra:  # in place of the flag it overrides (--config must come first)
    same = [i for i, a in enumerate(args) if a.split("=")[0] == flag.split("=")[0]]
    if same:
      args[same[0]] = flag
    else:
      args.append(flag)
  done = subprocess.run(args, capture_output=True, text=True, env=tiny_run.env, timeout=600)
  assert done.returncode == 2, (name, done.stdout[-1000:], done.stderr[-2000:])
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
  assert fill(start) in lines[0] and fill(part) in lines[0], lines[0]
  after = _files(tmp_path)
  assert all(after.get(p) == data for p, data in before.items()), "a file changed or went"


@pytest.mark.slow
def test_a_garbage_teacher_checkpoint_gets_one_line(tiny_run, tmp_path):
  bad = _garbage_teacher(tiny_run, tmp_path)
  args = [a for a in tiny_run.args if not a.startswith(("--workdir=", "--config.teacher.ch"))]
  done = subprocess.run(args + [f"--workdir={tmp_path / 'run'}",
                                f"--config.teacher.checkpoint={bad}", "--stop_after=teacher"],
                        capture_output=True, text=True, env=tiny_run.env, timeout=600)
  assert done.returncode == 2, done.stderr[-2000:]
  assert done.stderr.strip().startswith(f"error: {bad}/model.safetensors cannot be loaded "
                                         "(SafetensorError"), done.stderr[-2000:]
  assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_damaged_token_cache_entry_is_rebuilt_with_a_warning(tiny_run, tmp_path):
  cache = tmp_path / "cache"
  shutil.copytree(tiny_run.env["ADABERT_CACHE_DIR"], cache)
  entry = sorted(cache.glob("*-dev-*.npz"))[0]
  good = entry.read_bytes()
  _write(entry, b"damaged")
  args = [a for a in tiny_run.args if not a.startswith("--workdir=")]
  done = subprocess.run(args + [f"--workdir={tmp_path / 'run'}", "--stop_after=data"],
                        capture_output=True, text=True, timeout=600,
                        env={**tiny_run.env, "ADABERT_CACHE_DIR": str(cache)})
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stderr.strip() == (f"warning: discarding the damaged token cache file {entry}; "
                                 "tokenizing again")
  assert entry.read_bytes() == good


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # preexec_fn, signal only
def test_ctrl_c_ends_with_one_line_saying_how_to_resume(tiny_run, tmp_path):
  """SIGINT once the search has written its first checkpoint: exit 130, one line."""
  run = tmp_path / "run"
  shutil.copytree(tiny_run.dir, run)
  for stage in ("search", "derive", "augment", "student", "bench"):
    shutil.rmtree(run / stage, ignore_errors=True)
  args = [a.replace(str(tiny_run.dir), str(run)) for a in tiny_run.args]
  args = [a for a in args if a != "--baselines"] + ["--config.search.epochs=50",
                                                    "--config.search.checkpoint_every_steps=1"]
  # A terminal's Ctrl-C: SIGINT handled as usual (pytest-xdist workers ignore it, and an
  # ignored signal would be inherited).
  proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=tiny_run.env,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  deadline = time.time() + 300
  while not (run / "search" / "checkpoints").is_dir() or not any(
      n.isdigit() for n in os.listdir(run / "search" / "checkpoints")):
    assert proc.poll() is None and time.time() < deadline, "the search did not start"
    time.sleep(0.05)
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-2000:]
  assert stderr.strip() == ("interrupted: finished stages and the last checkpoint are kept; "
                            "rerun the same command to resume."), stderr[-2000:]

