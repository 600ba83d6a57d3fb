#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# callgrind.sh - instruction counts per message of Sluice's own path.
#
# A benchmark, not a test: it runs ./sluiced under callgrind
# (valgrind --tool=callgrind --trace-children=yes), relays 10 KB messages
# to Postfix's smtp-sink and reports instructions (Ir) per message for the
# front ("smtpd": sessions, spool write, fsync, filters) and the queue
# manager ("qmgr": relay to the sink), so that code changes can be
# compared without timing noise. Two runs:
#   core: clamav_enable = no (the MTA core);
#   clam: clamav_enable = yes with a database and clamav_header; the Ir
#         spent inside libclamav (every call from Sluice into libclamav.so,
#         inclusive: cl_scanmap_callback, cl_fmap_*) is reported as the
#         scan and subtracted from the front.
# Start-up (the engine load above all) is removed by zeroing the counters
# of the front and the qmgr with callgrind_control after a warm-up, and
# dumping them with callgrind_control once the sink has every message;
# see tests/bench/README.md, "Callgrind".
# The last line is for scripts (tests/bench/bench.py parses it):
#   callgrind: front_ir_per_msg=N qmgr_ir_per_msg=N scan_ir_per_msg=N msgs=N
# (front minus scan, qmgr and scan, all from the clam run).
# Run it from the top of a built tree: sh tests/bench/callgrind.sh
#
# Environment:
#   CG_MSGS      messages counted per run (default 500)
#   CG_WARMUP    warm-up messages before the counters are zeroed (50)
#   CG_SESSIONS  concurrent smtp-source sessions (5)
#   CG_TIMEOUT   seconds allowed for each wait (start-up, each batch) (600)
#   CG_RUNS      "core clam" (default), "core" or "clam"
#   CG_TOP       functions shown per process (15)
#   CG_LOADGEN   a load generator that makes every message unique
#                (tests/bench/loadgen) for the counted messages instead of
#                smtp-source; it runs CG_SECONDS (default 10) per run and
#                the messages the sink got are counted
#   BENCH_DB     ClamAV database directory (default ./conf/clamav, Sluice's
#                test set; the bench's synthetic set is ./var/bench/db)
#   CG_KEEP=1    keep the callgrind files in CG_KEEP_DIR
#                (default ./var/bench/callgrind)
#   SLUICED      the daemon (default ./sluiced)
#   PYTHON       default python3
set -eu

here=$(cd "$(dirname "$0")" && pwd)
sluiced=${SLUICED:-./sluiced}
python=${PYTHON:-python3}
msgs=${CG_MSGS:-500}
warm=${CG_WARMUP:-50}
sessions=${CG_SESSIONS:-5}
limit=${CG_TIMEOUT:-600}
runs=${CG_RUNS:-core clam}
ntop=${CG_TOP:-15}
db=${BENCH_DB:-./conf/clamav}
keep=${CG_KEEP:-0}
keepdir=${CG_KEEP_DIR:-./var/bench/callgrind}
loadgen=${CG_LOADGEN:-}
secs=${CG_SECONDS:-10}

die() {
    echo "callgrind: $*" >&2
    exit 1
}

for v in "msgs=$msgs" "warm=$warm" "sessions=$sessions" "limit=$limit" \
    "ntop=$ntop" "secs=$secs"; do
    case ${v#*=} in
    '' | *[!0-9]*) die "bad number ${v%%=*}=\"${v#*=}\"" ;;
    esac
done
[ "$msgs" -ge 1 ] && [ "$msgs" -le 100000 ] || die "CG_MSGS must be 1..100000"
[ "$warm" -le 100000 ] || die "CG_WARMUP must be 0..100000"
[ "$sessions" -ge 1 ] && [ "$sessions" -le 1000 ] ||
    die "CG_SESSIONS must be 1..1000"
[ "$limit" -ge 10 ] || die "CG_TIMEOUT must be at least 10 seconds"
for r in $runs; do
    case $r in
    core | clam) ;;
    *) die "bad CG_RUNS entry \"$r\" (core, clam)" ;;
    esac
