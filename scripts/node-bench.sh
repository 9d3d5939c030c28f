#!/usr/bin/env bash
# Measures an idle `shoal agent`: RSS, CPU and bytes/s per agent in a 10-node
# and a 50-node mesh on loopback, the release binary's size, and a clean
# release build's time. Targets (DESIGN.md): RSS < 20 MB, CPU < 1% of a core,
# binary < 20 MB.
#
#   scripts/node-bench.sh                 # everything
#   SIZES="10" SKIP_BUILD_TIME=1 scripts/node-bench.sh
#
# Env: SIZES (default "10 50"), PROFILE (lan|local|wan, default lan),
# SETTLE (s before measuring, default 15), WINDOW (s measured, default 30),
# SKIP_BUILD_TIME=1 to reuse target/release instead of a clean build.
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES=${SIZES:-"10 50"}
PROFILE=${PROFILE:-lan}
SETTLE=${SETTLE:-15}
WINDOW=${WINDOW:-30}
WORK=$(mktemp -d /tmp/shoal-bench.XXXXXX)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'cleanup; rm -rf "$WORK"' EXIT

if [[ -z "${SKIP_BUILD_TIME:-}" ]]; then
  echo "== clean release build (separate target dir) =="
  rm -rf target/node-bench
  start=$(date +%s.%N)
  cargo build --release --locked -p shoal-node --target-dir target/node-bench >/dev/null 2>"$WORK/build.log" \
    || { cat "$WORK/build.log"; exit 1; }
  end=$(date +%s.%N)
  BIN=target/node-bench/release/shoal
  printf "clean release build: %.0f s\n" "$(echo "$end - $start" | bc)"
else
  cargo build --release --locked -p shoal-node >/dev/null 2>&1
  BIN=target/release/shoal
fi
cp "$BIN" "$WORK/shoal" && strip "$WORK/shoal"
printf "release binary: %.1f MB (%.1f MB stripped)\n" \
  "$(echo "$(stat -c %s "$BIN") / 1000000" | bc -l)" "$(echo "$(stat -c %s "$WORK/shoal") / 1000000" | bc -l)"

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
bytes() { curl -sf "http://127.0.0.1:$1/metrics" | awk '/^shoal_transport_bytes_(in|out)_total/ {s += $2} END {print s + 0}'; }
alive() { curl -sf "http://127.0.0.1:$1/v1/members" | jq '[.[] | select(.state == "alive")] | length' 2>/dev/null || echo 0; }

for n in $SIZES; do
  echo "== $n agents, profile $PROFILE =="
  key=$("$BIN" keygen)
  base_gossip=$((27000 + RANDOM % 2000)); base_api=$((31000 + RANDOM % 2000))
  for ((i = 0; i < n; i++)); do
    join=()
    ((i > 0)) && join=(--join "127.0.0.1:$base_gossip")
    "$BIN" agent --name "bench-$i" --data-dir "$WORK/$n/node-$i" --profile "$PROFILE" --no-mdns \
      --bind "127.0.0.1:$((base_gossip + i))" --api "127.0.0.1:$((base_api + i))" \
      --cluster-key "$key" "${join[@]}" >"$WORK/$n-node-$i.log" 2>&1 &
    PIDS+=($!)
  done
  start=$(date +%s.%N)
  for ((t = 0; t < 600; t++)); do
    first=$(alive "$base_api"); last=$(alive $((base_api + n - 1)))
    [[ "$first" == "$n" && "$last" == "$n" ]] && break
    sleep 0.2
  done
  [[ "$first" == "$n" && "$last" == "$n" ]] || { echo "did not converge: $first/$last of $n"; exit 1; }
  printf "converged (first and last agent see %d alive) in %.1f s\n" "$n" "$(echo "$(date +%s.%N) - $start" | bc)"
  sleep "$SETTLE"
  declare -A t0 b0
  for ((i = 0; i < n; i++)); do t0[$i]=$(cpu_ticks "${PIDS[$i]}"); b0[$i]=$(bytes $((base_api + i))); done
  sleep "$WINDOW"
  {
    for ((i = 0; i < n; i++)); do
      t1=$(cpu_ticks "${PIDS[$i]}"); b1=$(bytes $((base_api + i)))
      echo "$(rss_kb "${PIDS[$i]}") $((t1 - t0[$i])) $((b1 - b0[$i]))"
    done
  } | awk -v n="$n" -v ticks="$ticks" -v window="$WINDOW" '
    { rss += $1; if ($1 > rss_max) rss_max = $1
      cpu = 100 * $2 / ticks / window; cpu_sum += cpu; if (cpu > cpu_max) cpu_max = cpu
      bps = $3 / window; bps_sum += bps; if (bps > bps_max) bps_max = bps }
    END {
      printf "RSS per agent:   mean %.1f MB, max %.1f MB\n", rss / n / 1024, rss_max / 1024
      printf "CPU per agent:   mean %.2f%%, max %.2f%% of a core\n", cpu_sum / n, cpu_max
      printf "bytes/s per agent (in+out, framed): mean %.0f, max %.0f\n", bps_sum / n, bps_max
    }'
  unset t0 b0
  cleanup
done
