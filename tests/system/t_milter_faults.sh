#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_milter_faults.sh - milters that fail, against tests/milter/tmilter:
# one that crashes mid-message (-x body), one that never answers (-w eom,
# content_timeout=2s), one that is not running (nobody listens on the
# socket); for each the default action: tempfail (per-milter form
# { unix:..., default_action=tempfail }) gives 4xx and nothing queued,
# accept delivers, reject gives 5xx, and the default (shutdown) gives 421
# and closes the connection; the log warns naming the milter. A milter
# down or timing out is not asked again per session (back-off: logged
# once, the next session does not wait for its timeout). Oversized and
# malformed packets (tmilter -g) fail the milter, never the front (its
# pid is unchanged).
. "$(dirname "$0")/lib.sh"
need_binaries
: "${TMILTER:=$top_builddir/tests/milter/tmilter}"
[ -x "$TMILTER" ] || skip_all "no test milter at $TMILTER (make check builds it)"
export TMILTER
plan 71
setup
# tmh.py: starting tmilter instances (by PID; all stopped when the python
# ends), reading their logs, SMTP transactions and message parsing.
cat >"$T/tmh.py" <<'PY'
# tmh.py - test-milter helpers for the t_milter*.sh inline python.
import os, re, subprocess, time
from sink import *

T = env("T")
PORT = int(env("PORT"))
TM = env("TMILTER")
_procs = {}


def milter(args, name="m1", wait=True):
    """(Re)start tmilter NAME on unix:$T/NAME.sock with a fresh log."""
    stop(name)
    pidf = os.path.join(T, name + ".pid")
    logf = os.path.join(T, name + ".log")
    stop_pidfile(pidf)
    for f in (pidf, logf):
        if os.path.exists(f):
            os.unlink(f)
    out = open(os.path.join(T, name + ".out"), "a")
    p = subprocess.Popen([TM, "-s", "unix:" + os.path.join(T, name + ".sock"),
                          "-p", pidf, "-l", logf] + list(args),
                         stdout=out, stderr=subprocess.STDOUT)
    out.close()
    _procs[name] = p
    end = time.time() + 10
    while wait and not os.path.exists(pidf) and time.time() < end:
        if p.poll() is not None:
            break
        time.sleep(0.02)
    return p


def stop_pidfile(pidf):
    """Stop the milter that the shell started (start_tmilter), by PID."""
    try:
        with open(pidf) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 9)
    except OSError:
        return
    end = time.time() + 3
    while time.time() < end:
        try:
            os.kill(pid, 0)  # our child's zombie is reaped by bash
            if open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z":
                return
        except (OSError, IndexError):
            return
        time.sleep(0.02)


def stop(name="m1"):
    p = _procs.pop(name, None)
    if p is None:
        return
    if p.poll() is None:
        p.kill()  # nothing to save; libmilter would wait for open sessions
        p.wait()


def stop_all():
    for n in list(_procs):
        stop(n)


def mlog(name="m1"):
    try:
        with open(os.path.join(T, name + ".log"), encoding="utf-8",
                  errors="replace") as f:
            return f.read().splitlines()
    except OSError:
        return []


def mlog_wait(regex, name="m1", secs=5):
    """Wait for a line of the milter's log matching regex; the match."""
    end = time.time() + secs
    rx = re.compile(regex)
    while True:
        for l in mlog(name):
            m = rx.search(l)
            if m:
                return m
        if time.time() > end:
            return None
        time.sleep(0.05)


def stages(name="m1"):
    """The callbacks the milter got, in order (\"header\", \"eom\", ...)."""
    return [l.split(" ", 1)[0] for l in mlog(name)]


def msg(tag, body=b"body line 1\r\nbody line 2\r\n", extra=b""):
    return (b"From: <sender@example.org>\r\nTo: <rcpt@example.net>\r\n"
            b"Subject: " + tag.encode() + b"\r\nMessage-ID: <" + tag.encode() +
            b"@test>\r\nX-Test: one\r\nX-Test: two\r\n" + extra + b"\r\n" + body)


def txn(tag, rcpts=("rcpt@example.net",), sender="sender@example.org",
        data=None, helo="client.test", mail_args="", before=(), port=None):
    """One SMTP session with one transaction that goes on past rejected
    recipients. Replies by step: greet ehlo mail rcpt (list) data eom
    (missing when not reached); "closed" when the server hung up;
    before: commands sent after EHLO (replies under their text)."""
    R = {"rcpt": []}
    c = Client(port or PORT)
    try:
        R["greet"] = c.reply()
        if R["greet"].code != 220:
            R["ehlo"] = c.cmd("EHLO " + helo)
            return R
        R["ehlo"] = c.cmd("EHLO " + helo)
        for b in before:
            R[b] = c.cmd(b)
        R["mail"] = c.cmd("MAIL FROM:<%s>%s" % (sender, mail_args))
        for r in rcpts:
            R["rcpt"].append(c.cmd("RCPT TO:<%s>" % r))
        if R["mail"].code == 250 and any(r.code == 250 for r in R["rcpt"]):
            R["data"] = c.cmd("DATA")
            if R["data"].code == 354:
                c.send(dotstuff(data if data is not None else msg(tag)))
                R["eom"] = c.reply()
        R["quit"] = c.cmd("QUIT")
    except (EOFError, OSError, ValueError) as e:
        R["closed"] = str(e)
    finally:
        c.close()
    return R


