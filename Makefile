# `make demo` and `make test` set everything up on a fresh machine (Python 3.11 or 3.12).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/demo.yaml
RUN    ?= runs/demo
STAGES := extract wikipedia reference_pages langid line_dedup perplexity_model perplexity_score perplexity_cutoffs perplexity quality near_dedup quality_model quality_classifier \
          arxiv stackexchange github books corpus tokenizer tokenize token_parts mixture train

.PHONY: setup browser demo test inspect report export bench bench-filters bench-big-warc bench-train bench-sources clean $(STAGES)

# The kenlm Python module's version (pyproject.toml): lmplz is built from the same source.
KENLM  := 0.3.0

setup: $(VENV)/.installed $(VENV)/bin/lmplz browser

# Headless Chromium, for tests/test_report.py's check that the run report renders (skipped without it).
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
		|| echo "chromium could not be installed: the report's browser test will be skipped"; \
	else echo "no chromium (and not root with apt-get to install it): the report's browser test will be skipped"; fi

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12), "need Python 3.11 or 3.12, set PYTHON="'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# KenLM's estimator, for the perplexity models (stages.perplexity_model): not on PyPI as a binary.
$(VENV)/bin/lmplz: tools/build_kenlm.sh | $(VENV)/.installed
	bash tools/build_kenlm.sh $(KENLM) $(VENV)

demo: setup
	$(PY) -m pipeline run $(CONFIG)

test: setup
	$(PY) -m pytest

# One stage at a time, e.g. `make langid CONFIG=configs/demo.yaml`; a stage needs its upstream stages' output.
$(STAGES): setup
	$(PY) -m pipeline run $(CONFIG) --stages $@

inspect: setup
	$(PY) -m pipeline inspect $(RUN) --shards

# The run's HTML report: RUN/report/index.html (open it from disk).
report: setup
	$(PY) -m pipeline report $(RUN)

# The trained model as a Hugging Face LlamaForCausalLM directory: RUN/hf.
export: setup
	$(PY) -m trainer.hf_export $(RUN)/train/checkpoint.pt $(RUN)/hf --tokenizer $(RUN)/tokenizer/tokenizer.model

# Each prints its figures beside the baseline it must beat, as ratios, in one run (see bench/README.md).
bench: setup
	$(PY) bench/minhash.py
	$(PY) bench/near_dup_eval.py
	$(PY) bench/line_dedup.py
	$(PY) bench/extract_settings.py
	$(PY) bench/extract_quality.py
	$(PY) bench/extract_pipeline.py one-core
	$(PY) bench/extract_pipeline.py scaling
	$(PY) bench/manifest_commit.py
	$(PY) bench/object_storage.py
	$(PY) bench/quality_filter.py
	$(PY) bench/tokenize_throughput.py

# What each crawl filter keeps and drops on the labelled and sample pages, with drops to read (bench/out/filters/),
# and the perplexity model's separation of held-out Wikipedia from dropped crawl pages.
bench-filters: setup
	$(PY) -m bench.crawl_filters
	$(PY) bench/perplexity.py

# A ~1 GB WARC built from the sample pages, through the extract stage: peak memory and progress (bench/big_warc.py).
bench-big-warc: setup
	$(PY) bench/big_warc.py run

# Tokens/s and MFU of the model presets: run it on the GPU machine (bench/train.py).
bench-train: setup
	$(PY) bench/train.py

# Throughput of each source's stage on the bundled samples (no baseline: figures for the README).
bench-sources: setup
	$(PY) bench/arxiv.py
	$(PY) bench/stackexchange.py speed
	$(PY) bench/github.py
	$(PY) bench/books.py

clean:
	rm -rf runs
