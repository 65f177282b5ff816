#!/usr/bin/env bash
# The one command that sets up a fresh machine and runs svcnet's main job:
# a multi-node cluster on this machine (`svcnet up`, embedded store).
# Extra arguments go to `svcnet up` (e.g. --nodes 3 --proxy-mode userspace).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "svcnet up builds network namespaces and needs root (CAP_NET_ADMIN): run as root or with sudo" >&2
  exit 1
fi
scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/svcnet-target}"
cargo build --release -p svcnet
exec "$CARGO_TARGET_DIR/release/svcnet" up --data-dir "${SVCNET_DATA_DIR:-/tmp/svcnet}" "$@"
