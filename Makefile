# Two commands matter: `make demo` and `make test` (see README).
VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin

.PHONY: demo test test-fast lint install bench bench-quick clean

$(BIN)/.installed: pyproject.toml
	@command -v java >/dev/null || { echo "Java 17+ is required (the Kafka broker runs on it)"; exit 1; }
	@command -v mvn >/dev/null || { echo "Maven is required (it fetches the Kafka jars)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $@

install: $(BIN)/.installed

demo: install
	COMPSTREAM_DATA_DIR=$(CURDIR)/var/demo $(BIN)/compstream demo

# pytest exit 5 means "no tests collected": for this project that is a broken
# suite, so it fails loudly instead of passing silently.
test: install
	@$(BIN)/pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# The fast tier: everything that needs no broker, no Docker and no soak time,
# on every core (pytest-xdist). The broker suite (make test) stays serial.
test-fast: install
	@$(BIN)/pytest -n auto -m "not kafka and not docker and not soak"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# ruff (pyflakes, pycodestyle, bugbear, import order) and mypy (all of src, strict on domain/); config in pyproject.toml.
lint: install
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy

bench: install
	$(BIN)/python -m bench.run

bench-quick: install
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf var .pytest_cache .hypothesis
