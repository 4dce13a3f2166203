import os

import chex
import jax
import numpy as np
import pytest

from adabert_jax import UserError
from adabert_jax.data import batching, sources, tokenization
from adabert_jax.data.sources import RawSplit
from adabert_jax.data.tasks import get_task


def _pairs():
  return RawSplit("rte", "dev", (["The cat sat on the mat.", "A b c " * 40],
                                 ["A cat is sitting.", "d e f " * 40]),
                  np.array([0, 1], np.int32))


def test_tokenize_pairs_shapes_segments_truncation(vocab):
  arrays = tokenization.tokenize(_pairs(), vocab, max_len=24)
  chex.assert_shape([arrays["input_ids"], arrays["token_type_ids"],
                     arrays["attention_mask"]], (2, 24))
  chex.assert_shape(arrays["label"], (2,))
  assert all(a.dtype == np.int32 for a in arrays.values())
  ids, types, mask = arrays["input_ids"][0], arrays["token_type_ids"][0], arrays[
      "attention_mask"][0]
  n = int(mask.sum())
  assert ids[0] == 101 and ids[n - 1] == 102 and list(ids).count(102) == 2  # [CLS] a [SEP] b [SEP]
  assert (ids[n:] == 0).all() and (types[n:] == 0).all()  # padding: [PAD]=0, segment 0
  first_sep = list(ids).index(102)
  assert (types[:first_sep + 1] == 0).all() and (types[first_sep + 1:n] == 1).all()
  # The long pair is cut to max_len, both segments kept (longest-first).
  assert arrays["attention_mask"][1].all() and 1 in arrays["token_type_ids"][1]
  assert arrays["input_ids"][1][-1] == 102


def test_tokenization_matches_transformers_bert_tokenizer(vocab):
  from transformers import BertTokenizerFast

  reference = BertTokenizerFast(vocab_file=vocab.path, do_lower_case=True)
  raw = _pairs()
  ours = tokenization.tokenize(raw, vocab, max_len=32)
  theirs = reference(raw.texts[0], raw.texts[1], truncation=True, max_length=32,
                     padding="max_length", return_tensors="np")
  for name in ("input_ids", "token_type_ids", "attention_mask"):
    np.testing.assert_array_equal(ours[name], theirs[name])


def test_cache_is_reused_and_keyed(glue_dir, vocab, cache_dir, monkeypatch):
  task, source = get_task("rte"), sources.GlueDirSource(glue_dir)
  first = tokenization.load_tokenized(task, "dev", source, vocab, 64, cache_dir)
  chex.assert_shape(first["input_ids"], (277, 64))
  assert len(os.listdir(cache_dir)) == 1

  def no_read(*args):
    raise AssertionError("the cache should have been used")

  monkeypatch.setattr(sources.GlueDirSource, "read", no_read)
  again = tokenization.load_tokenized(task, "dev", source, vocab, 64, cache_dir)
  for name in tokenization.FEATURES:
    np.testing.assert_array_equal(first[name], again[name])
  monkeypatch.undo()
  # Another max_len is another cache entry, never a reuse of the 64-token arrays.
  longer = tokenization.load_tokenized(task, "dev", source, vocab, 80, cache_dir)
  chex.assert_shape(longer["input_ids"], (277, 80))
  assert len(os.listdir(cache_dir)) == 2
  # No temporary files left behind.
  assert not [f for f in os.listdir(cache_dir) if f.endswith(".tmp")]


def test_cache_key_changes_with_vocab_and_data(tmp_path, vocab):
  task = get_task("sst2")
  other = tokenization.Vocab(vocab.path, vocab.lowercase, "f" * 64, vocab.size)
  a = tokenization.cache_path(str(tmp_path), task, "dev", 64, vocab, "glue:1")
  assert a != tokenization.cache_path(str(tmp_path), task, "dev", 64, other, "glue:1")
  assert a != tokenization.cache_path(str(tmp_path), task, "dev", 64, vocab, "glue:2")


def test_damaged_cache_is_rebuilt(glue_dir, vocab, cache_dir):
  task, source = get_task("rte"), sources.GlueDirSource(glue_dir)
  tokenization.load_tokenized(task, "dev", source, vocab, 32, cache_dir)
  path = os.path.join(cache_dir, os.listdir(cache_dir)[0])
  with open(path, "wb") as f:
    f.write(b"not an npz")
  arrays = tokenization.load_tokenized(task, "dev", source, vocab, 32, cache_dir)
  chex.assert_shape(arrays["input_ids"], (277, 32))


def test_missing_vocab_is_a_clear_error(tmp_path):
  with pytest.raises(UserError, match=r"No vocab.txt in"):
    tokenization.load_vocab(str(tmp_path))


def _arrays(n, length=4):
  return {"input_ids": np.arange(n * length, dtype=np.int32).reshape(n, length),
          "label": np.arange(n, dtype=np.int32)}


