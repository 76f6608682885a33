# Every target creates .venv and installs what it needs by itself.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
NATIVE := $(VENV)/.native-built
DEMO_WORKLOAD ?= avazu
DEMO_TARGET   ?= ascend910
OUT    := out

.PHONY: help demo test test-long bench bench-compile bench-scale bench-quick bench-torchrec bench-planners lint typecheck schema readme clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,runtime,bench,traces]'
	# TorchRec's planner, the optional baseline: pinned to a build that loads with torch 2.13 on CPU; its
	# wheels must come without their dependencies (they name the CUDA build of FBGEMM).
	$(PY) -m pip install --quiet --no-deps fbgemm-gpu-cpu==1.8.0 torchrec==1.8.0
	$(PY) -m pip install --quiet tensordict torchmetrics==1.0.3 tqdm pyre-extensions
	touch $(STAMP) $(NATIVE)

# The native executor (runtime/_native.cpp) is compiled by the install above; rebuilt when its source changes.
$(NATIVE): runtime/_native.cpp setup.py | $(STAMP)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(NATIVE)

demo: $(STAMP) $(NATIVE)  ## compile a built-in workload for ascend910 and explain the plan
	@mkdir -p $(OUT)
	$(VENV)/bin/embmap compile $(DEMO_WORKLOAD) --target $(DEMO_TARGET) -o $(OUT)/$(DEMO_WORKLOAD).plan.json
	$(VENV)/bin/embmap explain $(OUT)/$(DEMO_WORKLOAD).plan.json

test: $(STAMP) $(NATIVE)  ## run the test suite
	$(PY) -m pytest

test-long: $(STAMP) $(NATIVE)  ## the heavier test variants (marked long): more random instances, larger fits
	$(PY) -m pytest -m long

bench: $(STAMP) $(NATIVE)  ## every pipeline x workload x distribution, predicted and measured: docs/RESULTS.md and plots; and bench-scale
	$(VENV)/bin/embmap bench --out docs
	$(PY) -m embmap.mapper.calibration_scatter -o docs/calibration-scatter.png
	$(SCALE_BENCH)

bench-compile: $(STAMP) $(NATIVE)  ## compile time (median of 3), gap and plan of every built-in workload on ascend910: docs/COMPILE.md
	$(PY) benchmarks/compile_report.py --out docs/COMPILE.md

bench-torchrec: $(STAMP) $(NATIVE)  ## our cluster plan vs TorchRec's planner, each proposer, all run on DMP with 2 gloo ranks
	$(PY) benchmarks/torchrec_dmp.py

bench-planners: $(STAMP) $(NATIVE)  ## EmbmapShardingPlanner vs TorchRec's planner proposer by proposer, 500-5000 tables x 32-128 ranks: docs/RESULTS.md
	$(PY) benchmarks/torchrec_planners.py --out docs/RESULTS.md

bench-quick: $(STAMP) $(NATIVE)  ## the same on one small workload, in seconds (CI runs it as a test)
	@mkdir -p $(OUT)/bench
	$(VENV)/bin/embmap bench --quick --out $(OUT)/bench

SCALE_BENCH = $(PY) benchmarks/scale.py --torchrec --out docs/SCALE.md

bench-scale: $(STAMP) $(NATIVE)  ## plan time, gap and peak memory, synthetic 100-5000 tables x 32-512 cores: docs/SCALE.md
	$(SCALE_BENCH)

lint: $(STAMP) $(NATIVE)  ## ruff and mypy
	$(VENV)/bin/ruff check embmap ir passes cost_models mapper runtime tests tools benchmarks setup.py
	$(VENV)/bin/mypy

schema: $(STAMP) $(NATIVE)  ## regenerate docs/plan.schema.json, docs/example-plan.json and the workload and target schemas
	$(PY) tools/export_schema.py

readme: $(STAMP) $(NATIVE)  ## rerun the commands shown in README.md, docs/workloads.md, docs/targets.md; rewrite their outputs
	$(PY) tools/readme_examples.py

clean:  ## remove the virtual environment and outputs
	rm -rf $(VENV) $(OUT) .pytest_cache .mypy_cache .ruff_cache *.egg-info
