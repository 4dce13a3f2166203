"""Differentiable architecture search: ops, cells, supernet, losses, derivation."""
