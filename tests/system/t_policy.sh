#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_policy.sh - check_policy_service: Postfix's policy delegation protocol
# against a scripted policy server (tests/system/policyd.py, over TCP and
# over a UNIX socket under queue_directory) and against Debian's postgrey.
# The request carries Postfix's attributes (request, protocol_state,
# client, helo, sender, recipient, instance, policy_context, ...); the
# server's action is used as an access table's (DUNNO, OK, REJECT text,
# NNN text, DEFER_IF_PERMIT, PREPEND header); connections are reused; a
# server that closes, answers garbage, answers too much, never answers or
# is not there costs smtpd_policy_service_try_limit attempts, a warning
# each, then smtpd_policy_service_default_action (451 4.3.5 ... Server
# configuration problem); a second attempt that works is used. At DATA
# (smtpd_data_restrictions) the request has protocol_state=DATA and the
# recipient count. postgrey greylists the first attempt (450 4.7.1 ...
# Greylisted) and lets the retry through with its X-Greylist header on
# top of the delivered message.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 26
setup

PP=$(free_port)
DEAD=$(free_port)
PG=$(free_port)
export PP DEAD PG
mkdir -p "$T/spool/private"
"$PYTHON3" "$top_srcdir/tests/system/policyd.py" --port "$PP" --log "$T/policy.log" \
    --pidfile "$T/policyd.pid" >>"$T/policyd.out" 2>&1 &
_T_PIDS="$_T_PIDS $!"
"$PYTHON3" "$top_srcdir/tests/system/policyd.py" --unix "$T/spool/private/policy" \
    --log "$T/policy-unix.log" >>"$T/policyd.out" 2>&1 &
_T_PIDS="$_T_PIDS $!"
wait_port 127.0.0.1 "$PP" 10 || diag "policyd did not start: $(cat "$T/policyd.out")"
wait_for 10 test -S "$T/spool/private/policy"

HAVE_PG=0
if command -v postgrey >/dev/null 2>&1; then
    mkdir -p "$T/pg"
    postgrey --inet=127.0.0.1:"$PG" --dbdir="$T/pg" --delay=1 \
        --user="$(id -un)" --group="$(id -gn)" --pidfile="$T/pg/pid" \
        >>"$T/postgrey.out" 2>&1 &
    _T_PIDS="$_T_PIDS $!"
    wait_port 127.0.0.1 "$PG" 20 && HAVE_PG=1
    [ $HAVE_PG = 1 ] || diag "postgrey did not start: $(tail -5 "$T/postgrey.out")"
fi
export HAVE_PG

SVCS=""
END=permit_mynetworks,reject_unauth_destination
svc pol "smtpd_recipient_restrictions=check_policy_service,inet:127.0.0.1:$PP,$END"
svc unix "smtpd_recipient_restrictions=check_policy_service,unix:private/policy,$END"
svc data "smtpd_data_restrictions=check_policy_service,inet:127.0.0.1:$PP"
svc down "smtpd_recipient_restrictions=check_policy_service,inet:127.0.0.1:$DEAD,$END"
svc grey "smtpd_recipient_restrictions=permit_sasl_authenticated,check_policy_service,inet:127.0.0.1:$PG,$END"
P_brace=$(free_port)
export P_brace
MASTER_EXTRA="${SVCS}127.0.0.1:$P_brace inet n - n - - smtpd
  -o { smtpd_recipient_restrictions = check_policy_service { inet:127.0.0.1:$PP, default_action = DUNNO, policy_context = brace-ctx, timeout = 1s, try_limit = 1 }, $END }"
write_conf "smtpd_policy_service_timeout = 1s" "smtpd_policy_service_retry_delay = 1s" \
    "smtpd_policy_service_policy_context = test-ctx"
start_ok
start_sink || diag "the sink did not start"

pytap <<'PY'
import json, re, socket, time
from sink import *

P = lambda n: int(env("P_" + n))

