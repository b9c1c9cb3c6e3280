# personahub-dagster — one command to set up and run, one to test.
#   make demo   create .venv, install, materialize every asset on the sample corpus with the local models
#   make test   create .venv, install, run the test suite (unit + end-to-end with the real local models,
#               the UI in headless Chromium, and the team deployment on real servers: Chromium and
#               PostgreSQL come from Debian's packages, `make browser` and `make postgres`)
#   make ui     start the Dagster UI on http://127.0.0.1:3000

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export PERSONAHUB_LAKE ?= $(CURDIR)/lake
export PERSONAHUB_INBOX ?= $(CURDIR)/inbox
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1

.PHONY: install browser postgres demo test ui lint bench clean

install: $(STAMP)

# torch first, pinned: the CPU build of 2.13.0 is what pip finds locally; an unpinned torch would pull a
# multi-GB CUDA build. llama-cpp-python compiles llama.cpp from source here (a few minutes, once).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install --quiet -e '.[dev]'
	@mkdir -p $(DAGSTER_HOME) && { [ -s $(DAGSTER_HOME)/dagster.yaml ] || cp deploy/local/dagster.yaml $(DAGSTER_HOME)/dagster.yaml; }
	@touch $(STAMP)

demo: install
	$(BIN)/personahub demo

# headless Chromium for the browser test of the UI (Debian packages; needs root or sudo)
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }

# PostgreSQL server binaries for the deployment tests (Debian's package; the tests start their own
# throwaway server as the postgres user, on 127.0.0.1, and stop it)
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; }

test: install browser postgres
	$(BIN)/ruff check .
	$(BIN)/pytest -q

ui: install
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python benchmarks/local_llm_runtime.py
	$(BIN)/python benchmarks/dedup_minhash.py
	$(BIN)/python benchmarks/dedup_quality.py
	$(BIN)/python benchmarks/dedup_growth.py
	$(BIN)/python benchmarks/hub_distributed.py
	$(BIN)/python benchmarks/llm_throughput.py
	$(BIN)/python benchmarks/embeddings.py
	$(BIN)/python benchmarks/pii_scrub.py
	$(BIN)/python benchmarks/lake.py
	$(BIN)/python benchmarks/rate_limits.py
	$(BIN)/python benchmarks/ui_path.py
	$(BIN)/python benchmarks/nights.py
	$(BIN)/python benchmarks/persona_mix.py
	$(BIN)/python benchmarks/language_detection.py
	$(BIN)/python benchmarks/persona_fidelity.py
	$(BIN)/python benchmarks/ifeval_agreement.py
	@if [ -d "$(PERSONAHUB_LAKE)/tables/hub" ]; then $(BIN)/python benchmarks/cost_model.py --lake $(PERSONAHUB_LAKE); \
	else echo "cost model: run 'make demo' first (it scales what a real run measured)"; fi

clean:
	rm -rf $(VENV) lake inbox .dagster_home test-artifacts
