# fazhi — set-up, tests, demo, server and benchmarks. Every target sets up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-done
SHARED ?= ../shared

.PHONY: setup test demo serve bench bench-api release-model lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel first and pinned, so nothing below can pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/fazhi parse fazhi/data/sample_report.txt --format md

lint: setup
	$(BIN)/python -m compileall -q fazhi corpora models training serving

clean:
	rm -rf $(VENV) build
