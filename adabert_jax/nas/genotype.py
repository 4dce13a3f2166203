"""Deriving a discrete architecture (genotype) from the architecture logits, and its JSON form.

Derivation (DARTS / AdaBERT): per edge the most probable op excluding zero; per intermediate
node the 2 strongest incoming edges, an edge's strength being its largest non-zero op
probability; depth K = argmax alpha_depth + 1.

Nodes are numbered as in supernet.cell_edges: 0 and 1 are the cell's inputs (cells k-2 and
k-1), 2 .. 2+num_nodes-1 the intermediate nodes. JSON:
  {"ops": [[node, from_node, op_name], ...], "depth": K, "k_max": ..., "num_nodes": ...,
   "input_mode": ...}
input_mode (nas/inputs.py) says how the network reads a sentence pair; it is left out of the
JSON for single sentences, so genotypes written before it existed read as they did.
"""

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from adabert_jax import io_utils
from adabert_jax.errors import UserError
from adabert_jax.nas import inputs, ops
from adabert_jax.nas.supernet import NUM_INPUT_NODES, SupernetConfig, cell_edges

EDGES_PER_NODE = 2


class GenotypeError(UserError, ValueError):
  """An invalid genotype (a ValueError, and a UserError so entry points print it cleanly)."""


@dataclasses.dataclass(frozen=True)
class Genotype:
  """A discrete cell (shared by all K cells) and the depth K."""
  ops: tuple[tuple[int, int, str], ...]
  depth: int
  k_max: int
  num_nodes: int
  input_mode: str = "single"

  def __post_init__(self):
    object.__setattr__(self, "ops", tuple(tuple(op) for op in self.ops))
    self.validate()

  def validate(self) -> None:
    """Raises GenotypeError naming the first problem found."""
    for field in ("depth", "k_max", "num_nodes"):
      value = getattr(self, field)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise GenotypeError(f"genotype {field!r} must be an integer, got {value!r}")
    if self.input_mode not in inputs.INPUT_MODES:
      raise GenotypeError(f"genotype input_mode {self.input_mode!r} is not one of "
                          f"{', '.join(inputs.INPUT_MODES)}")
    if self.num_nodes < 1:
      raise GenotypeError(f"genotype num_nodes must be >= 1, got {self.num_nodes}")
    if self.k_max < 1:
      raise GenotypeError(f"genotype k_max must be >= 1, got {self.k_max}")
    if not 1 <= self.depth <= self.k_max:
      raise GenotypeError(f"genotype depth {self.depth} is outside 1..k_max={self.k_max}")
    last_node = NUM_INPUT_NODES + self.num_nodes - 1
    seen = set()
    for entry in self.ops:
      if len(entry) != 3:
        raise GenotypeError(f"genotype op {list(entry)!r} must be [node, from_node, op_name]")
      node, src, name = entry
      if name not in ops.OP_NAMES:
        raise GenotypeError(f"genotype op {list(entry)!r}: unknown operation {name!r}; the "
                            f"operations are {', '.join(ops.OP_NAMES)}")
      if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                 for v in (node, src)):
        raise GenotypeError(f"genotype op {list(entry)!r}: node and from_node must be integers")
      if not NUM_INPUT_NODES <= node <= last_node:
        raise GenotypeError(f"genotype op {list(entry)!r}: edge out of range, node must be in "
                            f"{NUM_INPUT_NODES}..{last_node} for num_nodes={self.num_nodes}")
      if not 0 <= src < node:
        raise GenotypeError(f"genotype op {list(entry)!r}: edge out of range, from_node must "
                            f"be in 0..{node - 1} (an earlier node)")
      if (node, src) in seen:
        raise GenotypeError(f"genotype op {list(entry)!r}: edge ({node}, {src}) appears twice")
      seen.add((node, src))

  def to_json(self) -> str:
    data = {"ops": [list(op) for op in self.ops], "depth": self.depth, "k_max": self.k_max,
            "num_nodes": self.num_nodes}
    if self.input_mode != "single":
      data["input_mode"] = self.input_mode
    return json.dumps(data, indent=2)

  @classmethod
  def from_json(cls, text: str) -> "Genotype":
    try:
      data = json.loads(text)
    except json.JSONDecodeError as e:
      raise GenotypeError(f"genotype is not valid JSON: {e}") from None
    if not isinstance(data, dict):
      raise GenotypeError("genotype JSON must be an object with ops, depth, k_max, num_nodes")
    missing = [k for k in ("ops", "depth", "k_max", "num_nodes") if k not in data]
    if missing:
      raise GenotypeError(f"genotype JSON lacks {', '.join(missing)}")
    if not isinstance(data["ops"], list) or not all(isinstance(o, list) for o in data["ops"]):
      raise GenotypeError("genotype 'ops' must be a list of [node, from_node, op_name]")
    return cls(ops=tuple(tuple(o) for o in data["ops"]), depth=data["depth"],
               k_max=data["k_max"], num_nodes=data["num_nodes"],
               input_mode=data.get("input_mode", "single"))

  def save(self, path: str) -> None:
    io_utils.save_text_atomic(path, self.to_json() + "\n")  # never half-written

  @classmethod
  def load(cls, path: str) -> "Genotype":
    try:
      with open(path) as f:
        text = f.read()
    except OSError as e:
      raise GenotypeError(f"cannot read genotype file {path}: {e.strerror}") from None
    try:
      return cls.from_json(text)
    except GenotypeError as e:
      raise GenotypeError(f"{path}: {e}") from None


