#!/usr/bin/env bash
# The web view's cost to its agent: 10 release agents on loopback (lan
# profile), 6 workloads, the page open in headless Chromium on agent 1 for
# 60 s; the CPU of agent 1 and of agent 2 (no page) from /proc.
# Run after `cargo build --release -p shoal-node` (or set SHOAL_BIN).
set -u
BIN=${SHOAL_BIN:-target/release/shoal}
DIR=${DIR:-/tmp/shoal-ui-cpu}; rm -rf "$DIR"; mkdir -p "$DIR"
KEY=$($BIN keygen)
pids=()
for i in $(seq 1 10); do
  join=(); [ "$i" -gt 1 ] && join=(--join 127.0.0.1:27001)
  $BIN agent --name "agent-$i" --data-dir "$DIR/a$i" --bind 127.0.0.1:$((27000+i)) --api 127.0.0.1:$((28000+i)) \
    --cluster-key "$KEY" --label zone=z$((i%3)) --no-mdns "${join[@]}" > "$DIR/a$i.log" 2>&1 &
  pids+=($!)
done
sleep 20
for w in a b c d e f; do
  printf 'name = "w-%s"\nreplicas = 2\n[driver]\nkind = "exec"\ncommand = "sleep"\nargs = ["3600"]\n' "$w" > "$DIR/$w.toml"
  $BIN submit "$DIR/$w.toml" --api 127.0.0.1:28001 > /dev/null
done
sleep 15
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
hz=$(getconf CLK_TCK)
chromium --headless=new --no-sandbox --disable-gpu --user-data-dir="$DIR/chrome" http://127.0.0.1:28001/ui/ > /dev/null 2>&1 &
chrome=$!
sleep 5
a1=$(ticks ${pids[0]}); a2=$(ticks ${pids[1]}); t0=$(date +%s.%N)
sleep 30
echo "connections to agent-1's API (the page polling): $(ss -tn state established "( dport = :28001 )" | tail -n +2 | wc -l)"
sleep 30
b1=$(ticks ${pids[0]}); b2=$(ticks ${pids[1]}); t1=$(date +%s.%N)
echo "agent-1 (page open): $(echo "scale=2; 100*($b1-$a1)/$hz/($t1-$t0)" | bc)% of a core"
echo "agent-2 (no page):   $(echo "scale=2; 100*($b2-$a2)/$hz/($t1-$t0)" | bc)% of a core"
kill $chrome; wait $chrome 2>/dev/null
for p in "${pids[@]}"; do kill -TERM $p; done
wait
