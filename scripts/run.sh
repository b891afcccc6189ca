#!/usr/bin/env bash
# Sets up .venv and runs a local 3-node vaultd cluster on loopback (Ctrl-C stops it). Extra args go to `vaultd dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/vaultd dev "$@"
