"""Data augmentation by word substitution, the paper's recipe (TinyBERT's) made offline.

TinyBERT replaces each word with probability p by one of its K nearest candidates: from a
masked language model for single-piece words, from GloVe vectors for the rest, 20 copies
per example, and the teacher labels the copies. Neither an MLM head nor GloVe can be
installed here (the MiniLM package is a sentence embedder, without an MLM head), so the
candidates are the K nearest neighbours by cosine in the teacher's own input word-embedding
table, over whole-word vocabulary entries. Substitution works on token ids in place: a
single-piece word is swapped for a single-piece word, so lengths, masks and segment ids
stay as they were and nothing is re-tokenized.

The functions here are pure numpy; the stage that runs the teacher over the copies is
stages.ensure_augmented.
"""

from __future__ import annotations

import numpy as np

# Skipped as candidates and never replaced: [PAD], [CLS], [SEP], [UNK], [MASK], [unusedN].
_SPECIAL_PREFIX = "["


def read_vocab_tokens(vocab_path: str) -> list[str]:
  with open(vocab_path, encoding="utf-8") as f:
    return [line.rstrip("\n") for line in f]


def word_token_mask(tokens: list[str]) -> np.ndarray:
  """[V] bool: entries that are a whole alphabetic word of 2+ letters (not '##' pieces,
  specials, digits or punctuation): what may be replaced and what may replace."""
  return np.array([len(t) >= 2 and t.isalpha() and not t.startswith(_SPECIAL_PREFIX)
                   for t in tokens], bool)


def continuation_mask(tokens: list[str]) -> np.ndarray:
  """[V] bool: '##' pieces, which continue the previous token's word."""
  return np.array([t.startswith("##") for t in tokens], bool)


def nearest_neighbours(word_emb_VD: np.ndarray, candidates_V: np.ndarray, k: int,
                       chunk: int = 2048) -> np.ndarray:
  """[V, k] int32: for every candidate id its k nearest other candidates by cosine in the
  embedding table (rows of non-candidates are -1). Chunked: V x V never sits in memory."""
  vocab_size = word_emb_VD.shape[0]
  ids = np.flatnonzero(candidates_V)
  if len(ids) <= k:
    raise ValueError(f"Only {len(ids)} candidate words for {k} neighbours each.")
  vectors = word_emb_VD[ids].astype(np.float32)
  vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
  table = np.full((vocab_size, k), -1, np.int32)
  for start in range(0, len(ids), chunk):
    sims = vectors[start:start + chunk] @ vectors.T
    rows = np.arange(sims.shape[0])
    sims[rows, start + rows] = -np.inf  # a word is not its own substitute
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    table[ids[start:start + chunk]] = ids[np.take_along_axis(top, order, axis=1)]
  return table


def substitute(input_ids_NL: np.ndarray, neighbours_VK: np.ndarray,
               continuation_V: np.ndarray, replace_prob: float,
               rng: np.random.Generator) -> np.ndarray:
  """One augmented copy of every row: each replaceable word (a candidate not followed by a
  '##' piece) becomes a random one of its neighbours with probability `replace_prob`."""
  ids = np.asarray(input_ids_NL)
  next_is_piece = np.zeros(ids.shape, bool)
  next_is_piece[:, :-1] = continuation_V[ids[:, 1:]]
  replaceable = (neighbours_VK[ids, 0] >= 0) & ~next_is_piece
  chosen = replaceable & (rng.random(ids.shape) < replace_prob)
  pick = rng.integers(neighbours_VK.shape[1], size=ids.shape)
  return np.where(chosen, neighbours_VK[ids, pick], ids).astype(ids.dtype)


def augment_split(arrays: dict[str, np.ndarray], neighbours_VK: np.ndarray,
                  continuation_V: np.ndarray, *, copies: int, replace_prob: float,
                  seed: int) -> dict[str, np.ndarray]:
  """`copies` substituted copies of every example, copy-major: [copies * N] rows with the
  source's segment ids and mask, and "source" (the row each copy came from). Labels are
  left out: the teacher gives them."""
  rng = np.random.default_rng(seed)
  n = len(arrays["input_ids"])
  source = np.tile(np.arange(n, dtype=np.int32), copies)
  ids = np.concatenate([substitute(arrays["input_ids"], neighbours_VK, continuation_V,
                                   replace_prob, rng) for _ in range(copies)])
  return {"input_ids": ids,
          "token_type_ids": arrays["token_type_ids"][source],
          "attention_mask": arrays["attention_mask"][source],
          "source": source}
