#!/usr/bin/env bash
# The namespace lab (tests/src/lab/): builds `shoal` and `shoal-lab`
# (release) and runs `shoal-lab` with these arguments. Needs root.
#
#   scripts/lab.sh up --nodes 5                 # a mesh to play with; Ctrl-C removes it
#   scripts/lab.sh up --system serf --nodes 5
#   scripts/lab.sh bench --nodes 10 --out lab.jsonl --quick
#   scripts/lab.sh clean                        # leftover namespaces and agents
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -q -p shoal-node --bin shoal -p shoal-tests --bin shoal-lab
export SHOAL_BIN=${SHOAL_BIN:-$TARGET/release/shoal}
exec "$TARGET/release/shoal-lab" "$@"
