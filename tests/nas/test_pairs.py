"""Sentence pairs: the two sentence views, a student whose logit is not additive in A and B,
a synthetic task only a comparing student can learn, padding, supernet == student."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from adabert_jax.nas import genotype as genotype_lib, gumbel, inputs, supernet, testing
from adabert_jax.student import model

TEACHER_WIDTH, VOCAB, POSITIONS, CLASSES = 24, 60, 64, 2
CLS, SEP = testing.PAIR_CLS, testing.PAIR_SEP
CFG = supernet.SupernetConfig(hidden=16, k_max=3, num_nodes=3, dropout=0.0)
CELL = ((2, 0, "conv3"), (2, 1, "dil_conv5"), (3, 1, "max_pool3"), (3, 2, "avg_pool3"),
        (4, 0, "identity"), (4, 3, "conv7"))
COMPARING_MODES = ("siamese", "attend", "aligned")


def _geno(mode, depth=2, ops=CELL):
  return genotype_lib.Genotype(ops=ops, depth=depth, k_max=CFG.k_max, num_nodes=CFG.num_nodes,
                               input_mode=mode)


# (mode, exact_match): every pair mode, and the modes that read views with exact match too.
FORMS = ([(mode, False) for mode in inputs.PAIR_MODES]
         + [(mode, True) for mode in COMPARING_MODES])


def _student(mode, geno=None, seed=0, exact_match=False):
  geno = geno or _geno(mode)
  params = model.init_student(jax.random.key(seed), geno, CFG.hidden, TEACHER_WIDTH, CLASSES,
                              exact_match=exact_match)
  return geno, params


@functools.lru_cache(maxsize=None)
def _emb():
  return testing.random_emb_tables(jax.random.key(1), VOCAB, POSITIONS, TEACHER_WIDTH)


def test_split_pair_puts_each_sentence_at_position_zero():
  batch = testing.pair_arrays([[11, 12, 13], [21]], [[31, 32], [41, 42, 43, 44]], length=12)
  ids_a, mask_a, ids_b, mask_b = map(np.asarray, inputs.split_pair(
      batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]))
  np.testing.assert_array_equal(ids_a[0, :6], [CLS, 11, 12, 13, SEP, 0])
  np.testing.assert_array_equal(ids_b[0, :5], [CLS, 31, 32, SEP, 0])
  np.testing.assert_array_equal(ids_a[1, :4], [CLS, 21, SEP, 0])
  np.testing.assert_array_equal(ids_b[1, :7], [CLS, 41, 42, 43, 44, SEP, 0])
  np.testing.assert_array_equal(mask_a.sum(1), [5, 3])
  np.testing.assert_array_equal(mask_b.sum(1), [4, 6])
  assert not ids_a[mask_a == 0].any() and not ids_b[mask_b == 0].any()
  # A padding row (all zeros, as eval batches pad) gives two empty sentences.
  empty = {k: jnp.zeros_like(v) for k, v in batch.items()}
  views = inputs.split_pair(empty["input_ids"], empty["token_type_ids"],
                            empty["attention_mask"])
  assert not any(np.asarray(v).any() for v in views)


def _interaction_batch(length=24, seed=0):
  """(A1,B1), (A1,B2), (A2,B1), (A2,B2): A2 and B2 change tokens in the middle of A1 and B1."""
  rng = np.random.default_rng(seed)
  a1, b1 = list(rng.integers(5, VOCAB, 9)), list(rng.integers(5, VOCAB, 8))
  a2, b2 = list(a1), list(b1)
  a2[3:6] = rng.integers(5, VOCAB, 3)
  b2[3:5] = rng.integers(5, VOCAB, 2)
  return testing.pair_arrays([a1, a1, a2, a2], [b1, b2, b1, b2], length)


def _interaction(logits):
  z = np.asarray(logits[:, 1] - logits[:, 0])
  return z[0] - z[1] - z[2] + z[3]


@pytest.mark.parametrize("mode", COMPARING_MODES)
def test_the_logit_is_not_additive_in_the_two_sentences(mode):
  batch = _interaction_batch()
  emb = _emb()
  # The student of a searched-like cell, and the plain CNN.
  for geno in (_geno(mode), genotype_lib.plain_cnn_genotype(2, CFG.k_max, CFG.num_nodes,
                                                              input_mode=mode)):
    _, params = _student(mode, geno)
    logits = model.student_apply(params, batch, geno, emb_tables=emb)["logits"]
    assert abs(_interaction(logits)) > 1e-4, (mode, geno.ops)
  # The supernet under a fixed architecture, in both estimator modes.
  cfg = dataclasses.replace(CFG, input_mode=mode)
  params = supernet.init_supernet(jax.random.key(2), cfg, TEACHER_WIDTH, CLASSES)
  for estimator in supernet.MODES:
    out = supernet.supernet_apply(params, emb, batch,
                                  genotype_lib.genotype_to_onehots(_geno(mode), cfg),
                                  dataclasses.replace(cfg, mode=estimator), train=False)
    assert abs(_interaction(out["logits"])) > 1e-4, estimator


@pytest.mark.parametrize("mode", COMPARING_MODES)
def test_both_sentences_reach_the_plain_cnn(mode):
  """Changing the interior of A moves the logit about as much as the same change to B does
  (the masked form's plain CNN read only segment B in its first cell)."""
  batch = _interaction_batch()
  geno = genotype_lib.plain_cnn_genotype(2, CFG.k_max, CFG.num_nodes, input_mode=mode)
  _, params = _student(mode, geno)
  z = np.asarray(model.student_apply(params, batch, geno, emb_tables=_emb())["logits"])
  moved_by_a, moved_by_b = np.abs(z[2] - z[0]).max(), np.abs(z[1] - z[0]).max()
  assert min(moved_by_a, moved_by_b) > 0.2 * max(moved_by_a, moved_by_b)


@pytest.mark.parametrize("mode,exact_match", FORMS)
def test_padding_never_changes_the_outputs_of_either_stream(mode, exact_match):
  # B shares a word with A in both rows, so that exact-match flags are set.
  batch = testing.pair_arrays([[11, 12, 13, 14], [21, 22]], [[31, 12], [41, 42, 21, 44, 45]], 16)
  padded = batch["attention_mask"] == 0
  junk = dict(batch, input_ids=jnp.where(padded, 7, batch["input_ids"]),
              token_type_ids=jnp.where(padded, 1, batch["token_type_ids"]))
  geno, params = _student(mode, exact_match=exact_match)
  out = model.student_apply(params, batch, geno, emb_tables=_emb())
  out_junk = model.student_apply(params, junk, geno, emb_tables=_emb())
  for name in ("logits", "layer_logits"):
    np.testing.assert_allclose(out_junk[name], out[name], rtol=1e-5, atol=1e-6)
  # Trimmed to a shorter bucket, as length bucketing does: the same outputs.
  trimmed = {k: v[:, :12] for k, v in batch.items()}
  np.testing.assert_allclose(model.student_apply(params, trimmed, geno, emb_tables=_emb())
                             ["logits"], out["logits"], rtol=1e-5, atol=1e-6)
  cfg = dataclasses.replace(CFG, input_mode=mode, exact_match=exact_match)
  sparams = supernet.init_supernet(jax.random.key(3), cfg, TEACHER_WIDTH, CLASSES)
  sample = gumbel.sample_architecture(jax.random.key(4), sparams["arch"], 1.0)
  a = supernet.supernet_apply(sparams, _emb(), batch, sample, cfg, train=False)
  b = supernet.supernet_apply(sparams, _emb(), junk, sample, cfg, train=False)
  for name in ("logits", "layer_logits", "pooled"):
    np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", inputs.PAIR_MODES)
def test_host_views_are_trimmed_and_change_no_output(mode):
  # Concatenations of 9 and 11 tokens in 64 positions; the longer sentence has 7 tokens.
  batch = {k: np.asarray(v) for k, v in testing.pair_arrays(
      [[11, 12, 13, 14, 15], [21, 22]], [[31, 32], [41, 42, 43, 44, 45]], 64).items()}
  batch["label"] = np.array([0, 1], np.int32)
  host = inputs.host_batch(batch, mode)
  if mode == "masked":
    assert host is batch
  else:
    assert set(host) == {"label", *inputs.PAIR_VIEWS}
    chex.assert_shape([host[name] for name in inputs.PAIR_VIEWS], (2, 16))
    in_jit = inputs.split_pair(*(jnp.asarray(batch[k]) for k in
                                 ("input_ids", "token_type_ids", "attention_mask")))
    for name, view in zip(inputs.PAIR_VIEWS, in_jit):
      np.testing.assert_array_equal(host[name], np.asarray(view)[:, :16])
  geno, params = _student(mode)
  np.testing.assert_allclose(model.student_apply(params, host, geno, emb_tables=_emb())
                             ["logits"],
                             model.student_apply(params, batch, geno, emb_tables=_emb())
                             ["logits"], rtol=1e-5, atol=1e-6)
  cfg = dataclasses.replace(CFG, input_mode=mode)
  sparams = supernet.init_supernet(jax.random.key(3), cfg, TEACHER_WIDTH, CLASSES)
  sample = gumbel.sample_architecture(jax.random.key(4), sparams["arch"], 1.0)
  np.testing.assert_allclose(
      supernet.supernet_apply(sparams, _emb(), host, sample, cfg, train=False)["logits"],
      supernet.supernet_apply(sparams, _emb(), batch, sample, cfg, train=False)["logits"],
      rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode,exact_match", FORMS)
def test_supernet_equals_student_under_a_fixed_architecture(mode, exact_match):
  cfg = dataclasses.replace(CFG, input_mode=mode, exact_match=exact_match)
  params = supernet.init_supernet(jax.random.key(5), cfg, TEACHER_WIDTH, CLASSES)
  params["arch"]["alpha_ops"] = jax.random.normal(jax.random.key(6), (cfg.num_edges, 10))
  params["arch"]["alpha_depth"] = jnp.array([0.0, 2.0, 0.0])
  geno = genotype_lib.derive_genotype(params["arch"], cfg)
  assert geno.input_mode == mode
  batch = testing.random_search_batch(0, 4, 16, VOCAB, CLASSES, 4, pair=True)
  if exact_match:  # some words shared, so that the flags are not all zero
    assert inputs.EXACT_MATCH_PARAM in params["weights"]["embedding"]
    flags = inputs.exact_match_flags(*inputs.split_pair(
        batch["input_ids"], batch["token_type_ids"], batch["attention_mask"]))
    assert 0 < float(jnp.concatenate(flags).sum())
  fixed = supernet.supernet_apply(params, _emb(), batch,
                                  genotype_lib.genotype_to_onehots(geno, cfg), cfg, train=False)
  student = model.from_supernet(params, geno, cfg)
  out = model.student_apply(student, batch, geno, emb_tables=_emb())
  chex.assert_shape(out["layer_logits"], (4, geno.depth, CLASSES))
  np.testing.assert_allclose(out["logits"], fixed["logits"], atol=1e-5)
  np.testing.assert_allclose(out["layer_logits"], fixed["layer_logits"][:, :geno.depth],
                             atol=1e-5)
  exported = model.export(student, _emb())
  np.testing.assert_allclose(model.student_apply(exported, batch, geno)["logits"],
                             fixed["logits"], atol=1e-5)
  width = {"siamese": 4 * CFG.hidden, "attend": 8 * CFG.hidden}.get(mode, CFG.hidden)
  chex.assert_shape(student["head"]["kernel"], (width, CLASSES))


def test_exact_match_flags_mark_the_words_found_in_the_other_sentence():
  batch = testing.pair_arrays([[11, 12, 13, 12], [21]], [[12, 31, 11], [CLS, SEP, 21, 21]], 10)
  ids_a, mask_a, ids_b, mask_b = inputs.split_pair(
      batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])
  flags_a, flags_b = map(np.asarray, inputs.exact_match_flags(ids_a, mask_a, ids_b, mask_b))
  # [CLS] 11 12 13 12 [SEP] / [CLS] 12 31 11 [SEP]: [CLS] and [SEP] never count.
  np.testing.assert_array_equal(flags_a[0], [0, 1, 1, 0, 1, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(flags_b[0], [0, 1, 0, 1, 0, 0, 0, 0, 0, 0])
  # Ids of [CLS] and [SEP] inside a sentence are words like any other.
  np.testing.assert_array_equal(flags_a[1], [0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
  np.testing.assert_array_equal(flags_b[1], [0, 0, 0, 1, 1, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("mode", ("siamese", "attend"))
def test_with_exact_match_a_sentence_is_read_in_the_light_of_the_other(mode):
  """Encoded on its own, sentence A's pooled layers do not depend on B; with exact match they
  change when B takes up one of A's words, and only then."""
  a = [11, 12, 13, 14]
  batch = testing.pair_arrays([a, a, a], [[31, 32, 33], [31, 32, 34], [31, 12, 33]], 16)
  for exact_match in (False, True):
    cfg = dataclasses.replace(CFG, input_mode=mode, exact_match=exact_match)
    params = supernet.init_supernet(jax.random.key(3), cfg, TEACHER_WIDTH, CLASSES)
    sample = gumbel.sample_architecture(jax.random.key(4), params["arch"], 1.0)
    pooled = np.asarray(supernet.supernet_apply(params, _emb(), batch, sample, cfg,
                                                train=False)["pooled"])[:3, :, :CFG.hidden]
    np.testing.assert_allclose(pooled[1], pooled[0], atol=1e-6)  # B changed, no shared word
    moved = np.abs(pooled[2] - pooled[0]).max()
    assert moved > 1e-2 if exact_match else moved < 1e-6


def test_exact_match_needs_a_mode_that_reads_views():
  with pytest.raises(ValueError, match="exact_match needs a pair mode"):
    dataclasses.replace(CFG, input_mode="masked", exact_match=True)
  with pytest.raises(ValueError, match="exact_match needs a pair mode"):
    model.init_student(jax.random.key(0), _geno("single"), 8, 6, 2, exact_match=True)


def test_cross_align_attends_over_the_other_sentence_only():
  """inputs.cross_align against a loop over rows: row i of A attends over row i of B's real
  tokens and the reverse; a token equal to one of the partner's (and far larger than the
  rest) is aligned with it."""
  rng = np.random.default_rng(0)
  half, length, width = 3, 5, 4
  x = rng.normal(size=(2 * half, length, width)).astype(np.float32)
  mask = np.ones((2 * half, length), np.int32)
  mask[0, 3:] = 0  # A0 has 3 tokens
  mask[half + 1, 2:] = 0  # B1 has 2 tokens
  x[mask == 0] = 0.0
  x[half + 2, 1] = 10 * x[2, 4]  # B2's token 1 matches A2's token 4
  x[2, 4] *= 10
  got = np.asarray(inputs.cross_align(jnp.asarray(x), jnp.asarray(mask)))
  for i in range(2 * half):
    j = (i + half) % (2 * half)
    other = x[j][mask[j] > 0]
    scores = x[i] @ other.T / np.sqrt(width)
    weights = np.exp(scores - scores.max(1, keepdims=True))
    weights /= weights.sum(1, keepdims=True)
    np.testing.assert_allclose(got[i], weights @ other, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got[2, 4], x[half + 2, 1], rtol=1e-4)
  # The pooled layer: mean, then the means of x * x~ and |x - x~| over real tokens.
  pooled = np.asarray(inputs.pool_layer(jnp.asarray(x), jnp.asarray(mask), "attend"))
  chex.assert_shape(pooled, (2 * half, 3 * width))
  real = mask[1] > 0
  np.testing.assert_allclose(pooled[1, 2 * width:],
                             np.abs(x[1] - got[1])[real].mean(0), rtol=1e-4, atol=1e-6)


def test_a_genotype_file_must_read_the_task_as_the_search_does(tmp_path):
  path = str(tmp_path / "genotype.json")
  _geno("single").save(path)
  with pytest.raises(genotype_lib.GenotypeError, match="reads its input as 'single'"):
    genotype_lib.genotype_from_spec(path, 3, 3, input_mode="siamese")
  assert genotype_lib.genotype_from_spec(path, 3, 3)[0] == _geno("single")
  plain, _ = genotype_lib.genotype_from_spec("plain_cnn:2", 3, 3, input_mode="aligned")
  assert plain.input_mode == "aligned"


def test_genotypes_keep_their_input_mode_and_aligned_cells_read_both_sentences():
  geno = _geno("aligned")
  assert genotype_lib.Genotype.from_json(geno.to_json()) == geno
  single = dataclasses.replace(geno, input_mode="single")
  assert "input_mode" not in single.to_json()  # genotypes written before pairs still read
  assert genotype_lib.plain_cnn_genotype(2, 3, 3, input_mode="aligned").ops[:2] == (
      (2, 0, "conv3"), (2, 1, "conv3"))
  from adabert_jax.nas import derive
  # Removing the cell's only edge from input 0 (sentence A in the first cell) is refused
  # in aligned mode, allowed otherwise.
  chain = genotype_lib.plain_cnn_genotype(2, 3, 3, input_mode="aligned")
  assert derive.with_edge_op(chain, (2, 0), "zero") is None
  assert derive.with_edge_op(dataclasses.replace(chain, input_mode="siamese"), (2, 0),
                             "zero") is not None
  with pytest.raises(genotype_lib.GenotypeError, match="input_mode"):
    genotype_lib.Genotype(ops=CELL, depth=1, k_max=3, num_nodes=3, input_mode="crossed")


# The synthetic task (testing.synthetic_pairs): is B a shuffle of A? No additive model can tell.
def _train_and_score(mode, steps=300, batch_size=64):
  geno = genotype_lib.plain_cnn_genotype(1, CFG.k_max, CFG.num_nodes, input_mode=mode)
  params = model.init_student(jax.random.key(0), geno, 32, TEACHER_WIDTH, CLASSES)
  emb = testing.random_emb_tables(jax.random.key(1), VOCAB, POSITIONS, TEACHER_WIDTH)
  train, test = testing.synthetic_pairs(steps * batch_size, 0), testing.synthetic_pairs(1024, 1)
  tx = optax.adam(3e-3)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, batch):
    def loss(p):
      logits = model.student_apply(p, batch, geno, emb_tables=emb)["logits"]
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  for i in range(steps):
    batch = {k: v[i * batch_size:(i + 1) * batch_size] for k, v in train.items()}
    params, opt_state = step(params, opt_state, batch)
  logits = model.student_apply(params, test, geno, emb_tables=emb)["logits"]
  return float(np.mean(np.asarray(logits).argmax(-1) == np.asarray(test["label"])))


@pytest.mark.slow
def test_a_comparing_student_learns_what_an_additive_one_cannot():
  compare = _train_and_score(inputs.DEFAULT_PAIR_MODE)
  additive = _train_and_score("masked")
  assert compare >= 0.90, compare
  assert additive < 0.65, additive


@pytest.mark.parametrize("mode", ("siamese", "attend", "aligned"))
def test_benchmark_flops_count_both_sentences(mode):
  """The benchmark's XLA FLOPs of a one-conv pair student: the conv's count (isolated by the
  second difference over widths, as in eval/test_benchmark.py) is that of 2B sequences in
  siamese and attend mode (each sentence encoded alone; attend's alignment is linear in the
  width, so the second difference leaves it out) and of B in aligned mode (one aligned
  pass)."""
  from adabert_jax.eval import benchmark

  batch_size, length, vocab = 4, 16, 1100
  batch = benchmark.random_batch(batch_size, length, vocab_size=vocab, pair=True)
  geno = genotype_lib.Genotype(ops=((2, 0, "conv3"),), depth=1, k_max=1, num_nodes=1,
                               input_mode=mode)
  emb = testing.random_emb_tables(jax.random.key(1), vocab, length, 6)

  def flops(hidden):
    params = model.export(model.init_student(jax.random.key(0), geno, hidden, 6, CLASSES), emb)
    return benchmark.measure(benchmark.BenchModel(
        mode, lambda p, b: model.student_apply(p, b, geno)["logits"], params), batch,
        repeats=1)["flops"]

  step = 8
  second_difference = flops(3 * step) - 2 * flops(2 * step) + flops(step)
  taps = 3 * length - 2  # conv3 over the full length, 'SAME' padding taps not counted
  sequences = batch_size if mode == "aligned" else 2 * batch_size
  assert second_difference == 4 * sequences * taps * step ** 2
