"""The pipeline: the stage runner (runner.py) and the stages wired to it (stages.py)."""
