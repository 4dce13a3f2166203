"""The export folder (complete, checked, loadable without a run) and the Student API."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import adabert_jax
from adabert_jax.data import sources, text_files, tokenization
from adabert_jax.data.tasks import get_task
from adabert_jax.errors import UserError
from adabert_jax.nas import genotype as genotype_lib, inputs, testing
from adabert_jax.student import export, model

from tests.helpers import REPO_ROOT

PREDICT = os.path.join(REPO_ROOT, "experiments", "predict.py")
HIDDEN, TEACHER_WIDTH, POSITIONS, MAX_LEN = 16, 24, 64, 32
CELL = ((2, 0, "conv3"), (2, 1, "dil_conv5"), (3, 1, "max_pool3"), (3, 2, "identity"),
        (4, 0, "avg_pool3"), (4, 3, "conv7"), (4, 2, "zero"))


def _exported(vocab, mode, seed=0, exact_match=False):
  geno = genotype_lib.Genotype(ops=CELL, depth=2, k_max=3, num_nodes=3, input_mode=mode)
  params = model.init_student(jax.random.key(seed), geno, HIDDEN, TEACHER_WIDTH, 2,
                              exact_match=exact_match)
  # Unequal node and layer-mix weights, so that a mix-up between them shows.
  for c, cell in enumerate(params["cells"]):
    cell["node_logits"] = jax.random.normal(jax.random.key(seed + 10 + c), (3,))
  params["head"]["mix_logits"] = jax.random.normal(jax.random.key(seed + 20), (3,))
  emb = testing.random_emb_tables(jax.random.key(seed + 1), vocab.size, POSITIONS,
                                  TEACHER_WIDTH)
  return geno, model.export(params, emb)


def _write(tmp_path, vocab, task_name="sst2", mode="single", exact_match=False):
  geno, params = _exported(vocab, mode, exact_match=exact_match)
  path = str(tmp_path / "export")
  export.write_export(path, params, geno, get_task(task_name), vocab, MAX_LEN)
  return path, geno, params


SENTENCES = ["a gripping , beautifully made film", "dull", "the plot goes nowhere and the "
             "actors seem to know it , which is the only thing they seem to know " * 2,
             "it is fine"]
PAIRS = [("He left the house .", "He has gone out ."), ("Stocks fell .", "It rained ."),
         ("A man plays a guitar on stage tonight .", "Someone plays music .")]


@pytest.mark.parametrize("task_name,mode,exact_match", [
    ("sst2", "single", False), ("mrpc", "siamese", False), ("rte", "aligned", False),
    ("qnli", "masked", False), ("rte", "attend", False), ("mrpc", "siamese", True),
    ("rte", "aligned", True)])
def test_the_export_folder_holds_the_model_and_reloads_to_the_same_outputs(
    tmp_path, vocab, task_name, mode, exact_match):
  path, geno, params = _write(tmp_path, vocab, task_name, mode, exact_match)
  assert (inputs.EXACT_MATCH_PARAM in params["embedding"]) == exact_match
  assert sorted(os.listdir(path)) == sorted(export.FILES + (export.MANIFEST,))
  loaded, geno2, task, max_len = export.load_export(path)
  assert geno2 == geno and max_len == MAX_LEN and task.labels == get_task(task_name).labels
  jax.tree.map(np.testing.assert_array_equal, loaded, jax.tree.map(np.asarray, params))
  # The Student API tokenizes, sorts by length and buckets: the same logits as the model
  # on the full-length arrays in input order.
  texts = PAIRS if task.is_pair else SENTENCES
  arrays, truncated = tokenization.encode(tuple(map(list, zip(*texts))) if task.is_pair
                                          else (texts,), vocab, MAX_LEN)
  expected = np.asarray(model.student_apply(params, arrays, geno)["logits"])
  student = adabert_jax.Student.load(path)
  out = student.predict(texts, batch_size=2)
  np.testing.assert_allclose(student.logits(texts, batch_size=2)[0], expected, atol=1e-5)
  # The folder's StableHLO module and ONNX graph compute the same function without the
  # model code.
  for runtime in ("stablehlo", "onnx"):
    compiled = adabert_jax.Student.load(path, runtime=runtime)
    np.testing.assert_allclose(compiled.logits(texts, batch_size=3)[0], expected, atol=1e-5)
  assert out.labels == [task.labels[i] for i in expected.argmax(-1)]
  np.testing.assert_allclose(out.probabilities.sum(-1), 1.0, atol=1e-6)
  assert out.truncated == int(truncated.sum()) == (0 if task.is_pair else 1)


def test_an_altered_missing_or_newer_export_is_refused(tmp_path, vocab):
  path, _, _ = _write(tmp_path, vocab)
  export.read_manifest(path)
  with open(os.path.join(path, "vocab.txt"), "a") as f:
    f.write("extra\n")
  with pytest.raises(UserError, match="vocab.txt does not match its checksum"):
    adabert_jax.Student.load(path)
  path, _, _ = _write(tmp_path, vocab)
  os.remove(os.path.join(path, "params.npz"))
  with pytest.raises(UserError, match="params.npz is missing"):
    export.load_export(path)
  path, _, _ = _write(tmp_path, vocab)
  manifest_path = os.path.join(path, export.MANIFEST)
  manifest = json.load(open(manifest_path))
  manifest["format_version"] = export.FORMAT_VERSION + 1
  json.dump(manifest, open(manifest_path, "w"))
  with pytest.raises(UserError, match="newer than this adabert-jax reads"):
    export.load_export(path)
  with pytest.raises(UserError, match="no manifest.json"):
    export.load_export(str(tmp_path))
  with pytest.raises(UserError, match="does not exist"):
    export.load_export(str(tmp_path / "nowhere"))


def test_rewriting_an_export_replaces_it_whole(tmp_path, vocab):
  path, _, _ = _write(tmp_path, vocab)
  open(os.path.join(path, "stray.txt"), "w").write("left over")
  _write(tmp_path, vocab)
  assert "stray.txt" not in os.listdir(path)
  assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_predict_refuses_inputs_of_the_wrong_shape(tmp_path, vocab):
  single = adabert_jax.Student.load(_write(tmp_path / "a", vocab, "sst2")[0])
  pair = adabert_jax.Student.load(_write(tmp_path / "b", vocab, "mrpc", "siamese")[0])
  assert single.predict("one bare sentence").labels[0] in ("0", "1")
  with pytest.raises(UserError, match="this task classifies single sentences"):
    single.predict([("a", "b")])
  with pytest.raises(UserError, match="Input 1 .* this task compares two sentences"):
    pair.predict([("a", "b"), "just one"])
  with pytest.raises(UserError, match="Input 0 has an empty sentence"):
    pair.predict([("a", "  ")])
  with pytest.raises(UserError, match="the input is empty"):
    single.predict([])


def test_the_host_views_of_predict_are_trimmed(tmp_path, vocab):
  # A guard on the bucketing: short pairs run at a short view length, not at max_len.
  arrays, _ = tokenization.encode((["a b"], ["c"]), vocab, MAX_LEN)
  assert inputs.host_batch(arrays, "siamese")["input_ids_a"].shape == (1, 16)


# ---------------------------------------------------------------------------------------
# GLUE test files and submissions, user text files, experiments/predict.py
# ---------------------------------------------------------------------------------------

TEST_ROWS = {"sst2": 1821, "mrpc": 1725, "rte": 3000}


@pytest.mark.parametrize("task_name", sorted(TEST_ROWS))
def test_real_glue_test_files_read_every_row(glue_dir, task_name):
  task = get_task(task_name)
  indices, columns = sources.GlueDirSource(glue_dir).read_test(task)
  assert len(indices) == TEST_ROWS[task_name] and indices[:2] == ["0", "1"]
  assert len(columns) == len(task.text_columns)
  assert all(len(c) == TEST_ROWS[task_name] and all(s.strip() for s in c) for c in columns)
  if task_name == "mrpc":  # its 367 lines with a bare `"` must not merge rows
    assert sum('"' in a + b for a, b in zip(*columns)) == 367


def test_a_submission_file_is_the_glue_server_format(tmp_path):
  path = str(tmp_path / "RTE.tsv")
  sources.write_glue_submission(path, ["0", "1", "2"],
                                ["entailment", "not_entailment", "entailment"])
  assert open(path).read() == ("index\tprediction\n0\tentailment\n1\tnot_entailment\n"
                               "2\tentailment\n")
  assert get_task("mnli").glue_test_files == (("test_matched", "MNLI-m"),
                                             ("test_mismatched", "MNLI-mm"))
  assert get_task("sst2").glue_test_files == (("test", "SST-2"),)


def test_text_files_read_sentences_pairs_and_jsonl(tmp_path):
  (tmp_path / "s.txt").write_text('a "quoted" film\nanother one\n\n')
  assert text_files.read_inputs(str(tmp_path / "s.txt"), False) == ['a "quoted" film',
                                                                    "another one"]
  (tmp_path / "p.tsv").write_text("a\tb\nc\td\n")
  assert text_files.read_inputs(str(tmp_path / "p.tsv"), True) == [("a", "b"), ("c", "d")]
  (tmp_path / "p.jsonl").write_text('{"text_a": "a", "text_b": "b"}\n')
  assert text_files.read_inputs(str(tmp_path / "p.jsonl"), True) == [("a", "b")]
  for name, content, is_pair, message in [
      ("e.txt", "", False, "is empty: nothing to classify"),
      ("g.txt", "one\n\nthree\n", False, "line 2 is empty"),
      ("s.tsv", "just one\n", True, "line 1 has 1 tab-separated field"),
      ("p2.tsv", "a\tb\n", False, "this model classifies single sentences"),
      ("b.jsonl", '{"text": "a"}\n{"txt": "b"}\n', False, "line 2: each line must be an"),
      ("c.jsonl", "{not json\n", False, "line 1 is not JSON")]:
    (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=message):
      text_files.read_inputs(str(tmp_path / name), is_pair)
  with pytest.raises(UserError, match="does not exist"):
    text_files.read_inputs(str(tmp_path / "nowhere.txt"), False)


def _predict_cli(*args, stdin=None):
  return subprocess.run([sys.executable, PREDICT, *args], capture_output=True, text=True,
                        cwd=REPO_ROOT, timeout=300, input=stdin)


def test_predict_cli_classifies_files_and_stdin(tmp_path, vocab):
  path, geno, params = _write(tmp_path, vocab, "sst2")
  (tmp_path / "in.txt").write_text("\n".join(SENTENCES) + "\n")
  out = _predict_cli(f"--export_dir={path}", f"--input={tmp_path / 'in.txt'}",
                     f"--output={tmp_path / 'out.jsonl'}")
  assert out.returncode == 0, out.stderr
  assert "1 of 4 inputs were longer than max_len 32" in out.stderr
  rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
  expected = adabert_jax.Student.load(path).predict(SENTENCES)
  assert [r["label"] for r in rows] == expected.labels
  np.testing.assert_allclose([[r["probabilities"][k] for k in ("0", "1")] for r in rows],
                             expected.probabilities, atol=1e-5)
  # A fresh process runs the deserialised StableHLO module: the same predictions.
  out = _predict_cli(f"--export_dir={path}", "--runtime=stablehlo",
                     f"--input={tmp_path / 'in.txt'}", f"--output={tmp_path / 'hlo.jsonl'}")
  assert out.returncode == 0, out.stderr
  hlo_rows = [json.loads(line) for line in (tmp_path / "hlo.jsonl").read_text().splitlines()]
  assert [r["label"] for r in hlo_rows] == expected.labels
  np.testing.assert_allclose([[r["probabilities"][k] for k in ("0", "1")] for r in hlo_rows],
                             expected.probabilities, atol=1e-5)
  out = _predict_cli(f"--export_dir={path}", stdin="a gripping film\n")
  assert out.returncode == 0, out.stderr
  header, row = out.stdout.splitlines()
  assert header == "label\tp_0\tp_1"
  assert row.split("\t")[0] == adabert_jax.Student.load(path).predict("a gripping film").labels[0]


def test_predict_cli_writes_glue_submissions_from_a_run(tmp_path, vocab, glue_dir):
  run = tmp_path / "run"
  _write(run / "student", vocab, "rte", "siamese")
  out = _predict_cli(f"--workdir={run}", "--split=test", f"--glue_dir={glue_dir}",
                     f"--output_dir={tmp_path / 'sub'}")
  assert out.returncode == 0, out.stderr
  lines = (tmp_path / "sub" / "RTE.tsv").read_text().splitlines()
  assert lines[0] == "index\tprediction" and len(lines) == 1 + TEST_ROWS["rte"]
  assert {line.split("\t")[1] for line in lines[1:]} <= {"entailment", "not_entailment"}
  assert [line.split("\t")[0] for line in lines[1:4]] == ["0", "1", "2"]


@pytest.mark.parametrize("args,stdin,message", [
    ([], None, "Give one of --export_dir"),
    (["--export_dir=/nonexistent/export"], None, "does not exist (--export_dir)"),
    (["--workdir=/nonexistent/run"], None, "has not finished training"),
    (["--workdir=/nonexistent/run", "--model=teacher"], None, "No fine-tuned teacher"),
    (["EXPORT"], "", "standard input is empty"),
    (["EXPORT"], "a\tb\n", "standard input line 1 has 2 tab-separated field(s)"),
    (["EXPORT", "--split=test"], None, "--split=test reads GLUE's test files"),
])
def test_predict_cli_bad_input_gets_one_line_and_exit_2(tmp_path, vocab, args, stdin,
                                                         message):
  if args and args[0] == "EXPORT":
    args = [f"--export_dir={_write(tmp_path, vocab)[0]}"] + args[1:]
  out = _predict_cli(*args, stdin=stdin)
  assert out.returncode == 2, out.stderr
  assert message in out.stderr and "Traceback" not in out.stderr


def test_the_onnxruntime_only_snippet_of_the_docs_matches_the_student(tmp_path, vocab):
  path, _, _ = _write(tmp_path, vocab, "sst2")
  doc = open(os.path.join(REPO_ROOT, "docs", "serving.md")).read()
  snippet = doc.split("## With onnxruntime alone")[1].split("```python\n")[1].split("```")[0]
  assert "import adabert_jax" not in snippet and "jax" not in snippet.replace("onnx", "")
  scope = {}
  exec(snippet.replace('"runs/sst2/student/export"', repr(path)), scope)
  expected = adabert_jax.Student.load(path).logits(["a gripping film", "a dull one"])[0]
  np.testing.assert_allclose(scope["logits"], expected, atol=1e-5)
  assert scope["labels"] == [("0", "1")[i] for i in expected.argmax(-1)]
