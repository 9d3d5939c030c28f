#!/usr/bin/env bash
# Shoal against the systems users would pick instead, in one run on this
# machine, and BENCHMARKS.md (with docs/bench/*.svg) written from it:
#   - foca in the simulator (same network, faults and seed): N=100 and 1,000
#   - chitchat in one process vs Shoal in the simulator: N=10, 100, 500
#   - Serf vs the `shoal` agent, one network namespace per agent (shoal-lab):
#     N=10, 50 and 100
#
#   scripts/bench.sh            # the full run (about 1.5-2 hours here)
#   scripts/bench.sh --quick    # a few minutes: N=100 / 10,100 / 10 only
#
# Installs what it needs (serf and iptables via apt-get; needs root for apt,
# namespaces and iptables) and builds the release binaries. Results (JSON)
# stay in $RESULTS (default target/bench).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=
[[ "${1:-}" == "--quick" ]] && QUICK=1
TARGET=${CARGO_TARGET_DIR:-target}
RESULTS=${RESULTS:-$TARGET/bench}
step() { printf '\n==> %s\n' "$*" >&2; }

step "tools"
missing=()
for tool in serf iptables; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if ((${#missing[@]} > 0)); then
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "build (release)"
cargo build --release --locked -p shoal-node --bin shoal -p shoal-tests --bin shoal-lab
cargo build --release --locked -p shoal-sim --features compare --bin shoal-compare
COMPARE=$TARGET/release/shoal-compare
export SHOAL_BIN=$TARGET/release/shoal

mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.json "$RESULTS"/*.jsonl
if [[ -n $QUICK ]]; then
  SIM_NODES=100 CHITCHAT_NODES=10,100 SERF_SIZES="10" SIM_FLAGS=(--quick)
else
  SIM_NODES=100,1000 CHITCHAT_NODES=10,100,500 SERF_SIZES="10 50 100" SIM_FLAGS=()
fi

{
  echo "cores:   $(nproc)"
  echo "cpu:     $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "memory:  $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel:  $(uname -r)"
  echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
  echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "mode:    ${QUICK:+quick}${QUICK:-full}"
  echo "serf:    $(serf version | head -1)"
  echo "note:    a shared machine: other work may have run alongside (CPU figures are noisy)"
} >"$RESULTS/machine.txt"
cat >"$RESULTS/commands.txt" <<EOF
scripts/bench.sh ${QUICK:+--quick}
  shoal-compare sim --nodes $SIM_NODES --seed 1 ${SIM_FLAGS[*]:-} --out sim.json
  shoal-compare chitchat --nodes $CHITCHAT_NODES --out chitchat.json
  scripts/bench-serf.sh serf.jsonl "$SERF_SIZES"   # = shoal-lab bench --system shoal,shoal-fast,serf --nodes ${SERF_SIZES// /,}${QUICK:+ --quick}
  shoal-compare report --dir RESULTS --out BENCHMARKS.md --svg-dir docs/bench
replay one simulator run: cargo run --release -p shoal-sim --features compare -- run crash-10pct --nodes 1000 --seed 1 --impl foca
EOF

# The simulator at N=1,000 holds a few hundred MB per run; cap it anyway.
step "simulator: Shoal vs foca (N=$SIM_NODES)"
(ulimit -v 12000000 && "$COMPARE" sim --nodes "$SIM_NODES" --seed 1 "${SIM_FLAGS[@]}" --out "$RESULTS/sim.json")

step "chitchat vs Shoal (N=$CHITCHAT_NODES)"
(ulimit -v 12000000 && "$COMPARE" chitchat --nodes "$CHITCHAT_NODES" --out "$RESULTS/chitchat.json")

step "Serf vs shoal agents in network namespaces (N=$SERF_SIZES)"
QUICK=$QUICK scripts/bench-serf.sh "$RESULTS/serf.jsonl" "$SERF_SIZES"

step "BENCHMARKS.md"
"$COMPARE" report --dir "$RESULTS" --out BENCHMARKS.md --svg-dir docs/bench
echo "wrote BENCHMARKS.md and docs/bench/*.svg (results in $RESULTS)" >&2
