# LatentBench. `make bench` and `make test` do all set-up on a fresh machine.
PY := .venv/bin/python
# glibc's default allocator cost 20-35% of training time on 2 CPU cores (page faults): keep freed
# memory mapped instead (DESIGN.md, performance rules).
export MALLOC_MMAP_MAX_ := 0
export MALLOC_TRIM_THRESHOLD_ := 100000000000

.PHONY: bench test lint report clean-cache

.venv/installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

bench: .venv/installed  ## every learner and baseline on the embedded digits data -> results/digits.md
	$(PY) -m bench run --config configs/default.toml

test: .venv/installed
	$(PY) -m pytest

lint: .venv/installed
	$(PY) -m ruff check bench methods tests
	$(PY) -m ruff format --check bench methods tests

report: .venv/installed  ## rebuild results/*.md and plots from the run store
	$(PY) -m bench report

clean-cache:  ## drop checkpoints, latents and decoded datasets (the run store is kept)
	rm -rf .cache
