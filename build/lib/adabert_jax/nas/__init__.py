"""Differentiable architecture search: ops, cells, supernet, losses, derivation.

ops          the ten candidate operations (init_op, apply_op, OP_NAMES)
costs        their parameter and FLOP costs, measured from the definitions (op_cost_table)
supernet     SupernetConfig, init_supernet, supernet_apply (modes "sampled" and "all_ops")
gumbel       hard straight-through Gumbel-softmax sampling, the temperature schedule
losses       L = (1 - gamma) L_CE + gamma L_KD + beta L_E (LossConfig, adabert_loss)
genotype     derive_genotype (alpha's rule), Genotype (JSON), genotype_to_onehots
derive       the derive stage: alpha's rule, or the supernet's measured held-out loss
search_step  make_optimizer, init_search_state, search_step / make_search_step
testing      random inputs for tests and benchmarks
"""
