#!/usr/bin/env bash
# Serf against the `shoal` agent on this machine's loopback, N agents each,
# one system at a time, the same steps for both:
#   join     all agents start, each joins through agent 0; time until every
#            agent lists every agent alive
#   steady   RSS and CPU per agent, and bytes per agent per second (iptables
#            byte counters on the agents' gossip ports: IP+UDP/TCP headers
#            included, the same for both)
#   loss     5% of the packets to the gossip ports dropped (iptables
#            statistic match) for LOSS_S seconds: (viewer, member) pairs ever
#            listed failed/dead, polled throughout
#   pause    agent 1 stopped (SIGSTOP) for 3 s: the same count, until 20 s
#            after it resumes
#   kill     agent N/2 killed with SIGKILL: time until every other agent
#            lists it failed/dead (polled; resolution one polling round)
# Writes one JSON object per (system, N) to OUT (serf.jsonl), the fields of
# `NetRow` in sim/src/bin/compare/rows.rs.
#
#   scripts/bench-serf.sh OUT [SIZES]      # SIZES default "10 50"
#
# Env: SHOAL_BIN (default target/release/shoal), QUICK=1 (shorter windows).
# Needs root (iptables), serf (apt-get install serf), jq, curl, bc.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/bench-serf.sh OUT [SIZES]}
SIZES=${2:-"10 50"}
SHOAL_BIN=${SHOAL_BIN:-target/release/shoal}
if [[ -n "${QUICK:-}" ]]; then SETTLE=5 WINDOW=10 LOSS_S=20; else SETTLE=10 WINDOW=20 LOSS_S=45; fi
WORK=$(mktemp -d /tmp/shoal-bench-serf.XXXXXX)
CHAIN=SHOAL_BENCH_ACCT
PIDS=()

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
say() { printf '%s\n' "$*" >&2; }