def headers(content):
    """[(name, raw field bytes incl. continuation lines)], body."""
    hdrs = []
    pos = 0
    while pos < len(content):
        nl = content.find(b"\r\n", pos)
        if nl < 0:
            nl = len(content)
        line = content[pos:nl]
        pos = nl + 2
        if line == b"":
            break
        if line[:1] in (b" ", b"\t") and hdrs:
            hdrs[-1] = (hdrs[-1][0], hdrs[-1][1] + b"\r\n" + line)
        else:
            hdrs.append((line.split(b":", 1)[0].decode(errors="replace"), line))
    return hdrs, content[pos:]


def delivered(tag, secs=15):
    """(envelope text, headers, body) of the sink message with Subject TAG,
    the Received header that Sluice adds removed, or None."""
    m = sink_find(rb"\r\nSubject: " + re.escape(tag.encode()) + rb"\r\n|^Subject: "
                  + re.escape(tag.encode()) + rb"\r\n", secs=secs)
    if m is None:
        return None
    e, c = m
    h, b = headers(c)
    for i, (n, _) in enumerate(h):
        if n == "Received":
            del h[i]
            break
    return e, h, b


def rcpts_of(e):
    return sorted(re.findall(r"^RCPT TO:<([^>]*)>", e, re.M))


def sender_of(e):
    m = re.search(r"^MAIL FROM:<([^>]*)>", e, re.M)
    return m.group(1) if m else None


import atexit
atexit.register(stop_all)


def log_mark():
    return len(read_log())


def log_wait_from(mark, regex, secs=5):
    """log_wait over the maillog written after mark (log_mark())."""
    end = time.time() + secs
    while True:
        m = re.search(regex, read_log()[mark:], re.M)
        if m or time.time() > end:
            return m
        time.sleep(0.1)
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

# start_tmilter NAME [FLAGS...]: tmilter on unix:$T/NAME.sock (log
# $T/NAME.log) in the background, stopped by PID at exit; waits for its
# pid file (written once it listens). Start milters before sluiced: the
# port probe of start_ok is an SMTP session, and a milter found down is
# not asked again until its back-off expires.
start_tmilter()
{
    local name=$1
    shift
    rm -f "$T/$name.pid"
    "$TMILTER" -s "unix:$T/$name.sock" -p "$T/$name.pid" -l "$T/$name.log" \
        "$@" >>"$T/$name.out" 2>&1 &
    _T_PIDS="$_T_PIDS $!"
    wait_for 10 test -s "$T/$name.pid"
}

start_sink
M=unix:$T/m1.sock

# fault_case ACTION FAULT: restart sluiced and the milter for one case;
# 4 tests.
fault_case()
{
    local action=$1 fault=$2 spec
    [ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
    [ -n "${MPID:-}" ] && stop_pid "$MPID" 1
    MPID=""
    rm -f "$T/m1.sock" "$T/m1.log"
    case $fault in
    crash) start_tmilter m1 -x body ;;
    hang) start_tmilter m1 -w eom ;;
    down) ;;
    esac
    [ "$fault" != down ] && MPID=$(cat "$T/m1.pid")
    if [ "$action" = shutdown ]; then
        # the default milter_default_action, global timeout parameter
        write_conf "smtpd_milters = $M" "milter_content_timeout = 2s"
    else
        write_conf "smtpd_milters = { $M, default_action=$action, content_timeout=2s }"
    fi
    # the port probe of start_ok is a session: the milter may fail then
    MARK=$(stat -c %s "$T/maillog" 2>/dev/null || echo 0)
    start_ok
    pytap "$action" "$fault" "$MARK" <<'PY'
import sys
from tmh import *
action, fault = sys.argv[1], sys.argv[2]
tag = "%s-%s" % (action, fault)
mark = int(sys.argv[3])
t0 = time.time()
r = txn(tag)
el = time.time() - t0
steps = [r.get("greet"), r.get("ehlo"), r.get("mail")] + r["rcpt"] + [r.get("data"), r.get("eom")]
fail = next((x for x in steps if x is not None and x.code >= 400), None)
desc = "%s, milter %s:" % (action, {"crash": "crashes at body", "hang": "never answers at eom",
                                   "down": "not running"}[fault])
if action == "accept":
    tap(r.get("eom") and r["eom"].code == 250, desc + " 250 at end of data", r)
    tap(delivered(tag), desc + " delivered")
