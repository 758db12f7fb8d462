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

.PHONY: install pipeline test bench benchmarks lock clean screenshot

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade 'pip==26.3'
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

pipeline: $(STAMP)
	$(BIN)/dvc repro

# Two pytest workers at one thread each (a test file stays on one worker, in file order): the
# suite is half waiting on servers and subprocesses; two 2-thread torch jobs on 2 cores would thrash.
TEST_WORKERS ?= 2
test: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# The imported dev sets (docs/imports.md, README "Imported benchmarks"): each is one run of
# experiments/run_imports.sh in $(PERK_RUNS)/<name> (default /tmp/r15, a snapshot of HEAD with its own
# data/ and mlruns/), then the table. Needs ../shared/benchmarks beside the clone (or PERK_SHARED=DIR
# holding benchmarks/ and reference/); without it the import fails naming the missing file.
BENCH_RUNS ?= DG1_single2 G_swap50_1600 H2_multikey_every_key H3_multikey_2400 I_qa1 I2_qa1_every_person
# The imported-benchmark runs of README "Imported benchmarks" (experiments/IMPORTS.md; F is G's base): each a
# snapshot of the committed code under $${PERK_RUNS:-/tmp/r15}/NAME with its own data/ and MLflow store.
RECIPE := -P meta_train.exposure_weight=0 -P meta_train.support_span=sentence
benchmarks: $(STAMP)
	IMP="-P imports.haystack_swap=0.5" experiments/run_imports.sh F_swap50 ruler/niah_single_2 \
	  "-P pretrain.steps=400 -P pretrain.exposure=false" "-P meta_train.steps=800 $(RECIPE)"
	STAGES="meta-train baseline evaluate" REUSE=F_swap50 METHODS=perk,baseline experiments/run_imports.sh \
	  G_swap50_1600 ruler/niah_single_2 "" "-P meta_train.steps=1600 $(RECIPE)"
	IMP="-P imports.haystack_swap=0.5" ALL="-P tokenizer.digit_group=3 -P tokenizer.vocab_size=7424" METHODS=perk,baseline \
	  BASE="-P baseline.steps=2000" \
	  STAGES="tokenizer import pretrain meta-train baseline evaluate" experiments/run_imports.sh DG1_single2 ruler/niah_single_2 \
	  "-P pretrain.steps=400 -P pretrain.exposure=false" "-P meta_train.steps=800 $(RECIPE)"
	IMP="-P imports.haystack_swap=0.5" METHODS=perk,baseline STAGES="tokenizer import pretrain meta-train baseline evaluate" \
	  experiments/run_imports.sh H2_multikey_every_key ruler/niah_multikey_1 \
	  "-P pretrain.steps=400 -P pretrain.exposure=false" "-P meta_train.steps=800 $(RECIPE)"
	STAGES="meta-train evaluate" REUSE=H2_multikey_every_key experiments/run_imports.sh H3_multikey_2400 \
	  ruler/niah_multikey_1 "" "-P meta_train.steps=2400 $(RECIPE)"
	IMP="-P imports.ask_every_key=false" METHODS=perk,baseline STAGES="tokenizer import pretrain meta-train baseline evaluate" \
	  experiments/run_imports.sh I_qa1 babilong_bench/qa1 \
	  "-P pretrain.steps=400 -P pretrain.exposure=false" "-P meta_train.steps=800 $(RECIPE)"
	METHODS=perk,baseline STAGES="tokenizer import pretrain meta-train baseline evaluate" \
	  experiments/run_imports.sh I2_qa1_every_person babilong_bench/qa1 \
	  "-P pretrain.steps=400 -P pretrain.exposure=false" "-P meta_train.steps=800 $(RECIPE)"
	$(BIN)/python experiments/imports_table.py $(addprefix $${PERK_RUNS:-/tmp/r15}/,$(BENCH_RUNS))

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
