"""Every data source, on real rows where they exist, and every bad input."""

import os

import numpy as np
import pytest

from adabert_jax import UserError
from adabert_jax.data import sources
from adabert_jax.data.tasks import get_task

# Data rows in the real files. MRPC's train.tsv has 3,668 lines, the header included.
REAL_COUNTS = {("sst2", "train"): 67349, ("sst2", "dev"): 872,
               ("mrpc", "train"): 3667, ("mrpc", "dev"): 408,
               ("rte", "train"): 2490, ("rte", "dev"): 277}
# (first text, last text, first label, last label, positive count) per real file.
REAL_ROWS = {
    ("sst2", "train"): ("hide new secretions from the parental units ",
                        "this new jangle of noise , mayhem and stupidity", 0, 0, 37569),
    ("sst2", "dev"): ("it 's a charming and often affecting journey . ",
                      "looking aristocratic , luminous yet careworn", 1, 1, 444),
    ("mrpc", "train"): ('Amrozi accused his brother , whom he called " the witness " ',
                        "The 30-year bond US30YT = RR rose 22 / 32", 1, 0, 2473),
    ("mrpc", "dev"): ("He said the foodservice pie business doesn 't fit",
                      "Ex-KGB agent Putin added that the Beatles", 1, 1, 279),
    ("rte", "train"): ("No Weapons of Mass Destruction Found in Iraq Yet.",
                       "Turkey is unlikely to become involved in", 1, 1, 1241),
    ("rte", "dev"): ("Dana Reeve, the widow of the actor Christopher Reeve",
                     "Danny Kennedy, Greenpeace campaigns director", 1, 1, 131),
}


@pytest.mark.parametrize("task_name,split", sorted(REAL_COUNTS))
def test_real_glue_rows(glue_dir, task_name, split):
  raw = sources.GlueDirSource(glue_dir).read(get_task(task_name), split)
  first, last, first_label, last_label, positives = REAL_ROWS[(task_name, split)]
  assert len(raw) == REAL_COUNTS[(task_name, split)]
  assert raw.labels.dtype == np.int32
  assert raw.texts[0][0].startswith(first)
  assert raw.texts[0][-1].startswith(last)
  assert (raw.labels[0], raw.labels[-1]) == (first_label, last_label)
  assert int(np.sum(raw.labels == 1)) == positives  # label balance, exactly
  if task_name == "rte":  # class 1 is not_entailment: the label strings, not 0/1 digits
    assert get_task("rte").labels[raw.labels[0]] == "not_entailment"
  assert all(len(t) == len(raw) for t in raw.texts)


def test_mrpc_quotes_do_not_merge_rows(glue_dir):
  raw = sources.GlueDirSource(glue_dir).read(get_task("mrpc"), "train")
  with_quotes = sum('"' in a or '"' in b for a, b in zip(*raw.texts))
  assert with_quotes > 700  # the trap: a default CSV reader merges these rows
  assert not any("\t" in t or "\n" in t for t in raw.texts[0] + raw.texts[1])
  assert not raw.texts[0][0].startswith("\ufeff")


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def test_glue_reader_handles_bom_crlf_and_headerless_cola(tmp_path):
  _write(tmp_path / "RTE" / "train.tsv",
         "\ufeffindex\tsentence1\tsentence2\tlabel\r\n0\ta \"b\tc\tentailment\r\n"
         "1\td\te\tnot_entailment\r\n")
  raw = sources.GlueDirSource(str(tmp_path)).read(get_task("rte"), "train")
  assert raw.texts == (["a \"b", "d"], ["c", "e"])
  np.testing.assert_array_equal(raw.labels, [0, 1])
  _write(tmp_path / "CoLA" / "dev.tsv", "gj04\t1\t\tThe sailors rode the breeze.\n"
         "gj04\t0\t*\tThe more we study verbs.\n")
  raw = sources.GlueDirSource(str(tmp_path)).read(get_task("cola"), "dev")
  assert raw.texts[0] == ["The sailors rode the breeze.", "The more we study verbs."]
  np.testing.assert_array_equal(raw.labels, [1, 0])


