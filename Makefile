# The two commands of a fresh machine: `make smoke` (the smoke study) and `make test`.
# Both create .venv from pyproject.toml on first use; nothing else needs to be installed.
# `make lab` opens the notebooks in JupyterLab on the `xlr` kernel (this .venv's Python).
# pyproject asks for Python 3.11: python3.11 where it is on PATH, else python3 (`make PYTHON=...`)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PARAMS ?= params/smoke.yaml
# `make test` runs test files in parallel processes (pytest-xdist), one file to a worker so a
# file's shared fixtures are built once; 2 for a 2-core machine (`make test TEST_WORKERS=4`)
TEST_WORKERS ?= 2
# the faiss build: cpu, or gpu on a GPU machine (extras of pyproject.toml; one only, since both
# install the same `faiss` module). Switching removes the other; give FAISS=gpu to every target
# on that machine, or the next one switches back.
FAISS ?= cpu
$(if $(filter cpu gpu,$(FAISS)),,$(error FAISS must be cpu or gpu, got '$(FAISS)'))
OTHER_FAISS := $(if $(filter gpu,$(FAISS)),cpu,gpu)
STAMP := $(VENV)/.installed-$(FAISS)

.PHONY: env smoke study test browser lab lint bench clean

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip uninstall --quiet --yes faiss-$(OTHER_FAISS)
	rm -f $(VENV)/.installed-$(OTHER_FAISS)
	$(BIN)/python -m pip install --quiet -e '.[dev,$(FAISS)]'
	$(BIN)/python -m pip install --quiet --no-deps img2dataset==1.47.0
	# CLIP_benchmark for the recall parity and record-name tests: its metric and dataset modules
	# need only torch, torchvision and tqdm; its declared dependencies add pycocoevalcap (104 MB)
	$(BIN)/python -m pip install --quiet --no-deps clip-benchmark==1.6.2
	$(BIN)/python -m xlr.kernel
	touch $(STAMP)

smoke: env
	$(BIN)/xlr reproduce $(PARAMS)

study: env
	$(BIN)/xlr reproduce params/synthetic.yaml

# the 25 slowest tests are listed at the end: the suite must stay under 30 minutes on 2 cores
test: env browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25

# tests/test_browser.py opens the exported pages in Debian's Chromium with the Noto fonts
# (Latin, Cyrillic, Arabic, Devanagari, CJK). Installed through apt-get where this runs as root;
# elsewhere, or when apt-get fails, the test is skipped and says why.
BROWSER_PACKAGES := chromium fonts-noto-core fonts-noto-cjk
browser:
	@if command -v dpkg >/dev/null 2>&1 && dpkg -s $(BROWSER_PACKAGES) >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(BROWSER_PACKAGES) >/dev/null) \
	  || echo "apt-get could not install $(BROWSER_PACKAGES): the browser test will be skipped"; \
	else echo "$(BROWSER_PACKAGES) missing and apt-get needs root: the browser test will be skipped"; fi

# JupyterLab on localhost only, behind a token (XLR_LAB_TOKEN, else a random one, printed first),
# with the `xlr` kernel registered from .venv; as root it needs --allow-root.
JUPYTER = $(BIN)/jupyter
lab: env
	$(BIN)/python -m xlr.kernel
	@token="$${XLR_LAB_TOKEN:-$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))')}"; \
	echo "JupyterLab token: $$token"; \
	$(JUPYTER) lab --ip=127.0.0.1 --no-browser --IdentityProvider.token="$$token" \
	  --MultiKernelManager.default_kernel_name=xlr --ServerApp.root_dir="$(CURDIR)" \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root)

lint: env
	$(BIN)/ruff check xlr tests benchmarks
	$(BIN)/ruff format --check xlr tests benchmarks

bench: env
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf runs reports/*/ .pytest_cache
