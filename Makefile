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

.PHONY: test demo venv clean

$(PY):
	@test -n "$(PYTHON312)" || { echo "python3.12 not found: install Python 3.12 (e.g. apt-get install python3.12 python3.12-venv)"; exit 1; }
	$(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall only when pyproject.toml changes. Tests need every extra (clip pulls torch: large).
$(VENV)/.installed-all: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[clip,vertex,s3,dev]'
	touch $@

venv: $(VENV)/.installed-all

test: $(VENV)/.installed-all
	$(PY) -m pytest $(PYTEST_ARGS)

# Until the list/embed/load stages exist the demo shows the database half: an embedded
# PostgreSQL with pgvector, migrated, answering in psql.
demo: $(VENV)/.installed-all
	$(VENV)/bin/imgvec db start
	$(VENV)/bin/imgvec db status
	$(VENV)/bin/imgvec psql -c "select extname, extversion from pg_extension where extname = 'vector'"
	@echo "nothing more to demo yet: the list, embed and load stages come next"

clean:
	rm -rf $(VENV) .pytest_cache
