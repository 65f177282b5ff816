#!/usr/bin/env bash
# The one command that sets up a fresh machine and runs every svcnet test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/svcnet-target}"
exec cargo test --workspace --all-features "$@"