def session(port, sender, rcpts, helo="client.test"):
    c = Client(port)
    try:
        c.reply()
        c.cmd("EHLO " + helo)
        m = c.cmd("MAIL FROM:<%s>" % sender)
        rs = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
        c.cmd("QUIT")
        return rs
    finally:
        c.close()

def plog(name="policy.log"):
    out = []
    try:
        for l in open(env("T") + "/" + name):
            out.append(json.loads(l))
    except FileNotFoundError:
        pass
    return out

# --- the request
n0 = len(plog())
r = session(P("pol"), "alice@example.org", ["dunno@example.com", "dunno2@example.com"])
reqs = plog()[n0:]
a = reqs[0]["attrs"] if reqs else {}
want = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
        "protocol_name": "ESMTP", "client_address": "127.0.0.1",
        "client_name": "unknown", "reverse_client_name": "unknown",
        "helo_name": "client.test", "sender": "alice@example.org",
        "recipient": "dunno@example.com", "recipient_count": "0",
        "server_address": "127.0.0.1", "server_port": str(P("pol")),
        "policy_context": "test-ctx", "sasl_username": "",
        "encryption_protocol": ""}
bad = {k: (a.get(k), v) for k, v in want.items() if a.get(k) != v}
tap([x.code for x in r] == [250, 250] and len(reqs) == 2 and not bad
    and a.get("instance") and a.get("client_port", "").isdigit(),
    "DUNNO for two recipients: 250 each; the request has Postfix's "
    "attributes (request, protocol_state=RCPT, client, helo, sender, "
    "recipient, server_port, policy_context, instance, ...)", r, bad, a)
tap(len(reqs) == 2 and reqs[0]["conn"] == reqs[1]["conn"]
    and reqs[0]["attrs"]["instance"] == reqs[1]["attrs"]["instance"]
    and reqs[1]["attrs"]["recipient"] == "dunno2@example.com",
    "  both requests on one connection, with the same instance (one mail "
    "transaction)", reqs)

r = session(P("pol"), "alice@example.org", ["dunno3@example.com"])
reqs2 = plog()[n0 + 2:]
tap(r[0].code == 250 and len(reqs2) == 1 and reqs2[0]["conn"] == reqs[0]["conn"]
    and reqs2[0]["attrs"]["instance"] != reqs[0]["attrs"]["instance"],
    "the next session's request: the same connection again (kept idle), a "
    "new instance", reqs2)

# MAIL FROM's SIZE= is the request's size
n0 = len(plog())
c = Client(P("pol"))
c.reply()
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<alice@example.org> SIZE=12345")
r = c.cmd("RCPT TO:<dunno4@example.com>")
c.cmd("QUIT")
c.close()
reqs = plog()[n0:]
tap(r.code == 250 and len(reqs) == 1 and reqs[0]["attrs"].get("size") == "12345",
    "MAIL FROM:<...> SIZE=12345: the request says size=12345", r, reqs)

# --- actions
r = session(P("pol"), "alice@example.org", ["reject@example.com"])
want = "554 5.7.1 <reject@example.com>: Recipient address rejected: no thanks"
l = log_wait(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: " + re.escape(want)
             + r"; from=<alice@example\.org> to=<reject@example\.com> proto=ESMTP helo=<client\.test>$", 5)
tap(r[0].text == want and l, "REJECT no thanks: " + want + ", and Postfix's "
    "NOQUEUE: reject: line", r)
r = session(P("pol"), "alice@example.org", ["code@example.com"])
tap(r[0].text == "550 5.7.2 <code@example.com>: Recipient address rejected: over quota",
    "550 5.7.2 over quota: the code and DSN are the server's", r)
r = session(P("pol"), "alice@example.org", ["defer@example.com"])
tap(r[0].text == "450 4.7.1 <defer@example.com>: Recipient address rejected: "
    "Greylisted, try later",
    "DEFER_IF_PERMIT Greylisted, the request otherwise allowed: 450 4.7.1", r)
r = session(P("pol"), "alice@example.org", ["ok@example.com"])
tap(r[0].code == 250, "OK: accepted", r)

