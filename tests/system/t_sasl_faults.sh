#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_sasl_faults.sh - SMTP AUTH against a Dovecot auth server that
# misbehaves (tests/system/fakeauth.py, one per service), Postfix's
# parameters and replies:
# - the handshake: a slow one is waited for by EHLO (AUTH offered, within
#   5 s); a wrong VERSION major, garbage, a 100 KB line, no DONE, a socket
#   that is not there: EHLO answered within ~6 s without AUTH, AUTH gets
#   503, the log says "warning: SASL: PATH: ..." (PATH as configured);
# - during an exchange: no answer (454 ... Authentication server timed out
#   after smtpd_timeout, other sessions served meanwhile), connection
#   closed (454 ... Connection lost to authentication server), the server
#   gone (454 ... Can't connect to authentication server, then back), OK
#   without user= and CONT with data that is not base64 (454 ...
#   Authentication backend error), FAIL temp (454 with Dovecot's reason),
#   FAIL with reason= (535 with it), a 100 KB answer (454, protocol error);
# - smtpd_sasl_security_options (noanonymous by default, noplaintext,
#   nodictionary), smtpd_sasl_exceptions_networks, smtpd_sasl_auth_enable
#   = no, smtpd_sasl_type = cyrus (warning, no AUTH); sluice check warns
#   of the cyrus service and of a socket that is not there;
# - what Dovecot is told: VERSION 1 2, CPID, service=smtp (submission with
#   -o smtpd_sasl_service), nologin, lip, rip, lport, rport, no "secured"
#   in clear, resp= as the client sent it; a relative smtpd_sasl_path is
#   under queue_directory; nothing the SMTP client sends that is not
#   base64 (TAB, CR, '*', 8-bit) reaches the auth server: 535 ... Invalid
#   base64 data in initial/continued response;
# - a client that disconnects while its AUTH is pending: the late answer is
#   ignored (not given to another session), the next session authenticates;
# - 50 sessions authenticating at once (PLAIN, PLAIN after 334, LOGIN; half
#   with a wrong password) over the front's one connection, answered out
#   of order: each gets the answer for its own credentials;
# - through all of it the same front process serves.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 77
setup

FAKEAUTH=$SYSDIR/fakeauth.py
declare -A FAKE # name -> pid

# start_fake NAME OPTIONS...: fakeauth.py with its record in $T/rec.NAME
# and its trace in $T/fakeauth.NAME.out, stopped by PID at exit; waits
# for its pid file (written once it listens). 1 if it did not come up.
start_fake()
{
    local name=$1
    shift
    rm -f "$T/fake.$name.pid"
    "$PYTHON3" "$FAKEAUTH" --pidfile "$T/fake.$name.pid" \
        --record "$T/rec.$name" "$@" >>"$T/fakeauth.$name.out" 2>&1 &
    FAKE[$name]=$!
    _T_PIDS="$_T_PIDS $!"
    wait_for 10 test -s "$T/fake.$name.pid"
}

# The good server sits where a relative smtpd_sasl_path = private/auth
# points: under queue_directory ($T/spool, see write_conf).
mkdir -p "$T/spool/private"
GOOD_SOCK=$T/spool/private/auth
FAILTEMP_SOCK=$T/auth-failtemp
REASON_SOCK=$T/auth-reason
NOSOCK=$T/no-such-socket
export GOOD_SOCK FAILTEMP_SOCK REASON_SOCK NOSOCK

NAMES="V2 GARB LONG NODONE SLOWHS STALL CLOSE DOWN OKNOUSER CONTBAD LONGAUTH"
for n in $NAMES; do
    eval "F_$n=\$(free_port)"   # the fake auth server's port
done
for n in $NAMES NOSOCK FAILTEMP REASON SUB NOPLAIN NODICT EXC OFF CYRUS; do
    eval "P_$n=\$(free_port)"   # the SMTP service's port
done
for n in $NAMES; do export "F_$n"; done
for n in $NAMES NOSOCK FAILTEMP REASON SUB NOPLAIN NODICT EXC OFF CYRUS; do export "P_$n"; done

USERS=()
for i in $(seq 0 49); do USERS+=(--user "u$i:p$i"); done

fails=""
start_fake GOOD --unix "$GOOD_SOCK" --jitter 0.2 --user slow:pw \
    --delay-user slow:2 --user slower:pw --delay-user slower:3 "${USERS[@]}" ||
    fails="$fails GOOD"
