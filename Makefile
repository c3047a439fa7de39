# Commands people type. Everything runs from the project's own virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

LOCK := requirements/winnow.lock.txt

.PHONY: install lock demo test test-fast bench lint format clean mutation

# The venv holds exactly what the lock lists (every package at its exact version), then Winnow
# itself, editable. The lock, not pyproject.toml's ranges, decides what a fresh machine gets.
$(VENV)/.installed: pyproject.toml $(LOCK) requirements/install.sh
	bash requirements/install.sh $(VENV) $(LOCK) .
	touch $@

install: $(VENV)/.installed

lock:  ## re-resolve every lock from the open ranges in fresh venvs, then run the suite
	bash requirements/lock.sh
	$(MAKE) test

demo: install  ## make a sample bucket in ./demo-data, curate it twice
	rm -rf demo-data
	$(VENV)/bin/winnow demo --dir demo-data

test: install  ## the whole suite (CI runs exactly this)
	$(PY) -m pytest -q

test-fast: install  ## everything but the tests marked slow (under a minute)
	$(PY) -m pytest -q -m "not slow"

bench: install  ## benchmarks; each prints one JSON line last
	$(PY) bench/selection.py
	$(PY) bench/throughput.py
	$(PY) bench/discover.py
	$(PY) bench/video_sampling.py
	$(PY) bench/objects.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf demo-data .prefect .pytest_cache tests/artifacts

MUTATION_TIMEOUT ?= 3600
MUTANTS ?=  # e.g. 'winnow.selection.*' to run only those mutants (mutmut's fnmatch names)
mutation: install  ## mutation testing of the pool/discover/storage/selection promises (docs/testing.md); not in make test
	bash requirements/install.sh $(VENV) requirements/mutation.lock.txt .
	rm -f $(VENV)/.installed  # the venv now holds mutmut too: the next make install syncs it
	rm -rf mutants
	timeout $(MUTATION_TIMEOUT) $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS); rc=$$?; \
	  $(VENV)/bin/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json; \
	  $(VENV)/bin/mutmut results; exit $$rc