def test_missing_glue_dir(tmp_path):
  with pytest.raises(UserError, match=r"does not exist \(--glue_dir\)"):
    sources.GlueDirSource(str(tmp_path / "nope")).read(get_task("sst2"), "train")


def test_missing_glue_file(tmp_path):
  os.makedirs(tmp_path / "SST-2")
  with pytest.raises(UserError, match=r"Missing .*SST-2/train.tsv.*--glue_dir"):
    sources.GlueDirSource(str(tmp_path)).read(get_task("sst2"), "train")


def test_columns_that_do_not_match_the_task(tmp_path):
  _write(tmp_path / "SST-2" / "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n")
  with pytest.raises(UserError, match=r"do not match task 'sst2'.*missing \['sentence'\]"):
    sources.GlueDirSource(str(tmp_path)).read(get_task("sst2"), "train")


def test_unknown_label_names_file_and_line(tmp_path):
  _write(tmp_path / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n"
         "0\ta\tb\tentailment\n1\tc\td\tcontradiction\n")
  with pytest.raises(UserError, match=r"dev.tsv line 3: unknown label 'contradiction'"):
    sources.GlueDirSource(str(tmp_path)).read(get_task("rte"), "dev")


def test_wrong_field_count_names_the_line(tmp_path):
  _write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n")
  with pytest.raises(UserError, match=r"line 3: 3 tab-separated fields"):
    sources.GlueDirSource(str(tmp_path)).read(get_task("sst2"), "dev")


def test_empty_split(tmp_path):
  _write(tmp_path / "SST-2" / "dev.tsv", "sentence\tlabel\n")
  with pytest.raises(UserError, match=r"has no examples"):
    sources.GlueDirSource(str(tmp_path)).read(get_task("sst2"), "dev")


def test_unknown_split(tmp_path):
  with pytest.raises(UserError, match=r"has no split 'test'"):
    sources.GlueDirSource(str(tmp_path)).read(get_task("sst2"), "test")


def test_auto_source_without_glue_dir_says_where_to_get_the_data():
  with pytest.raises(UserError, match=r"--glue_dir=DIR with DIR/QNLI/train.tsv.*tfds"):
    sources.make_source(get_task("qnli"))
  assert isinstance(sources.make_source(get_task("rotten_tomatoes")),
                    sources.MovieReviewsSource)


def test_movie_reviews_offline_default_split():
  task = get_task("rotten_tomatoes")
  source = sources.MovieReviewsSource(seed=0, dev_fraction=0.1)
  train, dev = source.read(task, "train"), source.read(task, "dev")
  assert (len(train), len(dev)) == (7677, 853)  # 8,530 snippets, 10% held out
  assert not set(train.texts[0]) & set(dev.texts[0])
  assert abs(train.labels.mean() - 0.5) < 0.02 and abs(dev.labels.mean() - 0.5) < 0.05
  again = sources.MovieReviewsSource(seed=0).read(task, "dev")
  assert again.texts == dev.texts  # fixed by the seed
  other = sources.MovieReviewsSource(seed=1).read(task, "dev")
  assert other.texts != dev.texts
  assert source.fingerprint(task, "dev") != sources.MovieReviewsSource(seed=1).fingerprint(
      task, "dev")
  # Real Rotten Tomatoes snippets (the corpus SST was built from), lower-cased.
  assert any(t.startswith("the rock is destined to be the 21st century's new")
             for t in train.texts[0] + dev.texts[0])


@pytest.mark.parametrize("task_name,split,fields", [
    ("mrpc", "dev", 2), ("sst2", "train", 1), ("mnli", "dev_mismatched", 2)])
def test_tfds_source_with_mock_data(task_name, split, fields):
  tfds = pytest.importorskip("tensorflow_datasets")
  task = get_task(task_name)
  with tfds.testing.mock_data(num_examples=7):
    raw = sources.TfdsSource().read(task, split)
  assert len(raw) == 7 and len(raw.texts) == fields
  assert all(isinstance(t, str) for t in raw.texts[0])
  assert raw.labels.dtype == np.int32
  assert ((raw.labels >= 0) & (raw.labels < task.num_classes)).all()
