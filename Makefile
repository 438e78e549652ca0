# AisleWatch: `make demo` runs the whole job on one machine, `make test` runs every test.
# Both set up what they need first: a virtual environment (.venv) and, for the tests, the real
# servers' system packages and Kafka jars (.ci/install.sh, idempotent).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install test-deps system-deps demo test unit lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@# setuptools prints an "Editable installation" notice box for every flat-layout editable install; it is
	@# information only (the install is fine), so it is filtered out by its message and nothing else.
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

# The tests also need PyPI's torch (the [torch] extra: Keras on the torch backend scores like TensorFlow).
# Its Linux wheel brings ~5 GB of CUDA libraries (about a minute to install here), so only the test
# targets install it, never `make demo`.
TORCH_STAMP := $(VENV)/.torch-$(shell cksum pyproject.toml | cut -d' ' -f1)

$(TORCH_STAMP): $(STAMP)
	PYTHONWARNINGS='ignore:Editable installation' $(PY) -m pip install -q --disable-pip-version-check -e '.[dev,torch]'
	@rm -f $(VENV)/.torch-*
	@touch $@

test-deps: $(TORCH_STAMP)

system-deps:
	bash .ci/install.sh

demo: install
	$(VENV)/bin/aislewatch demo

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache

test: install test-deps system-deps lint
	@mkdir -p build
	@rm -f build/test-report.xml
	$(PY) -m pytest -q -rfEs --junitxml=build/test-report.xml; status=$$?; \
		$(PY) -m tests.junit_summary build/test-report.xml; exit $$status

unit: install test-deps
	$(PY) -m pytest -q tests/unit

bench: install system-deps
	$(PY) -m tests.bench

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
