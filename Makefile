# lora-nlg: every stage is one target; each creates the venv first (`setup`).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

# OpenMP threads that sleep instead of spinning: on a shared or oversubscribed CPU spinning threads can make
# every stage several times slower; set OMP_WAIT_POLICY=ACTIVE yourself on a dedicated machine.
OMP_WAIT_POLICY ?= PASSIVE
export OMP_WAIT_POLICY

# Stage variables (documented in README.md).
DATASET  ?= e2e
RAW_DIR  ?=
SPLITS   ?=
MODEL    ?= gpt2-medium
PRETRAINED ?=
RUN      ?= $(DATASET)
SPLIT    ?= test
NPROC    ?= 1
NNODES   ?= 1
NODE_RANK ?= 0
MASTER_ADDR ?= 127.0.0.1
MASTER_PORT ?= 29500
RESUME   ?= 0
ARGS     ?=
PYTEST_ARGS ?=

.PHONY: pretrained help setup test test-fast data train decode generate eval demo bench bench-gpu bench-train bench-decode e2e webnlg dart clean-venv

help: ## list targets
	@grep -E '^[a-zA-Z0-9_ -]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

setup: $(STAMP) ## create .venv and install requirements (re-runs when they change)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(TEST_STAMP): $(STAMP) requirements-test.txt
	$(PY) -m pip install -q -r requirements-test.txt
	touch $@

