# aslproc: `make demo` and `make test` are the two commands a new user types.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.aslproc-installed
# The CPU build of PyTorch, pinned: an unpinned torch pulls multi-GB CUDA wheels.
TORCH_PIN := torch==2.13.0
DEMO := demo

.PHONY: install demo test test-all lint clean

install: $(STAMP)

$(STAMP): pyproject.toml version
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_PIN)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/aslproc-synth $(DEMO)/data --subjects 1 --pairs 10 --snr 100 --motion 0.3 --seed 1
	$(BIN)/aslproc $(DEMO)/data/bids $(DEMO)/out participant -w $(DEMO)/work --nprocs 2
	@echo
	@echo "CBF maps:  $$(ls $(DEMO)/out/sub-*/perf/*_cbf.nii.gz | tr '\n' ' ')"
	@echo "Report:    $$(ls $(DEMO)/out/sub-*.html)"
	@echo "Truth:     $(DEMO)/data/truth/"

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m 'not gpu'

lint: install
	$(BIN)/ruff check aslproc tests benchmarks

clean:
	rm -rf $(DEMO) .pytest_cache
