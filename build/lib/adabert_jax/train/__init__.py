"""Shared training machinery: optimizers, sharding, checkpoints, logging."""
