#!/usr/bin/env bash
# Records a release sirend with perf while `siren-bench --only pairs` drives it, and writes a
# flamegraph of each phase (20 pairs × 1 in flight, 100 pairs × 64) into OUT_DIR.
#
#   siren-bench/flamegraph.sh TARGET_DIR OUT_DIR
#
# TARGET_DIR holds release/sirend and release/siren-bench (cargo build --release -p siren-host
# -p siren-bench). Needs perf (Debian: linux-perf) and inferno (cargo install inferno); run it
# from the repository root. The phases are the two busiest stretches of the recording: each
# one's 5 busiest seconds are kept.
set -euo pipefail
target=$1
out=$2
mkdir -p "$out"
command -v perf >/dev/null || { echo "flamegraph.sh: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || { echo "flamegraph.sh: inferno is missing (cargo install inferno)" >&2; exit 1; }
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
"$target/release/siren-bench" --only pairs --sirend "$target/release/sirend" >"$out/bench.txt" 2>&1 &
bench=$!
pid=
for _ in $(seq 1 600); do
    pid=$(pgrep -f "$target/release/sirend run" | head -1 || true)
    [ -n "$pid" ] && break
    sleep 0.05
done
[ -n "$pid" ] || { echo "flamegraph.sh: sirend did not start" >&2; exit 1; }
perf record -F 499 -g --call-graph dwarf,12288 -p "$pid" -o "$data/perf.data" >/dev/null 2>&1 &
recorder=$!
wait "$bench"
sleep 1
kill -INT "$recorder" 2>/dev/null || true
wait "$recorder" || true
# Samples per second; the phases are the runs of busy seconds (over half the busiest).
perf script -i "$data/perf.data" -F time 2>/dev/null | awk '{print int($1)}' | uniq -c >"$data/seconds"
phases=$(awk '{n[NR]=$1; t[NR]=$2; if ($1>max) max=$1} END {
    p=0; start=0
    for (i=1; i<=NR; i++) {
        busy = n[i] > max/2
        if (busy && !start) start=t[i]
        if ((!busy || i==NR) && start) { end = busy ? t[i] : t[i-1]; if (end-start >= 3) print start+1, (end-start>6 ? start+6 : end); start=0 }
    }}' "$data/seconds")
names=(20x1 100x64)
i=0
while read -r from to; do
    [ $i -lt 2 ] || break
    perf script -i "$data/perf.data" --time "$from,$to" 2>/dev/null | inferno-collapse-perf >"$out/${names[$i]}.folded"
    inferno-flamegraph --title "sirend, pairs ${names[$i]}" --width 1400 --minwidth 0.25 <"$out/${names[$i]}.folded" >"$out/${names[$i]}.svg"
    echo "$out/${names[$i]}.svg (perf clock seconds $from to $to)"
    i=$((i + 1))
done <<<"$phases"
