"""The search stage end to end on a tiny teacher: resume, guards, stage reuse."""

import json
import os

import jax
import numpy as np
import pytest

from adabert_jax import UserError
from adabert_jax.pipeline import stages
from adabert_jax.nas import genotype as genotype_lib, search
from adabert_jax.train import checkpoints
from tests.helpers import load_config


def _config(tiny_bert_dir, **search_overrides):
  config = load_config("tiny")
  config.data.max_len = 32
  config.teacher.checkpoint = tiny_bert_dir
  config.teacher.batch_size = 8
  config.teacher.epochs = 1
  config.teacher.learning_rate = 1e-3
  config.probes.batch_size = 8
  config.probes.epochs = 1
  # Length-bucketed batches (the tiny preset turns them off), so the resume test replays
  # the bucket order.
  config.search.update(dict(hidden=16, k_max=2, batch_size=8, epochs=2,
                            checkpoint_every_steps=4, dropout=0.1, holdout=0,
                            bucket_lengths=True))
  config.search.update(search_overrides)
  return config


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_bert_dir, tiny_splits, vocab):
  """A workdir with a fine-tuned tiny teacher and its precomputed knowledge."""
  task, splits = tiny_splits
  workdir = str(tmp_path_factory.mktemp("searchrun"))
  config = _config(tiny_bert_dir)
  teacher = stages.ensure_teacher(config, task, splits, workdir)
  knowledge = stages.ensure_knowledge(config, task, splits, vocab, workdir, teacher)
  return task, splits, vocab, workdir, teacher, knowledge


def _search(config, prepared, workdir):
  task, splits, _, _, teacher, knowledge = prepared
  return search.run_search(config, task, splits, knowledge["knowledge"],
                           knowledge["emb_tables"], teacher, workdir)


def _final_params(workdir):
  return checkpoints.restore_pytree(os.path.join(workdir, "search", "final_params"))


def test_search_writes_genotype_history_and_plots(prepared, tiny_bert_dir, tmp_path):
  config = _config(tiny_bert_dir, arch_lr=0.05)  # 16 steps: a fast lr so alpha moves
  result = _search(config, prepared, str(tmp_path))
  out = os.path.join(str(tmp_path), "search")
  assert not os.path.exists(os.path.join(out, "genotype.json"))  # the run's is derive's
  geno = genotype_lib.Genotype.from_json(json.dumps(result["genotype"]))
  assert 1 <= geno.depth <= 2 and len(geno.ops) == 6  # 2 edges for each of 3 nodes
  history = [json.loads(l) for l in open(os.path.join(out, "history.jsonl"))]
  assert [h["epoch"] for h in history] == [0, 1]
  for h in history:
    assert np.array(h["op_probs"]).shape == (9, 10)
    assert sum(h["sampled_depths"].values()) == 8  # 64 examples / batch 8, per epoch
    assert set(h["loss"]) == {"total", "ce", "kd", "kd_layers", "kd_final", "efficiency"}
    assert 0 <= h["dev_derived"]["accuracy"] <= 100
  assert os.path.getsize(os.path.join(out, "cell.png")) > 1000
  assert os.path.getsize(os.path.join(out, "alpha.png")) > 1000
  assert result["steps_this_run"] == 16
  # Architecture logits moved away from their near-uniform start (0.1 each).
  assert np.abs(np.array(result["op_probs"]) - 0.1).max() > 0.01
  # The paper's derive rule hands alpha's genotype on; the measured rule needs a holdout.
  task, splits, _, _, _, knowledge = prepared
  config.derive.method = "alpha"
  derived = stages.ensure_derive(config, task, splits, knowledge, str(tmp_path), result)
  assert derived["genotype"] == result["genotype"]
  assert stages.searched_genotype(str(tmp_path)) == geno
  config.derive.method = "measured"
  with pytest.raises(UserError, match="search.holdout"):
    stages.ensure_derive(config, task, splits, knowledge, str(tmp_path), result)


def test_history_counts_fair_steps_apart_from_sampled_depths(prepared, tiny_bert_dir,
                                                            tmp_path):
  """A fair step runs every cell, so the epoch record counts it as a fair step, not as a
  sampled depth of k_max."""
  config = _config(tiny_bert_dir, arch_warmup_epochs=1, warmup_sampling="fair")
  _search(config, prepared, str(tmp_path))
  history = [json.loads(l) for l in open(os.path.join(str(tmp_path), "search",
                                                      "history.jsonl"))]
  assert [(h["fair_steps"], sum(h["sampled_depths"].values())) for h in history] == [
      (8, 0), (0, 8)]  # 8 steps an epoch: the first epoch fair, the second alpha's


