# The two entry points are `make run` and `make test`; each installs what is missing first.
SWIFT      ?= swift
VENV       ?= .venv
PYTHON     := $(VENV)/bin/python
E2E_DIR    := Tests/EndToEnd
DEBUG_BIN  := $(CURDIR)/.build/debug/cluster-node
RELEASE_BIN := $(CURDIR)/.build/release/cluster-node
RUN_ARGS   ?=
# Seconds each fuzz target runs in `make fuzz` (and so in `make test`).
FUZZ_SECONDS ?= 60

.PHONY: run test deps build release unit-test e2e-test fuzz venv clean

## Builds release and starts one node with the built-in defaults (ARGS via RUN_ARGS="...").
run: deps release
	$(RELEASE_BIN) $(RUN_ARGS)

## Runs every test: unit tests, end-to-end tests against the real executable, then a bounded
## run of each fuzz target.
test: deps venv build unit-test e2e-test fuzz

deps:
	@scripts/install-deps.sh $(if $(filter test,$(MAKECMDGOALS)),--test,)

build:
	$(SWIFT) build --build-tests

release:
	$(SWIFT) build -c release --product cluster-node

unit-test: build
	$(SWIFT) test --skip-build

e2e-test: build venv
	CLUSTER_NODE_BIN=$(DEBUG_BIN) $(PYTHON) -m pytest $(E2E_DIR) -q -p no:cacheprovider

## Builds the libFuzzer targets (Fuzz/) and runs each for FUZZ_SECONDS; fails on any finding.
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) SWIFT=$(SWIFT) scripts/fuzz.sh

venv: $(VENV)/.installed

$(VENV)/.installed: $(E2E_DIR)/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(E2E_DIR)/requirements.txt
	touch $@

clean:
	rm -rf .build .build-fuzz $(VENV)
