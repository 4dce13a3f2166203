"""adabert-jax: AdaBERT (task-adaptive BERT compression with differentiable NAS) in JAX/Flax.

`from adabert_jax import Student` loads an exported student to classify text
(adabert_jax/predictors.py).
"""

from adabert_jax.errors import UserError

__version__ = "0.1.0"
__all__ = ["Student", "UserError", "__version__"]


def __getattr__(name: str):
  # Lazy, so that `import adabert_jax` (the CLI's error type, the version) needs no JAX.
  if name == "Student":
    from adabert_jax.predictors import Student

    return Student
  raise AttributeError(f"module 'adabert_jax' has no attribute {name!r}")
