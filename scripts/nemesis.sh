#!/usr/bin/env bash
# The long nemesis run (tests/src/nemesis): 7 real `shoal` agents in network
# namespaces, 100+ seeded fault events of every kind, checks after every heal.
# Builds `shoal` and `shoal-nemesis` (release). Needs root. Takes about an
# hour; runs at low priority. Any extra arguments go to shoal-nemesis.
#
#   scripts/nemesis.sh                          # seed from the clock, 100 events
#   scripts/nemesis.sh --seed 7 --events 150    # replay or extend a seed
#   NEMESIS_DIR=/tmp/nem scripts/nemesis.sh     # keep logs there
#
# The summary (events per kind, catalog entries lost, exactly-R restored and
# how fast, violations) goes to stdout and, as JSON, to $DIR/summary.json;
# one record per event to $DIR/events.jsonl; agents' logs stay in $DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --locked -q -p shoal-node --bin shoal -p shoal-tests --bin shoal-nemesis
SEED=${NEMESIS_SEED:-$(date +%s)}
ARGS=("$@")
for ((i = 0; i + 1 < ${#ARGS[@]}; i++)); do
    if [[ ${ARGS[i]} == --seed ]]; then SEED=${ARGS[i + 1]}; fi
done
DIR=${NEMESIS_DIR:-/tmp/shoal-nemesis-$SEED}
mkdir -p "$DIR"
export SHOAL_BIN=${SHOAL_BIN:-$TARGET/release/shoal}
exec nice -n 5 "$TARGET/release/shoal-nemesis" --seed "$SEED" --events 100 --agents 7 --dir "$DIR" \
    --json "$DIR/summary.json" "$@"
