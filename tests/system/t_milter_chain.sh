#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_milter_chain.sh - two milters in a chain (smtpd_milters = m1, m2),
# the ordering rule: a milter that only reads, placed before one that
# adds headers and replaces the body, gets the original message; placed
# after such a milter, it sees the added header and the new body (its
# tmilter log shows them); the delivered message carries both milters'
# changes, applied in list order; two readers both get the content.
. "$(dirname "$0")/lib.sh"
need_binaries
: "${TMILTER:=$top_builddir/tests/milter/tmilter}"
[ -x "$TMILTER" ] || skip_all "no test milter at $TMILTER (make check builds it)"
export TMILTER
plan 11
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
start_tmilter m1
start_tmilter m2
write_conf "smtpd_milters = unix:$T/m1.sock, unix:$T/m2.sock"
start_ok

pytap <<'PY'
from tmh import *
ORIG = b"body line 1\r\nbody line 2\r\n"


def seen(name):
    """(header fields as NAME=<value>, body bytes) in NAME's log."""
    h = [l.split(" | ")[0][len("header "):] for l in mlog(name) if l.startswith("header ")]
    b = b""
    for l in mlog(name):
        m = re.match(r"^body len=\d+ <(.*)> \| ", l)
        if m:
            b += m.group(1).replace("\\r", "\r").replace("\\n", "\n").encode()
    return h, b


# a reader before a modifier: the original
milter([], "m1")
milter(["-a", "X-Second:two", "-b", "new body\\n"], "m2")
r = txn("chain-a")
d = delivered("chain-a")
time.sleep(0.3)
h1, b1 = seen("m1")
tap("header X-Second=<two>" not in h1 and "Subject=<chain-a>" in h1 and b1 == ORIG,
    "a reader before a header-adding, body-replacing milter sees the original", h1, b1)
h2, b2 = seen("m2")
tap("Subject=<chain-a>" in h2 and b2 == ORIG, "the modifier sees the original too", h2, b2)
tap(d and d[1][-1][1] == b"X-Second: two" and d[2] == b"new body\r\n",
    "delivered with the second milter's header and body", r, d)

# a reader after a modifier: the modified message
milter(["-a", "X-First:one", "-f", "-- \\nfooter one\\n"], "m1")
milter([], "m2")
r = txn("chain-b")
d = delivered("chain-b")
time.sleep(0.3)
h1, b1 = seen("m1")
h2, b2 = seen("m2")
tap(b1 == ORIG and "X-First=<one>" not in h1, "the modifier (first) sees the original", h1, b1)
tap("X-First=<one>" in h2 and h2.index("X-First=<one>") == len(h2) - 1,
    "a reader after a header-adding milter sees the added header (last)", h2)
tap(b2 == ORIG + b"-- \r\nfooter one\r\n",
    "a reader after a body-changing milter sees the new body", b2)
tap(d and d[1][-1][1] == b"X-First: one" and d[2] == ORIG + b"-- \r\nfooter one\r\n",
    "delivered as the first milter made it", r, d)

# both modify: changes in list order, the second works on the first's result
milter(["-a", "X-A:1", "-b", "body one\\n"], "m1")
milter(["-a", "X-B:2", "-f", "footer two\\n", "-c", "X-A:1:changed by two"], "m2")
r = txn("chain-c")
d = delivered("chain-c")
time.sleep(0.3)
h2, b2 = seen("m2")
tap("X-A=<1>" in h2 and b2 == b"body one\r\n",
    "the second modifier sees the first one's header and body", h2, b2)
tap(d and [x[1] for x in d[1]][-2:] == [b"X-A: changed by two", b"X-B: 2"]
    and d[2] == b"body one\r\nfooter two\r\n",
    "delivered: X-A (changed by the second), X-B, and the first's body with the "
    "second's footer", r, d)

# two readers: both get the content
milter([], "m1")
milter([], "m2")
r = txn("chain-d")
d = delivered("chain-d")
time.sleep(0.3)
h1, b1 = seen("m1")
h2, b2 = seen("m2")
tap(d and h1 == h2 and "Subject=<chain-d>" in h1 and b1 == b2 == ORIG
    and [x[1] for x in d[1]][2] == b"Subject: chain-d",
    "two readers: both see the same message, delivered unchanged", h1, h2, b1, b2)
PY