test: $(TEST_STAMP) ## run the whole test suite (what CI runs; PYTEST_ARGS=...)
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The tests marked `slow` (over ~5 s each on a 2-core machine: end-to-end chains, several processes, the metric
# jars, real-data scoring) are left out; everything else runs, in under 3 minutes on 2 cores.
test-fast: $(TEST_STAMP) ## the test suite without the tests marked slow (under 3 minutes; PYTEST_ARGS=...)
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

clean-venv: ## remove .venv
	rm -rf $(VENV)

# ---- data (issue 3) ---------------------------------------------------------------------------
SOURCE ?=
VERIFY ?= 0

DATA_ARGS = --dataset $(DATASET) $(if $(RAW_DIR),--raw-dir $(RAW_DIR)) $(if $(SPLITS),--splits $(SPLITS)) \
	$(if $(SOURCE),--source $(SOURCE)) $(if $(filter 1 true yes,$(VERIFY)),--verify)

data: setup ## raw -> data/<dataset>/<split>.jsonl (DATASET=e2e|webnlg|dart|all, RAW_DIR, SPLITS, SOURCE, VERIFY=1)
	$(PY) -m lora_nlg.data $(strip $(DATA_ARGS) $(ARGS))

# ---- train (issue 4) --------------------------------------------------------------------------
CONFIG ?= configs/$(DATASET).yaml
# MODEL overrides the preset's model only when given explicitly (its default above is for other stages).
TRAIN_OVERRIDES = train.run=$(RUN) \
	$(if $(filter-out file,$(origin MODEL)),model.name=$(MODEL)) \
	$(if $(PRETRAINED),model.pretrained=$(PRETRAINED)) \
	$(if $(filter 1 true yes,$(RESUME)),train.resume=true)
# One process runs the module directly; more go through torchrun (one machine, or NNODES machines).
ifeq ($(NPROC)$(NNODES),11)
LAUNCH = $(PY) -m
else ifeq ($(NNODES),1)
LAUNCH = $(PY) -m torch.distributed.run --standalone --nproc_per_node=$(NPROC) -m
else
LAUNCH = $(PY) -m torch.distributed.run --nnodes=$(NNODES) --node_rank=$(NODE_RANK) \
	--nproc_per_node=$(NPROC) --master_addr=$(MASTER_ADDR) --master_port=$(MASTER_PORT) -m
endif

train: setup ## LoRA fine-tuning into checkpoints/$(RUN)/ (DATASET, MODEL|PRETRAINED, RUN, NPROC, NNODES, RESUME=1, ARGS)
	$(LAUNCH) lora_nlg.train $(CONFIG) $(TRAIN_OVERRIDES) $(ARGS)

bench-train: setup ## training throughput vs the reference's pad-to-512 regime (ARGS="--dtype bf16 --pad 512")
	$(PY) scripts/bench_train.py --model $(if $(filter-out file,$(origin MODEL)),$(MODEL),gpt2) $(ARGS)

# ---- decode (issue 5) -------------------------------------------------------------------------
# --run-name, not --run: torchrun's own --run-path option would claim the prefix.

decode: setup ## beam search -> checkpoints/$(RUN)/decode/$(SPLIT)/ (RUN, SPLIT, NPROC, ARGS="decode.beam=5 --checkpoint best")
	$(LAUNCH) lora_nlg.decode --run-name $(RUN) --split $(SPLIT) $(ARGS)

# One generated text per input line on stdout (errors on stderr name the line; exit 1 if any line failed).
INPUT ?= -

generate: setup ## text for new inputs, one per line (RUN, INPUT=file, - or unset = stdin; ARGS="--jsonl decode.beam=5")
	@$(PY) -m lora_nlg.generate --run $(RUN) --input $(or $(INPUT),-) $(ARGS)

bench-decode: setup ## beam-search speed vs the reference regime (ARGS="--batch 1,16 --dtype bf16 --reference")
	$(PY) scripts/bench_decode.py --model $(if $(filter-out file,$(origin MODEL)),$(MODEL),gpt2) \
		$(or $(ARGS),--beam 10 --batch 16 --inputs 32 --max-new-tokens 64 --reference)

# ---- eval (issue 6) ---------------------------------------------------------------------------
MTEVAL ?= official

eval: setup ## official metrics of checkpoints/$(RUN)/decode/$(SPLIT)/ -> checkpoints/$(RUN)/eval/$(SPLIT).{json,md} (MTEVAL=official|python for E2E BLEU/NIST)
	$(PY) eval/run_eval.py checkpoints/$(RUN) $(SPLIT) --mteval $(MTEVAL)

# ---- demo, paper recipes, bench (issue 7) ------------------------------------------------------

pretrained: setup ## download GPT-2 weights (MODEL=gpt2|gpt2-medium|gpt2-large|gpt2-xl) into checkpoints/pretrained/
	$(PY) -m lora_nlg.pretrained $(MODEL)

# make demo: each step is keyed on its output file, so an interrupted demo resumes where it stopped.
DEMO_DIR      ?= demo
DEMO_RUN      ?= demo
DEMO_RAW      ?= $(or $(RAW_DIR),$(if $(wildcard ../shared/data/e2e/valid.txt),../shared/data))
DEMO_STEPS    ?= 300
DEMO_RUN_DIR  := checkpoints/$(DEMO_RUN)
DEMO_DATA     := $(DEMO_DIR)/data/e2e/test.jsonl
DEMO_BASE     := $(DEMO_DIR)/base/model.safetensors
DEMO_ADAPTER  := $(DEMO_RUN_DIR)/final/lora.safetensors
DEMO_OVERRIDES = train.run=$(DEMO_RUN) model.pretrained=$(DEMO_DIR)/base data.dir=$(DEMO_DIR)/data/e2e

demo: $(DEMO_DIR)/summary.json ## CPU-only end-to-end demo: data, small base model, LoRA, decode, eval (< 10 min)
	@$(PY) -m lora_nlg.demo summary $(DEMO_DIR) $(DEMO_RUN_DIR) $(DEMO_DIR)/summary.json

$(DEMO_DATA): | $(STAMP)
	@echo "== demo 1/6: data ($(if $(DEMO_RAW),real E2E from $(DEMO_RAW),generated restaurant data))"
	$(PY) -m lora_nlg.demo prepare $(DEMO_DIR) $(if $(DEMO_RAW),--raw-dir $(DEMO_RAW))

$(DEMO_BASE): $(DEMO_DATA)
	@echo "== demo 2/6: pretraining a small GPT-2 on the training texts (the demo's stand-in for GPT-2 M)"
	$(PY) -m lora_nlg.pretrain $(DEMO_DIR)/data/e2e/train.jsonl $(DEMO_DIR)/base --preset small --steps $(DEMO_STEPS) \
		--group-references

$(DEMO_ADAPTER): $(DEMO_BASE)
	@echo "== demo 3/6: LoRA fine-tuning (the real training stage, configs/demo.yaml)"
	$(PY) -m lora_nlg.train configs/demo.yaml $(DEMO_OVERRIDES) \
		$(if $(wildcard $(DEMO_RUN_DIR)/config.yaml),train.resume=true) $(ARGS)

$(DEMO_RUN_DIR)/decode/test/hyp.txt: $(DEMO_ADAPTER)
	@echo "== demo 4/6: beam search with the LoRA adapter"
	$(PY) -m lora_nlg.decode --run-name $(DEMO_RUN) --split test

$(DEMO_DIR)/base-run/decode/test/hyp.txt: $(DEMO_BASE)
	@echo "== demo 5/6: beam search with the base model alone (before LoRA), for comparison"
	$(PY) -m lora_nlg.decode --merged $(DEMO_DIR)/base \
		--config configs/demo.yaml --data $(DEMO_DATA) --out $(DEMO_DIR)/base-run/decode/test

$(DEMO_RUN_DIR)/eval/test.json: $(DEMO_RUN_DIR)/decode/test/hyp.txt
	@echo "== demo 6/6: official E2E metrics"
	$(PY) eval/run_eval.py $(DEMO_RUN_DIR) test --mteval python

$(DEMO_DIR)/base-run/eval/test.json: $(DEMO_DIR)/base-run/decode/test/hyp.txt
	$(PY) eval/run_eval.py $(DEMO_DIR)/base-run test --mteval python

$(DEMO_DIR)/summary.json: $(DEMO_RUN_DIR)/eval/test.json $(DEMO_DIR)/base-run/eval/test.json

bench: setup ## train + decode benchmarks (ours vs the reference regime) -> bench/report.md + report.json
	$(PY) scripts/bench_report.py $(ARGS)

bench-gpu: setup ## one GPU, < 8 min: GPT-2 medium training (fp32, bf16) vs transformers+PEFT, beam search at batch 1/8/32 vs HF generate -> bench/report-gpu.md + .json
	$(PY) scripts/bench_report.py --gpu --model $(if $(filter-out file,$(origin MODEL)),$(MODEL),gpt2-medium) $(ARGS)

# Paper recipes: pretrained GPT-2 + data + training with the paper's config + decode + eval, one command each.
# Re-running continues: a finished stage is skipped, an interrupted training resumes.
PAPER_RUN = $@$(if $(filter-out gpt2-medium,$(MODEL)),-$(MODEL))

e2e webnlg dart: setup ## paper recipe for one dataset (MODEL=gpt2|gpt2-medium|gpt2-large, NPROC=8, ARGS=overrides)
	$(MAKE) --no-print-directory pretrained MODEL=$(MODEL)
	$(MAKE) --no-print-directory data DATASET=$@ $(if $(RAW_DIR),RAW_DIR=$(RAW_DIR))
	@if [ -f checkpoints/$(PAPER_RUN)/final/lora.safetensors ]; then echo "== $(PAPER_RUN): training already finished"; \
	else $(MAKE) --no-print-directory train DATASET=$@ MODEL=$(MODEL) RUN=$(PAPER_RUN) NPROC=$(NPROC) \
		$(if $(wildcard checkpoints/$(PAPER_RUN)/config.yaml),RESUME=1) ARGS="$(ARGS)"; fi
	@if [ -f checkpoints/$(PAPER_RUN)/decode/test/predictions.jsonl ]; then echo "== $(PAPER_RUN): already decoded"; \
	else $(MAKE) --no-print-directory decode RUN=$(PAPER_RUN) SPLIT=test NPROC=$(NPROC); fi
	$(MAKE) --no-print-directory eval RUN=$(PAPER_RUN) SPLIT=test
	@cat checkpoints/$(PAPER_RUN)/eval/test.md
