# The two entry points are `make run` and `make test`; each installs what is missing first.
SWIFT      ?= swift
VENV       ?= .venv
PYTHON     := $(VENV)/bin/python
E2E_DIR    := Tests/EndToEnd
DEBUG_BIN  := $(CURDIR)/.build/debug/cluster-node
RELEASE_BIN := $(CURDIR)/.build/release/cluster-node
RELEASE_CTL := $(CURDIR)/.build/release/clusterctl
RUN_ARGS   ?=

.PHONY: run test deps build release release-ctl unit-test e2e-test venv clean

## Builds release and starts one node with the built-in defaults (ARGS via RUN_ARGS="...").
run: deps release
	$(RELEASE_BIN) $(RUN_ARGS)

## Runs every test: unit tests, then end-to-end tests against the real executable.
test: deps venv build unit-test e2e-test

deps:
	@scripts/install-deps.sh $(if $(filter test,$(MAKECMDGOALS)),--test,)

build:
	$(SWIFT) build --build-tests

release:
	$(SWIFT) build -c release --product cluster-node

## The end-to-end tests drive the release clusterctl, the build users get (see test_admin.py).
release-ctl:
	$(SWIFT) build -c release --product clusterctl

unit-test: build
	$(SWIFT) test --skip-build

e2e-test: build release-ctl venv
	CLUSTER_NODE_BIN=$(DEBUG_BIN) CLUSTERCTL_BIN=$(RELEASE_CTL) $(PYTHON) -m pytest $(E2E_DIR) -q -p no:cacheprovider

venv: $(VENV)/.installed

$(VENV)/.installed: $(E2E_DIR)/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(E2E_DIR)/requirements.txt
	touch $@

clean:
	rm -rf .build $(VENV)
