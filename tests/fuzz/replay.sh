#!/bin/sh
# Runs every fuzz target over its corpus (tests/fuzz/corpus/<name>/) and
# prints the TAP lines of all of them. Under --enable-fuzz the targets are
# libFuzzer binaries, which run given files once as well.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
n=0
fail=0
for t in cf smtpd_cmd smtpd_data spool milter mods lookup milter_sess dlv_smtp sasl smtpd_check content dns policy; do
    bin="$top_builddir/tests/fuzz/fuzz_$t"
    corpus="$top_srcdir/tests/fuzz/corpus/$t"
    n=$((n + 1))
    if [ ! -x "$bin" ]; then
        echo "not ok $n - fuzz_$t: $bin not built"
        fail=1
        continue
    fi
    # Files, not the directory: a libFuzzer binary runs given files once.
    if out=$("$bin" "$corpus"/* 2>&1); then
        count=$(ls "$corpus" | wc -l)
        echo "ok $n - fuzz_$t replays $count inputs without a crash"
    else
        echo "not ok $n - fuzz_$t"
        printf '%s\n' "$out" | tail -n 30 | sed 's/^/# /'
        fail=1
    fi
done
echo "1..$n"
exit 0
