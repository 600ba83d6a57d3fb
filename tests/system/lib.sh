# SPDX-License-Identifier: GPL-2.0-or-later
# lib.sh - shared helpers for the system tests (tests/system/t_*.sh).
# Sourced by bash scripts. Gives: TAP output (plan, ok, not_ok, check,
# diag, skip_all), a temp dir $T with a configuration in $CONF, free
# loopback ports, starting/stopping sluiced and the sink by PID, and
# bounded polling (wait_for). Everything started here is stopped by PID
# in the EXIT trap, which also removes $T (kept when SLUICE_TEST_KEEP=1).
#
# Environment (set by make check; defaults for running a script by hand
# from the source tree): SLUICED SLUICE top_srcdir top_builddir PYTHON3.
#
# plan N announces N tests plus one more that the EXIT trap runs: the
# daemon's stderr holds no sanitizer report.

set -u

SYSDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${top_srcdir:=$(cd "$SYSDIR/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
: "${SLUICED:=$top_builddir/sluiced}"
: "${SLUICE:=$top_builddir/sluice}"
: "${PYTHON3:=/usr/bin/python3}"
SINK=$SYSDIR/sink.py
PYTHONPATH=$SYSDIR${PYTHONPATH:+:$PYTHONPATH}
PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH PYTHONDONTWRITEBYTECODE SLUICED SLUICE PYTHON3

_T_NUM=0
_T_PLAN=0
_T_FAIL=0
_T_PIDS=""    # sinks and other helpers
_T_MASTERS="" # sluiced masters (their children are stopped too)
_T_MOUNTS=""  # file systems mounted under $T (unmounted at exit)
T=""

# ------------------------------------------------------------------ TAP

plan()
{
    _T_PLAN=$(($1 + 1))
    echo "1..$_T_PLAN"
}

skip_all()
{
    echo "1..0 # SKIP $*"
    _T_PLAN=-1
    exit 0
}

diag()
{
    printf '%s\n' "$@" | head -n 60 | sed 's/^/# /'
}

ok()
{
    _T_NUM=$((_T_NUM + 1))
    echo "ok $_T_NUM - $*"
}

not_ok()
{
    _T_NUM=$((_T_NUM + 1))
    _T_FAIL=$((_T_FAIL + 1))
    echo "not ok $_T_NUM - $*"
}

# result DESC STATUS: ok when STATUS is 0.
result()
{
    if [ "$2" -eq 0 ]; then ok "$1"; else not_ok "$1"; fi
}

# check DESC CMD...: ok when CMD exits 0; its output is shown otherwise.
check()
{
    local desc=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then
        ok "$desc"
    else
        not_ok "$desc"
        diag "command: $* (exit $rc)" "$out"
    fi
}

# check_not DESC CMD...: ok when CMD fails.
check_not()
{
    local desc=$1 out rc
    shift
    out=$("$@" 2>&1)
    rc=$?
    if [ $rc -ne 0 ]; then
        ok "$desc"
    else
        not_ok "$desc"
        diag "command unexpectedly succeeded: $*" "$out"
    fi
}

# is DESC GOT EXPECTED
is()
{
    if [ "$2" = "$3" ]; then
        ok "$1"
    else
        not_ok "$1"
        diag "got:      '$2'" "expected: '$3'"
    fi
}

# like DESC TEXT ERE: TEXT has a line matching ERE.
like()
{
    if printf '%s\n' "$2" | grep -Eq -- "$3"; then
        ok "$1"
    else
        not_ok "$1"
        diag "no line matches: $3" "in:" "$2"
    fi
}

unlike()
{
    if printf '%s\n' "$2" | grep -Eq -- "$3"; then
        not_ok "$1"
        diag "unexpected match: $3" "in:" "$2"
    else
        ok "$1"
    fi
}

# --------------------------------------------------------- processes

now_ms()
{
    echo $(($(date +%s%N) / 1000000))
}

# wait_for SECS CMD...: poll CMD every 0.1 s until it succeeds (0) or
# SECS pass (1).
wait_for()
{
    local secs=$1 end
    shift
    end=$(($(now_ms) + secs * 1000))
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(now_ms)" -gt "$end" ] && return 1
        sleep 0.1
    done
}

# alive PID: running and not a zombie.
alive()
{
    local st
    [ -r "/proc/$1/stat" ] || return 1
    st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

dead()
{
    ! alive "$1"
}

# stop_pid PID [SECS]: SIGTERM, up to SECS (5) for it to exit, then
# SIGKILL. The exit status (when PID is our child) is left in STOP_RC.
stop_pid()
{
    local pid=$1 secs=${2:-5}
    STOP_RC=""
    [ -n "$pid" ] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        if ! wait_for "$secs" dead "$pid"; then
            kill -KILL "$pid" 2>/dev/null
            wait_for 2 dead "$pid"
        fi
    fi
    wait "$pid" 2>/dev/null
    STOP_RC=$?
}

children()
{
    pgrep -P "$1" 2>/dev/null | tr '\n' ' '
}

# free_port: a loopback TCP port that is free now.
free_port()
{
    # a port free now, and not one given out before in this test (the
    # kernel may hand the same one out twice when nothing holds it in
    # between: two services on one port); taken below the ephemeral range,
    # where the outgoing connections of the tests running beside this one
    # cannot be holding it by the time the daemon listens
    "$PYTHON3" -c 'import os, random, socket, sys
seen = sys.argv[1] + "/.ports" if sys.argv[1] else None
old = set(open(seen).read().split()) if seen and os.path.exists(seen) else set()
try:
    low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except (OSError, ValueError, IndexError):
    low = 32768
p = 0
for _ in range(200):
    c = random.randrange(max(1024, low // 2), low) if low > 2048 else 0
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", c))
    except OSError:
        continue
    finally:
        q = s.getsockname()[1] if s.fileno() >= 0 else 0
        s.close()
    if q and str(q) not in old:
        p = q
        break
if p == 0:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
if seen:
    with open(seen, "a") as f:
        f.write("%d\n" % p)
print(p)' "${T:-}"
}

port_open()
{
    "$PYTHON3" -c 'import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam)
s.settimeout(1)
s.connect((sys.argv[1], int(sys.argv[2])))' "$1" "$2"
}

# wait_port HOST PORT [SECS]
wait_port()
{
    wait_for "${3:-15}" port_open "$1" "$2"
}

# ---------------------------------------------------- temp dir, config

# setup: $T (temp dir), $CONF, $SINKDIR, $PORT (sluiced), $SINKPORT.
setup()
{
    T=$(mktemp -d "${TMPDIR:-/tmp}/sluice-test.XXXXXX") || exit 1
    CONF=$T/conf
    SINKDIR=$T/sink
    LOG=$T/maillog
    mkdir -p "$CONF" "$SINKDIR" "$T/mail"
    PORT=$(free_port)
    SINKPORT=$(free_port)
    export T CONF SINKDIR LOG PORT SINKPORT
}

# start_dnsd ZONE [DNSD_ARGS...]: tests/system/dnsd.py on 127.0.0.1:$DP
# (DP set beforehand, or a free port; exported) answering from the zone
# file, its queries logged in $T/dns.log; DNSPID its pid, stopped at
# exit. 1 when it does not answer within 10 s ($T/dnsd.out says why).
start_dnsd()
{
    local zone=$1
    shift
    : "${DP:=$(free_port)}"
    export DP
    "$PYTHON3" "$SYSDIR/dnsd.py" --port "$DP" --zone "$zone" \
        --log "$T/dns.log" --pidfile "$T/dnsd.pid" "$@" >>"$T/dnsd.out" 2>&1 &
    DNSPID=$!
    _T_PIDS="$_T_PIDS $DNSPID"
    wait_port 127.0.0.1 "$DP" 10
}

# svc NAME PARAM=VALUE...: one more smtpd service for master.cf on
# 127.0.0.1 at a free port (exported as P_NAME), with those -o settings,
# appended to SVCS (for MASTER_EXTRA).
SVCS=""
svc()
{
    local p n=$1 a
    shift
    p=$(free_port)
    eval "P_$n=$p"
    export "P_$n"
    SVCS="${SVCS}127.0.0.1:$p inet n - n - - smtpd"
    for a in "$@"; do
        SVCS="$SVCS
  -o $a"
    done
    SVCS="$SVCS
"
}

# write_conf [LINE...]: main.cf with the test defaults, then the given
# lines (the last definition of a name wins), and master.cf with one
# listener on 127.0.0.1:$PORT plus $MASTER_EXTRA lines.
write_conf()
{
    {
        cat <<EOF
# written by tests/system/lib.sh
queue_directory = $T/spool
mail_spool_directory = $T/mail/
maillog_file = $T/maillog
myhostname = mx.test.example
mydestination = localhost
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINKPORT
smtpd_peername_lookup = no
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
mail_owner = $(id -un)
clamav_database_directory = $top_srcdir/conf/clamav
# any local recipient (the tests send to made-up users; t_recipients.sh
# checks Postfix's default, proxy:unix:passwd.byname \$alias_maps)
local_recipient_maps =
EOF
        local l
        for l in "$@"; do
            printf '%s\n' "$l"
        done
    } >"$CONF/main.cf"
    {
        echo "127.0.0.1:$PORT inet n - n - - smtpd"
        [ -n "${MASTER_EXTRA:-}" ] && printf '%s\n' "$MASTER_EXTRA"
    } >"$CONF/master.cf"
    return 0
}

need_binaries()
{
    [ -x "$SLUICED" ] || skip_all "no sluiced binary at $SLUICED"
    [ -x "$SLUICE" ] || skip_all "no sluice binary at $SLUICE"
    [ -x "$PYTHON3" ] || skip_all "no python3 at $PYTHON3"
}

# start_sluiced [CONFDIR]: runs the daemon in the background, sets
# MASTERPID, waits for 127.0.0.1:$PORT. 1 if it did not come up.
# SLUICED_WRAP: a command that execs its arguments (e.g. "prlimit
# --nofile=96:96"), run in front of sluiced.
start_sluiced()
{
    local dir=${1:-$CONF}
    # shellcheck disable=SC2086 # SLUICED_WRAP is words
    ${SLUICED_WRAP:-} "$SLUICED" -c "$dir" >>"$T/sluiced.out" 2>&1 &
    MASTERPID=$!
    _T_MASTERS="$_T_MASTERS $MASTERPID"
    wait_for 15 sluiced_ready "$MASTERPID"
}

sluiced_ready()
{
    alive "$1" || return 0 # died: stop waiting, the caller checks
    port_open 127.0.0.1 "$PORT"
}

# start_ok: start_sluiced and report it as a test.
start_ok()
{
    if start_sluiced "$@" && alive "$MASTERPID"; then
        ok "sluiced starts and listens on 127.0.0.1:$PORT"
    else
        not_ok "sluiced starts and listens on 127.0.0.1:$PORT"
        diag "$(tail -n 20 "$T/sluiced.out" 2>/dev/null)"
    fi
}

# stop_sluiced [PID]: SIGTERM to the master, then make sure its children
# are gone too (SIGKILL by PID). The master's exit status is in STOP_RC.
stop_sluiced()
{
    local m=${1:-$MASTERPID} kids k
    kids=$(children "$m")
    stop_pid "$m" 10
    for k in $kids; do
        if alive "$k"; then
            kill -KILL "$k" 2>/dev/null
        fi
    done
}

# kill9_sluiced [PID]: SIGKILL to the children, then the master.
kill9_sluiced()
{
    local m=${1:-$MASTERPID} k
    for k in $(children "$m"); do
        kill -KILL "$k" 2>/dev/null
    done
    kill -KILL "$m" 2>/dev/null
    wait "$m" 2>/dev/null
    return 0
}

# child_pid NAME [MASTER]: pid of the master's child with that name.
child_pid()
{
    pgrep -P "${2:-$MASTERPID}" -x "$1" 2>/dev/null | head -n 1
}

# start_sink [PORT] [DIR] [sink options...]: sets SINKPID.
start_sink()
{
    local port=${1:-$SINKPORT} dir=${2:-$SINKDIR}
    [ $# -gt 0 ] && shift
    [ $# -gt 0 ] && shift
    "$PYTHON3" "$SINK" --port "$port" --dir "$dir" "$@" \
        >>"$T/sink.out" 2>&1 &
    SINKPID=$!
    _T_PIDS="$_T_PIDS $SINKPID"
    wait_port 127.0.0.1 "$port" 10
}

start_sink6()
{
    local port=$1 dir=$2
    "$PYTHON3" "$SINK" --host ::1 --port "$port" --dir "$dir" \
        >>"$T/sink.out" 2>&1 &
    SINKPID=$!
    _T_PIDS="$_T_PIDS $SINKPID"
    wait_port ::1 "$port" 10
}

# Certificates from a test's own $T/x509.cnf (its extension sections),
# P-256 keys, in $T/NAME.crt and $T/NAME.key; openssl's output goes to
# $T/openssl.out. x509_self NAME SECTION CN: self-signed (a CA, or an
# untrusted server); x509_signed NAME SECTION CN SERIAL: signed by
# $T/ca.crt and $T/ca.key.
X509_KEY="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
x509_self()
{
    # shellcheck disable=SC2086 # X509_KEY is words
    openssl req -x509 -config "$T/x509.cnf" -extensions "$2" $X509_KEY \
        -keyout "$T/$1.key" -out "$T/$1.crt" -days 2 -subj "/CN=$3" \
        >>"$T/openssl.out" 2>&1
}
x509_signed()
{
    # shellcheck disable=SC2086
    openssl req -new -config "$T/x509.cnf" $X509_KEY -keyout "$T/$1.key" \
        -out "$T/$1.csr" -subj "/CN=$3" >>"$T/openssl.out" 2>&1 &&
        openssl x509 -req -in "$T/$1.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" \
            -set_serial "$4" -days 2 -extfile "$T/x509.cnf" -extensions "$2" \
            -out "$T/$1.crt" >>"$T/openssl.out" 2>&1
}

# tls_selfsigned NAME CN: a self-signed RSA certificate for CN in
# $T/NAME.crt and its key in $T/NAME.key (openssl); 1 with a diagnostic
# when openssl fails.
tls_selfsigned()
{
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/$1.key" \
        -out "$T/$1.crt" -days 2 -subj "/CN=$2" >>"$T/openssl.out" 2>&1 && return 0
    diag "openssl could not make the test certificate $1" "$(cat "$T/openssl.out")"
    return 1
}

# --------------------------------------------------------- shortcuts

sl()
{
    "$SLUICE" -c "$CONF" "$@"
}

py()
{
    "$PYTHON3" - "$@"
}

# pytap [ARGS...] <<'PY' ... PY: run inline python (sink.py's helpers
# importable: "from sink import *"); its "ok - X" / "not ok - X" lines
# become numbered TAP results, other output becomes diagnostics.
pytap()
{
    local line
    while IFS= read -r line; do
        case $line in
        "ok - "*) ok "${line#ok - }" ;;
        "not ok - "*) not_ok "${line#not ok - }" ;;
        "#"*) echo "$line" ;;
        *) echo "# $line" ;;
        esac
    done < <("$PYTHON3" - "$@" 2>&1 || echo "# python exited with status $?")
}

# log_has ERE: the maillog has a matching line.
log_has()
{
    grep -Eq -- "$1" "$T/maillog" 2>/dev/null
}

# log_wait SECS ERE
log_wait()
{
    wait_for "$1" log_has "$2"
}

log_count()
{
    grep -Ec -- "$1" "$T/maillog" 2>/dev/null
}

queue_empty()
{
    sl queue list 2>&1 | grep -q 'Mail queue is empty'
}

sink_count()
{
    local d=${1:-$SINKDIR}
    find "$d" -maxdepth 1 -name '*.eml' 2>/dev/null | wc -l
}

# sink_wait N [SECS] [DIR]: the sink holds at least N messages.
sink_wait()
{
    wait_for "${2:-15}" sink_has "$1" "${3:-$SINKDIR}"
}

sink_has()
{
    [ "$(sink_count "$2")" -ge "$1" ]
}

# during_slow_scan WHAT SCANRE: with sluiced running under a slowed
# queue scan (ioshim.c), sends one message and checks (4 tests) that it
# is queued and delivered, that its delivery is logged before the end of
# the scan whose debug line matches SCANRE ("scan of DIR/: N file(s), M
# taken, X ms in the pool"), and that the scan took over 3 s: the queue
# manager's loop did not wait for the scan. Sets ID.
during_slow_scan()
{
    local what=$1
    SCANRE=$2
    ID=$(py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["x@example.net"],
              b"Subject: during the scan\r\nMessage-ID: <scan-1@example.org>\r\n\r\nhello\r\n")
print(queued_id(r) or r.text)
PY
)
    export ID SCANRE
    like "a message sent while $what is being scanned is queued" "$ID" '^[0-9A-F]{14}$'
    check "and delivered" log_wait 20 "$ID: to=<x@example\.net>, .*status=sent"
    log_wait 30 "$SCANRE"
    pytap <<'PY'
from sink import *
lines = open(env("LOG"), errors="replace").read().splitlines()
sent = [i for i, l in enumerate(lines) if env("ID") in l and "status=sent" in l]
scan = [i for i, l in enumerate(lines) if re.search(env("SCANRE"), l)]
tap(sent and scan and sent[0] < scan[0],
    "the delivery is logged before the scan's end: the loop did not wait for it",
    "sent at line %s, scan at line %s" % (sent[:1], scan[:1]))
ms = [float(re.search(r"([0-9.]+) ms in the pool", lines[i]).group(1)) for i in scan]
tap(ms and ms[0] >= 3000, "the scan took over 3 s (%s ms)" % (ms[:1],))
PY
}

# ----------------------------------------------------------- cleanup

_t_cleanup()
{
    local rc=$? m p
    trap - EXIT INT TERM
    for m in $_T_MASTERS; do
        alive "$m" && stop_sluiced "$m"
    done
    for p in $_T_PIDS; do
        alive "$p" && stop_pid "$p" 3
    done
    for m in $_T_MOUNTS; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
    done
    if [ "$_T_PLAN" -gt 0 ]; then
        if [ -n "$T" ] && [ -f "$T/sluiced.out" ] &&
            grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:' \
                "$T/sluiced.out"; then
            _T_NUM=$((_T_NUM + 1))
            echo "not ok $_T_NUM - no sanitizer report from sluiced"
            _T_FAIL=$((_T_FAIL + 1))
            diag "$(grep -E -A12 'AddressSanitizer|LeakSanitizer|runtime error:' "$T/sluiced.out" | head -n 40)"
        elif [ "$_T_NUM" -lt "$_T_PLAN" ]; then
            _T_NUM=$((_T_NUM + 1))
            if [ -n "$T" ] && [ -f "$T/sluiced.out" ]; then
                echo "ok $_T_NUM - no sanitizer report from sluiced"
            else
                echo "ok $_T_NUM - no sanitizer report from sluiced # SKIP no daemon was started"
            fi
        fi
        while [ "$_T_NUM" -lt "$_T_PLAN" ]; do
            _T_NUM=$((_T_NUM + 1))
            _T_FAIL=$((_T_FAIL + 1))
            echo "not ok $_T_NUM - not run: the script ended early (exit $rc)"
        done
        if [ "$_T_FAIL" -gt 0 ] && [ -n "$T" ]; then
            diag "--- tail of $T/maillog" \
                "$(tail -n 25 "$T/maillog" 2>/dev/null)" \
                "--- tail of sluiced stderr" \
                "$(tail -n 15 "$T/sluiced.out" 2>/dev/null)"
        fi
    fi
    if [ -n "$T" ] && [ -d "$T" ]; then
        if [ "${SLUICE_TEST_KEEP:-0}" = 1 ]; then
            echo "# kept $T"
        else
            rm -rf "$T"
        fi
    fi
    exit 0
}

trap _t_cleanup EXIT
trap 'exit 1' INT TERM

# ioshim_wrap FILE [VAR=VALUE...]: builds tests/system/ioshim.c into
# $T/ioshim.so and writes FILE, a SLUICED_WRAP command that runs sluiced
# with it preloaded, with those variables and with -v (debug lines).
# 1 if there is no C compiler.
ioshim_wrap()
{
    local f=$1 cc=${CC:-cc}
    shift
    command -v "$cc" >/dev/null 2>&1 || return 1
    "$cc" -shared -fPIC -o "$T/ioshim.so" "$top_srcdir/tests/system/ioshim.c" \
        -ldl 2>>"$T/ioshim.err" || return 1
    # a sanitizer build wants its runtime first: it still comes before
    # this library, which only needs to come before libc
    {
        printf '#!/bin/sh\n'
        printf 'ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0\n'
        printf 'export ASAN_OPTIONS\n'
        printf 'exec env LD_PRELOAD=%s' "$T/ioshim.so"
        printf ' %s' "$@"
        printf ' "$@" -v\n'
    } >"$f"
    chmod +x "$f"
}
