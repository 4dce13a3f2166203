"""Deriving a genotype from the architecture logits; its JSON form and validation."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adabert_jax.errors import UserError
from adabert_jax.nas import genotype, ops, supernet

CFG = supernet.SupernetConfig(hidden=16, k_max=3, num_nodes=3)
OP = {name: i for i, name in enumerate(ops.OP_NAMES)}


def _arch():
  """Hand-made logits: edge e's favourite op and its margin are chosen per edge."""
  alpha = np.zeros((CFG.num_edges, ops.NUM_OPS), np.float32)
  # Node 2 has edges 0, 1 (both kept). Node 3: edges 2, 3, 4. Node 4: edges 5..8.
  favourite = {0: ("conv3", 2.0), 1: ("max_pool3", 1.0), 2: ("conv5", 0.5),
               3: ("identity", 3.0), 4: ("dil_conv7", 2.5), 5: ("avg_pool3", 0.2),
               6: ("conv7", 1.5), 7: ("dil_conv3", 0.1), 8: ("identity", 1.8)}
  for e, (name, margin) in favourite.items():
    alpha[e, OP[name]] = margin
  alpha[2, ops.ZERO_INDEX] = 9.0  # zero dominates edge 2: the top non-zero op still counts
  return {"alpha_ops": jnp.asarray(alpha), "alpha_depth": jnp.asarray([0.1, 0.9, 0.3])}


def test_derive_picks_top_nonzero_op_and_two_strongest_edges_per_node():
  geno = genotype.derive_genotype(_arch(), CFG)
  assert geno.depth == 2 and geno.k_max == 3 and geno.num_nodes == 3
  assert geno.ops == ((2, 0, "conv3"), (2, 1, "max_pool3"),
                      (3, 1, "identity"), (3, 2, "dil_conv7"),
                      (4, 1, "conv7"), (4, 3, "identity"))
  assert all(name != "zero" for _, _, name in geno.ops)


def test_json_round_trip(tmp_path):
  geno = genotype.derive_genotype(_arch(), CFG)
  data = json.loads(geno.to_json())
  assert data == {"ops": [[2, 0, "conv3"], [2, 1, "max_pool3"], [3, 1, "identity"],
                          [3, 2, "dil_conv7"], [4, 1, "conv7"], [4, 3, "identity"]],
                  "depth": 2, "k_max": 3, "num_nodes": 3}
  assert genotype.Genotype.from_json(geno.to_json()) == geno
  path = str(tmp_path / "genotype.json")
  geno.save(path)
  assert genotype.Genotype.load(path) == geno


@pytest.mark.parametrize("change, message", [
    ({"ops": [[2, 0, "conv9"]]}, "unknown operation 'conv9'"),
    ({"ops": [[5, 0, "conv3"]]}, "edge out of range, node must be in 2..4"),
    ({"ops": [[3, 3, "conv3"]]}, "edge out of range, from_node must be in 0..2"),
    ({"ops": [[2, 0, "conv3"], [2, 0, "conv5"]]}, "appears twice"),
    ({"ops": [[2, 0]]}, r"must be \[node, from_node, op_name\]"),
    ({"depth": 4}, "depth 4 is outside 1..k_max=3"),
    ({"depth": 0}, "depth 0 is outside"),
    ({"depth": "2"}, "'depth' must be an integer"),
])
def test_invalid_genotypes_are_rejected_with_a_clear_message(change, message):
  data = {"ops": [[2, 0, "conv3"]], "depth": 2, "k_max": 3, "num_nodes": 3, **change}
  with pytest.raises(ValueError, match=message) as info:
    genotype.Genotype.from_json(json.dumps(data))
  assert isinstance(info.value, UserError)  # entry points print it without a traceback


