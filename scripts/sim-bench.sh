#!/usr/bin/env bash
# Simulator benchmark: simulated seconds per wall second and peak RSS for
# `steady` at N=1,000 and N=10,000 on one core (release build), `mass-join`
# at N=1,000 (formation), and a 10-minute `crash-one` at 10,000 nodes. Not a
# timed test: it reports, as Markdown table rows ready to paste into README.md.
#
#   scripts/sim-bench.sh                      # all four (crash10k takes ~40 min)
#   SIM_BENCH_QUICK=1 scripts/sim-bench.sh    # shorter and smaller, to try it out
#   SIM_BENCH_RUNS=steady1k scripts/sim-bench.sh   # any of: steady1k steady10k massjoin1k crash10k
#
# `steady` starts formed (every node already knows every other; bootstrap
# mode `formed`), so "overall" is the steady state plus building the formed
# mesh, whose wall time is the "at t=0" column. Formation (every node
# learning every other, N² facts, far costlier than the steady state) is what
# `mass-join` and the staggered start of `crash-one` measure. "2nd half" is
# the second half of the simulated time.
#
# Memory: every node keeps a full member table, so N nodes hold N² entries
# (about 100 bytes each, measured). MEM_LIMIT_KB (default 18 GB) caps each
# run's address space and BENCH_TIMEOUT (default 3600 s) its wall time, so a
# run that cannot fit fails cleanly instead of exhausting a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p shoal-sim --locked >&2
bin=${CARGO_TARGET_DIR:-target}/release/shoal-sim
limit=${MEM_LIMIT_KB:-18000000}
timeout_s=${BENCH_TIMEOUT:-3600}

run() {
    local label=$1 nodes=$2; shift 2
    local out
    out=$(mktemp)
    # The simulator is single-threaded, so it uses one core either way;
    # SIM_BENCH_PIN=1 also pins it to core 0 (only useful on an idle machine).
    local pin=()
    [[ -n ${SIM_BENCH_PIN:-} ]] && command -v taskset >/dev/null && pin=(taskset -c 0)
    if ( ulimit -v "$limit"; /usr/bin/time -f '%M' -o "$out.rss" timeout "$timeout_s" "${pin[@]}" "$bin" run "$@" --nodes "$nodes" --json >"$out" 2>"$out.err" ); then
        status=ok
    else
        status="exit $?"
    fi
    local rss_kb
    rss_kb=$(tail -1 "$out.rss" 2>/dev/null || echo 0)
    python3 - "$out" "$label" "$nodes" "$rss_kb" "$status" <<'PY'
import json, sys
path, label, nodes, rss, status = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4] or 0), sys.argv[5]
try:
    r = json.load(open(path))
except Exception:
    print(f"| {label} | {status}: no report | | | | {rss/1024:.0f} MB (out of memory or time) | |")
    sys.exit(0)
def summ(name):
    for c in r["checks"]:
        for n, s in c["summaries"]:
            if n == name:
                return s
    return None
conv = summ("time_to_converge_s")
det = summ("known_everywhere_s")
notes = [f"verdict {r['verdict']}"]
if conv and conv["count"]:
    notes.append(f"converged {conv['max']:.1f} s after the last start")
if det and det["count"]:
    notes.append(f"crash known everywhere after {det['max']:.1f} s")
notes.append(f"{r['bytes_per_node_s_second_half']:.0f} B/node/s in the 2nd half")
per_pair = rss * 1024 / (nodes * nodes)
print(f"| {label} | **{r['speedup']:.2f}x** | {r['speedup_second_half']:.1f}x | {r['wall_s']:.1f} s "
      f"| {r['start_wall_s']:.1f} s | {rss/1024/1024:.2f} GB | {per_pair:.0f} B | {'; '.join(notes)} |")
PY
    rm -f "$out" "$out.rss" "$out.err"
}

echo "| run | simulated/wall overall | 2nd half | wall | of which at t=0 | peak RSS | RSS per (node, member) | notes |"
echo "|-----|------------------------|----------|------|-----------------|----------|------------------------|-------|"
runs=${SIM_BENCH_RUNS:-steady1k steady10k massjoin1k crash10k}
if [[ -n ${SIM_BENCH_QUICK:-} ]]; then
    run "\`steady\`, N=1,000, 60 s" 1000 steady --duration 60s --seed 1
    run "\`steady\`, N=3,000, 60 s" 3000 steady --duration 60s --seed 1
    run "\`mass-join\`, N=300, 60 s" 300 mass-join --duration 60s --seed 1
    exit 0
fi
for r in $runs; do
    case $r in
        steady1k) run "\`steady\`, N=1,000, 5 min" 1000 steady --duration 5m --seed 1 ;;
        steady10k) run "\`steady\`, N=10,000, 5 min" 10000 steady --duration 5m --seed 1 ;;
        massjoin1k) run "\`mass-join\`, N=1,000, 2 min" 1000 mass-join --duration 2m --seed 1 ;;
        crash10k) run "\`crash-one\`, N=10,000, 10 min" 10000 crash-one --duration 10m --seed 1 ;;
        *) echo "unknown run $r (steady1k, steady10k, massjoin1k, crash10k)" >&2; exit 2 ;;
    esac
done