start_fake V2 --port "$F_V2" --version 2 || fails="$fails V2"
start_fake GARB --port "$F_GARB" --garbage || fails="$fails GARB"
start_fake LONG --port "$F_LONG" --long-line || fails="$fails LONG"
start_fake NODONE --port "$F_NODONE" --no-done || fails="$fails NODONE"
start_fake SLOWHS --port "$F_SLOWHS" --slow-handshake 4 || fails="$fails SLOWHS"
start_fake STALL --port "$F_STALL" --stall-auth || fails="$fails STALL"
start_fake CLOSE --port "$F_CLOSE" --close-on-auth || fails="$fails CLOSE"
start_fake DOWN --port "$F_DOWN" || fails="$fails DOWN"
start_fake OKNOUSER --port "$F_OKNOUSER" --ok-no-user || fails="$fails OKNOUSER"
start_fake CONTBAD --port "$F_CONTBAD" --cont-bad || fails="$fails CONTBAD"
start_fake LONGAUTH --port "$F_LONGAUTH" --long-line auth || fails="$fails LONGAUTH"
start_fake FAILTEMP --unix "$FAILTEMP_SOCK" --fail-temp || fails="$fails FAILTEMP"
start_fake REASON --unix "$REASON_SOCK" --fail-reason "Password expired" ||
    fails="$fails REASON"
is "the fake auth servers start (fakeauth.py)" "$fails" ""

S="inet n - n - - smtpd"
inet()
{
    echo "-o smtpd_sasl_path=inet:127.0.0.1:$1"
}
MASTER_EXTRA="127.0.0.1:$P_SLOWHS $S $(inet "$F_SLOWHS")
127.0.0.1:$P_V2 $S $(inet "$F_V2")
127.0.0.1:$P_GARB $S $(inet "$F_GARB")
127.0.0.1:$P_LONG $S $(inet "$F_LONG")
127.0.0.1:$P_NODONE $S $(inet "$F_NODONE")
127.0.0.1:$P_NOSOCK $S -o smtpd_sasl_path=$NOSOCK
127.0.0.1:$P_STALL $S $(inet "$F_STALL") -o smtpd_timeout=3s
127.0.0.1:$P_CLOSE $S $(inet "$F_CLOSE")
127.0.0.1:$P_DOWN $S $(inet "$F_DOWN")
127.0.0.1:$P_OKNOUSER $S $(inet "$F_OKNOUSER")
127.0.0.1:$P_CONTBAD $S $(inet "$F_CONTBAD")
127.0.0.1:$P_LONGAUTH $S $(inet "$F_LONGAUTH")
127.0.0.1:$P_FAILTEMP $S -o smtpd_sasl_path=$FAILTEMP_SOCK
127.0.0.1:$P_REASON $S -o smtpd_sasl_path=unix:$REASON_SOCK
127.0.0.1:$P_SUB $S -o smtpd_sasl_service=submission
127.0.0.1:$P_NOPLAIN $S -o smtpd_sasl_security_options=noplaintext
127.0.0.1:$P_NODICT $S -o smtpd_sasl_security_options=noanonymous,nodictionary
127.0.0.1:$P_EXC $S -o smtpd_sasl_exceptions_networks=127.0.0.0/8
127.0.0.1:$P_OFF $S -o smtpd_sasl_auth_enable=no
127.0.0.1:$P_CYRUS $S -o smtpd_sasl_type=cyrus"
write_conf "smtpd_sasl_auth_enable = yes" \
    "smtpd_sasl_type = dovecot" \
    "smtpd_sasl_path = private/auth"

# The clients' helpers, for the inline python below ("from sa import *").
cat >"$T/sa.py" <<'PY'
import base64
import hashlib
import hmac
import threading
from sink import *

T = env("T")
PORT = int(env("PORT"))
OK235 = "235 2.7.0 Authentication successful"
TEMP = "454 4.7.0 Temporary authentication failure: "
FAIL535 = "535 5.7.8 Error: authentication failed: "
NOT_ENABLED = "503 5.5.1 Error: authentication not enabled"
ALL = ["PLAIN", "LOGIN", "CRAM-MD5"]   # the fake's list without ANONYMOUS
WHO = r"unknown\[127\.0\.0\.1\]"


def P(name):
    return int(env("P_" + name))


def F(name):
    return int(env("F_" + name))