def test_load_errors_name_the_file(tmp_path):
  path = tmp_path / "g.json"
  path.write_text('{"ops": [], "depth": 9, "k_max": 3, "num_nodes": 3}')
  with pytest.raises(ValueError, match=f"{path}: genotype depth 9"):
    genotype.Genotype.load(str(path))
  with pytest.raises(ValueError, match="lacks depth"):
    genotype.Genotype.from_json('{"ops": [], "k_max": 3, "num_nodes": 3}')
  with pytest.raises(ValueError, match="not valid JSON"):
    genotype.Genotype.from_json("{")
  with pytest.raises(ValueError, match="cannot read genotype file"):
    genotype.Genotype.load(str(tmp_path / "missing.json"))


def test_onehots_give_the_chosen_ops_and_zero_elsewhere():
  geno = genotype.derive_genotype(_arch(), CFG)
  sample = genotype.genotype_to_onehots(geno, CFG)
  expected = np.full(CFG.num_edges, ops.ZERO_INDEX)
  for e, name in {0: "conv3", 1: "max_pool3", 3: "identity", 4: "dil_conv7", 6: "conv7",
                  8: "identity"}.items():
    expected[e] = OP[name]
  np.testing.assert_array_equal(sample["ops_index"], expected)
  np.testing.assert_array_equal(sample["ops"], jax.nn.one_hot(expected, ops.NUM_OPS))
  np.testing.assert_array_equal(sample["depth"], [0.0, 1.0, 0.0])
  assert int(sample["depth_index"]) == 1 and sample["depth_index"].dtype == jnp.int32
  with pytest.raises(ValueError, match="k_max=3, num_nodes=3, input_mode=single but the supernet config"):
    genotype.genotype_to_onehots(geno, supernet.SupernetConfig(k_max=4))


def test_a_derived_genotype_of_random_logits_is_always_valid():
  for seed in range(5):
    k1, k2 = jax.random.split(jax.random.key(seed))
    arch = {"alpha_ops": jax.random.normal(k1, (CFG.num_edges, ops.NUM_OPS)),
            "alpha_depth": jax.random.normal(k2, (CFG.k_max,))}
    geno = genotype.derive_genotype(arch, CFG)
    assert len(geno.ops) == 2 * CFG.num_nodes
    assert genotype.Genotype.from_json(geno.to_json()) == geno


def test_random_baseline_genotype_is_valid_seeded_and_varied():
  a = genotype.random_genotype(3, depth=2, k_max=8, num_nodes=3)
  assert a == genotype.random_genotype(3, depth=2, k_max=8, num_nodes=3)
  assert a.depth == 2 and len(a.ops) == 2 * 3  # two incoming edges per node, like derived
  assert all(name != "zero" for _, _, name in a.ops)
  others = {genotype.random_genotype(s, 2, 8, 3).to_json() for s in range(5)}
  assert len(others) > 1


def test_plain_cnn_baseline_is_a_chain_of_convolutions():
  cnn = genotype.plain_cnn_genotype(depth=3, k_max=8, num_nodes=3)
  assert cnn.ops == ((2, 1, "conv3"), (3, 2, "conv3"), (4, 3, "conv3"))
  assert cnn.depth == 3


def test_genotype_from_spec_reads_plain_cnn_depths_and_files(tmp_path):
  geno, label = genotype.genotype_from_spec("plain_cnn:3", k_max=8, num_nodes=3)
  assert label == "plain_cnn_k3"
  assert geno == genotype.plain_cnn_genotype(3, 8, 3)
  path = tmp_path / "my_cell.json"
  geno.save(str(path))
  loaded, label = genotype.genotype_from_spec(str(path), k_max=8, num_nodes=3)
  assert (loaded, label) == (geno, "my_cell")
  for bad in ("plain_cnn:x", "plain_cnn:0", "plain_cnn:9"):
    with pytest.raises(UserError, match="must be an integer in 1..8"):
      genotype.genotype_from_spec(bad, k_max=8, num_nodes=3)
  with pytest.raises(UserError, match="missing.json"):
    genotype.genotype_from_spec(str(tmp_path / "missing.json"), k_max=8, num_nodes=3)
