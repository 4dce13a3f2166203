"""Your own data (--task=custom): CSV, TSV and JSONL files written here, 3 classes, pairs,
a dev split carved from train, the metrics, and one clear line for each bad file."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from adabert_jax.data import custom, metrics, pipeline
from adabert_jax.data.tasks import Task
from adabert_jax.errors import UserError
from tests.helpers import REPO_ROOT, load_config

ROWS = [  # (text, label): commas, quotes and a newline inside quoted CSV fields
    ('a "gripping", tense film', "pos"), ("dull, slow\nand long", "neg"), ("it is a film", "neu"),
    ("great acting", "pos"), ("awful plot", "neg"), ("a film about a boat", "neu"),
    ("loved it", "pos"), ("hated it", "neg"), ("runs 90 minutes", "neu"),
    ("superb", "pos"), ("boring", "neg"), ("in colour", "neu"),
]


def _csv(path, rows, header=("text", "label")):
  def quote(s):
    return '"' + s.replace('"', '""') + '"'
  lines = [",".join(header)] + [",".join(quote(v) for v in row) for row in rows]
  path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
  return str(path)


def _jsonl(path, records):
  path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
  return str(path)


def _spec(**fields):
  custom_cfg = load_config("tiny").data.custom
  custom_cfg.update(fields)
  return custom.CustomSpec.from_config(custom_cfg)


def _read(spec, split="train", seed=0, dev_fraction=0.25):
  task = spec.task()
  return task, custom.CustomFileSource(spec, seed, dev_fraction).read(task, split)


def test_csv_tsv_and_jsonl_give_the_same_three_class_task(tmp_path):
  plain = [(t.replace("\n", " "), y) for t, y in ROWS]  # TSV cannot hold a newline
  csv_path = _csv(tmp_path / "train.csv", plain)
  tsv_path = tmp_path / "train.tsv"
  tsv_path.write_text("text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in plain))
  jsonl_path = _jsonl(tmp_path / "train.jsonl", [{"text": t, "label": y, "id": i}
                                                  for i, (t, y) in enumerate(plain)])
  results = [_read(_spec(train_file=str(p), dev_file=str(p)))
             for p in (csv_path, tsv_path, jsonl_path)]
  for task, raw in results:
    assert task.labels == ("neg", "neu", "pos") and task.num_classes == 3 and task.custom
    assert raw.texts == ([t for t, _ in plain],)
    np.testing.assert_array_equal(raw.labels, [("neg", "neu", "pos").index(y) for _, y in plain])


def test_csv_quotes_commas_and_newlines_stay_in_their_field(tmp_path):
  path = _csv(tmp_path / "train.csv", ROWS)
  _, raw = _read(_spec(train_file=path, dev_file=path))
  assert raw.texts[0][:2] == ['a "gripping", tense film', "dull, slow\nand long"]
  assert len(raw.labels) == len(ROWS)


def test_listed_labels_set_the_class_order_and_the_metric(tmp_path):
  path = _csv(tmp_path / "train.csv", ROWS)
  task, raw = _read(_spec(train_file=path, dev_file=path, labels="pos,neu,neg",
                          metric="macro_f1"))
  assert task.labels == ("pos", "neu", "neg") and task.metric == "macro_f1"
  assert raw.labels[0] == 0 and raw.labels[1] == 2


def test_a_pair_task_from_jsonl(tmp_path):
  records = [{"q": f"question {i}", "a": f"answer {i}", "label": i % 2} for i in range(8)]
  path = _jsonl(tmp_path / "pairs.jsonl", records)
  task, raw = _read(_spec(train_file=path, dev_file=path, text_columns="q,a"))
  assert task.is_pair and task.labels == ("0", "1")  # JSON numbers become their text
  assert raw.texts == ([r["q"] for r in records], [r["a"] for r in records])


def test_dev_carved_from_train_is_stratified_disjoint_and_seeded(tmp_path):
  path = _csv(tmp_path / "train.csv", ROWS * 4)
  spec = _spec(train_file=path)
  _, train = _read(spec, "train")
  _, dev = _read(spec, "dev")
  assert len(train.labels) + len(dev.labels) == len(ROWS) * 4
  assert set(dev.labels) == set(train.labels) == {0, 1, 2}
  assert np.bincount(dev.labels).tolist() == [4, 4, 4]  # a quarter of each class's 16
  _, again = _read(spec, "dev")
  assert again.texts == dev.texts
  _, other = _read(spec, "dev", seed=1)
  assert other.texts != dev.texts
  # The split is part of what the data is: another seed is other data.
  task = spec.task()
  fp = lambda seed: custom.CustomFileSource(spec, seed, 0.25).fingerprint(task, "dev")  # noqa
  assert fp(0) != fp(1)


def _bad(tmp_path, name, text):
  path = tmp_path / name
  path.write_text(text, encoding="utf-8")
  return str(path)


@pytest.mark.parametrize("files,fields,message", [
    ({"t.csv": "sentence,label\na,x\nb,y\n"}, {},
     "t.csv: no column 'text'; the columns are 'sentence', 'label'"),
    ({"t.csv": "text,label\na,x\nb,x\nc,y\nd,y\n", "d.csv": "text,label\ne,z\n"},
     {"dev_file": "d.csv"}, "d.csv line 2: unknown label 'z'"),
    ({"t.csv": 'text,label\na,x\n" ",x\nc,y\nd,y\n'}, {},
     "t.csv line 3: the text column 'text' is empty"),
    ({"t.csv": "text\tlabel\na\tx\nb\ty\n"}, {},
     "the delimiter does not match format csv; pass --config.data.custom.format=tsv"),
    ({"t.tsv": "text,label\na,x\nb,y\n"}, {},
     "the delimiter does not match format tsv; pass --config.data.custom.format=csv"),
    ({"t.jsonl": '{"q": "a", "a": "b", "label": 1}\n{"q": "c", "label": 0}\n'},
     {"text_columns": "q,a"}, "t.jsonl line 2: no key 'a'"),
    ({"t.csv": "text,label\na,x\nb,x\n"}, {}, "one class only ('x')"),
    ({"t.csv": "text,label\na,x\nb,x\nc,y\n"}, {},
     "fewer than two training examples of class 'y'"),
    ({"t.csv": "text,label,extra\na,x\n"}, {}, "t.csv line 2: 2 fields where the header has 3"),
    ({"t.jsonl": '{"text": "a", "label": "x"}\n[1, 2]\n'}, {}, "t.jsonl line 2: not a JSON"),
    ({"t.data": "text,label\n"}, {}, "cannot tell its format from the extension '.data'"),
    ({"t.csv": ""}, {}, "t.csv is empty"),
    ({}, {"train_file": "missing.csv"}, "missing.csv does not exist"),
    ({"t.csv": "text,label\na,x\nb,x\nc,y\nd,y\n"}, {"metric": "auc"},
     "--config.data.custom.metric='auc': use one of"),
    ({"t.csv": "text,label\na,x\nb,x\nc,y\nd,y\n"}, {"text_columns": "a,b,c"},
     "name one text column, or two"),
])
def test_a_bad_file_or_field_gets_one_line_naming_it(tmp_path, files, fields, message):
  for name, text in files.items():
    _bad(tmp_path, name, text)
  defaults = {"train_file": next(iter(files), "t.csv")}
  chosen = {**defaults, **fields}
  for key in ("train_file", "dev_file"):
    if key in chosen:
      chosen[key] = str(tmp_path / chosen[key])
  with pytest.raises(UserError) as raised:
    spec = _spec(**chosen)
    task = spec.task()
    source = custom.CustomFileSource(spec)
    for split in ("train", "dev"):
      source.read(task, split)
  assert message in str(raised.value)
  assert "\n" not in str(raised.value)


def test_no_train_file_says_which_flag():
  config = load_config("tiny")
  config.task = "custom"
  with pytest.raises(UserError, match=r"--task=custom needs --config.data.custom.train_file"):
    pipeline.task_from_config(config)


def test_macro_f1_and_multiclass_matthews_by_hand():
  label = np.array([0, 0, 1, 1, 2, 2])
  pred = np.array([0, 1, 1, 1, 2, 0])
  # class 0: tp 1, fp 1, fn 1 -> 0.5; class 1: tp 2, fp 1, fn 0 -> 0.8; class 2: tp 1, fn 1
  # -> 2/3.
  assert metrics.macro_f1(pred, label, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
  # Gorodkin's R_K: (c * s - sum_k p_k t_k) / sqrt((s^2 - sum p_k^2)(s^2 - sum t_k^2)).
  c, s, p, t = 4, 6, np.array([2, 3, 1]), np.array([2, 2, 2])
  expected = (c * s - p @ t) / np.sqrt((s * s - p @ p) * (s * s - t @ t))
  assert metrics.matthews(pred, label, 3) == pytest.approx(expected)
  assert metrics.matthews(label, label, 3) == pytest.approx(1.0)
  # At two classes it is the binary MCC.
  b_label, b_pred = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0])
  tp, tn, fp, fn = 2, 1, 1, 1
  assert metrics.matthews(b_pred, b_label) == pytest.approx(
      (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
  task = Task("t", "", ("text",), "label", ("a", "b", "c"), "macro_f1", custom=True)
  scores = metrics.compute_metrics(task, pred, label)
  assert scores["score"] == scores["macro_f1"] == pytest.approx(100 * (0.5 + 0.8 + 2 / 3) / 3)


def test_a_task_definition_round_trips_through_json():
  task = Task("t", "", ("q", "a"), "label", ("x", "y"), "accuracy", custom=True)
  assert Task.from_definition(json.loads(json.dumps(task.definition()))) == task


@pytest.mark.slow
def test_a_three_class_csv_runs_the_whole_pipeline_and_predicts(tmp_path, tiny_bert_dir):
  rng = np.random.default_rng(0)
  words = {"pos": "good great superb fine", "neg": "bad awful dull poor",
           "neu": "film plot scene actor"}
  rows = []
  for i in range(150):
    label = ("pos", "neg", "neu")[i % 3]
    rows.append((" ".join(rng.choice(words[label].split() + ["the", "a", "it"], 6)), label))
  train = _csv(tmp_path / "reviews.csv", rows)
  run = tmp_path / "run"
  env = {**os.environ, "ADABERT_QUIET": "1", "ADABERT_CACHE_DIR": str(tmp_path / "cache")}
  args = [sys.executable, os.path.join(REPO_ROOT, "experiments", "pipeline.py"),
          f"--config={os.path.join(REPO_ROOT, 'experiments', 'configs', 'default.py')}:tiny",
          "--task=custom", f"--config.data.custom.train_file={train}",
          "--config.data.custom.metric=macro_f1", "--config.data.custom.name=reviews",
          f"--workdir={run}", f"--config.teacher.checkpoint={tiny_bert_dir}",
          "--config.bench.bert_base=false", "--config.derive.method=alpha"]
  done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "task reviews: 3 classes, metric macro_f1" in done.stdout
  student = json.loads((run / "student" / "result.json").read_text())
  assert "macro_f1" in student["dev"]
  model = json.loads((run / "student" / "export" / "model.json").read_text())
  assert model["task"]["labels"] == ["neg", "neu", "pos"]
  report = (run / "report.md").read_text()
  assert f"train `{train}`" in report and "(dev: a stratified 0.1 of it" in report
  assert "Classes: neg, neu, pos." in report
  teacher_config = json.loads((run / "teacher" / "config.json").read_text())
  assert teacher_config["task_definition"]["labels"] == ["neg", "neu", "pos"]
  test_file = _jsonl(tmp_path / "new.jsonl", [{"text": "superb fine film"},
                                               {"text": "awful dull plot", "label": "neg"}])
  out = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "experiments", "predict.py"),
                        f"--workdir={run}", "--split=test", f"--test_file={test_file}",
                        f"--output_dir={tmp_path / 'out'}"], capture_output=True, text=True,
                       env=env, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  rows = (tmp_path / "out" / "reviews.tsv").read_text().splitlines()
  assert rows[0] == "index\tprediction" and [r.split("\t")[0] for r in rows[1:]] == ["1", "2"]
  assert all(r.split("\t")[1] in ("neg", "neu", "pos") for r in rows[1:])
  for which in (["--export_dir", str(run / "student" / "export")],
                ["--workdir", str(run), "--model", "teacher"]):
    out = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "experiments", "predict.py"),
                          *which, "--output=-"], input="good great superb film\n",
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1].split("\t")[0] in ("neg", "neu", "pos"), out.stdout