stop_agents() {
  for pid in "${PIDS[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
drop_rules() {
  iptables -D OUTPUT -o lo -j "$CHAIN" 2>/dev/null || true
  iptables -F "$CHAIN" 2>/dev/null || true
  iptables -X "$CHAIN" 2>/dev/null || true
  drop_loss
}
# The loss rule carries match options: delete it by its comment.
drop_loss() {
  local rules
  rules=$(iptables -S OUTPUT 2>/dev/null | grep -- '--comment shoal-bench-loss' | sed 's/^-A/-D/' || true)
  while read -r rule; do
    [[ -n $rule ]] && eval "iptables $rule 2>/dev/null" || true
  done <<<"$rules"
}
trap 'stop_agents; drop_rules; rm -rf "$WORK"' EXIT

# ---- the two systems, behind the same four functions ----

# start SYS I N: agent I of N (gossip port G+I, control port R+I).
start() {
  local sys=$1 i=$2 join=()
  if [[ $sys == serf ]]; then
    ((i > 0)) && join=(-join "127.0.0.1:$G")
    serf agent -node "a$i" -bind "127.0.0.1:$((G + i))" -rpc-addr "127.0.0.1:$((R + i))" -profile lan \
      -encrypt "$KEY" -log-level warn "${join[@]}" >"$WORK/$sys-$i.log" 2>&1 &
  else
    ((i > 0)) && join=(--join "127.0.0.1:$G")
    "$SHOAL_BIN" agent --name "a$i" --data-dir "$WORK/$sys-data-$i" --profile lan --no-mdns \
      --bind "127.0.0.1:$((G + i))" --api "127.0.0.1:$((R + i))" --cluster-key "$KEY" "${join[@]}" \
      >"$WORK/$sys-$i.log" 2>&1 &
  fi
  PIDS+=($!)
}

# members SYS I: "name state" lines, state normalised to alive|failed|other.
members() {
  if [[ $1 == serf ]]; then
    timeout 3 serf members -rpc-addr "127.0.0.1:$((R + $2))" -format json 2>/dev/null |
      jq -r '.members[] | "\(.name) \(if .status == "alive" then "alive" elif .status == "failed" then "failed" else "other" end)"' 2>/dev/null || true
  else
    curl -sf --max-time 2 "http://127.0.0.1:$((R + $2))/v1/members" 2>/dev/null |
      jq -r '.[] | "\(.name) \(if .state == "alive" then "alive" elif .state == "dead" then "failed" else "other" end)"' 2>/dev/null || true
  fi
}

keygen() { if [[ $1 == serf ]]; then serf keygen; else "$SHOAL_BIN" keygen; fi; }
profile() {
  if [[ $1 == serf ]]; then echo "Serf $(serf version | head -1) -profile lan, encrypted"
  else echo "shoal agent --profile lan (QUIC, encrypted)"; fi
}

# ---- measurements ----

alive_count() { members "$1" "$2" | awk '$2 == "alive"' | wc -l; }

# wait_all_see_all SYS N LIMIT: seconds until every agent lists N alive, or "null".
wait_all_see_all() {
  local sys=$1 n=$2 limit=$3 start pending=() next=()
  start=$(now)
  for ((i = 0; i < n; i++)); do pending+=("$i"); done
  while ((${#pending[@]} > 0)); do
    next=()
    for i in "${pending[@]}"; do
      (($(alive_count "$sys" "$i") >= n)) || next+=("$i")
    done
    pending=("${next[@]+"${next[@]}"}")
    ((${#pending[@]} == 0)) && break
    if (($(echo "$(since "$start") > $limit" | bc))); then echo null; return; fi
    sleep 0.2
  done
  printf '%.2f' "$(since "$start")"
}

# failed_pairs SYS N SECONDS FILE: polls every agent for SECONDS, appending
# "viewer subject" for every member listed failed.
failed_pairs() {
  local sys=$1 n=$2 secs=$3 file=$4 start
  start=$(now)
  while (($(echo "$(since "$start") < $secs" | bc))); do
    for ((i = 0; i < n; i++)); do
      ((i == ${PAUSED:--1})) && continue
      kill -0 "${PIDS[$i]}" 2>/dev/null || continue
      members "$sys" "$i" | awk -v v="a$i" '$2 == "failed" {print v, $1}' >>"$file"
    done
    sleep 0.5
  done
}

count_pairs() { sort -u "$1" | grep -c . || true; }

iptables_bytes() { iptables -L "$CHAIN" -v -x -n 2>/dev/null | awk 'NR > 2 {s += $2} END {print s + 0}'; }

measure() {
  local sys=$1 n=$2
  say "== $sys, $n agents"
  # Below the ephemeral range (32768+), where other tests' agents and our
  # own clients pick ports.
  G=$((20000 + RANDOM % 5000)); R=$((26000 + RANDOM % 5000))
  KEY=$(keygen "$sys")
  drop_rules
  iptables -N "$CHAIN"
  iptables -I OUTPUT -o lo -j "$CHAIN"
  # Packets from a gossip port (UDP, and TCP answers), and TCP to one from an
  # ephemeral port: every byte between agents counted once.
  iptables -A "$CHAIN" -p udp -m multiport --sports "$G:$((G + n - 1))"
  iptables -A "$CHAIN" -p tcp -m multiport --sports "$G:$((G + n - 1))"
  iptables -A "$CHAIN" -p tcp -m multiport --dports "$G:$((G + n - 1))" -m multiport ! --sports "$G:$((G + n - 1))"

  start "$sys" 0 "$n"
  sleep 0.5
  for ((i = 1; i < n; i++)); do start "$sys" "$i" "$n"; done
  local join_s
  join_s=$(wait_all_see_all "$sys" "$n" 120)
  say "   join: $join_s s"
  for ((i = 0; i < n; i++)); do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      say "   agent a$i exited; its log:"; tail -5 "$WORK/$sys-$i.log" >&2
    fi
  done

  sleep "$SETTLE"
  local ticks b0 b1 rss=0 cpu=0
  ticks=$(getconf CLK_TCK)
  declare -A t0
  for ((i = 0; i < n; i++)); do t0[$i]=$(awk '{print $14 + $15}' "/proc/${PIDS[$i]}/stat" 2>/dev/null || echo 0); done
  b0=$(iptables_bytes)
  sleep "$WINDOW"
  b1=$(iptables_bytes)
  for ((i = 0; i < n; i++)); do
    local t1 r
    t1=$(awk '{print $14 + $15}' "/proc/${PIDS[$i]}/stat" 2>/dev/null || echo "${t0[$i]}")
    r=$(awk '/^VmRSS/ {print $2}' "/proc/${PIDS[$i]}/status" 2>/dev/null || echo 0)
    rss=$((rss + r)); cpu=$((cpu + t1 - t0[$i]))
  done
  local rss_kib cpu_pct bps
  rss_kib=$(printf '%.1f' "$(echo "$rss / $n" | bc -l)")
  cpu_pct=$(printf '%.3f' "$(echo "100 * $cpu / $ticks / $WINDOW / $n" | bc -l)")
  bps=$(printf '%.1f' "$(echo "($b1 - $b0) / $WINDOW / $n" | bc -l)")
  say "   steady: RSS $rss_kib KiB, CPU $cpu_pct%, $bps B/s per agent"

  for proto in udp tcp; do
    iptables -I OUTPUT -o lo -p "$proto" -m multiport --dports "$G:$((G + n - 1))" \
      -m statistic --mode random --probability 0.05 -m comment --comment shoal-bench-loss -j DROP
  done
  : >"$WORK/loss.pairs"
  failed_pairs "$sys" "$n" "$LOSS_S" "$WORK/loss.pairs"
  drop_loss
  local false_loss
  false_loss=$(count_pairs "$WORK/loss.pairs")
  say "   5% loss for ${LOSS_S}s: $false_loss false (viewer, member) failures"
  wait_all_see_all "$sys" "$n" 90 >/dev/null

  : >"$WORK/pause.pairs"
  kill -STOP "${PIDS[1]}"
  PAUSED=1 failed_pairs "$sys" "$n" 3 "$WORK/pause.pairs"
  kill -CONT "${PIDS[1]}"
  failed_pairs "$sys" "$n" 20 "$WORK/pause.pairs"
  local false_pause
  false_pause=$(count_pairs "$WORK/pause.pairs")
  say "   3 s pause of a1: $false_pause false (viewer, member) failures"
  wait_all_see_all "$sys" "$n" 90 >/dev/null

  local victim=$((n / 2)) killed pending=() next=() detect_s=null
  kill -KILL "${PIDS[$victim]}"
  killed=$(now)
  for ((i = 0; i < n; i++)); do ((i == victim)) || pending+=("$i"); done
  while ((${#pending[@]} > 0)); do
    next=()
    for i in "${pending[@]}"; do
      members "$sys" "$i" | grep -q "^a$victim failed$" || next+=("$i")
    done
    pending=("${next[@]+"${next[@]}"}")
    if ((${#pending[@]} == 0)); then detect_s=$(printf '%.2f' "$(since "$killed")"); break; fi
    (($(echo "$(since "$killed") > 120" | bc))) && break
    sleep 0.2
  done
  say "   kill -9 of a$victim: known failed everywhere after $detect_s s"

  stop_agents
  drop_rules
  jq -cn --arg sys "$sys" --argjson n "$n" --argjson join "$join_s" --argjson detect "$detect_s" \
    --argjson fl "$false_loss" --argjson fp "$false_pause" --argjson rss "$rss_kib" --argjson cpu "$cpu_pct" \
    --argjson bps "$bps" --arg config "$(profile "$sys")" \
    '{system: $sys, nodes: $n, join_s: $join, detect_s: $detect, false_loss: $fl, false_pause: $fp,
      rss_kib: $rss, cpu_pct: $cpu, bytes_per_s: $bps, config: $config}' >>"$OUT"
}

command -v serf >/dev/null || { say "serf not found: apt-get install -y serf"; exit 1; }
[[ -x $SHOAL_BIN ]] || { say "$SHOAL_BIN not found: cargo build --release -p shoal-node"; exit 1; }
: >"$OUT"
for n in $SIZES; do
  for sys in shoal serf; do measure "$sys" "$n"; done
done
