#!/usr/bin/env bash
# Issue 16: crash detection before and after a protocol change. For each
# scenario, runs seeds A..B at N nodes (release build) and prints the mean
# and max over the seeds' crashes of "first suspected/declared" and "known
# Dead everywhere".
#
#   scripts/detect-sweep.sh [nodes] [first-seed] [end-seed] [scenario ...]
#   scripts/detect-sweep.sh 100 0 20 crash-one crash-10pct sim/scenarios/fast-crash.toml
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=${1:-100}
first=${2:-0}
end=${3:-20}
shift $(( $# < 3 ? $# : 3 ))
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(crash-one crash-10pct sim/scenarios/fast-crash.toml)

# SHOAL_SIM=path: measure that binary instead of the current release build.
source scripts/sim-binary.sh

for scenario in "${scenarios[@]}"; do
    for seed in $(seq "$first" $((end - 1))); do
        "$work/shoal-sim" run "$scenario" --nodes "$nodes" --seed "$seed" --json > "$work/$seed.json" || true
    done
    python3 - "$work" "$first" "$end" "$scenario" <<'PY'
import json, sys
work, first, end, scenario = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
everywhere, firsts, fails = [], [], 0
for seed in range(first, end):
    d = json.load(open(f"{work}/{seed}.json"))
    fails += d["verdict"] != "pass"
    det = dict(next(c for c in d["checks"] if c["name"] == "detection")["summaries"])
    everywhere += [det["known_everywhere_s"]["mean"]] * det["known_everywhere_s"]["count"]
    firsts += [det["first_detection_s"]["mean"]] * det["first_detection_s"]["count"]
mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
print(f"{scenario}: known everywhere mean {mean(everywhere):.2f}s (per-seed means, max {max(everywhere, default=float('nan')):.2f}s); "
      f"first detection mean {mean(firsts):.2f}s; {fails} of {end - first} seeds fail")
PY
done
