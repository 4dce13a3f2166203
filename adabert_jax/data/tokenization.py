"""WordPiece tokenization with the teacher's vocabulary, cached on disk as int32 arrays."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys

import numpy as np

from adabert_jax import io_utils
from adabert_jax.data.sources import RawSplit, Source
from adabert_jax.data.tasks import Task
from adabert_jax.errors import UserError
from adabert_jax.train import distributed

# Bump when the array layout or tokenization rules change: old caches then miss.
_CACHE_FORMAT = 1
FEATURES = ("input_ids", "token_type_ids", "attention_mask", "label")


@dataclasses.dataclass(frozen=True)
class Vocab:
  """The teacher's WordPiece vocabulary: where it is and how text is normalised."""

  path: str
  lowercase: bool
  sha256: str
  size: int

  @property
  def hash(self) -> str:
    """Identifies the tokenization: vocabulary content plus casing."""
    return f"{self.sha256[:16]}{'-uncased' if self.lowercase else '-cased'}"


def load_vocab(model_dir: str) -> Vocab:
  """Reads ``vocab.txt`` (and ``do_lower_case`` from tokenizer_config.json) of a BERT
  checkpoint folder."""
  path = os.path.join(model_dir, "vocab.txt")
  if not os.path.isfile(path):
    raise UserError(f"No vocab.txt in {model_dir!r}: a BERT checkpoint folder needs its "
                    "WordPiece vocabulary (--config.teacher.checkpoint).")
  with open(path, "rb") as f:
    data = f.read()
  lowercase = True  # BERT's uncased default, also what an absent config means.
  config_path = os.path.join(model_dir, "tokenizer_config.json")
  if os.path.isfile(config_path):
    with open(config_path) as f:
      lowercase = bool(json.load(f).get("do_lower_case", True))
  size = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
  return Vocab(path, lowercase, hashlib.sha256(data).hexdigest(), size)


def make_tokenizer(vocab: Vocab, max_len: int):
  """A fast (Rust) BERT WordPiece tokenizer that truncates and pads to `max_len`."""
  if max_len < 8:
    raise UserError(f"max_len={max_len} is too short (--config.data.max_len): use >= 8.")
  from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

  # BERT's own pipeline: clean + (lower-case, strip accents), split on whitespace and
  # punctuation, WordPiece, then [CLS] a [SEP] (b [SEP]) with segment ids.
  tokenizer = Tokenizer(models.WordPiece(models.WordPiece.read_file(vocab.path),
                                         unk_token="[UNK]"))
  tokenizer.normalizer = normalizers.BertNormalizer(lowercase=vocab.lowercase)
  tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
  cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
  if cls_id is None or sep_id is None:
    raise UserError(f"{vocab.path} has no [CLS]/[SEP] tokens: not a BERT vocabulary.")
  tokenizer.post_processor = processors.BertProcessing(("[SEP]", sep_id), ("[CLS]", cls_id))
  # Pairs are cut longest-first, as BERT's reference code does.
  tokenizer.enable_truncation(max_length=max_len, strategy="longest_first")
  tokenizer.enable_padding(length=max_len, pad_id=tokenizer.token_to_id("[PAD]") or 0)
  return tokenizer


def encode(texts: tuple[list[str], ...], vocab: Vocab, max_len: int
           ) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """The sequence arrays [N, max_len] of one or two text fields, and which of the N
  examples were cut to fit max_len (bool [N])."""
  tokenizer = make_tokenizer(vocab, max_len)
  inputs = list(zip(*texts)) if len(texts) == 2 else list(texts[0])
  encodings = tokenizer.encode_batch(inputs)
  arrays = {
      "input_ids": np.array([e.ids for e in encodings], np.int32).reshape(-1, max_len),
      "token_type_ids": np.array([e.type_ids for e in encodings],
                                 np.int32).reshape(-1, max_len),
      "attention_mask": np.array([e.attention_mask for e in encodings],
                                 np.int32).reshape(-1, max_len),
  }
  truncated = np.array([bool(e.overflowing) for e in encodings], bool)
  return arrays, truncated


def tokenize(raw: RawSplit, vocab: Vocab, max_len: int) -> dict[str, np.ndarray]:
  """Tokenizes a split into int32 arrays [N, max_len] (+ labels [N])."""
  arrays, _ = encode(raw.texts, vocab, max_len)
  arrays["label"] = np.asarray(raw.labels, np.int32)
  n = len(raw)
  for name in FEATURES[:3]:
    assert arrays[name].shape == (n, max_len), (name, arrays[name].shape)
  return arrays


def cache_path(cache_dir: str, task: Task, split: str, max_len: int, vocab: Vocab,
               fingerprint: str) -> str:
  key = hashlib.sha256(
      f"{_CACHE_FORMAT}|{fingerprint}|{vocab.hash}|{max_len}".encode()).hexdigest()[:16]
  return os.path.join(cache_dir,
                      f"{task.name}-{split}-len{max_len}-{vocab.hash[:8]}-{key}.npz")


def load_tokenized(task: Task, split: str, source: Source, vocab: Vocab, max_len: int,
                   cache_dir: str) -> dict[str, np.ndarray]:
  """Returns the tokenized split, from the cache when it has it, else tokenizes and caches.

  The cache key covers the source's content fingerprint, the vocabulary hash and
  max_len, so a change to any of them tokenizes anew instead of reusing stale arrays.
  In a multi-process run, unless every process finds the cache, each tokenizes its own
  share of the examples and the shares are gathered (train/distributed.py).
  """
  path = cache_path(cache_dir, task, split, max_len, vocab, source.fingerprint(task, split))
  if distributed.all_processes(os.path.isfile(path)):
    try:
      return io_utils.load_npz(path, FEATURES)
    except UserError:  # a damaged cache entry is not the user's problem: rebuilt here
      print(f"warning: discarding the damaged token cache file {path}; tokenizing again",
            file=sys.stderr)
      with contextlib.suppress(FileNotFoundError):  # another process may have removed it
        os.remove(path)
      arrays = tokenize(source.read(task, split), vocab, max_len)  # this process alone
      io_utils.save_npz_atomic(path, arrays)
      return arrays
  raw = source.read(task, split)
  lo, hi = distributed.process_part(len(raw))
  share = dataclasses.replace(raw, texts=tuple(t[lo:hi] for t in raw.texts),
                              labels=raw.labels[lo:hi])
  arrays = distributed.gather_parts(tokenize(share, vocab, max_len), len(raw))
  io_utils.save_npz_atomic(path, arrays)
  distributed.barrier(f"cached {path}")  # so that the next read finds it on every process
  return arrays
