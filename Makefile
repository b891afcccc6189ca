# The two entry points README.md promises: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup run test bench proto clean

$(BIN)/vaultd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

setup: $(BIN)/vaultd

# Local 3-node cluster on loopback; Ctrl-C stops it.
run: setup
	$(BIN)/vaultd dev

# promtool (Debian's prometheus package) is needed by the observability tests.
test: setup
	@command -v promtool >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	$(BIN)/python -m pytest -q tests

# Speed figures (README "Performance"); each script prints a Markdown table. Takes several minutes.
bench: setup
	$(BIN)/python -m benchmarks.bench_store
	$(BIN)/python -m benchmarks.bench_replication
	$(BIN)/python -m benchmarks.bench_observability

# Regenerate the committed protobuf/gRPC modules (tests/test_proto_generated.py checks they match).
proto: setup
	$(BIN)/python -m vaultd.protogen

clean:
	rm -rf $(VENV) .vaultd-dev .pytest_cache
