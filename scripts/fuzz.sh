#!/usr/bin/env bash
# Fuzzes one target of fuzz/ (shoal-fuzz) with AFL++ through cargo-afl, on a
# stable toolchain, then prints what afl-fuzz counted.
#
#   scripts/fuzz.sh TARGET [--execs N | --time SECONDS] [--out DIR]
#   scripts/fuzz.sh --list
#
# Defaults: 1,000,000 executions; output in fuzz/afl/out/TARGET-<UTC time>.
# The input corpus is fuzz/corpus/TARGET plus fuzz/regressions/TARGET.
# Installs what it needs: Debian's afl++ and cargo-afl, which builds its own
# AFL++ (runtime, afl-fuzz, afl-cmin, afl-tmin) once per rustc. Those come
# first on PATH: Debian's tools (4.04c) are older than cargo-afl's runtime.
# Runs at low priority (nice) on one core. Exits 1 if afl-fuzz saved any
# crash or hang, with the files to replay listed.
#
# Environment: FUZZ_TIMEOUT_MS (default 1000): an input slower than this is a
# hang. FUZZ_NICE (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

usage() {
    sed -n '4,7p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

target=""
execs=1000000
seconds=""
out=""
list=false
while [ $# -gt 0 ]; do
    case "$1" in
        --execs) execs="$2"; shift 2 ;;
        --time) seconds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --list) list=true; shift ;;
        -h|--help) usage ;;
        -*) usage ;;
        *) [ -z "$target" ] || usage; target="$1"; shift ;;
    esac
done

# ---- what it needs ----
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v afl-cmin >/dev/null; then
    echo "fuzz.sh: installing afl++ (Debian)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq afl++ >&2
fi
if ! cargo afl --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-afl" >&2
    cargo install cargo-afl --locked
fi
# cargo-afl builds AFL++ (runtime and afl-fuzz) once per rustc version; it
# says so, and fails, when that is already done.
if ! config_log=$(cargo afl config --build 2>&1); then
    grep -q "already built" <<<"$config_log" || { echo "$config_log" >&2; exit 1; }
fi
rustc_id=$(rustc -V | awk '{ print $2 "-" substr($3, 2, 7) }')
for dir in "$HOME/.local/share/afl.rs/rustc-$rustc_id"/afl.rs-*/afl/bin; do
    [ -x "$dir/afl-fuzz" ] && PATH="$dir:$PATH"
done
export PATH

# ---- build: optimised, with overflow checks and debug assertions (fuzz/afl/Cargo.toml) ----
(cd fuzz/afl && nice -n "${FUZZ_NICE:-10}" cargo afl build --release --locked --quiet)
binary="$root/fuzz/afl/target/release/shoal-fuzz-afl"

if $list || [ -z "$target" ]; then
    "$binary" 2>&1 </dev/null | sed 's/^usage.*one of /targets: /' >&2 || true
    $list && exit 0
    usage
fi
[ -d "fuzz/corpus/$target" ] || { echo "fuzz.sh: no corpus fuzz/corpus/$target" >&2; exit 2; }

# ---- run ----
out="${out:-fuzz/afl/out/$target-$(date -u +%Y%m%dT%H%M%S)}"
mkdir -p "$out"
inputs="$out/inputs"
mkdir -p "$inputs"
cp "fuzz/corpus/$target"/* "$inputs/"
if [ -d "fuzz/regressions/$target" ]; then
    for file in "fuzz/regressions/$target"/*; do cp "$file" "$inputs/regression-$(basename "$file")"; done
fi
if [ -n "$seconds" ]; then
    limit=(-V "$seconds")
    budget="$seconds s"
else
    limit=(-E "$execs")
    budget="$execs executions"
fi
echo "fuzz.sh: $target for $budget, output in $out" >&2
# No UI (the log stays readable), no CPU pinning (share the machine), no
# complaint about the core dump pattern of a container.
AFL_NO_UI=1 AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    nice -n "${FUZZ_NICE:-10}" cargo afl fuzz -i "$inputs" -o "$out/afl" -t "${FUZZ_TIMEOUT_MS:-1000}" \
    "${limit[@]}" -- "$binary" "$target" >"$out/afl-fuzz.log" 2>&1 || {
        tail -30 "$out/afl-fuzz.log" >&2
        exit 1
    }

# ---- report ----
stats="$out/afl/default/fuzzer_stats"
stat() { awk -F' *: *' -v key="$1" '$1 == key { print $2 }' "$stats"; }
crashes=$(stat saved_crashes)
hangs=$(stat saved_hangs)
echo "target:        $target"
echo "execs_done:    $(stat execs_done)"
echo "execs_per_sec: $(stat execs_per_sec)"
echo "run_time:      $(stat run_time) s"
echo "corpus_count:  $(stat corpus_count)"
echo "edges_found:   $(stat edges_found) of $(stat total_edges) ($(stat bitmap_cvg))"
echo "saved_crashes: $crashes"
echo "saved_hangs:   $hangs"
if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
    echo "replay one:    $binary $target < FILE   (files in $out/afl/default/crashes and hangs)"
    ls "$out/afl/default/crashes" "$out/afl/default/hangs"
    exit 1
fi
