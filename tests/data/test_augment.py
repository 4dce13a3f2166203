"""Word-substitution augmentation: neighbours, in-place substitution, the teacher-labelled
stage."""

import os

import numpy as np
import pytest

from adabert_jax import artefacts
from adabert_jax.data import augment
from adabert_jax.errors import UserError
from tests.helpers import load_config

TOKENS = ["[PAD]", "[CLS]", "[SEP]", "good", "great", "bad", "film", "movie", "##s", "a",
          "!", "fine", "[unused0]"]


def test_word_and_continuation_masks():
  words = augment.word_token_mask(TOKENS)
  assert [t for t, w in zip(TOKENS, words) if w] == ["good", "great", "bad", "film", "movie",
                                                     "fine"]
  assert [t for t, c in zip(TOKENS, augment.continuation_mask(TOKENS)) if c] == ["##s"]


def test_nearest_neighbours_match_brute_force_cosine():
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(40, 8)).astype(np.float32)
  candidates = rng.random(40) < 0.6
  k = 4
  table = augment.nearest_neighbours(emb, candidates, k, chunk=7)  # several chunks
  ids = np.flatnonzero(candidates)
  unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  for i in range(40):
    if not candidates[i]:
      assert (table[i] == -1).all()
      continue
    others = ids[ids != i]
    expected = others[np.argsort(-(unit[others] @ unit[i]))[:k]]
    np.testing.assert_array_equal(table[i], expected)


def test_substitute_replaces_only_whole_words_with_their_neighbours():
  emb = np.random.default_rng(1).normal(size=(len(TOKENS), 6)).astype(np.float32)
  neighbours = augment.nearest_neighbours(emb, augment.word_token_mask(TOKENS), 2)
  continuation = augment.continuation_mask(TOKENS)
  tid = {t: i for i, t in enumerate(TOKENS)}
  # [CLS] a good film ##s ! movie [SEP] [PAD]: 'film' is followed by a piece, so it stays;
  # 'a' (one letter), '!', '##s' and the specials are never candidates.
  row = np.array([[tid[t] for t in ["[CLS]", "a", "good", "film", "##s", "!", "movie",
                                    "[SEP]", "[PAD]"]]], np.int32)
  rng = np.random.default_rng(0)
  assert (augment.substitute(row, neighbours, continuation, 0.0, rng) == row).all()
  out = augment.substitute(np.repeat(row, 50, 0), neighbours, continuation, 1.0, rng)
  replaced = [2, 6]
  keep = [i for i in range(row.shape[1]) if i not in replaced]
  assert (out[:, keep] == row[:, keep]).all()
  for pos in replaced:
    assert set(out[:, pos]) <= set(neighbours[row[0, pos]])
    assert len(set(out[:, pos])) == 2  # both neighbours get used
  half = augment.substitute(np.repeat(row, 400, 0), neighbours, continuation, 0.4, rng)
  assert 0.3 < (half[:, 2] != row[0, 2]).mean() < 0.5


def test_augment_split_is_copy_major_and_keeps_masks():
  arrays = {"input_ids": np.array([[1, 3, 2, 0], [1, 5, 7, 2]], np.int32),
            "token_type_ids": np.array([[0, 0, 0, 0], [0, 0, 1, 1]], np.int32),
            "attention_mask": np.array([[1, 1, 1, 0], [1, 1, 1, 1]], np.int32)}
  emb = np.random.default_rng(2).normal(size=(len(TOKENS), 6)).astype(np.float32)
  neighbours = augment.nearest_neighbours(emb, augment.word_token_mask(TOKENS), 2)
  out = augment.augment_split(arrays, neighbours, augment.continuation_mask(TOKENS),
                              copies=3, replace_prob=0.5, seed=0)
  np.testing.assert_array_equal(out["source"], [0, 1, 0, 1, 0, 1])
  np.testing.assert_array_equal(out["attention_mask"], arrays["attention_mask"][out["source"]])
  np.testing.assert_array_equal(out["token_type_ids"], arrays["token_type_ids"][out["source"]])
  again = augment.augment_split(arrays, neighbours, augment.continuation_mask(TOKENS),
                                copies=3, replace_prob=0.5, seed=0)
  np.testing.assert_array_equal(out["input_ids"], again["input_ids"])  # seeded


def test_augmented_stage_labels_copies_with_the_teacher(tmp_path, tiny_bert_dir, tiny_splits):
  """The stage's labels and logits are the teacher's on the substituted ids, and the
  student trains on train + copies."""
  from adabert_jax.pipeline import stages
  from adabert_jax.data import tokenization
  from adabert_jax.teacher import finetune, probes

  task, splits = tiny_splits
  config = load_config("tiny")
  config.teacher.checkpoint = tiny_bert_dir
  config.data.max_len = 32
  config.augment.copies = 2
  vocab = tokenization.load_vocab(tiny_bert_dir)
  workdir = str(tmp_path / "run")
  teacher = stages.ensure_teacher(config, task, splits, workdir)
  knowledge = stages.ensure_knowledge(config, task, splits, vocab, workdir, teacher)
  aug = stages.ensure_augmented(config, splits, vocab, workdir, teacher, knowledge)
  n = len(splits["train"]["label"])
  assert aug["input_ids"].shape == (2 * n, 32)
  assert (aug["input_ids"] != np.tile(splits["train"]["input_ids"], (2, 1))).any(-1).mean() > 0.5
  model, params, _ = finetune.load_finetuned(workdir, tiny_bert_dir)
  fn = probes._jitted_features(model)
  pooled, logits = fn(params, {k: aug[k][:8] for k in ("input_ids", "token_type_ids",
                                                         "attention_mask")})
  np.testing.assert_allclose(aug["teacher_logits"][:8], np.asarray(logits), atol=1e-4)
  with np.load(os.path.join(workdir, "knowledge", "probes.npz")) as f:
    trained_probes = {k: f[k] for k in f.files}
  np.testing.assert_allclose(aug["probe_logits"][:8],
                             probes.probe_logits(trained_probes, pooled), atol=1e-4)
  np.testing.assert_array_equal(aug["label"], aug["teacher_logits"].argmax(-1))
  assert aug["probe_logits"].shape == (2 * n, model.num_layers + 1, task.num_classes)
  # Copies made for another teacher are refused, naming the file.
  path = os.path.join(workdir, "augment", artefacts.AUGMENTED_FILE)
  meta = probes.augmented_meta({**teacher, "checkpoint_id": "another"}, vocab.hash, 32,
                               2 * n, config.augment)
  with pytest.raises(UserError, match="augmented.npz does not belong to this run"):
    probes.load_augmented(path, splits["train"], meta)
  # Reused on a second call; refused for another augment config without --overwrite.
  assert "done already" in _stdout_of(lambda: stages.ensure_augmented(
      config, splits, vocab, workdir, teacher, knowledge))
  config.augment.copies = 1
  with pytest.raises(Exception, match="different config"):
    stages.ensure_augmented(config, splits, vocab, workdir, teacher, knowledge)
  config.augment.copies = 0
  assert stages.ensure_augmented(config, splits, vocab, workdir, teacher, knowledge) is None


def _stdout_of(fn):
  import contextlib
  import io

  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    fn()
  return buffer.getvalue()
