# Entry points named in the README. PYTHON: the project's .venv if it exists, else the active
# virtualenv (where tools/setup_env.sh installs when one is active), else python3.
PYTHON ?= $(firstword $(wildcard .venv/bin/python $(VIRTUAL_ENV)/bin/python) python3)
PYTEST = $(PYTHON) -m pytest

.PHONY: setup lint test test-slow demo

setup:
	bash tools/setup_env.sh

# ruff (pyflakes, import order, bugbear) and the import layers of .importlinter.
lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -c "from importlinter.cli import lint_imports_command; lint_imports_command()" --no-cache

# Fast tests (the default run). pytest's exit code 5 (nothing collected) is a failure here.
test:
	$(PYTEST) -q -m "not slow"

# Tests that take minutes on a 2-core CPU (distributed, kill/resume, short trainings); CI runs them.
test-slow:
	$(PYTEST) -q -m slow

# The whole project on toy data (8 min wall on an idle 2-core CPU, 12-35 min when shared
# with other jobs; see projects/demo/README.md): toy data -> pretraining -> detection from the
# exported backbone -> COCO evaluation -> ground truth vs detections drawn. Extra flags:
# make demo DEMO_FLAGS="--baseline" (also the random-init detector, both mAPs, both drawn),
# DEMO_FLAGS="--seed 1 --threads 1".
demo:
	$(PYTHON) tools/demo_pipeline.py --out output/demo $(DEMO_FLAGS)
