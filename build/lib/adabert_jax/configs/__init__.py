"""The configs, inside the package so an installed copy has them (experiments/configs/
default.py, the path users type, loads this one)."""
