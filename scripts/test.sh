#!/usr/bin/env bash
# Sets up .venv, installs promtool/prometheus (Debian's `prometheus` package) and Node.js with npm if missing,
# installs @grpc/grpc-js and @grpc/proto-loader into .venv/node (the independent TLS client of
# tests/api/test_tls.py), then runs the whole suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  missing+=(prometheus)
fi
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ ! -d .venv/node/node_modules/@grpc/grpc-js ] || [ ! -d .venv/node/node_modules/@grpc/proto-loader ]; then
  mkdir -p .venv/node
  (cd .venv/node && npm install --silent --no-audit --no-fund @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1 >/dev/null)
fi
exec .venv/bin/python -m pytest -q tests "$@"