else:
    if action == "tempfail":
        want, wdesc = (lambda x: x.code in (421, 451) if fault == "down" else x.code == 451
                       and x.lines == ["4.7.1 Service unavailable - try again later"]), "451 4.7.1"
    elif action == "reject":
        want, wdesc = (lambda x: x.code in (550, 554) if fault == "down" else x.code == 550
                       and x.lines[0].startswith("5.7.1")), "550 5.7.1"
    else:
        want, wdesc = (lambda x: x.code == 421), "421 and the connection closed"
    where = r.get("eom") if fault != "down" else fail
    tap(where is not None and want(where) and (action != "shutdown" or "closed" in r),
        desc + " " + wdesc + (" (at end of data)" if fault != "down" else ""), r)
    time.sleep(1)
    ql = subprocess.run([env("SLUICE"), "-c", env("CONF"), "queue", "list"],
                        capture_output=True, text=True).stdout
    tap("Mail queue is empty" in ql and not delivered(tag, secs=0),
        desc + " nothing queued or delivered", ql)
tap(log_wait_from(mark, r"warning: milter " + re.escape("unix:" + T + "/m1.sock") + r"\b.*"),
    desc + " the log warns, naming the milter", read_log()[mark:][-1500:])
if fault == "hang":
    print("# hang case took %.1f s" % el)
PY
}

for action in tempfail accept reject shutdown; do
    for fault in crash hang down; do
        fault_case $action $fault
    done
done

# ---------------- malformed and oversized packets: failed, no crash
for g in eom:huge eom:badcode eom:badreply negotiate:zero connect:text; do
    [ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
    [ -n "${MPID:-}" ] && stop_pid "$MPID" 1
    rm -f "$T/m1.sock"
    start_tmilter m1 -g "$g"
    MPID=$(cat "$T/m1.pid")
    write_conf "smtpd_milters = { $M, default_action=tempfail, command_timeout=3s, content_timeout=3s }"
    start_ok
    FRONT=$(child_pid smtpd)
    pytap "$g" <<'PY'
import sys
from tmh import *
g = sys.argv[1]
r = txn("garbage-" + g.replace(":", "-"))
steps = [r.get("greet"), r.get("ehlo"), r.get("mail")] + r["rcpt"] + [r.get("data"), r.get("eom")]
fail = next((x for x in steps if x is not None and x.code >= 400), None)
tap(fail is not None and fail.code in (421, 451) and not (r.get("eom") and r["eom"].code == 250),
    "garbage from the milter (%s): failed milter, default action tempfail (4xx)" % g, r)
PY
    is "  ... the front process is still the same (pid $FRONT)" "$(child_pid smtpd)" "$FRONT"
done

# ------------------- back-off: a milter down is not asked per session
[ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
[ -n "${MPID:-}" ] && stop_pid "$MPID" 1
rm -f "$T/m1.sock"
start_tmilter m1 -w negotiate
write_conf "smtpd_milters = { $M, default_action=accept, connect_timeout=2s, command_timeout=2s }"
MARK=$(stat -c %s "$T/maillog" 2>/dev/null || echo 0)
start_ok
pytap "$MARK" <<'PY'
import sys
from tmh import *
mark = int(sys.argv[1])
t = []
for i in (1, 2):
    t0 = time.time()
    r = txn("backoff%d" % i)
    t.append(time.time() - t0)
    tap(r.get("eom") and r["eom"].code == 250 and delivered("backoff%d" % i),
        "milter hangs at negotiation, default_action=accept: session %d delivered" % i, r)
tap(t[1] < 1.0, "the second session does not wait for the milter (%.2f s; first %.2f s)"
    % (t[1], t[0]))
n = len(re.findall(r"warning: milter " + re.escape("unix:" + T + "/m1.sock"), read_log()[mark:]))
tap(n == 1, "the warning is logged once (%d)" % n, read_log()[mark:][-1500:])
PY

[ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
write_conf "smtpd_milters = { unix:$T/nobody.sock, default_action=accept, connect_timeout=5s }"
MARK=$(stat -c %s "$T/maillog" 2>/dev/null || echo 0)
start_ok
pytap "$MARK" <<'PY'
import sys
from tmh import *
mark = int(sys.argv[1])
t = []
for i in (1, 2):
    t0 = time.time()
    r = txn("down%d" % i)
    t.append(time.time() - t0)
ok = all(delivered("down%d" % i) for i in (1, 2))
tap(ok and t[1] < 1.0, "a milter nobody listens for, default_action=accept: both delivered, "
    "the second session in %.2f s" % t[1], t)
n = len(re.findall(r"warning: milter " + re.escape("unix:" + T + "/nobody.sock"), read_log()[mark:]))
tap(n == 1, "the warning is logged once (%d)" % n, read_log()[-1500:])
PY
