# `make test` and `make demo` are the whole set-up on a fresh machine: they create .venv with
# python3.12 when it is missing and install what they need.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# python3.12 may be a pyenv shim that fails outside a pyenv-selected directory: take the first
# candidate that actually runs.
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
PYTEST_ARGS ?=

.PHONY: test lint soak demo venv clean chromium

$(PY):
	@test -n "$(PYTHON312)" || { echo "python3.12 not found: install Python 3.12 (e.g. apt-get install python3.12 python3.12-venv)"; exit 1; }
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when pyproject.toml changes. Tests need every extra (clip pulls torch: large).
$(VENV)/.installed-all: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[clip,vertex,s3,parquet,serve,dev]'
	touch $@

venv: $(VENV)/.installed-all

test: lint chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# The gallery's browser tests (tests/test_gallery_browser.py) drive Debian's Chromium through
# Playwright. Installed here when missing and we are root; otherwise those tests skip, saying how.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x $(CHROMIUM) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "no $(CHROMIUM): the browser tests will skip (as root: apt-get install chromium)"; \
	  fi; \
	fi

# Style and types are part of the test: ruff's lint rules and its formatter (line length 100), and
# mypy over pipeline/ (settings in pyproject.toml).
lint: $(VENV)/.installed-all
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The reliability suite in its long form: 50 SIGKILL trials and a 20 s burst of 429s.
SOAK_TRIALS ?= 50
soak: $(VENV)/.installed-all
	IMGVEC_CRASH_TRIALS=$(SOAK_TRIALS) IMGVEC_BURST_SECONDS=20 $(PY) -m pytest -m fault -s $(PYTEST_ARGS)

# Generated images (nothing downloaded) -> imgvec run with CLIP on the embedded database -> psql.
# PRETRAINED=none runs offline with random weights; the default falls back to it when the
# weights cannot be fetched.
PRETRAINED ?= laion2b_s34b_b79k
demo: $(VENV)/.installed-all
	$(PY) -m pipeline.demo --pretrained $(PRETRAINED)

clean:
	rm -rf $(VENV) .pytest_cache
