"""A student's export folder: everything needed to classify text, nothing of the run.

  manifest.json          format name and version, the versions that wrote it, and the
                         sha256 and size of every other file
  model.json             the genotype, the task (name, label names, text fields), max_len,
                         and the parameter layout: the params pytree with each array named
                         by its key in params.npz
  params.npz             the exported parameters (projected embedding tables, cells, head)
  model.stablehlo        the same model as a serialised jax.export module (weights inside),
                         for any batch size and any length up to max_len: logits of
                         (input_ids, token_type_ids, attention_mask), each int32 [B, L], the
                         pair concatenated as the tokenizer writes it
  model.onnx             the same function as an ONNX graph (student/onnx_export.py), int64
                         inputs, for onnxruntime
  vocab.txt              the teacher's WordPiece vocabulary, and
  tokenizer_config.json  its casing, so tokenization.load_vocab reads the folder as it
                         reads a BERT checkpoint

It loads with numpy and this package alone: no teacher, knowledge arrays or run directory.
The folder is written under a temporary name and renamed into place, so it is complete or
absent; the checksums catch a file altered or damaged afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
from jax import export as jax_export
import numpy as np

from adabert_jax import __version__ as package_version, io_utils
from adabert_jax.data.tasks import Task
from adabert_jax.data.tokenization import Vocab
from adabert_jax.errors import UserError
from adabert_jax.nas.genotype import Genotype
from adabert_jax.student import model as student_model, onnx_export

FORMAT = "adabert-jax-student"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
FILES = ("model.json", "params.npz", "model.stablehlo", "model.onnx", "vocab.txt",
         "tokenizer_config.json")


@dataclasses.dataclass(frozen=True)
class ExportedTask:
  """What predict needs to know of the task: its labels and how its text is laid out."""

  name: str
  labels: tuple[str, ...]
  text_columns: tuple[str, ...]

  @property
  def is_pair(self) -> bool:
    return len(self.text_columns) == 2


def _layout(tree: Any, arrays: dict[str, np.ndarray], prefix: str = "p") -> Any:
  """The pytree as JSON, each array leaf replaced by its name in `arrays` (filled here).
  Empty dicts (parameter-free ops) and list order survive, which a flat key list would lose."""
  if isinstance(tree, dict):
    return {k: _layout(v, arrays, f"{prefix}.{k}") for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_layout(v, arrays, f"{prefix}.{i}") for i, v in enumerate(tree)]
  arrays[prefix] = np.asarray(tree, np.float32)
  return prefix


def _fill(layout: Any, arrays: Any) -> Any:
  if isinstance(layout, dict):
    return {k: _fill(v, arrays) for k, v in layout.items()}
  if isinstance(layout, list):
    return [_fill(v, arrays) for v in layout]
  return arrays[layout]


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _versions() -> dict[str, str]:
  return {"adabert_jax": package_version, "jax": jax.__version__,
          "numpy": np.__version__}


def write_export(out_dir: str, params: dict, geno: Genotype, task: Task, vocab: Vocab,
                 max_len: int) -> dict:
  """Writes the export folder of exported student `params` (model.export's form) to
  `out_dir`, replacing any folder there; returns the manifest."""
  if "word" not in params.get("embedding", {}):
    raise ValueError("write_export takes the exported form (student.model.export)")
  if not io_utils.writes_artefacts():  # process 0 of a multi-process run writes it
    return {}
  parent = os.path.dirname(os.path.abspath(out_dir))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp")
  try:
    arrays: dict[str, np.ndarray] = {}
    layout = _layout(params, arrays)
    with open(os.path.join(tmp, "params.npz"), "wb") as f:
      np.savez(f, **arrays)
    model = {"genotype": json.loads(geno.to_json()), "max_len": int(max_len),
             "task": {"name": task.name, "labels": list(task.labels),
                      "text_columns": list(task.text_columns)},
             "params": layout}
    io_utils.save_json_atomic(os.path.join(tmp, "model.json"), model)
    with open(os.path.join(tmp, "model.stablehlo"), "wb") as f:
      f.write(stablehlo_module(params, geno, max_len))
    num_classes = np.asarray(params["head"]["bias"]).shape[-1]
    with open(os.path.join(tmp, "model.onnx"), "wb") as f:
      f.write(onnx_export.student_onnx(params, geno, num_classes).SerializeToString())
    shutil.copyfile(vocab.path, os.path.join(tmp, "vocab.txt"))
    io_utils.save_json_atomic(os.path.join(tmp, "tokenizer_config.json"),
                              {"do_lower_case": vocab.lowercase})
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION,
                "written_by": _versions(),
                "files": {name: {"sha256": _sha256(os.path.join(tmp, name)),
                                 "bytes": os.path.getsize(os.path.join(tmp, name))}
                          for name in FILES}}
    io_utils.save_json_atomic(os.path.join(tmp, MANIFEST), manifest)
    os.chmod(tmp, 0o755)
    if os.path.isdir(out_dir):
      shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
  finally:
    if os.path.isdir(tmp):
      shutil.rmtree(tmp)
  return manifest


def stablehlo_module(params: dict, geno: Genotype, max_len: int) -> bytes:
  """The student's logits as a serialised jax.export module, batch and length symbolic."""
  weights = jax.tree.map(jnp.asarray, params)

  def logits(input_ids, token_type_ids, attention_mask):
    batch = {"input_ids": input_ids, "token_type_ids": token_type_ids,
             "attention_mask": attention_mask}
    return student_model.student_apply(weights, batch, geno)["logits"]

  b, length = jax_export.symbolic_shape("b, l", constraints=[f"l <= {max_len}"])
  spec = jax.ShapeDtypeStruct((b, length), jnp.int32)
  return bytes(jax_export.export(jax.jit(logits))(spec, spec, spec).serialize())


def load_stablehlo(path: str, checked: bool = False):
  """The logits function of export folder `path`'s StableHLO module (its files checked
  first, unless `checked` says the caller has): (input_ids, token_type_ids, attention_mask)
  int32 [B, L] -> logits [B, C]."""
  if not checked:
    read_manifest(path)
  with open(os.path.join(path, "model.stablehlo"), "rb") as f:
    return jax_export.deserialize(bytearray(f.read())).call


def load_onnx(path: str, checked: bool = False):
  """The logits function of export folder `path`'s ONNX graph on onnxruntime (its files
  checked first, unless `checked` says the caller has): (input_ids, token_type_ids,
  attention_mask) [B, L] -> logits [B, C]."""
  try:
    import onnxruntime
  except ImportError:
    raise UserError("The onnx runtime needs onnxruntime: pip install 'adabert-jax[onnx]' "
                    "(or pip install onnxruntime).") from None
  if not checked:
    read_manifest(path)
  session = onnxruntime.InferenceSession(os.path.join(path, "model.onnx"),
                                         providers=["CPUExecutionProvider"])

  def logits(*arrays):
    feeds = {name: np.asarray(a, np.int64) for name, a in zip(onnx_export.INPUT_NAMES, arrays)}
    return session.run(["logits"], feeds)[0]

  return logits


def read_manifest(path: str) -> dict:
  """The manifest of export folder `path`, with every file checked against it."""
  manifest_path = os.path.join(path, MANIFEST)
  if not os.path.isdir(path):
    raise UserError(f"Export folder {path!r} does not exist (--export_dir).")
  if not os.path.isfile(manifest_path):
    raise UserError(f"{path} has no {MANIFEST}: it is not a student export folder "
                    "(a run's is <workdir>/student/export).")
  manifest = io_utils.load_json(manifest_path)
  if manifest.get("format") != FORMAT:
    raise UserError(f"{manifest_path}: format {manifest.get('format')!r} is not {FORMAT!r}.")
  version = manifest.get("format_version")
  if not isinstance(version, int) or version > FORMAT_VERSION:
    raise UserError(
        f"{path} is export format version {version!r}, newer than this adabert-jax reads "
        f"({FORMAT_VERSION}): upgrade adabert-jax, or export the student again with this "
        "version.")
  for name in FILES:
    file_path = os.path.join(path, name)
    if not os.path.isfile(file_path):
      raise UserError(f"{file_path} is missing: the export folder is incomplete. Copy the "
                      "whole folder, or export the student again.")
    if _sha256(file_path) != manifest["files"][name]["sha256"]:
      raise UserError(f"{file_path} does not match its checksum in {MANIFEST}: the file was "
                      "altered or damaged. Copy the folder again, or export the student "
                      "again.")
  return manifest


def load_export(path: str) -> tuple[dict, Genotype, ExportedTask, int]:
  """(exported params, genotype, task, max_len) of a checked export folder."""
  read_manifest(path)
  model = io_utils.load_json(os.path.join(path, "model.json"))
  params = _fill(model["params"], io_utils.load_npz(os.path.join(path, "params.npz")))
  geno = Genotype.from_json(json.dumps(model["genotype"]))
  t = model["task"]
  task = ExportedTask(t["name"], tuple(t["labels"]), tuple(t["text_columns"]))
  return params, geno, task, int(model["max_len"])
