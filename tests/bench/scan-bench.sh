#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# scan-bench.sh - the ClamAV scan benchmark (make bench-scan).
#
# Makes, once, a synthetic signature database (sigs-gen.py, default sizes)
# and the benchmark messages (gen-msgs.py) in a cache directory, checks
# that the database detects eicar.eml (a benchmark against a database that
# detects nothing measures nothing), then runs tests/bench/bench_scan on
# the 10 KB and 1 MB message shapes at 1 thread and at all CPUs, plus the
# clean-cache comparison on the 10 KB shape, and prints a table.
# Builds nothing: tests/bench/bench_scan must exist.
#
# Environment:
#   BENCH_DIR        cache directory (default ./var/bench)
#   BENCH_SCAN       the benchmark binary (default ./tests/bench/bench_scan)
#   BENCH_COUNT_10K  scans per 10 KB run (default 3000)
#   BENCH_COUNT_1M   scans per 1 MB run (default 150)
#   PYTHON           default /usr/bin/python3
set -eu

here=$(cd "$(dirname "$0")" && pwd)
dir=${BENCH_DIR:-./var/bench}
bin=${BENCH_SCAN:-./tests/bench/bench_scan}
python=${PYTHON:-/usr/bin/python3}
n10k=${BENCH_COUNT_10K:-3000}
n1m=${BENCH_COUNT_1M:-150}
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)

die() {
    echo "scan-bench: $*" >&2
    exit 1
}

[ -x "$bin" ] || die "$bin not found: build it first (make tests/bench/bench_scan)"
[ -x "$python" ] || die "$python not found (set PYTHON)"
for n in "$n10k" "$n1m"; do
    case $n in
    '' | *[!0-9]*) die "bad scan count \"$n\"" ;;
    esac
done

# The database and messages, made once; again when a generator changed.
stamp=$dir/.made
sums=$(cksum <"$here/sigs-gen.py"; cksum <"$here/gen-msgs.py")
if [ "$(cat "$stamp" 2>/dev/null)" != "$sums" ]; then
    echo "scan-bench: making the synthetic database and messages in $dir"
    mkdir -p "$dir"
    rm -f "$stamp"
    rm -rf "$dir/db" "$dir/msgs"
    "$python" "$here/sigs-gen.py" "$dir/db" || die "sigs-gen.py failed"
    "$python" "$here/gen-msgs.py" "$dir/msgs" || die "gen-msgs.py failed"
    echo "$sums" >"$stamp"
fi
mkdir -p "$dir/results"

# Sanity: the database must detect the EICAR message.
out=$dir/results/eicar.txt
if ! "$bin" -d "$dir/db" -m "$dir/msgs/eicar.eml" -n 1 -t 1 -E >"$out" 2>&1; then
    cat "$out" >&2
    die "eicar.eml was not detected: the benchmark database is not usable"
fi
virus=$(sed -n 's/^summary:.* virus=\(.*\)$/\1/p' "$out")
echo "sanity: eicar.eml detected as $virus"
sed -n 's/^\(engine\|load\|rss\): */\1: /p' "$out"

# run NAME ARGS...: one bench_scan run, output kept in results/NAME.txt;
# prints its summary fields for the table.
run() {
    name=$1
    shift
    out=$dir/results/$name.txt
    if ! "$bin" -d "$dir/db" "$@" >"$out" 2>&1; then
        cat "$out" >&2
        die "bench_scan $* failed"
    fi
    sum=$(grep '^summary:' "$out") || die "no summary in $out"
    case $sum in
    *' infected=0 limits=0 errors=0 '*) ;;
    *) echo "scan-bench: warning: $name: not every scan was clean: $sum" >&2 ;;
    esac
    echo "$sum" | awk -v name="$name" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
        printf "%-16s %7s %9s %9s %9s %9s %9s %10s\n", name, f["threads"],
            f["scans_per_s"], f["cpu_ms"], f["p50_ms"], f["p99_ms"],
            f["ceiling"], f["peak_rss_mb"]
    }'
}

header() {
    printf "%-16s %7s %9s %9s %9s %9s %9s %10s\n" "$1" threads scans/s \
        "cpu ms" "p50 ms" "p99 ms" ceiling "rss MB"
}

threads="1"
[ "$ncpu" -gt 1 ] && threads="1 $ncpu"

echo
echo "unique messages, clean cache on (as in production); $ncpu CPUs"
header shape
for t in $threads; do
    run "10k-t$t" -m "$dir/msgs/msg-10k.eml" -n "$n10k" -t "$t"
done
for t in $threads; do
    run "1m-t$t" -m "$dir/msgs/msg-1m.eml" -n "$n1m" -t "$t"
done

echo
echo "clean cache, 10 KB shape, 1 thread"
header mode
run "10k-unique" -m "$dir/msgs/msg-10k.eml" -n "$n10k" -t 1
run "10k-cache-off" -m "$dir/msgs/msg-10k.eml" -n "$n10k" -t 1 -C
run "10k-same-bytes" -m "$dir/msgs/msg-10k.eml" -n "$n10k" -t 1 -s

echo
echo "ceiling = CPUs / CPU seconds per scan (messages/s if scanning were"
echo "the only work); full outputs in $dir/results/"
