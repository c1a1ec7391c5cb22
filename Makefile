# Two commands for a fresh machine (only python3 >= 3.11 needed):
#   make demo   set everything up, load the bundled CSV files through Meltano into the embedded lake
#   make test   set everything up and run the tests (what .ci/run calls)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9

export MELTANO_CLI_DISABLE_VERSION_CHECK := true
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false
export UV_COMPILE_BYTECODE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup plugins services s3-server devstack-up devstack-down demo serve test lint typecheck nessie bench clean-lake clean examples

$(BIN)/uv:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (found %s); set PYTHON=python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)

# The project environment: pinned by requirements/lock.txt, byte-compiled (startup time matters
# for a Singer target that Meltano starts once per run).
$(VENV)/.installed: $(BIN)/uv pyproject.toml requirements/lock.txt
	$(BIN)/uv pip install --python $(BIN)/python --compile-bytecode -q \
		-c requirements/lock.txt -e ".[platform,dev]"
	@touch $@

setup: $(VENV)/.installed

# Meltano's plugin environments (.meltano/): the extractors from PyPI and this project as the loader.
.meltano/.installed: $(VENV)/.installed meltano.yml $(wildcard extractors/*.yml extractors/*.txt)
	$(BIN)/meltano install
	@touch $@ .meltano/.packages-installed

# The extractors install this repository's packages/ (the HTTP meter, tap wrappers) as copies, so a
# change there reinstalls them; a fresh install above already has the current packages.
PACKAGE_SOURCES := $(wildcard packages/*/pyproject.toml packages/*/src/*/*.py packages/*/src/*.pth)
.meltano/.packages-installed: .meltano/.installed $(PACKAGE_SOURCES)
	$(BIN)/meltano install --plugin-type extractor --clean
	@touch $@

# Meltano reinstalls a plugin only when its pip_url changes; the loader (and tap-markdown-kv, which
# imports the loader's Markdown-KV parser) are editable installs of this project, so a change of its
# dependencies reinstalls them.
.meltano/.loader-installed: .meltano/.installed pyproject.toml requirements/lock.txt taps/tap-markdown-kv/pyproject.toml
	$(BIN)/meltano install --plugin-type loader --clean target-iceberg-nessie
	$(BIN)/meltano install --plugin-type extractor --clean tap-markdown-kv
	@touch $@

plugins: .meltano/.installed .meltano/.packages-installed .meltano/.loader-installed

demo: plugins
	$(BIN)/meltano run demo
	$(BIN)/ingest tables --sample 3

# The orchestrator: Dagster's UI on http://127.0.0.1:3000 and its daemon (schedules, run queue) for
# every job under configs/ (docs/orchestration.md).
serve: plugins
	$(BIN)/ingest serve

# The servers and the browser the tests use (Debian packages; root installs the
# missing ones, nothing happens when all are there).
services: setup
	$(BIN)/python -m devstack.install_services

# The S3 server the object-storage tests start on loopback: versitygw, built once with `go install`
# into ~/.cache/ingestion-devstack (about 3 minutes from an empty Go cache; nothing when built).
s3-server: setup
	$(BIN)/python -m devstack.s3 --install-only

# Two workers, a test file each at a time (module fixtures stay in one process); every worker
# starts its own servers on free ports.
test: plugins services s3-server lint typecheck
	$(BIN)/pytest -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy target_iceberg_nessie ingestion devstack taps/tap-markdown-kv/tap_markdown_kv

nessie: setup
	$(BIN)/python -m devstack.nessie

# The compose stack's services as local processes (no Docker): S3, Nessie, PostgreSQL, MariaDB,
# with data, logs and pid files under .devstack/; `up` prints the endpoints and the env to use.
devstack-up: setup s3-server services
	$(BIN)/python -m devstack.stack up

devstack-down: setup
	$(BIN)/python -m devstack.stack down

# docs/examples/run-metadata.json: the run metadata of a real `ingest run demo/demo_csv`, and
# docs/images/dagster-*.png: the Dagster UI of a real `ingest serve` (both taken by test runs).
examples: plugins services
	INGEST_WRITE_EXAMPLE=1 $(BIN)/pytest tests/e2e/test_ingest_run.py -k loads_the_job -q
	INGEST_WRITE_EXAMPLE=1 $(BIN)/pytest tests/e2e/test_orchestrator_ui.py -q

bench: setup
	$(BIN)/python bench/run_bench.py --records 1000000

clean-lake:
	rm -rf .lake .state

clean: clean-lake
	rm -rf $(VENV) .meltano
