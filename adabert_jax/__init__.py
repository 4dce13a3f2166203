"""adabert-jax: AdaBERT (task-adaptive BERT compression with differentiable NAS) in JAX/Flax."""

from adabert_jax.errors import UserError

__version__ = "0.1.0"
__all__ = ["UserError", "__version__"]