r = send_mail(P("pol"), "alice@example.org", ["prepend@example.com"],
              b"Subject: prepended\r\n\r\nwith a policy header\r\n")
got = sink_find(r"with a policy header", secs=15)
hdrs = got[1].split(b"\r\n\r\n")[0].split(b"\r\n") if got else []
tap(r.code == 250 and got and hdrs[0] == b"X-Policy: seen by policyd"
    and hdrs[1].startswith(b"Received: from client.test")
    and got[1].endswith(b"Subject: prepended\r\n\r\nwith a policy header\r\n"),
    "PREPEND X-Policy: seen by policyd: delivered with that header first, "
    "then Received:, then the message as sent", r, hdrs[:3])

# --- failures
def failed(rcpt, why, port=None, tries=2):
    t0 = time.time()
    r = session(port or P("pol"), "alice@example.org", [rcpt])
    dt = time.time() - t0
    srv = "inet:127.0.0.1:" + env("DEAD" if port == P("down") else "PP")
    w = log_wait(r"warning: problem talking to server " + re.escape(srv)
                 + ": " + why, 5)
    n = len(re.findall(r"problem talking to server " + re.escape(srv)
                       + ": " + why, read_log()))
    return r[0], dt, w, n

r, dt, w, n = failed("close@example.com", "lost connection")
tap(r.text == "451 4.3.5 <close@example.com>: Recipient address rejected: "
    "Server configuration problem" and w and n == 2,
    "a server that closes without an answer: tried twice (two warnings "
    "'problem talking to server ...: lost connection'), then the default "
    "action, 451 4.3.5 ... Server configuration problem (%.1f s)" % dt, r, n)
r, dt, w, n = failed("closeonce@example.com", "lost connection")
tap(r.code == 250 and n == 3,
    "a server that closes once and answers the second attempt: accepted", r, n)
r, dt, w, n = failed("garbage@example.com", "malformed reply")
tap(r.code == 451 and w, "an answer without name=value: malformed reply, "
    "451 4.3.5", r)
r, dt, w, n = failed("big@example.com", "(malformed reply|reply too long)")
tap(r.code == 451 and w, "an answer of 9000 bytes: refused, 451 4.3.5", r)
r, dt, w, n = failed("hang@example.com", "timeout while talking")
hang = [q for q in plog() if q["attrs"].get("recipient") == "hang@example.com"]
tap(r.code == 451 and w and len(hang) == 2 and dt >= 2.5,
    "a server that never answers: two attempts of "
    "smtpd_policy_service_timeout (1 s) a retry delay (1 s) apart, then "
    "451 (%.1f s)" % dt, r)
r, dt, w, n = failed("x@example.com", "Connection refused", port=P("down"))
tap(r.code == 451 and w, "no server at the address: 'Connection refused' "
    "warnings, 451 4.3.5", r)

# --- Postfix's "{ server, name = value, ... }": its own settings
n0 = len(plog())
t0 = time.time()
r = session(P("brace"), "alice@example.org", ["hang3@example.com", "dunno@example.com"])
dt = time.time() - t0
reqs = plog()[n0:]
hang3 = [q for q in reqs if q["attrs"].get("recipient") == "hang3@example.com"]
tap([x.code for x in r] == [250, 250] and len(hang3) == 1 and dt >= 0.9,
    "check_policy_service { inet:..., default_action = DUNNO, timeout = 1s, "
    "try_limit = 1 }: a server that never answers is asked once, 1 s, "
    "then its own default action, DUNNO: accepted (%.1f s)" % dt, r, hang3)
tap(len(reqs) == 2 and all(q["attrs"].get("policy_context") == "brace-ctx" for q in reqs),
    "  its requests carry its own policy_context (brace-ctx)", reqs)

# --- a client gone while its request is out; pipelining behind it
s = socket.create_connection(("127.0.0.1", P("pol")))
s.recv(1000)
s.sendall(b"EHLO c\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<hang2@example.com>\r\n")
time.sleep(0.2)
s.close()
c = Client(P("pol"))
c.reply()
c.cmd("EHLO client.test")
c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<slow1@example.com>\r\n"
       "RCPT TO:<reject2@example.com>\r\nRCPT TO:<slow2@example.com>\r\nDATA\r\n")