def test_train_batches_fixed_shapes_and_keyed_shuffle():
  arrays, key = _arrays(10), jax.random.key(0)
  batches = list(batching.train_batches(arrays, 4, key, epoch=0))
  assert len(batches) == 2 == batching.steps_per_epoch(arrays, 4)
  for b in batches:
    chex.assert_shape(b["input_ids"], (4, 4))
    chex.assert_shape(b["label"], (4,))
    np.testing.assert_array_equal(b["input_ids"][:, 0] // 4, b["label"])  # rows stay whole
  seen = np.concatenate([b["label"] for b in batches])
  assert len(set(seen)) == 8
  again = np.concatenate([b["label"] for b in batching.train_batches(arrays, 4, key, 0)])
  np.testing.assert_array_equal(seen, again)  # same key and epoch: same order
  orders = {tuple(np.concatenate([b["label"] for b in batching.train_batches(
      arrays, 4, key, epoch)])) for epoch in range(5)}
  assert len(orders) > 1  # epochs are shuffled differently
  resumed = list(batching.train_batches(arrays, 4, key, epoch=0, start_step=1))
  np.testing.assert_array_equal(resumed[0]["label"], batches[1]["label"])


def test_train_split_smaller_than_a_batch():
  with pytest.raises(UserError, match=r"fewer than one batch"):
    next(batching.train_batches(_arrays(3), 4, jax.random.key(0), 0))


@pytest.mark.parametrize("n", [8, 9, 11])
def test_eval_batches_count_every_example_once(n):
  batches = list(batching.eval_batches(_arrays(n), 4))
  assert len(batches) == -(-n // 4)
  for b in batches:
    chex.assert_shape(b["input_ids"], (4, 4))
    chex.assert_shape(b["weight"], (4,))
  weights = np.concatenate([b["weight"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  assert weights.sum() == n
  np.testing.assert_array_equal(labels[weights == 1], np.arange(n))


def test_fixed_subset_is_seeded_ordered_and_whole_rows():
  arrays = _arrays(10)
  sub = batching.fixed_subset(arrays, 4, seed=0)
  chex.assert_shape(sub["input_ids"], (4, 4))
  assert list(sub["label"]) == sorted(sub["label"])  # original order kept
  np.testing.assert_array_equal(sub["input_ids"][:, 0] // 4, sub["label"])
  np.testing.assert_array_equal(batching.fixed_subset(arrays, 4, 0)["label"], sub["label"])
  subsets = {tuple(batching.fixed_subset(arrays, 4, seed)["label"]) for seed in range(5)}
  assert len(subsets) > 1  # the seed chooses the subset
  for size in (0, 10, 99):  # no subset: everything
    np.testing.assert_array_equal(batching.fixed_subset(arrays, size, 0)["label"],
                                  arrays["label"])


def test_inference_passes_take_finer_buckets_than_training():
  assert batching.bucket_lengths(64) == (16, 32, 64)
  assert batching.inference_bucket_lengths(64) == (16, 24, 32, 48, 64)
  assert batching.inference_bucket_lengths(128) == (16, 24, 32, 48, 64, 96, 128)
  assert batching.inference_bucket_lengths(100) == (25, 37, 50, 75, 100)
  lengths = np.array([60, 10, 40, 20, 30, 33])
  mask = (np.arange(64)[None] < lengths[:, None]).astype(np.int32)
  arrays = {"input_ids": mask * 7, "token_type_ids": 0 * mask, "attention_mask": mask,
            "label": np.zeros(len(lengths), np.int32)}
  # Sorted by length, two a batch: (10, 20), (30, 33), (40, 60).
  batches = list(batching.length_sorted_eval_batches(arrays, 2, 64))
  assert [b["input_ids"].shape[1] for _, b in batches] == [24, 48, 64]
  for idx, batch in batches:  # no real token is cut
    np.testing.assert_array_equal(batch["attention_mask"].sum(1), lengths[idx])
  # Training batches keep the coarse ones (a compile per shape of a training step).
  assert [batching.bucket_for(lengths[idx], 64) for idx, _ in batches] == [32, 64, 64]


def test_each_process_reads_its_own_block_of_every_batch():
  """The rows a process of a multi-process run gathers (rows=sharding.process_rows) are
  exactly its block of the batch a single process gathers, trimmed to the same length."""
  rng = np.random.default_rng(0)
  n, length, batch_size = 41, 32, 8
  lengths = rng.integers(2, length + 1, n)
  mask = (np.arange(length)[None] < lengths[:, None]).astype(np.int32)
  arrays = {"input_ids": rng.integers(1, 99, (n, length)).astype(np.int32) * mask,
            "token_type_ids": np.zeros((n, length), np.int32), "attention_mask": mask,
            "label": np.arange(n, dtype=np.int32)}
  key = jax.random.key(3)
  iterators = {
      "train": lambda rows: batching.train_batches(arrays, batch_size, key, 1, rows=rows),
      "bucketed": lambda rows: batching.bucketed_train_batches(
          arrays, batch_size, key, 1, length, pool_batches=2, rows=rows),
      "eval": lambda rows: batching.eval_batches(arrays, batch_size, rows=rows),
      "sorted eval": lambda rows: (b for _, b in batching.length_sorted_eval_batches(
          arrays, batch_size, length, rows=rows)),
  }
  blocks = (slice(0, 2), slice(2, 6), slice(6, 8))  # processes with 1, 2 and 1 devices
  for name, batches in iterators.items():
    whole = list(batches(None))
    parts = [list(batches(rows)) for rows in blocks]
    assert all(len(p) == len(whole) for p in parts), name
    for i, batch in enumerate(whole):
      for rows, part in zip(blocks, parts):
        assert part[i].keys() == batch.keys(), name
        for feature, value in batch.items():
          np.testing.assert_array_equal(part[i][feature], value[rows],
                                        err_msg=f"{name} batch {i} {feature}")