@pytest.mark.parametrize("arch_split", [0.0, 0.5])
def test_resume_gives_the_same_parameters_as_an_uninterrupted_run(prepared, tiny_bert_dir,
                                                                  tmp_path, arch_split):
  """Also with alpha's own batches (arch_split), which must be read again from where the
  stopped run left them."""
  straight, resumed = str(tmp_path / "straight"), str(tmp_path / "resumed")
  # 4 steps an epoch at arch_split 0.5 (3 epochs), so 12 steps cross epochs of both parts;
  # alpha is held still (and reads no batch of its own) in the first 4.
  def config(max_steps):
    return _config(tiny_bert_dir, max_steps=max_steps, epochs=3, arch_split=arch_split,
                   arch_warmup_epochs=1)

  _search(config(12), prepared, straight)
  # Stop after 5 steps (checkpointed at the stop), then run the same search to 12 steps.
  first = _search(config(5), prepared, resumed)
  assert first["steps_this_run"] == 5
  second = _search(config(12), prepared, resumed)
  assert second["steps_this_run"] == 7  # picked up at step 5
  # examples_read_per_s adds alpha's batches: 1 of the first run's 5 steps read one (the
  # others were the warm-up's), all 7 of the second's.
  for run, arch_steps in ((first, 1), (second, 7)):
    ratio = run["examples_read_per_s"] / run["examples_per_s"]
    expected = 1 + (arch_steps / run["steps_this_run"] if arch_split else 0)
    assert ratio == pytest.approx(expected, rel=0.02)
  a, b = _final_params(straight), _final_params(resumed)
  jax.tree.map(np.testing.assert_array_equal, a, b)  # bitwise on CPU
  assert second["genotype"] == json.load(open(os.path.join(
      straight, "search", "result.json")))["genotype"]


def test_seed_offset_changes_the_search_alone(prepared, tiny_bert_dir, tmp_path):
  """search.seed_offset reseeds the supernet's init, batches and sampling, nothing upstream;
  at 0 it stays out of the fingerprint, so searches made before it existed are reused."""
  task, splits, _, _, _, knowledge = prepared
  runs = {}
  for offset in (0, 1):
    config = _config(tiny_bert_dir, max_steps=4, seed_offset=offset, holdout=8)
    workdir = str(tmp_path / f"offset{offset}")
    runs[offset] = _search(config, prepared, workdir), _final_params(workdir)
    _, held = search.search_and_holdout(config, splits, knowledge["knowledge"])
    runs[offset] += (held["input_ids"],)
  assert "seed_offset" not in runs[0][0]["fingerprint"]["search"]
  assert runs[1][0]["fingerprint"]["search"]["seed_offset"] == 1
  assert runs[0][0]["fingerprint"]["seed"] == runs[1][0]["fingerprint"]["seed"]
  np.testing.assert_array_equal(runs[0][2], runs[1][2])  # the same held-out examples
  def differs(a, b):
    return jax.tree.leaves(jax.tree.map(lambda x, y: not np.array_equal(x, y), a, b))
  assert all(differs(runs[0][1]["arch"], runs[1][1]["arch"]))  # alpha's sampling noise
  # The weights start elsewhere (never-sampled ops with constant inits excepted).
  assert np.mean(differs(runs[0][1], runs[1][1])) > 0.5


def test_nan_in_the_knowledge_stops_with_the_step_and_term(prepared, tiny_bert_dir,
                                                           tmp_path):
  task, splits, vocab, workdir, teacher, knowledge = prepared
  poisoned = {split: dict(k) for split, k in knowledge["knowledge"].items()}
  poisoned["train"]["teacher_logits"] = poisoned["train"]["teacher_logits"].copy()
  poisoned["train"]["teacher_logits"][:] = np.nan
  config = _config(tiny_bert_dir, checkpoint_every_steps=1)
  with pytest.raises(UserError, match=r"Non-finite loss term\(s\) kd_final.*at search step 1"):
    search.run_search(config, task, splits, poisoned, knowledge["emb_tables"], teacher,
                      str(tmp_path))
  # Nothing non-finite reached the checkpoint ring; the debug state is kept aside.
  ring = checkpoints.CheckpointRing(str(tmp_path / "search" / "checkpoints"))
  assert ring.steps() == []
  assert os.path.isdir(tmp_path / "search" / "debug_nonfinite_step1")