def b64(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.b64encode(b).decode()


def plain(user, pw):
    return b64("\0%s\0%s" % (user, pw))


def hello(port):
    """Connect, greeting, EHLO: (client, EHLO reply, seconds EHLO took)."""
    c = Client(port)
    c.reply()
    t0 = time.time()
    e = c.cmd("EHLO client.test")
    return c, e, time.time() - t0


def mechs(e):
    """The mechanisms of EHLO's AUTH line, or None without one."""
    for l in e.lines:
        if l.upper().startswith("AUTH ") or l.upper() == "AUTH":
            return l.split()[1:]
    return None


def bye(c):
    try:
        c.cmd("QUIT")
    except (OSError, EOFError, ValueError):
        pass
    c.close()


def try_cmd(c, line):
    try:
        return c.cmd(line)
    except (OSError, EOFError, ValueError) as e:
        return "no reply: %r" % e


def auth_plain(port, user="alice", pw="secret"):
    """A new session's AUTH PLAIN with an initial response: the reply."""
    c, e, _ = hello(port)
    r = try_cmd(c, "AUTH PLAIN " + plain(user, pw))
    bye(c)
    return r


def text(r):
    return r.text if isinstance(r, Reply) else str(r)


def rec(name):
    """[(connection number, line bytes)] received by fake NAME."""
    try:
        with open(os.path.join(T, "rec." + name), "rb") as f:
            data = f.read()
    except OSError:
        return []
    out = []
    for l in data.split(b"\n")[:-1]:
        n, _, line = l.partition(b"\t")
        out.append((int(n), line))
    return out


def rec_wait(name, pred, secs=10):
    end = time.time() + secs
    while True:
        got = [x for x in rec(name) if pred(x[1])]
        if got or time.time() > end:
            return got
        time.sleep(0.05)


def auth_lines(name, since=0):
    return [(n, l.split(b"\t")) for n, l in rec(name)[since:] if l.startswith(b"AUTH\t")]


def fields(parts):
    """{key: value} of an AUTH line's parameters (flags map to None)."""
    d = {}
    for p in parts[3:]:
        k, eq, v = p.decode("utf-8", "replace").partition("=")
        d.setdefault(k, []).append(v if eq else None)
    return d


def warn_rx(path):
    return r"warning: SASL: " + re.escape(path) + r": protocol error: "


def front_ok():
    """A new session on the main service: AUTH offered, alice gets 235."""
    c, e, _ = hello(PORT)
    r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
    bye(c)
    return mechs(e) == ALL and text(r) == OK235, (e, r)
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

start_ok
FRONT=$(child_pid smtpd)
export FRONT

# --- a slow handshake: the first EHLO waits for it (at most 5 s), other
# sessions are served meanwhile
pytap <<'PY'
from sa import *
c = Client(P("SLOWHS"))
c.reply()
t0 = time.time()
c.send("EHLO client.test\r\n")
t_sent = time.time()
o, e2, dt2 = hello(PORT)
bye(o)
tap(dt2 < 1.5 and mechs(e2) == ALL,
    "while an EHLO waits for a slow handshake, another session's EHLO is answered at once (%.1f s), with AUTH" % dt2, e2)
e = c.reply()
dt = time.time() - t0
bye(c)
done = [float(l.split()[1]) for n, l in rec("SLOWHS") if l.startswith(b"#handshake-done ")]
tap(mechs(e) == ALL and dt < 6,
    "slow handshake (4 s): EHLO waits for it and offers AUTH PLAIN LOGIN CRAM-MD5 (%.1f s)" % dt, e)
tap(done and t_sent < done[0],
    "  the EHLO was sent before the handshake was done (the wait was tested)",
    "EHLO sent at %.3f, handshakes done at %s" % (t_sent, done))
PY

# --- handshakes that go wrong: EHLO without AUTH, AUTH 503, a warning
pytap <<'PY'
from sa import *
cases = [
    ("V2", "inet:127.0.0.1:%d" % F("V2"), "VERSION 2 (wrong major)"),
    ("GARB", "inet:127.0.0.1:%d" % F("GARB"), "garbage instead of the handshake"),
    ("LONG", "inet:127.0.0.1:%d" % F("LONG"), "a 100 KB line in the handshake"),
    ("NODONE", "inet:127.0.0.1:%d" % F("NODONE"), "a handshake without DONE"),
    ("NOSOCK", env("NOSOCK"), "a socket that is not there"),
]
for name, path, what in cases:
    c, e, dt = hello(P(name))
    r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
    bye(c)
    tap(e.code == 250 and mechs(e) is None and dt < 6.5,
        "%s: EHLO answered without AUTH in %.1f s (not hung)" % (what, dt), e)
    tap(text(r) == NOT_ENABLED, "%s: AUTH gets %s" % (what, NOT_ENABLED), r)
    if name == "NOSOCK":
        rx = r"warning: SASL: Connect to " + re.escape(path) + r" failed: No such file or directory"
        m = log_wait(rx, 5)
        tap(m, "  log: warning: SASL: Connect to %s failed: No such file or directory" % path,
            "\n".join(l for l in read_log().splitlines() if "SASL" in l))
    elif name == "NODONE":
        m = log_wait(r"warning: SASL: .*" + re.escape(path), 10)
        tap(m, "  log: a warning: SASL: ... line naming %s" % path,
            "\n".join(l for l in read_log().splitlines() if "SASL" in l))
    else:
        m = log_wait(warn_rx(path), 5)
        dropped = rec_wait(name, lambda l: l == b"#closed", 5)
        tap(m and dropped and dropped[0][0] == 1,
            "  log: warning: SASL: %s: protocol error: ...; the connection is dropped" % path,
            "closed: %r" % dropped,
            "\n".join(l for l in read_log().splitlines() if "SASL" in l))
PY

# --- security options, exceptions, AUTH off, cyrus
pytap <<'PY'
from sa import *
c, e, _ = hello(PORT)
i_auth = [i for i, l in enumerate(e.lines) if l.startswith("AUTH")]
i_esc = [i for i, l in enumerate(e.lines) if l == "ENHANCEDSTATUSCODES"]
tap(mechs(e) == ALL and i_auth and i_esc and i_auth[0] < i_esc[0],
    "default (noanonymous): EHLO says AUTH PLAIN LOGIN CRAM-MD5 (ANONYMOUS hidden), before ENHANCEDSTATUSCODES", e)
r = try_cmd(c, "AUTH ANONYMOUS " + b64("trace"))
tap(text(r) == FAIL535 + "Invalid authentication mechanism",
    "default: AUTH ANONYMOUS gets 535 5.7.8 Error: authentication failed: Invalid authentication mechanism", r)
bye(c)

c, e, _ = hello(P("NOPLAIN"))
r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
r2 = try_cmd(c, "AUTH LOGIN")
tap(mechs(e) == ["ANONYMOUS", "CRAM-MD5"],
    "-o smtpd_sasl_security_options=noplaintext: AUTH ANONYMOUS CRAM-MD5 (PLAIN and LOGIN hidden)", e)
tap(text(r) == FAIL535 + "Invalid authentication mechanism"
    and text(r2) == FAIL535 + "Invalid authentication mechanism",
    "  AUTH PLAIN and AUTH LOGIN get 535 ... Invalid authentication mechanism", r, r2)
r = try_cmd(c, "AUTH ANONYMOUS " + b64("trace"))
tap(text(r) == OK235, "  AUTH ANONYMOUS works there: 235", r)
bye(c)

c, e, _ = hello(P("NODICT"))
r = try_cmd(c, "AUTH CRAM-MD5")
bye(c)
tap(mechs(e) == ["PLAIN", "LOGIN"] and text(r) == FAIL535 + "Invalid authentication mechanism",
    "-o smtpd_sasl_security_options=noanonymous,nodictionary: AUTH PLAIN LOGIN; AUTH CRAM-MD5 gets 535 ... Invalid authentication mechanism",
    e, r)

c, e, _ = hello(P("EXC"))
r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
bye(c)
tap(e.code == 250 and mechs(e) is None and text(r) == OK235,
    "smtpd_sasl_exceptions_networks=127.0.0.0/8: no AUTH in EHLO, but AUTH PLAIN works (235)", e, r)

c, e, _ = hello(P("OFF"))
r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
bye(c)
tap(mechs(e) is None and text(r) == NOT_ENABLED,
    "smtpd_sasl_auth_enable=no: no AUTH in EHLO, AUTH gets " + NOT_ENABLED, e, r)

tap(log_wait(r"warning: (.*: )?smtpd_sasl_type = cyrus: unsupported SASL server implementation \(only dovecot\); AUTH disabled", 2),
    "smtpd_sasl_type=cyrus: log at start: warning: ... smtpd_sasl_type = cyrus: unsupported SASL server implementation; AUTH disabled")
c, e, _ = hello(P("CYRUS"))
r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
bye(c)
tap(mechs(e) is None and text(r) == NOT_ENABLED,
    "  and no AUTH in its EHLO, AUTH gets " + NOT_ENABLED, e, r)
PY

# --- what the auth server is told
pytap <<'PY'
from sa import *
first = [l for n, l in rec("GOOD") if n == 1 and not l.startswith(b"#")][:2]
tap(first == [b"VERSION\t1\t2", ("CPID\t%s" % env("FRONT")).encode()],
    "relative smtpd_sasl_path = private/auth is $queue_directory/private/auth: the front connected there and said VERSION 1 2, CPID <its pid>",
    first, "front pid %s" % env("FRONT"))
since = len(rec("GOOD"))
c, e, _ = hello(PORT)
cport = c.sock.getsockname()[1]
resp = plain("alice", "secret")
r = try_cmd(c, "AUTH PLAIN " + resp)
bye(c)
tap(text(r) == OK235, "AUTH PLAIN with the right password: " + OK235, r)
al = auth_lines("GOOD", since)
p = al[0][1] if al else [b""] * 3
d = fields(p)
tap(len(al) == 1 and p[2] == b"PLAIN" and d.get("service") == ["smtp"],
    "the AUTH line to Dovecot: AUTH <id> PLAIN service=smtp", al)
tap(d.get("lip") == ["127.0.0.1"] and d.get("rip") == ["127.0.0.1"]
    and d.get("lport") == [str(PORT)] and d.get("rport") == [str(cport)],
    "  lip=127.0.0.1 rip=127.0.0.1 lport=%d rport=%d (the client's)" % (PORT, cport), al)
tap("nologin" in d and d["nologin"] == [None] and "secured" not in d,
    "  nologin, and no secured in clear", al)
tap(d.get("resp") == [resp], "  resp= is the client's initial response as sent", al)

since = len(rec("GOOD"))
c, e, _ = hello(P("SUB"))
r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
bye(c)
al = auth_lines("GOOD", since)
d = fields(al[0][1]) if al else {}
tap(text(r) == OK235 and d.get("service") == ["submission"] and d.get("lport") == [str(P("SUB"))],
    "-o smtpd_sasl_service=submission: 235, and Dovecot is told service=submission (lport=%d)" % P("SUB"), r, al)

r = auth_plain(PORT, "alice", "wrong")
tap(text(r) == FAIL535 + "authentication failure",
    "wrong password, FAIL without reason=: 535 5.7.8 Error: authentication failed: authentication failure", r)
tap(log_wait("warning: " + WHO + r": SASL PLAIN authentication failed: authentication failure$", 5),
    "  log: warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: authentication failure")
r = auth_plain(P("REASON"), "alice", "wrong")
tap(text(r) == FAIL535 + "Password expired",
    "FAIL reason=Password expired (unix:/path): 535 5.7.8 Error: authentication failed: Password expired", r)
PY

# --- the SMTP client's bytes that are not base64 never reach Dovecot
pytap <<'PY'
from sa import *
B64_INIT = FAIL535 + "Invalid base64 data in initial response"
B64_CONT = FAIL535 + "Invalid base64 data in continued response"
good = plain("alice", "secret")
c, e, _ = hello(PORT)
leaks = []
def new_lines(since):
    return [l for n, l in rec("GOOD")[since:] if not l.startswith(b"#")]
cases = [
    (b"AUTH PLAIN AGFsaWNl\tAHNlY3JldA==", "a TAB inside"),
    (b"AUTH PLAIN " + good.encode() + b"\tservice=imap", "a TAB and service=imap after it"),
    (b"AUTH PLAIN AGFs*aWNlAHNlY3JldA==", "a '*' inside"),
    (b"AUTH PLAIN AGFsaWNl\xc3\xa9AHNlY3JldA==", "8-bit bytes inside"),
]
for line, what in cases:
    since = len(rec("GOOD"))
    c.send(line + b"\r\n")
    r = c.reply()
    time.sleep(0.3)
    got = new_lines(since)
    tap(text(r) == B64_INIT, "AUTH PLAIN with %s the initial response: %s" % (what, B64_INIT), r)
    if got:
        leaks.append((what, got))
# a bare CR is not even a command line: refused, whatever the reply
since = len(rec("GOOD"))
c.send(b"AUTH PLAIN AGFsaWNl\rAHNlY3JldA==\r\n")
r = c.reply()
time.sleep(0.3)
if new_lines(since):
    leaks.append(("a bare CR", new_lines(since)))
tap(r.code >= 500, "AUTH PLAIN with a bare CR in the initial response: refused (%d)" % r.code, r)
for line, what in [(b"AGFsaWNl\tAHNlY3JldA==", "a TAB"), (b"AGFs\rc2VjcmV0", "a bare CR"),
                   (b"AGFsaWNl\x01AHNlY3JldA==", "a ^A")]:
    since = len(rec("GOOD"))
    r1 = c.cmd("AUTH PLAIN")
    c.send(line + b"\r\n")
    r = c.reply()
    time.sleep(0.3)
    got = [l for l in new_lines(since) if not l.startswith(b"AUTH\t")]
    tap(r1.text == "334 " and text(r) == B64_CONT,
        "AUTH PLAIN, 334, then an answer with %s: %s" % (what, B64_CONT), r1, r)
    if got:
        leaks.append((what + " (continued)", got))
tap(not leaks, "nothing of those lines reached the auth server (no AUTH with resp=, no CONT)", *leaks)
r = try_cmd(c, "AUTH PLAIN " + good)
bye(c)
tap(text(r) == OK235, "the same session then authenticates: 235", r)
PY

# --- misbehaviour during the exchange
pytap <<'PY'
from sa import *
# no answer: smtpd_timeout = 3s on that service
c, e, _ = hello(P("STALL"))
c.send("AUTH PLAIN " + plain("alice", "secret") + "\r\n")
t0 = time.time()
rec_wait("STALL", lambda l: l.startswith(b"AUTH\t"), 5)
t1 = time.time()
o1, e1, _ = hello(P("STALL"))
q1 = try_cmd(o1, "QUIT")
o2, e2, _ = hello(PORT)
q2 = try_cmd(o2, "QUIT")
dt_other = time.time() - t1
o1.close(), o2.close()
tap(e1.code == 250 and text(q1).startswith("221") and e2.code == 250 and text(q2).startswith("221")
    and dt_other < 2,
    "while an AUTH waits for an answer, EHLO/QUIT on that service and on another are served at once (%.1f s)" % dt_other,
    e1, q1, e2, q2)
try:
    r = c.reply()
except (OSError, EOFError, ValueError) as x:
    r = "no reply: %r" % x
dt = time.time() - t0
bye(c)
tap(text(r) == TEMP + "Authentication server timed out" and 2.5 <= dt <= 6.5,
    "no answer: 454 4.7.0 Temporary authentication failure: Authentication server timed out, after smtpd_timeout = 3s (%.1f s)" % dt, r)
tap(log_wait("warning: " + WHO + r": SASL PLAIN authentication failed: Authentication server timed out", 5),
    "  log: warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: Authentication server timed out")

# connection closed when the AUTH arrives
r = auth_plain(P("CLOSE"))
tap(text(r) == TEMP + "Connection lost to authentication server",
    "connection closed with the AUTH pending: 454 4.7.0 Temporary authentication failure: Connection lost to authentication server", r)
tap(log_wait("warning: " + WHO + r": SASL PLAIN authentication failed: Connection lost to authentication server", 5),
    "  log: warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: Connection lost to authentication server")
time.sleep(1.2)
c, e, _ = hello(P("CLOSE"))
r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
bye(c)
tap(mechs(e) == ALL and text(r) == TEMP + "Connection lost to authentication server",
    "  a new session: EHLO still offers AUTH (the list is kept), AUTH again 454 ... Connection lost", e, r)

r = auth_plain(P("OKNOUSER"))
tap(text(r) == TEMP + "Authentication backend error",
    "OK without user=: 454 4.7.0 Temporary authentication failure: Authentication backend error", r)

c, e, _ = hello(P("CONTBAD"))
r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
n = try_cmd(c, "NOOP")
bye(c)
tap(text(r) == TEMP + "Authentication backend error" and text(n) == "250 2.0.0 Ok"
    and b"Injected" not in c.buf,
    "CONT with data that is not base64 (and a CR): 454 ... Authentication backend error, nothing of it sent to the client",
    r, n, c.buf)

r = auth_plain(P("FAILTEMP"))
reason = "Internal error occurred. Refer to server log for more information."
tap(text(r) == TEMP + reason,
    "FAIL temp (absolute socket path): 454 4.7.0 Temporary authentication failure: " + reason, r)
tap(log_wait("warning: " + WHO + r": SASL PLAIN authentication failed: " + re.escape(reason), 5),
    "  log: warning: unknown[127.0.0.1]: SASL PLAIN authentication failed: " + reason)

path = "inet:127.0.0.1:%d" % F("LONGAUTH")
r = auth_plain(P("LONGAUTH"))
tap(text(r).startswith(TEMP), "a 100 KB answer line: 454 4.7.0 Temporary authentication failure: ...", r)
tap(log_wait(warn_rx(path), 5), "  log: warning: SASL: %s: protocol error: ..." % path,
    "\n".join(l for l in read_log().splitlines() if "SASL" in l))
c, e, _ = hello(P("DOWN"))
bye(c)
tap(mechs(e) == ALL, "the server that will go away: EHLO offers AUTH PLAIN LOGIN CRAM-MD5", e)
PY

# --- the auth server goes away, then comes back
stop_pid "${FAKE[DOWN]}" 3
pytap <<'PY'
from sa import *
time.sleep(1.2)
c, e, _ = hello(P("DOWN"))
r = try_cmd(c, "AUTH PLAIN " + plain("alice", "secret"))
bye(c)
tap(mechs(e) == ALL, "auth server gone: EHLO still offers the known list", e)
tap(text(r) == TEMP + "Can't connect to authentication server",
    "  AUTH: 454 4.7.0 Temporary authentication failure: Can't connect to authentication server", r)
PY
start_fake DOWN --port "$F_DOWN"
pytap <<'PY'
from sa import *
time.sleep(1.2)
r = auth_plain(P("DOWN"))
tap(text(r) == OK235, "auth server back on the same port: AUTH works again (235)", r)
PY

# --- a client that leaves while its AUTH is pending
pytap <<'PY'
from sa import *
since = len(rec("GOOD"))
a, e, _ = hello(PORT)
a.send("AUTH PLAIN " + plain("slow", "pw") + "\r\n")   # answered OK after 2 s
got = rec_wait("GOOD", lambda l: l.startswith(b"AUTH\t") and plain("slow", "pw").encode() in l, 5)
a.close()
t_a = time.time()
b, e, _ = hello(PORT)
r = try_cmd(b, "AUTH PLAIN " + plain("slower", "nope"))  # FAIL after 3 s, A's OK comes first
bye(b)
al = auth_lines("GOOD", since)
ids = [p[1].decode() for n, p in al]
errs = [l for n, l in rec("GOOD")[since:] if l.startswith(b"#error")]
sent = {}
with open(os.path.join(T, "fakeauth.GOOD.out"), errors="replace") as f:
    for l in f:
        m = re.match(r"([0-9.]+) fakeauth\[\d+\]: conn \d+ > b'(OK|FAIL)\\t(\d+)\\tuser=(slow|slower)\b", l)
        if m and m.group(3) in ids:
            sent[m.group(4)] = float(m.group(1))
tap(text(r) == FAIL535 + "authentication failure",
    "a client gone while its AUTH is pending: the late OK is not given to the next session (its wrong password gets 535)",
    r, al)
tap(len(ids) == 2 and ids[0] != ids[1] and not errs
    and "slow" in sent and "slower" in sent and sent["slow"] < sent["slower"],
    "  the two requests have their own ids, the late OK went out while the other was pending, no protocol error",
    al, errs, sent)
time.sleep(1)
ok_, d = front_ok()
tap(ok_, "  the next session authenticates (235)", *d)
PY

# --- 50 sessions at once over the front's one connection
pytap <<'PY'
from sa import *
N = 50
since = len(rec("GOOD"))
res = [None] * N
ready = threading.Barrier(N)


def one(i):
    u, pw = "u%d" % i, ("p%d" % i) if i % 2 == 0 else "wrong%d" % i
    try:
        c, e, _ = hello(PORT)
        ready.wait(20)
        kind = i % 3
        if kind == 0:
            r = c.cmd("AUTH PLAIN " + plain(u, pw))
        elif kind == 1:
            r = c.cmd("AUTH PLAIN")
            if r.text == "334 ":
                r = c.cmd(plain(u, pw))
        else:
            r = c.cmd("AUTH LOGIN")
            if r.text == "334 VXNlcm5hbWU6":
                r = c.cmd(b64(u))
                if r.text == "334 UGFzc3dvcmQ6":
                    r = c.cmd(b64(pw))
        res[i] = r.text
        bye(c)
    except Exception as x:
        res[i] = "error: %r" % x


ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
for t in ts:
    t.start()
for t in ts:
    t.join(60)
want = [OK235 if i % 2 == 0 else FAIL535 + "authentication failure" for i in range(N)]
bad = ["session %d (%s): %r" % (i, ["PLAIN", "PLAIN after 334", "LOGIN"][i % 3], res[i])
       for i in range(N) if res[i] != want[i]]
tap(not bad, "%d sessions authenticating at once (PLAIN, PLAIN after 334, LOGIN; answers out of order): each gets 235 or 535 for its own credentials (%d wrong)" % (N, len(bad)), *bad)
al = auth_lines("GOOD", since)
conns = sorted(set(n for n, p in al))
ids = [p[1] for n, p in al]
tap(len(al) == N and len(conns) == 1 and len(set(ids)) == N,
    "  their %d AUTH requests went over one connection (%s) with distinct ids (%d)" % (len(al), conns, len(set(ids))))
PY

# --- everything the fake servers got was Dovecot's protocol, nothing else
pytap <<'PY'
from sa import *
bad = []
mech_ok = {b"PLAIN", b"LOGIN", b"ANONYMOUS", b"CRAM-MD5"}
flags = {"nologin", "secured", "valid-client-cert", "no-penalty"}
for f in sorted(os.listdir(T)):
    if not f.startswith("rec."):
        continue
    for n, l in rec(f[4:]):
        if l.startswith(b"#"):
            continue
        p = l.split(b"\t")
        why = None
        if any(ch < 0x20 and ch != 0x09 or ch == 0x7f for ch in l):
            why = "control character"
        elif p[0] == b"VERSION":
            why = None if len(p) == 3 and p[1] == b"1" and p[2].isdigit() else "bad VERSION"
        elif p[0] == b"CPID":
            why = None if len(p) == 2 and p[1] == env("FRONT").encode() else "bad CPID"
        elif p[0] == b"AUTH":
            d = fields(p)
            if len(p) < 3 or not p[1].isdigit() or p[2] not in mech_ok:
                why = "bad AUTH id or mechanism"
            elif d.get("service") not in (["smtp"], ["submission"]):
                why = "service= not once smtp/submission"
            elif any(v is None and k not in flags for k, vs in d.items() for v in vs):
                why = "unknown flag"
            elif "resp" in d and (len(d["resp"]) != 1 or not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", d["resp"][0])
                                  or len(d["resp"][0]) % 4):
                why = "resp= not base64"
        elif p[0] == b"CONT":
            if len(p) != 3 or not p[1].isdigit() or not re.fullmatch(rb"[A-Za-z0-9+/]*={0,2}", p[2]) or len(p[2]) % 4:
                why = "CONT data not base64"
        else:
            why = "unknown command"
        if why:
            bad.append("%s conn %d: %s: %r" % (f, n, why, l[:200]))
tap(not bad, "every line the auth servers got is Dovecot's protocol (VERSION, CPID, AUTH with known fields, CONT with base64): nothing smuggled", *bad)
PY

# --- the front survived all of it
pytap <<'PY'
from sa import *
ok_, d = front_ok()
tap(ok_, "after all that, a new session gets AUTH in EHLO and authenticates (235)", *d)
PY
now=$(child_pid smtpd)
if [ -n "$FRONT" ] && [ "$now" = "$FRONT" ]; then
    ok "  served by the same front process (pid $FRONT)"
else
    not_ok "  served by the same front process (pid $FRONT)"
    diag "front process now: '$now'" "$(grep -E 'panic|fatal|died|signal' "$LOG" | tail -n 5)"
fi

# (last: its connection probes would show in the fakes' records)
# sluice check: what would not work is said, and the check still succeeds
out=$(sl check 2>&1)
is "sluice check succeeds with AUTH back ends that would not work" "$?" 0
like "  names the service with smtpd_sasl_type = cyrus" "$out" \
    "sluice: warning: service 127\.0\.0\.1:$P_CYRUS: smtpd_sasl_type = cyrus: unsupported SASL server implementation \(only dovecot\); AUTH disabled"
like "  and the one whose socket is not there, with why" "$out" \
    "sluice: warning: service 127\.0\.0\.1:$P_NOSOCK: smtpd_sasl_path: cannot connect to $NOSOCK: No such file or directory: AUTH will not be offered until the Dovecot auth socket is there"
