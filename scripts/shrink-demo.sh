#!/usr/bin/env bash
# Shrinks real failures and checks what the shrinker promises: the result
# fails the same check, replays with the printed command, and a second
# shrink of the same failure writes the same file. Prints one row per case:
# the check, and faults, nodes and duration before and after.
#
#   scripts/shrink-demo.sh [--runs N] [--out DIR] [--once]
#
# The cases: the two deliberately broken builds of sim/tests/bug_injection.rs
# and the `chaos` seeds that declare a healthy member Dead at N=100 (README,
# "Known today"). --once skips the second shrink of each case (half the
# time: about 10 minutes instead of 20 on one core of this machine).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=400
out=target/shrink-demo
twice=1
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) runs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --once) twice=0; shift ;;
        *) echo "usage: $0 [--runs N] [--out DIR] [--once]" >&2; exit 2 ;;
    esac
done

cargo build --release -p shoal-sim --features bug-injection --locked >&2
mkdir -p "$out"
# A copy, so that another build in the same target dir cannot swap it mid-run.
bin="$out/shoal-sim"
cp "${CARGO_TARGET_DIR:-target}/release/shoal-sim" "$bin"

cases=(
    "ignore-refutations|sim/scenarios/loss-20.toml --nodes 60 --duration 120s --seed 11 --bug ignore-refutations"
    "no-anti-entropy|long-partition-heal --nodes 40 --seed 5 --bug no-anti-entropy"
    "chaos-5|chaos --nodes 100 --seed 5"
    "chaos-196|chaos --nodes 100 --seed 196"
    "chaos-291|chaos --nodes 100 --seed 291"
)

# "faults         8 -> 1" -> "8 -> 1"
measure() { sed -n "s/^          $1 *\(.*\)$/\1/p" "$2" | head -1; }

printf '%-20s %-14s %-12s %-14s %-16s %-6s %s\n' case check faults nodes duration runs file
failed=0
for entry in "${cases[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    file="$out/$name.toml"
    # shellcheck disable=SC2086 # the arguments are words on purpose
    "$bin" run $args --shrink --shrink-runs "$runs" --shrink-out "$file" >"$out/$name.out" 2>"$out/$name.err" || true
    if ! grep -q '^shrunk ' "$out/$name.out"; then
        echo "$name: nothing shrunk (did it fail?); see $out/$name.out" >&2
        failed=1
        continue
    fi
    check=$(sed -n 's/^shrunk .* fails \([a-z_]*\);.*/\1/p' "$out/$name.out")
    searched=$(sed -n 's/^search *\([0-9]*\) runs.*/\1/p' "$out/$name.out")
    printf '%-20s %-14s %-12s %-14s %-16s %-6s %s\n' "$name" "$check" \
        "$(measure faults "$out/$name.out")" "$(measure nodes "$out/$name.out")" \
        "$(measure duration "$out/$name.out")" "$searched" "$file"

    # The printed command replays it, failing the same check.
    replay=$(sed -n 's/^replay    //p' "$out/$name.out" | tail -1)
    # shellcheck disable=SC2086
    if "$bin" ${replay#* -- } >"$out/$name.replay" 2>&1; then
        echo "$name: the replay passed: $replay" >&2
        failed=1
    elif ! grep -q "^  $check *FAIL" "$out/$name.replay"; then
        echo "$name: the replay failed another check: $out/$name.replay" >&2
        failed=1
    fi

    # The same failure shrinks to the same file.
    if [ "$twice" = 1 ]; then
        cp "$file" "$file.first"
        # shellcheck disable=SC2086
        "$bin" run $args --shrink --shrink-runs "$runs" --shrink-out "$file" >/dev/null 2>&1 || true
        if ! cmp -s "$file" "$file.first"; then
            echo "$name: a second shrink wrote a different file:" >&2
            diff "$file.first" "$file" >&2 || true
            failed=1
        fi
    fi
done
[ "$twice" = 1 ] && echo "(each shrunk twice: the same file both times)"
exit "$failed"