def test_stages_are_reused_and_other_configs_refused(prepared, tiny_bert_dir, tiny_splits,
                                                     vocab, capsys):
  task, splits = tiny_splits
  _, _, _, workdir, teacher, _ = prepared
  config = _config(tiny_bert_dir)
  again = stages.ensure_teacher(config, task, splits, workdir)
  assert again["checkpoint_id"] == teacher["checkpoint_id"]
  assert "[teacher] done already" in capsys.readouterr().out
  other = _config(tiny_bert_dir)
  other.teacher.learning_rate = 5e-4
  with pytest.raises(UserError, match=r"made by a different config \(teacher.learning_rate: "
                     r"0.001 -> 0.0005\).*--overwrite"):
    stages.ensure_teacher(other, task, splits, workdir)


def test_bad_search_config_value(tiny_bert_dir):
  config = _config(tiny_bert_dir, mode="everything")
  with pytest.raises(UserError, match=r"Bad --config.search.\* value: .*mode"):
    search.setup_from_config(config.search, False)


def test_exact_match_enters_the_fingerprint_only_where_the_supernet_reads_it(tiny_bert_dir):
  """exact_match is on by default but ignored without two views: single-sentence searches
  and the masked pair form keep the fingerprint of runs made before the field, pair
  searches that read views record it, so turning it off there is a different search."""
  def fingerprint(is_pair, **overrides):
    return search.search_fingerprint(_config(tiny_bert_dir, **overrides), "teacher-id",
                                     is_pair)["search"]

  assert "exact_match" not in fingerprint(False, exact_match=True)
  assert fingerprint(False, exact_match=True) == fingerprint(False, exact_match=False)
  assert "exact_match" not in fingerprint(True, exact_match=True, pair_mode="masked")
  assert fingerprint(True, exact_match=True)["exact_match"] is True
  assert "exact_match" not in fingerprint(True, exact_match=False)


def _numbered_train(n):
  """A train split whose input_ids' first token is the row's number, with its knowledge."""
  ids = np.zeros((n, 4), np.int32)
  ids[:, 0] = np.arange(n)
  train = {"input_ids": ids, "token_type_ids": np.zeros_like(ids),
           "attention_mask": np.ones_like(ids), "label": np.arange(n) % 2}
  knowledge = {"teacher_logits": np.zeros((n, 2), np.float32),
               "probe_logits": np.zeros((n, 3, 2), np.float32)}
  return {"train": train}, {"train": knowledge}


@pytest.mark.parametrize("train_subset", [0, 30])
def test_search_on_augmented_copies_leaves_out_the_held_out_examples(train_subset):
  """search.train_data=augmented: the search reads its training rows plus the copies of
  exactly those rows; no copy of a held-out (or subsetted-away) example gets in."""
  n, copies = 80, 3
  splits, knowledge = _numbered_train(n)
  source = np.tile(np.arange(n, dtype=np.int32), copies)
  augmented = {"input_ids": splits["train"]["input_ids"][source] + 1000,  # copy of row r: r + 1000
               "token_type_ids": np.zeros((n * copies, 4), np.int32),
               "attention_mask": np.ones((n * copies, 4), np.int32),
               "label": source % 2, "teacher_logits": np.ones((n * copies, 2), np.float32),
               "probe_logits": np.ones((n * copies, 3, 2), np.float32), "source": source}
  config = load_config("tiny")
  config.search.update(holdout=20, train_subset=train_subset)
  plain, held = search.search_and_holdout(config, splits, knowledge)
  train, held_again = search.search_and_holdout(config, splits, knowledge, augmented)
  np.testing.assert_array_equal(held["input_ids"], held_again["input_ids"])
  assert "source" not in train and set(train) == set(plain)
  originals = plain["input_ids"][:, 0]
  assert len(originals) == (train_subset or n - 20)
  first = train["input_ids"][:, 0]
  np.testing.assert_array_equal(first[:len(originals)], originals)
  copied_rows = first[len(originals):] - 1000
  assert len(copied_rows) == copies * len(originals)
  np.testing.assert_array_equal(np.unique(copied_rows), np.sort(originals))
  assert not np.isin(copied_rows, held["input_ids"][:, 0]).any()
  # The copies keep their own knowledge.
  assert train["teacher_logits"][len(originals):].min() == 1.0


