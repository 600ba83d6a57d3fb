# SPDX-License-Identifier: GPL-2.0-or-later
# milter_lib.sh - shared by the t_milter*.sh scripts, sourced after lib.sh
# and plan: the temp dir, tmh.py (test-milter helpers for their inline
# python) and start_tmilter.
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
