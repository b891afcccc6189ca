# Shortcuts; the scripts in scripts/ are what README.md and CI call (they need nothing but Python and apt).
.PHONY: setup run test bench proto clean

setup:
	bash scripts/setup.sh

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh

# Speed figures (README "Performance"); each script prints a Markdown table. Takes several minutes.
bench: setup
	.venv/bin/python -m benchmarks.bench_store
	.venv/bin/python -m benchmarks.bench_replication
	.venv/bin/python -m benchmarks.bench_observability

# Regenerate the committed protobuf/gRPC modules (tests/test_proto_generated.py checks they match).
proto: setup
	.venv/bin/python -m vaultd.protogen

clean:
	rm -rf .venv .vaultd-dev .pytest_cache