rs = [c.reply() for _ in range(5)]
c.send(dotstuff(b"Subject: pipelined\r\n\r\nbehind slow policy answers\r\n"))
e = c.reply()
c.cmd("QUIT")
c.close()
tap([x.code for x in rs] == [250, 250, 554, 250, 354] and e.code == 250,
    "a client that left with its request out harms nothing; pipelined "
    "RCPTs behind slow answers get their replies in order "
    "(250 250 554 250 354) and the message is queued", *(rs + [e]))

# --- UNIX socket, relative to queue_directory
n0 = len(plog("policy-unix.log"))
r = session(P("unix"), "alice@example.org", ["reject@example.com"])
u = plog("policy-unix.log")[n0:]
tap(r[0].text == "554 5.7.1 <reject@example.com>: Recipient address rejected: "
    "no thanks" and len(u) == 1,
    "unix:private/policy (under queue_directory): asked, its REJECT used", r)

# --- at DATA
n0 = len(plog())
c = Client(P("data"))
c.reply()
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<a@example.org>")
c.cmd("RCPT TO:<x@example.com>")
c.cmd("RCPT TO:<y@example.com>")
d = c.cmd("DATA")
c.cmd("QUIT")
c.close()
reqs = plog()[n0:]
a = reqs[-1]["attrs"] if reqs else {}
tap(d.text == "554 5.7.1 <DATA>: Data command rejected: two is too many"
    and a.get("protocol_state") == "DATA" and a.get("recipient_count") == "2",
    "smtpd_data_restrictions check_policy_service: protocol_state=DATA, "
    "recipient_count=2, its REJECT at DATA: 554 5.7.1 <DATA>: Data command "
    "rejected: ...", d, a)
r = send_mail(P("data"), "a@example.org", ["x@example.com"],
              b"Subject: one\r\n\r\none recipient at DATA\r\n")
tap(r.code == 250, "  one recipient: DUNNO, the message is queued", r)

# --- postgrey
if env("HAVE_PG") == "1":
    r1 = session(P("grey"), "alice@example.org", ["bob@example.com"])
    time.sleep(2.2)
    body = b"Subject: greylisted\r\n\r\nsecond attempt\r\n"
    r2 = send_mail(P("grey"), "alice@example.org", ["bob@example.com"], body)
    got = sink_find(r"second attempt", secs=15)
    hdrs = got[1].split(b"\r\n")[:2] if got else []
    tap(re.match(r"450 4\.\d\.\d <bob@example\.com>: Recipient address "
                 r"rejected: Greylisted, see http://postgrey", r1[0].text),
        "postgrey: the first attempt is greylisted (450, postgrey's DSN, "
        "<bob@example.com>: Recipient address rejected: Greylisted, see "
        "http://postgrey...)", r1)
    tap(r2.code == 250 and got and hdrs and
        hdrs[0].startswith(b"X-Greylist: delayed ") and
        hdrs[1].startswith(b"Received: ") and got[1].endswith(body),
        "postgrey: the retry after its delay is accepted and delivered "
        "with postgrey's X-Greylist header on top", r2, hdrs)
else:
    print("ok - # SKIP postgrey is not installed")
    print("ok - # SKIP postgrey is not installed")
PY
check "sluiced is still running" alive "$MASTERPID"
stop_sluiced

MASTER_EXTRA=""
write_conf "smtpd_recipient_restrictions = check_policy_service 127.0.0.1:10023, reject_unauth_destination"
out=$(sl check 2>&1)
rc=$?
[ $rc -ne 0 ] && printf '%s' "$out" | grep -q 'check_policy_service: "127.0.0.1:10023" is not a policy server (inet:host:port or unix:path)'
result "sluice check: a policy server without inet: or unix: is an error naming it" $?
