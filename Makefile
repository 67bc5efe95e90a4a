# The two entry points are `make run` and `make test`; each installs what is missing first.
SWIFT      ?= swift
VENV       ?= .venv
PYTHON     := $(VENV)/bin/python
E2E_DIR    := Tests/EndToEnd
RELEASE_DIR := $(CURDIR)/.build/release
RELEASE_BIN := $(RELEASE_DIR)/cluster-node
RUN_ARGS   ?=
# Seconds each fuzz target runs in `make fuzz` (and so in `make test`); longer runs by hand.
FUZZ_SECONDS ?= 30

.PHONY: run test deps lint format build release release-all unit-test e2e-test tsan fuzz venv clean settings-table

## Builds release and starts one node with the built-in defaults (ARGS via RUN_ARGS="...").
run: deps release
	$(RELEASE_BIN) $(RUN_ARGS)

## Runs every test: the style check, the unit tests under ThreadSanitizer, end-to-end tests
## against the release executables that `make run` runs, then a bounded run of each fuzz target.
## The unit tests run once, under the sanitizer: a second, plain debug build of the whole
## stack would cost CI about a quarter of its time for no test the sanitized run lacks
## (`make unit-test` is the quick plain run while developing).
test: deps venv lint tsan release-all e2e-test fuzz

deps:
	@scripts/install-deps.sh $(if $(filter test,$(MAKECMDGOALS)),--test,)

build:
	$(SWIFT) build --build-tests

FORMAT_PATHS := Sources Tests Benchmarks Fuzz

## Fails when a Swift file isn't in the shared style (.swift-format: swift-nio's).
lint:
	$(SWIFT) format lint --strict --recursive --parallel $(FORMAT_PATHS)

## Rewrites the Swift files in that style; run it before committing.
format:
	$(SWIFT) format --in-place --recursive --parallel $(FORMAT_PATHS)

release:
	$(SWIFT) build -c release --product cluster-node

## Both executables, built as users get them: the end-to-end suite drives these.
release-all:
	$(SWIFT) build -c release

unit-test: build
	$(SWIFT) test --skip-build

e2e-test: release-all venv
	STOMP_NODE_BIN=$(RELEASE_BIN) CLUSTERCTL_BIN=$(RELEASE_DIR)/clusterctl $(PYTHON) -m pytest $(E2E_DIR) -q -p no:cacheprovider

## The unit tests under ThreadSanitizer, in a build folder of their own.
tsan:
	$(SWIFT) test --sanitize=thread --scratch-path .build-tsan

## Builds the libFuzzer targets (Fuzz/) and runs each for FUZZ_SECONDS; fails on any finding.
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) SWIFT=$(SWIFT) scripts/fuzz.sh

## Rewrites the README's table of settings from the one table in the code
## (Sources/ClusterNode/Settings/SettingsTable.swift); the end-to-end suite checks they agree.
settings-table: release
	scripts/settings-table.py $(RELEASE_BIN) README.md

venv: $(VENV)/.installed

$(VENV)/.installed: $(E2E_DIR)/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(E2E_DIR)/requirements.txt
	touch $@

clean:
	rm -rf .build .build-tsan .build-fuzz $(VENV)
