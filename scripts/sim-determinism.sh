#!/usr/bin/env bash
# Checks that a simulator run is a pure function of (seed, scenario, source):
# the same scenarios, run by a debug build (debug assertions and overflow
# checks on) and by a release build, must give identical trace hashes.
#
#   scripts/sim-determinism.sh [scenario ...]     # default: three built-ins
set -euo pipefail
cd "$(dirname "$0")/.."

scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(crash-one partition-halves gray-pause)

# Both binaries are copied out at once: another checkout sharing the target
# directory could otherwise replace them between build and run.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build -p shoal-sim --locked >&2 && cp "${CARGO_TARGET_DIR:-target}/debug/shoal-sim" "$work/debug"
cargo build --release -p shoal-sim --locked >&2 && cp "${CARGO_TARGET_DIR:-target}/release/shoal-sim" "$work/release"

hash_of() {
    "$1" run "$2" --nodes 100 --seed 7 --duration 60s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["trace_hash"])'
}

failed=0
for scenario in "${scenarios[@]}"; do
    debug=$(hash_of "$work/debug" "$scenario")
    release=$(hash_of "$work/release" "$scenario")
    if [ "$debug" = "$release" ]; then
        echo "$scenario: debug and release trace hashes agree ($debug)"
    else
        echo "$scenario: DIFFERENT trace hashes: debug $debug, release $release"
        failed=1
    fi
done
exit $failed
