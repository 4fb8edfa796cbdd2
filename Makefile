# Top-level entry points. Every target bootstraps what it needs (scripts/setup.sh is idempotent:
# a warm run takes seconds) and can be run again at any time.
#
#   make setup   system packages + the cached virtualenv (.venv -> $HX_CACHE_DIR/venv-<hash>)
#   make demo    export the demo bundle for a Raspberry Pi 4 and run it on the demo wav
#   make test    the test suite (PYTEST_ARGS="..." adds pytest arguments)
#   make bench   every benchmarks/*.py script with the virtualenv's python
#   make clean   remove out/, build outputs and __pycache__ (never the virtualenv cache)
#
# HX_SKIP_SETUP=1 skips the set-up step (scripts/setup.sh exits at once); only for a tree whose
# .venv already exists (the tests of .ci/run use it on a throw-away copy of the repo).
# HX_PYTEST_RC_FILE=<path>: `make test` writes pytest's own exit status there (.ci/run uses it
# to tell "tests failed" from "no tests ran").

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV_PY := .venv/bin/python
TOOLCHAIN := .venv/bin/toolchain
PYTEST_ARGS ?=
# The virtualenv is shared by the clones on a machine; put this clone first on the path so the
# `toolchain` script and the benchmarks run this clone's code whichever clone installed last.
HERE_FIRST := PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}"

.PHONY: help setup demo test bench clean

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

setup:
	@bash scripts/setup.sh

demo: setup
	$(HERE_FIRST) $(TOOLCHAIN) export --target rpi --out out/bundle-rpi4 --overwrite
	$(HERE_FIRST) $(TOOLCHAIN) run out/bundle-rpi4 --input toolchain/assets/demo_speech.wav --output out/demo_processed.wav
	@echo "demo: wrote out/bundle-rpi4/ and out/demo_processed.wav"

# The README's test command. pytest exits 5 when it collects no test: that is a failure too.
test: setup
	@rc=0; $(VENV_PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) || rc=$$?; \
	if [[ -n "$${HX_PYTEST_RC_FILE:-}" ]]; then echo "$$rc" > "$$HX_PYTEST_RC_FILE"; fi; \
	if [[ $$rc -eq 5 ]]; then echo "make test: FAILED: pytest collected no tests (exit 5)" >&2; fi; \
	exit $$rc

bench: setup
	@shopt -s nullglob; scripts=(benchmarks/*.py); failed=(); \
	if [[ $${#scripts[@]} -eq 0 ]]; then echo "bench: no benchmarks/*.py scripts"; exit 0; fi; \
	for s in "$${scripts[@]}"; do \
	  echo "bench: $$s"; \
	  $(HERE_FIRST) $(VENV_PY) "$$s" || failed+=("$$s"); \
	done; \
	if [[ $${#failed[@]} -gt 0 ]]; then echo "bench: FAILED: $${failed[*]}" >&2; exit 1; fi; \
	echo "bench: $${#scripts[@]} scripts ok"

clean:
	rm -rf out/ demo_out/ build/ csrc/build/ .pytest_cache/
	find . -path ./.git -prune -o -path ./.venv -prune -o \
	  \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} + \
	  -o \( -name '*.o' -o -name '*.so' \) -type f -exec rm -f {} +
