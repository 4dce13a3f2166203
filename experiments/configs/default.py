"""The path users type (--config=experiments/configs/default.py:cpu): the config itself is
adabert_jax/configs/default.py, inside the package, so an installed copy has it too."""

from adabert_jax.configs.default import PRESETS, get_config

__all__ = ["PRESETS", "get_config"]