def ops_summary(geno: Genotype) -> str:
  """The cell on one line: "0->2:conv3 1->2:identity ..." (source->node:op per edge)."""
  return " ".join(f"{src}->{node}:{name}" for node, src, name in geno.ops)


def op_probabilities(arch_params: dict[str, Any]) -> np.ndarray:
  """softmax(alpha_ops) over ops, as numpy [E, NUM_OPS]."""
  return np.asarray(jax.nn.softmax(jnp.asarray(arch_params["alpha_ops"]), axis=-1))


def derive_genotype(arch_params: dict[str, Any], cfg: SupernetConfig) -> Genotype:
  """The discrete architecture from {"alpha_ops": [E, NUM_OPS], "alpha_depth": [k_max]}."""
  probs_EO = op_probabilities(arch_params)
  alpha_depth = np.asarray(arch_params["alpha_depth"])
  if probs_EO.shape != (cfg.num_edges, ops.NUM_OPS) or alpha_depth.shape != (cfg.k_max,):
    raise ValueError(f"arch params of shapes {probs_EO.shape}, {alpha_depth.shape} do not fit "
                     f"the config ({cfg.num_edges}, {ops.NUM_OPS}), ({cfg.k_max},)")
  nonzero_EO = np.delete(probs_EO, ops.ZERO_INDEX, axis=1)
  nonzero_names = [n for n in ops.OP_NAMES if n != "zero"]
  chosen = []
  for node in range(NUM_INPUT_NODES, NUM_INPUT_NODES + cfg.num_nodes):
    incoming = [e for e, (dst, _) in enumerate(cfg.edges) if dst == node]
    # Stable sort: ties go to the earlier (lower-numbered) source node.
    strongest = sorted(incoming, key=lambda e: -nonzero_EO[e].max())[:EDGES_PER_NODE]
    for e in sorted(strongest):
      chosen.append((node, cfg.edges[e][1], nonzero_names[int(nonzero_EO[e].argmax())]))
  return Genotype(ops=tuple(chosen), depth=int(alpha_depth.argmax()) + 1, k_max=cfg.k_max,
                  num_nodes=cfg.num_nodes, input_mode=cfg.input_mode)


def genotype_to_onehots(genotype: Genotype, cfg: SupernetConfig) -> dict[str, np.ndarray]:
  """Exact one-hot architecture sample for supernet_apply (edges not chosen get the zero op).

  NumPy arrays: passed to a jitted supernet_apply as arguments they are traced like any
  sample; closed over (constants) with SupernetConfig(unroll=True) they let the supernet trace
  only the chosen ops and cells.
  """
  if (genotype.k_max, genotype.num_nodes, genotype.input_mode) != (
      cfg.k_max, cfg.num_nodes, cfg.input_mode):
    raise GenotypeError(f"genotype has k_max={genotype.k_max}, num_nodes={genotype.num_nodes}"
                        f", input_mode={genotype.input_mode} but the supernet config has "
                        f"k_max={cfg.k_max}, num_nodes={cfg.num_nodes}, "
                        f"input_mode={cfg.input_mode}")
  edge_index = {edge: e for e, edge in enumerate(cell_edges(cfg.num_nodes))}
  ops_index = np.full((cfg.num_edges,), ops.ZERO_INDEX, np.int32)
  for node, src, name in genotype.ops:
    ops_index[edge_index[(node, src)]] = ops.OP_NAMES.index(name)
  depth_index = np.int32(genotype.depth - 1)
  return {
      "ops": np.eye(ops.NUM_OPS, dtype=np.float32)[ops_index],
      "ops_index": ops_index,
      "depth": np.eye(cfg.k_max, dtype=np.float32)[depth_index],
      "depth_index": np.asarray(depth_index),
  }


