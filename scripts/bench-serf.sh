#!/usr/bin/env bash
# Serf against the `shoal` agent on the real network: N agents, one network
# namespace each on a bridge, the same steps and measurements for both
# (tests/src/lab/bench.rs says which). A thin wrapper over `shoal-lab bench`.
# Writes one JSON object per (system, N) to OUT (the fields of `NetRow` in
# sim/src/bin/compare/rows.rs).
#
#   scripts/bench-serf.sh OUT [SIZES]      # SIZES default "10 50 100"
#
# Env: SHOAL_BIN (default $CARGO_TARGET_DIR/release/shoal), SHOAL_LAB (the
# shoal-lab binary, likewise), QUICK=1 (short windows, for development).
# Needs root (namespaces, iptables) and serf (apt-get install serf).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/bench-serf.sh OUT [SIZES]}
SIZES=${2:-"10 50 100"}
TARGET=${CARGO_TARGET_DIR:-target}
export SHOAL_BIN=${SHOAL_BIN:-$TARGET/release/shoal}
SHOAL_LAB=${SHOAL_LAB:-$TARGET/release/shoal-lab}
[[ -x $SHOAL_LAB ]] || { echo "$SHOAL_LAB not found: cargo build --release -p shoal-tests --bin shoal-lab" >&2; exit 1; }
: >"$OUT"
exec "$SHOAL_LAB" bench --system shoal,shoal-fast,serf --nodes "${SIZES// /,}" --out "$OUT" ${QUICK:+--quick}