done
[ -n "$runs" ] || die "CG_RUNS is empty"
if [ -n "$loadgen" ]; then
    [ -x "$loadgen" ] || die "CG_LOADGEN $loadgen is not an executable"
    [ "$secs" -ge 1 ] && [ "$secs" -le 3600 ] || die "CG_SECONDS must be 1..3600"
fi
[ -x "$sluiced" ] || die "$sluiced not found: run from the top of a built tree"
[ -f "$here/gen-msgs.py" ] || die "$here/gen-msgs.py not found"
command -v "$python" >/dev/null 2>&1 || die "$python not found (set PYTHON)"
for p in valgrind callgrind_control timeout; do
    command -v $p >/dev/null 2>&1 || die "$p not found (apt-get install valgrind)"
done
source_bin=$(command -v smtp-source || echo /usr/sbin/smtp-source)
sink_bin=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ -x "$source_bin" ] && [ -x "$sink_bin" ] ||
    die "smtp-source/smtp-sink not found (apt-get install postfix)"
case " $runs " in
*" clam "*)
    [ -d "$db" ] || die "ClamAV database directory $db not found (BENCH_DB)"
    db=$(cd "$db" && pwd)
    ;;
esac
# smtp-sink refuses to run as root without -u
sink_user=
[ "$(id -u)" -eq 0 ] && sink_user="-u nobody"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/sluice-cg.XXXXXX") ||
    die "cannot make a temp directory"
vg_pid=
sink_pid=

