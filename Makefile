# Quick start: `make pipeline` (install + dvc repro) and `make test` (install + pytest).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export PREFECT_HOME := $(CURDIR)/.prefect
# dvc.yaml's stage commands call `perk`: the venv's bin comes first on PATH.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install pipeline test bench lock clean screenshot

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade 'pip==26.3'
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

pipeline: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# MLflow UI compare view of the newest meta_train and baseline runs (needs `chromium`).
screenshot: $(STAMP)
	$(BIN)/python -m flows.screenshot $(ARGS)

bench: $(STAMP)
	$(BIN)/perk bench synth

# Re-resolve the dependency ranges in pyproject.toml and pin the result.
lock:
	rm -rf /tmp/perk-lock-venv && $(PY) -m venv /tmp/perk-lock-venv
	/tmp/perk-lock-venv/bin/pip install -q --upgrade pip && /tmp/perk-lock-venv/bin/pip install -q ".[test]"
	(sed -n '/^#/p' requirements.lock; /tmp/perk-lock-venv/bin/pip freeze --all --exclude perk --exclude pip | sed 's/^torch==\(.*\)+cpu$$/torch==\1/') > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) .prefect
