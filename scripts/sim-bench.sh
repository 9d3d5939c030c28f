#!/usr/bin/env bash
# Simulator benchmark: simulated seconds per wall second and peak RSS for
# `steady` at N=1,000 and N=10,000 on one core (release build), and a
# 10-minute `crash-one` at 10,000 nodes. Not a timed test: it reports.
#
#   scripts/sim-bench.sh            # all three
#   SIM_BENCH_QUICK=1 scripts/sim-bench.sh   # shorter runs, to try it out
#
# Memory: every node keeps a full member table, so N nodes hold N^2 entries;
# at about 520 bytes per entry (measured), 10,000 nodes need ~52 GB. So
# MEM_LIMIT_KB (default 8 GB) caps each run's address space, and
# BENCH_TIMEOUT (default 1200 s) its wall time, so a run that cannot fit
# fails cleanly instead of exhausting a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p shoal-sim --locked >&2
bin=target/release/shoal-sim
limit=${MEM_LIMIT_KB:-8000000}
timeout_s=${BENCH_TIMEOUT:-1200}
short=${SIM_BENCH_QUICK:+1}

run() {
    local label=$1; shift
    local out
    out=$(mktemp)
    # One core: taskset pins the run when it is available.
    local pin=()
    command -v taskset >/dev/null && pin=(taskset -c 0)
    if ( ulimit -v "$limit"; /usr/bin/time -f '%M' -o "$out.rss" timeout "$timeout_s" "${pin[@]}" "$bin" run "$@" --json >"$out" 2>"$out.err" ); then
        status=ok
    else
        status="exit $?"
    fi
    local rss_kb
    rss_kb=$(tail -1 "$out.rss" 2>/dev/null || echo 0)
    python3 - "$out" "$label" "$rss_kb" "$status" <<'PY'
import json, sys
path, label, rss, status = sys.argv[1], sys.argv[2], int(sys.argv[3] or 0), sys.argv[4]
try:
    r = json.load(open(path))
except Exception:
    print(f"{label:<34} {status}: no report (peak RSS {rss/1024:.0f} MB; out of memory or time)")
    sys.exit(0)
def summ(name):
    for c in r["checks"]:
        for n, s in c["summaries"]:
            if n == name:
                return s
    return None
det = summ("known_everywhere_s")
conv = summ("time_to_converge_s")
b = r["bytes_per_node_s"]
print(f"{label:<34} {r['speedup']:7.1f}x real time ({r['speedup_second_half']:.1f}x over the 2nd half)  {r['wall_s']:7.1f}s wall  peak RSS {rss/1024:7.0f} MB  "
      f"verdict {r['verdict']}  bytes/node/s p50 {b['p50']:.0f} p99 {b['p99']:.0f}  "
      + (f"converge max {conv['max']:.1f}s  " if conv and conv['count'] else "")
      + (f"crash known everywhere {det['max']:.1f}s" if det and det['count'] else ""))
PY
    rm -f "$out" "$out.rss" "$out.err"
}

if [[ -n $short ]]; then
    run "steady N=1000 (60 s)" steady --nodes 1000 --duration 60s --seed 1
    run "steady N=3000 (30 s)" steady --nodes 3000 --duration 30s --seed 1
else
    run "steady N=1000 (5 min)" steady --nodes 1000 --duration 5m --seed 1
    run "steady N=10000 (2 min)" steady --nodes 10000 --duration 2m --seed 1
    run "crash-one N=10000 (10 min)" crash-one --nodes 10000 --duration 10m --seed 1
fi