# Baselines: what the search is compared against, under the same student training.


def random_genotype(seed: int, depth: int, k_max: int, num_nodes: int,
                    input_mode: str = "single") -> Genotype:
  """A uniformly random architecture of the search space at a given depth: like a derived
  genotype, each intermediate node takes 2 distinct earlier nodes, each edge a random
  non-zero op. Node 2 has only the two input nodes to choose from, so it always reads both:
  in "aligned" mode the first cell sees both sentences."""
  rng = np.random.default_rng(seed)
  op_names = [n for n in ops.OP_NAMES if n != "zero"]
  chosen = []
  for node in range(NUM_INPUT_NODES, NUM_INPUT_NODES + num_nodes):
    for src in sorted(rng.choice(node, size=EDGES_PER_NODE, replace=False)):
      chosen.append((node, int(src), op_names[rng.integers(len(op_names))]))
  return Genotype(ops=tuple(chosen), depth=depth, k_max=k_max, num_nodes=num_nodes,
                  input_mode=input_mode)


def plain_cnn_genotype(depth: int, k_max: int, num_nodes: int, op: str = "conv3",
                       input_mode: str = "single") -> Genotype:
  """A plain CNN in the same cell format: each cell is a chain of `num_nodes` convolutions
  (input k-1 -> node 2 -> node 3 -> ...), so depth K gives K * num_nodes stacked convs.
  In "aligned" mode node 2 also reads input k-2 (sentence A in the first cell), so both
  sentences reach it; in siamese mode each sentence is encoded on its own anyway."""
  chain = [(NUM_INPUT_NODES, NUM_INPUT_NODES - 1, op)]
  if input_mode == "aligned":
    chain.insert(0, (NUM_INPUT_NODES, 0, op))
  chain += [(node, node - 1, op)
            for node in range(NUM_INPUT_NODES + 1, NUM_INPUT_NODES + num_nodes)]
  return Genotype(ops=tuple(chain), depth=depth, k_max=k_max, num_nodes=num_nodes,
                  input_mode=input_mode)


RANDOM_ARCH_SEED_OFFSET = 1  # the random_arch baseline's cell is random_genotype(seed + 1)


def baseline_genotypes(searched: Genotype, seed: int) -> dict[str, Genotype]:
  """The cells the searched one is compared against, at its depth: random_arch (a random
  cell) and plain_cnn (a chain of conv3)."""
  shape = dict(depth=searched.depth, k_max=searched.k_max, num_nodes=searched.num_nodes,
               input_mode=searched.input_mode)
  return {"random_arch": random_genotype(seed + RANDOM_ARCH_SEED_OFFSET, **shape),
          "plain_cnn": plain_cnn_genotype(**shape)}


PLAIN_CNN_PREFIX = "plain_cnn:"


def genotype_from_spec(spec: str, k_max: int, num_nodes: int, input_mode: str = "single"
                       ) -> tuple[Genotype, str]:
  """(genotype, short label) from a command-line spec: a genotype.json path, or plain_cnn:K
  (a chain of conv3 in each of K cells, in this supernet's k_max, num_nodes and input
  mode). A file's genotype must read its input as `input_mode` does."""
  if spec.startswith(PLAIN_CNN_PREFIX):
    depth = spec[len(PLAIN_CNN_PREFIX):]
    if not depth.isdigit() or not 1 <= int(depth) <= k_max:
      raise GenotypeError(f"--genotype={spec}: the depth after plain_cnn: must be an integer "
                          f"in 1..{k_max} (search.k_max)")
    return (plain_cnn_genotype(int(depth), k_max, num_nodes, input_mode=input_mode),
            f"plain_cnn_k{depth}")
  stem = os.path.splitext(os.path.basename(spec))[0]
  geno = Genotype.load(spec)
  if geno.input_mode != input_mode:
    raise GenotypeError(f"--genotype={spec} reads its input as {geno.input_mode!r}, this task "
                        f"as {input_mode!r} (--config.search.pair_mode): set its "
                        f'"input_mode" to {input_mode!r} or use a genotype made for this task.')
  return geno, stem