# Stop what this script started, by PID; the TERM lets callgrind write its
# final dumps. Children of sluiced die with it (PR_SET_PDEATHSIG).
stop_pid() {
    pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 600 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "callgrind: pid $pid did not stop in 60 s: killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$vg_pid"
    vg_pid=
    stop_pid "$sink_pid"
    sink_pid=
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_ports N: N free loopback TCP ports chosen by the kernel
free_ports() {
    "$python" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# wait_220 PORT SECONDS PID: until a connection gets a 220 greeting, while
# PID lives
wait_220() {
    "$python" - "$@" <<'EOF'
import os, socket, sys, time
port, limit, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
end = time.time() + limit
while time.time() < end:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("the server exited during start-up")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(max(1.0, end - time.time()))
            line = b""
            while not line.endswith(b"\n") and len(line) < 1024:
                b = s.recv(1024)
                if not b:
                    break
                line += b
            if line.startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.5)
sys.exit("no 220 greeting on port %d within %d s" % (port, limit))
EOF
}

# sink_count FILE: messages smtp-sink has received (its -c counter)
sink_count() {
    tr '\r' '\n' <"$1" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1
}

# wait_delivered RUNDIR TOTAL: until the sink has TOTAL messages and the
# qmgr has removed TOTAL queue files (so both processes are idle)
wait_delivered() {
    rd=$1
    want=$2
    end=$(($(date +%s) + limit))
    while :; do
        got=$(sink_count "$rd/sink.out")
        got=${got:-0}
        rm_n=$(grep -c ': removed$' "$rd/maillog" 2>/dev/null || true)
        rm_n=${rm_n:-0}
        [ "$got" -ge "$want" ] && [ "$rm_n" -ge "$want" ] && return 0
        kill -0 "$vg_pid" 2>/dev/null || die "sluiced exited (see $rd/maillog)"
        kill -0 "$sink_pid" 2>/dev/null || die "smtp-sink exited"
        if [ "$(date +%s)" -ge "$end" ]; then
            tail -20 "$rd/maillog" >&2 || true
            die "after $limit s the sink has $got of $want messages" \
                "($rm_n removed from the queue)"
        fi
        sleep 0.5
    done
}

# send RUNDIR COUNT: COUNT messages with smtp-source, bounded
send() {
    [ "$2" -gt 0 ] || return 0
    if ! timeout "$limit" "$source_bin" -s "$sessions" -m "$2" \
        -F "$tmp/msg-10k.eml" "127.0.0.1:$port" >"$1/source.out" 2>&1; then
        cat "$1/source.out" >&2
        die "smtp-source failed or took over $limit s"
    fi
}

# send_counted RUNDIR: the counted messages; prints how many
send_counted() {
    if [ -z "$loadgen" ]; then
        send "$1" "$msgs"
        wait_delivered "$1" $((warm + msgs))
        echo "$msgs"
        return 0
    fi
    if ! timeout $((limit + secs)) "$loadgen" -a "127.0.0.1:$port" \
        -c "$sessions" -t "$secs" -w 0 -m "$tmp/msg-10k.eml" -q \
        >"$1/loadgen.out" 2>&1; then
        cat "$1/loadgen.out" >&2
        die "$loadgen failed or took over $((limit + secs)) s"
    fi
    # the sink count and the queue removals agree and stay put for 2 s
    end=$(($(date +%s) + limit))
    last=-1
    same=0
    while :; do
        got=$(sink_count "$1/sink.out")
        got=${got:-0}
        rm_n=$(grep -c ': removed$' "$1/maillog" 2>/dev/null || true)
        if [ "$got" = "${rm_n:-0}" ] && [ "$got" = "$last" ]; then
            same=$((same + 1))
            [ $same -ge 4 ] && break
        else
            same=0
        fi
        last=$got
        kill -0 "$vg_pid" 2>/dev/null || die "sluiced exited (see $1/maillog)"
        [ "$(date +%s)" -lt "$end" ] ||
            die "the queue did not drain in $limit s (sink $got, removed $rm_n)"
        sleep 0.5
    done
    [ "$got" -gt "$warm" ] || die "$loadgen delivered no message"
    echo $((got - warm))
}

# cgctl ACTION PID...: callgrind_control on our own processes only
cgctl() {
    act=$1
    shift
    for pid in "$@"; do
        if ! timeout 120 callgrind_control "$act" "$pid" >"$tmp/cgctl.out" 2>&1
        then
            cat "$tmp/cgctl.out" >&2
            die "callgrind_control $act $pid failed"
        fi
    done
}

# child_pid MASTER NAME: the child of MASTER called NAME (prctl name)
child_pid() {
    for p in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        if [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# one run: run NAME (core|clam); leaves RUNDIR/front.cg RUNDIR/qmgr.cg
run() {
    name=$1
    rd=$tmp/$name
    mkdir -p "$rd/conf"
    set -- $(free_ports 2)
    port=${1:-}
    sport=${2:-}
    case "$port$sport" in
    '' | *[!0-9]*) die "cannot pick free ports" ;;
    esac
    cat >"$rd/conf/main.cf" <<EOF
# callgrind.sh ($name): loopback only, relays everything to smtp-sink
queue_directory = $rd/spool
maillog_file = $rd/maillog
mail_owner = root
myhostname = localhost.localdomain
relayhost = [127.0.0.1]:$sport
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
EOF
    if [ "$name" = clam ]; then
        cat >>"$rd/conf/main.cf" <<EOF
clamav_enable = yes
clamav_database_directory = $db
clamav_header = X-Virus-Scanned
EOF
    else
        echo "clamav_enable = no" >>"$rd/conf/main.cf"
    fi
    echo "127.0.0.1:$port inet n - n - - smtpd" >"$rd/conf/master.cf"

    # shellcheck disable=SC2086
    "$sink_bin" $sink_user -c "127.0.0.1:$sport" 1000 >"$rd/sink.out" 2>&1 &
    sink_pid=$!
    valgrind --tool=callgrind --trace-children=yes \
        --callgrind-out-file="$rd/cg.%p" \
        "$sluiced" -c "$rd/conf" >"$rd/valgrind.out" 2>&1 &
    vg_pid=$!
    sleep 0.5
    kill -0 "$sink_pid" 2>/dev/null || {
        cat "$rd/sink.out" >&2
        die "smtp-sink did not start"
    }
    if ! wait_220 "$port" "$limit" "$vg_pid"; then
        tail -20 "$rd/valgrind.out" "$rd/maillog" >&2 2>/dev/null || true
        die "sluiced ($name) did not become ready"
    fi
    front=$(child_pid "$vg_pid" smtpd) || die "no smtpd child of pid $vg_pid"
    qmgr=$(child_pid "$vg_pid" qmgr) || die "no qmgr child of pid $vg_pid"

    send "$rd" "$warm"
    wait_delivered "$rd" "$warm"
    cgctl --zero "$front" "$qmgr"
    send_counted "$rd" >"$rd/count"
    sleep 1 # the front logs the last disconnects
    cgctl --dump "$front" "$qmgr"
    for f in "$rd/cg.$front.1" "$rd/cg.$qmgr.1"; do
        [ -s "$f" ] || die "callgrind dump $f is missing"
    done
    mv "$rd/cg.$front.1" "$rd/front.cg"
    mv "$rd/cg.$qmgr.1" "$rd/qmgr.cg"
    if grep -q 'clamav: infected\|status=deferred\|status=bounced' \
        "$rd/maillog"; then
        grep 'clamav: infected\|status=deferred\|status=bounced' "$rd/maillog" |
            head -5 >&2
        die "$name: some messages were not relayed cleanly"
    fi
    stop_pid "$vg_pid"
    vg_pid=
    stop_pid "$sink_pid"
    sink_pid=
    if [ "$keep" = 1 ]; then
        mkdir -p "$keepdir/$name"
        rm -f "$keepdir/$name"/*
        cp "$rd"/front.cg "$rd"/qmgr.cg "$rd"/cg.* "$rd/maillog" \
            "$keepdir/$name/" 2>/dev/null || true
    fi
}

echo "callgrind: making msg-10k.eml (tests/bench/gen-msgs.py)"
"$python" "$here/gen-msgs.py" "$tmp/gen" >/dev/null || die "gen-msgs.py failed"
cp "$tmp/gen/msg-10k.eml" "$tmp/msg-10k.eml"
rm -rf "$tmp/gen"

[ "$keep" = 1 ] && echo "callgrind: keeping the callgrind files in $keepdir"
for r in $runs; do
    if [ -n "$loadgen" ]; then
        what="$warm warm-up messages, then $secs s of unique ones ($loadgen)"
    else
        what="$warm warm-up + $msgs counted messages (smtp-source)"
    fi
    echo "callgrind: run $r: $what, $sessions sessions$(
        [ "$r" = clam ] && echo ", database $db")"
    t0=$(date +%s)
    run "$r"
    echo "callgrind: run $r done in $(($(date +%s) - t0)) s," \
        "$(cat "$tmp/$r/count") messages counted"
done

# Sum the dumps: totals, self Ir per function, Ir inside libclamav.
"$python" - "$tmp" - "$ntop" "$runs" "$sluiced" <<'EOF'
import os, re, sys

tmp, ntop, runs = sys.argv[1], int(sys.argv[3]), sys.argv[4].split()
binary = os.path.basename(sys.argv[5])
NAME = re.compile(r"^\((\d+)\)(?: (.*))?$")


def parse(path):
    """Callgrind format: self Ir per (object, function), call arcs into
    libclamav from outside it (inclusive Ir), the file's totals."""
    names = {"ob": {}, "fl": {}, "fn": {}}
    kind = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl",
            "cfi": "fl", "cfl": "fl", "fn": "fn", "cfn": "fn"}
    selfc, scan = {}, {}
    ob = fn = cob = cfn = None
    total = None
    in_call = skip = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                if skip:
                    skip = False
                    continue
                ir = int(line.split()[-1])
                if in_call:
                    callee_ob = cob if cob is not None else ob
                    if is_clam(callee_ob) and is_own(ob):
                        key = cfn or "?"
                        scan[key] = scan.get(key, 0) + ir
                    in_call = False
                    cob = cfn = None
                else:
                    k = (ob, fn)
                    selfc[k] = selfc.get(k, 0) + ir
                continue
            if line.startswith(("totals:", "summary:")):
                v = int(line.split()[1])
                if total is None or line.startswith("totals:"):
                    total = v
                continue
            if line.startswith("calls="):
                in_call = True
                continue
            if line.startswith(("jump=", "jcnd=")):
                skip = True
                continue
            if "=" not in line:
                continue
            key, val = line.split("=", 1)
            if key not in kind:
                continue
            m = NAME.match(val)
            table = names[kind[key]]
            if m:
                if m.group(2) is not None:
                    table[m.group(1)] = m.group(2)
                val = table.get(m.group(1), "(%s)" % m.group(1))
            if key == "ob":
                ob = val
            elif key == "cob":
                cob = val
            elif key == "fn":
                fn = val
                cob = cfn = None
            elif key == "cfn":
                cfn = val
    if total is None:
        sys.exit("callgrind: no totals in %s" % path)
    s = sum(selfc.values())
    if abs(s - total) > max(1000, total // 1000):
        sys.exit("callgrind: %s: self costs sum to %d, totals say %d" % (path, s, total))
    return total, selfc, scan


def is_clam(ob):
    return ob is not None and os.path.basename(ob).startswith("libclamav")


def is_own(ob):
    # only Sluice's calls into libclamav: arcs from libclamav's own helpers
    # (objects callgrind names "???") are inside those calls already
    return ob is not None and os.path.basename(ob) == binary


def per(n):
    return (n + msgs // 2) // msgs


def count(r):
    with open(os.path.join(tmp, r, "count")) as f:
        n = int(f.read().strip() or 0)
    if n < 1:
        sys.exit("callgrind: run %s counted no message" % r)
    return n


def top(title, selfc, total):
    print("%s: top %d functions by self Ir" % (title, ntop))
    print("  %12s %6s  %s" % ("Ir/msg", "%", "function (object)"))
    for (ob, fn), ir in sorted(selfc.items(), key=lambda kv: -kv[1])[:ntop]:
        print("  %12d %5.1f%%  %s (%s)" % (per(ir), 100.0 * ir / total if total else 0,
                                         fn, os.path.basename(ob or "?")))


res = {}
for r in runs:
    msgs = count(r)
    ft, fself, fscan = parse(os.path.join(tmp, r, "front.cg"))
    qt, qself, _ = parse(os.path.join(tmp, r, "qmgr.cg"))
    res[r] = (ft, qt, sum(fscan.values()), msgs)
    print()
    if r == "core":
        if fscan:
            sys.exit("callgrind: the core run called libclamav (clamav_enable = no?)")
        top("core front (smtpd)", fself, ft)
        top("core qmgr", qself, qt)
    else:
        if "cl_scanmap_callback" not in fscan:
            sys.exit("callgrind: the clam run never called cl_scanmap_callback: no scans?")
        print("clam front: Ir per message inside libclamav, by entry point")
        for fn, ir in sorted(fscan.items(), key=lambda kv: -kv[1]):
            print("  %12d  %s" % (per(ir), fn))
        top("clam front (smtpd), the scan included", fself, ft)
        own = {k: v for k, v in fself.items() if is_own(k[0])}
        top("clam front (smtpd), functions of %s only" % binary, own, ft)
print()
print("%-28s %14s %14s %14s" % ("Ir per message", "front", "qmgr", "scan"))
for r in runs:
    ft, qt, sc, msgs = res[r]
    label = "core (no filter)" if r == "core" else "clam (front minus scan)"
    print("%-28s %14d %14d %14s" % (label, per(ft - sc), per(qt),
                                    per(sc) if r == "clam" else "-"))
if "core" in res:
    ft, qt, _, msgs = res["core"]
    print("callgrind-core: front_ir_per_msg=%d qmgr_ir_per_msg=%d msgs=%d"
          % (per(ft), per(qt), msgs))
last = res.get("clam") or res["core"]
ft, qt, sc, msgs = last
print("callgrind: front_ir_per_msg=%d qmgr_ir_per_msg=%d scan_ir_per_msg=%d msgs=%d"
      % (per(ft - sc), per(qt), per(sc), msgs))
EOF
exit 0
