#!/usr/bin/env bash
# Issue 16: sustained loss. Runs a scenario (default sim/scenarios/loss-20.toml,
# N = 200, 6 minutes, 20% loss) over a range of seeds with a release build and
# prints, per seed, the verdict, false Dead, the suspicions raised and how
# long the longest stayed unrefuted at a viewer, bytes and push-pulls.
#
#   scripts/loss-sweep.sh [scenario] [first-seed] [end-seed (excluded)] [extra shoal-sim args...]
#   JOBS=2 scripts/loss-sweep.sh sim/scenarios/loss-20.toml 1 21
set -euo pipefail
cd "$(dirname "$0")/.."

scenario=${1:-sim/scenarios/loss-20.toml}
first=${2:-1}
end=${3:-21}
shift $(( $# < 3 ? $# : 3 ))
jobs=${JOBS:-1}

# SHOAL_SIM=path: measure that binary instead of the current release build.
source scripts/sim-binary.sh

# OUT=dir keeps each seed's JSON report there (a long sweep's results
# survive an interruption); by default they go with the work folder.
out=${OUT:-$work}
mkdir -p "$out"
seq "$first" $((end - 1)) | xargs -P "$jobs" -I{} bash -c \
    '"$1" run "$2" --seed "$3" --json "${@:4}" > "$0/$3.json" || true' "$out" "$work/shoal-sim" "$scenario" {} "$@"

python3 - "$out" "$first" "$end" <<'PY'
import json, sys
work, first, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fails = 0
print(f"{'seed':>4} {'verdict':>7} {'dead':>4} {'suspicions':>10} {'susp p99 s':>10} {'susp max s':>10} {'B/node/s':>8} {'syncs':>7} {'wall s':>6}")
for seed in range(first, end):
    d = json.load(open(f"{work}/{seed}.json"))
    conv = next(c for c in d["checks"] if c["name"] == "convergence")
    life = dict(conv["summaries"]).get("suspicion_lifetime_s", {"p99": float("nan"), "max": float("nan")})
    p = d["protocol"]
    if d["verdict"] != "pass":
        fails += 1
        for c in d["checks"]:
            if c["verdict"] != "pass":
                print(f"     {c['name']}: {c['detail']}")
    print(f"{seed:>4} {d['verdict']:>7} {p['declared_dead']:>4} {p['suspicions_raised']:>10} {life['p99']:>10.2f} {life['max']:>10.2f} "
          f"{d['bytes_per_node_s']['mean']:>8.0f} {p['syncs_started']:>7} {d['wall_s']:>6.1f}")
print(f"{end - first - fails} of {end - first} seeds pass")
PY