def test_arch_split_gives_alpha_its_own_rows_with_their_copies():
  """search.arch_split: a fraction of the search's rows is alpha's, the copies follow their
  source row, nothing held out gets into either part, and at 0 nothing changes."""
  n, copies = 80, 3
  splits, knowledge = _numbered_train(n)
  source = np.tile(np.arange(n, dtype=np.int32), copies)
  augmented = {"input_ids": splits["train"]["input_ids"][source] + 1000,
               "token_type_ids": np.zeros((n * copies, 4), np.int32),
               "attention_mask": np.ones((n * copies, 4), np.int32),
               "label": source % 2, "teacher_logits": np.ones((n * copies, 2), np.float32),
               "probe_logits": np.ones((n * copies, 3, 2), np.float32), "source": source}
  config = load_config("tiny")
  config.search.update(holdout=20, batch_size=8)
  together, held = search.search_and_holdout(config, splits, knowledge, augmented)
  weights, arch, held_again = search.weights_arch_and_holdout(config, splits, knowledge,
                                                              augmented)
  assert arch is None
  jax.tree.map(np.testing.assert_array_equal, weights, together)

  config.search.arch_split = 0.25
  weights, arch, held_again = search.weights_arch_and_holdout(config, splits, knowledge,
                                                              augmented)
  np.testing.assert_array_equal(held["input_ids"], held_again["input_ids"])
  rows = {}
  for name, part in (("weights", weights), ("arch", arch)):
    first = part["input_ids"][:, 0]
    rows[name] = first[first < 1000]
    np.testing.assert_array_equal(np.sort(first[first >= 1000] - 1000),
                                  np.sort(np.repeat(rows[name], copies)))
  assert len(rows["arch"]) == 15 and len(rows["weights"]) == 45  # 0.25 of the 60 rows
  assert not np.isin(rows["arch"], rows["weights"]).any()
  np.testing.assert_array_equal(np.sort(np.concatenate(list(rows.values()))),
                                np.sort(together["input_ids"][:, 0][:60]))
  assert not np.isin(rows["arch"], held["input_ids"][:, 0]).any()

  config.search.arch_split = 0.02  # one row and its 3 copies: less than a batch of 8
  with pytest.raises(UserError, match="arch_split=0.02 leaves the alpha's part"):
    search.weights_arch_and_holdout(config, splits, knowledge, augmented)


def test_arch_split_search_reads_alphas_batches_after_the_warmup(prepared, tiny_bert_dir,
                                                                  tmp_path):
  config = _config(tiny_bert_dir, arch_split=0.5, arch_warmup_epochs=1)
  result = _search(config, prepared, str(tmp_path))
  history = [json.loads(l) for l in open(os.path.join(str(tmp_path), "search",
                                                      "history.jsonl"))]
  # 64 examples, half of them the weights': 4 steps an epoch; alpha's batches after epoch 0
  assert [sum(h["sampled_depths"].values()) for h in history] == [4, 4]
  assert ["arch_batch_total" in h["loss"] for h in history] == [False, True]
  assert result["fingerprint"]["search"]["arch_split"] == 0.5
  assert result["steps_this_run"] == 8


def test_search_on_augmented_copies_runs_the_augment_stage_first(prepared, tiny_bert_dir,
                                                                  tmp_path):
  task, splits, vocab, workdir, teacher, knowledge = prepared
  run = str(tmp_path / "run")
  os.makedirs(run)
  for stage in ("teacher", "knowledge"):
    os.symlink(os.path.join(workdir, stage), os.path.join(run, stage))
  config = _config(tiny_bert_dir, train_data="augmented", max_steps=2)
  config.augment.copies = 2
  result = stages.ensure_search(config, task, splits, knowledge, run, teacher, vocab=vocab)
  n = len(splits["train"]["label"])
  assert result["train_examples"] == 3 * n  # steps_per_epoch * batch_size, n divides by 8
  assert result["fingerprint"]["augment"]["copies"] == 2
  assert os.path.isfile(os.path.join(run, "augment", "augmented.npz"))
  # The student's call reuses the copies the search made.
  assert stages.ensure_augmented(config, splits, vocab, run, teacher, knowledge) is not None


def test_search_on_augmented_copies_needs_copies():
  from adabert_jax import config_check

  config = load_config("tiny")
  config.search.train_data = "augmented"
  config.augment.copies = 0
  with pytest.raises(UserError, match="train_data=augmented.*augment.copies is 0"):
    config_check.check(config)
  config.search.train_data = "everything"
  with pytest.raises(UserError, match="search.train_data='everything': use one of train, "
                                      "augmented"):
    config_check.check(config)
