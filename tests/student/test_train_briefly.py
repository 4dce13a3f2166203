"""student.train.train_briefly: the student's training for a fixed number of steps, nothing
else (experiments/proxy_rank.py ranks cells with it)."""

import jax
import numpy as np

from adabert_jax.nas import genotype, losses, testing
from adabert_jax.student import model, train as student_train
from adabert_jax.train import sharding
from tests.helpers import load_config


def test_a_brief_training_fits_the_training_examples_over_several_epochs():
  config = load_config("tiny")
  config.student.update(dropout=0.0, learning_rate=0.1)
  geno = genotype.plain_cnn_genotype(1, config.search.k_max, config.search.num_nodes)
  train = {k: np.asarray(v) for k, v in testing.random_search_batch(
      0, 48, config.data.max_len, 50, 2, num_teacher_layers=2).items()}
  # Learnable: the words of class-1 sentences come from the upper half of the vocabulary.
  train["label"] = np.arange(48, dtype=np.int32) % 2
  ids = train["input_ids"] = train["input_ids"].copy()
  words = ids > 1
  ids[words] = ids[words] % 24 + 2 + 24 * np.broadcast_to(train["label"][:, None],
                                                           ids.shape)[words]
  target = 4.0 * np.eye(2, dtype=np.float32)[train["label"]] - 2.0  # the teacher agrees
  train["teacher_logits"] = target
  train["probe_logits"] = np.broadcast_to(target[:, None], train["probe_logits"].shape).copy()
  emb = testing.random_emb_tables(jax.random.key(1), 50, config.data.max_len, 24)
  init = model.init_student(jax.random.key(2), geno, config.search.hidden, 24, 2)
  mesh = sharding.make_mesh(1)

  def train_ce(params):
    logits = student_train.predict_logits(params, geno, train, emb, 16, mesh)
    np.testing.assert_array_equal(
        logits.argmax(-1), student_train.predict(params, geno, train, emb, 16, mesh))
    return float(losses.cross_entropy(logits, train["label"]).mean())

  # 48 examples in batches of 16: 90 steps are 30 epochs.
  trained = student_train.train_briefly(config, geno, init, train, emb, 90, jax.random.key(3))
  assert train_ce(trained) < 0.5 * train_ce(init)
