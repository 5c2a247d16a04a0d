# Zen and the Art of Large-Model Architecture — common tasks.
#   make serve    set up, build, and serve the book at http://localhost:8000
#   make book     set up, then build the book into _build/html (warnings are errors)
#   make test     set up (dev tools too), then run every test: ruff (lint and format), zen unit tests, lab gates, notebook freshness and
#                 sweep records, the book build and every page in headless Chromium, nbval re-executing every notebook in book/ and
#                 labs/, then every book notebook again on a second draw (ZEN_SEED=1, one thread)
#   make sweep    re-run book notebooks for seeds 0-4 with 1 and 2 threads; record the results
#   make execute  re-run notebooks top to bottom and write fresh outputs (NB=path to pick one)
#
# Set-up (tools/setup_env.py): outside a virtual environment every target uses .venv/, made on
# first use (Debian's and Ubuntu's system Python refuses pip installs, PEP 668); inside one
# (VIRTUAL_ENV set) it uses that one; PYTHON=... on the command line names another (CI: make
# test PYTHON=python). PyTorch is installed when missing: the CPU build where nvidia-smi finds
# no NVIDIA GPU, the default (CUDA) build where it finds one; an installed torch is kept.
ifeq ($(origin PYTHON),undefined)
  ifdef VIRTUAL_ENV
    PYTHON := python
  else
    PYTHON := $(CURDIR)/.venv/bin/python
    export VIRTUAL_ENV := $(CURDIR)/.venv
    export PATH := $(CURDIR)/.venv/bin:$(PATH)
  endif
endif
BOOTSTRAP_PYTHON ?= python3
PORT ?= 8000
HOST ?= 127.0.0.1
NB ?= book labs
PYTEST_WORKERS ?= auto

.PHONY: install install-dev book serve test execute check sweep doctor clean

install:
	$(BOOTSTRAP_PYTHON) tools/setup_env.py --python "$(PYTHON)" --requirements requirements.txt

install-dev:
	$(BOOTSTRAP_PYTHON) tools/setup_env.py --python "$(PYTHON)" --requirements requirements-dev.txt

book: install
	jupyter-book build . -W -n --keep-going --builder html

serve: book
	@echo "serving the book at http://localhost:$(PORT)/ (Ctrl-C to stop)"
	$(PYTHON) -m http.server --bind $(HOST) --directory _build/html $(PORT)

test: install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	ZEN_SCALE=small TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(PYTHON) -m pytest -n $(PYTEST_WORKERS) --dist loadfile \
		--nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--ignore=labs/source tests book labs
	@echo "the book's claims on a second draw: ZEN_SEED=1, one thread (outputs not compared)"
	ZEN_SCALE=small ZEN_SEED=1 TQDM_DISABLE=1 OMP_NUM_THREADS=1 $(PYTHON) -m pytest -n $(PYTEST_WORKERS) --dist loadfile \
		--nbval-lax --nbval-current-env -p no:cacheprovider book

execute:
	$(PYTHON) -m zen execute $(NB)

check:
	$(PYTHON) -m zen check

sweep:
	$(PYTHON) -m zen sweep $(if $(filter book labs,$(NB)),book,$(NB)) --seeds 0-4 --threads 1,2

doctor:
	$(PYTHON) -m zen doctor

clean:
	rm -rf _build .pytest_cache
