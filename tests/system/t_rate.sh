#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_rate.sh - the per-client rate limits of Postfix's anvil(8), with its
# replies and warnings (anvil_rate_time_unit = 3s here):
#   smtpd_client_connection_rate_limit: 421 4.7.0 ... too many connections
#   smtpd_client_message_rate_limit: 450 4.7.1 Error: too much mail from A
#   smtpd_client_recipient_rate_limit: 450 4.7.1 ... too many recipients
#   smtpd_client_new_tls_session_rate_limit: STARTTLS gets 454 4.7.0
# each with "warning: ... rate limit exceeded: N from CLIENT for service
# S"; a new window after the time unit; smtpd_client_event_limit_exceptions
# exempts a client.
. "$(dirname "$0")/lib.sh"
need_binaries
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
"$PYTHON3" -c 'import ssl' 2>/dev/null || skip_all "python3 has no ssl module"
plan 10
setup

tls_selfsigned srv localhost
SVCS=""
svc conn smtpd_client_connection_rate_limit=2
svc mail smtpd_client_message_rate_limit=2
svc rcpt smtpd_client_recipient_rate_limit=3
svc tls smtpd_client_new_tls_session_rate_limit=1 smtpd_tls_security_level=may \
    "smtpd_tls_cert_file=$T/srv.crt" "smtpd_tls_key_file=$T/srv.key"
svc exc smtpd_client_message_rate_limit=1 smtpd_client_event_limit_exceptions=127.0.0.0/8
MASTER_EXTRA=$SVCS
write_conf "anvil_rate_time_unit = 3s" "smtpd_client_event_limit_exceptions ="
start_ok

pytap <<'PY'
import re, smtplib, ssl, time
from sink import *

P = lambda n: int(env("P_" + n))

def greeting(port):
    c = Client(port)
    try:
        return c.reply()
    finally:
        c.close()

def mails(port, n, rcpts=1):
    """n transactions on one connection: the MAIL and RCPT replies."""
    c = Client(port)
    out = []
    try:
        c.reply()
        c.cmd("EHLO client.test")
        for i in range(n):
            out.append(c.cmd("MAIL FROM:<a%d@example.org>" % i).text)
            for k in range(rcpts):
                out.append(c.cmd("RCPT TO:<r%d@localhost>" % k).text)
            c.cmd("RSET")
        c.cmd("QUIT")
    finally:
        c.close()
    return out

g = [greeting(P("conn")) for _ in range(3)]
w = log_wait(r"warning: Connection rate limit exceeded: 3 from "
             r"unknown\[127\.0\.0\.1\] for service 127\.0\.0\.1:%d$" % P("conn"), 5)
tap([x.code for x in g] == [220, 220, 421]
    and g[2].text == "421 4.7.0 mx.test.example Error: too many connections "
    "from 127.0.0.1" and w,
    "smtpd_client_connection_rate_limit = 2: the third connection gets 421 "
    "4.7.0 ... too many connections from 127.0.0.1, and Postfix's warning",
    *g)

m = mails(P("mail"), 3)
w = log_wait(r"warning: Message delivery request rate limit exceeded: 3 from "
             r"unknown\[127\.0\.0\.1\] for service 127\.0\.0\.1:%d$" % P("mail"), 5)
tap(m[0] == m[2] == "250 2.1.0 Ok"
    and m[4] == "450 4.7.1 Error: too much mail from 127.0.0.1" and w,
    "smtpd_client_message_rate_limit = 2: the third MAIL FROM gets 450 4.7.1 "
    "Error: too much mail from 127.0.0.1, and the warning", m)
m = mails(P("mail"), 1)
tap(m[0] == "450 4.7.1 Error: too much mail from 127.0.0.1",
    "  the count is the client's, not the connection's: a new connection "
    "is refused too", m)
time.sleep(3.5)
m = mails(P("mail"), 1)
tap(m[0] == "250 2.1.0 Ok", "  after anvil_rate_time_unit (3s) a new window: "
    "accepted again", m)

m = mails(P("rcpt"), 1, rcpts=4)
w = log_wait(r"warning: Recipient address rate limit exceeded: 4 from "
             r"unknown\[127\.0\.0\.1\] for service", 5)
tap(m[1:4] == ["250 2.1.5 Ok"] * 3
    and m[4] == "450 4.7.1 Error: too many recipients from 127.0.0.1" and w,
    "smtpd_client_recipient_rate_limit = 3: the fourth RCPT TO gets 450 "
    "4.7.1 Error: too many recipients from 127.0.0.1", m)

m = mails(P("exc"), 3)
tap(m[0] == m[2] == m[4] == "250 2.1.0 Ok",
    "smtpd_client_event_limit_exceptions = 127.0.0.0/8: no limit for the "
    "client", m)

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def starttls(port):
    s = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        s.ehlo("client.test")
        code, text = s.docmd("STARTTLS")
        if code == 220:
            s.sock = ctx.wrap_socket(s.sock)
            s.file = None
            code2, _ = s.ehlo("client.test")
            return "%d %s" % (code, text.decode()), code2
        return "%d %s" % (code, text.decode()), None
    finally:
        try:
            s.close()
        except Exception:
            pass

a = starttls(P("tls"))
b = starttls(P("tls"))
wb = log_wait(r"warning: New TLS session rate limit exceeded: 2 from "
              r"unknown\[127\.0\.0\.1\] for service 127\.0\.0\.1:%d$" % P("tls"), 5)
c = starttls(P("tls"))
wc = log_wait(r"warning: Refusing STARTTLS request from unknown\[127\.0\.0\.1\] "
              r"for service 127\.0\.0\.1:%d$" % P("tls"), 5)
tap(a[0].startswith("220") and a[1] == 250 and b[0].startswith("220")
    and b[1] == 421 and wb
    and c[0] == "454 4.7.0 Error: too many new TLS sessions from "
    "unknown[127.0.0.1]" and wc,
    "smtpd_client_new_tls_session_rate_limit = 1, as Postfix: the first "
    "TLS session is served; the second is made, then 421 4.7.0 (New TLS "
    "session rate limit exceeded: 2); the third STARTTLS gets 454 4.7.0 "
    "Error: too many new TLS sessions (Refusing STARTTLS request)", a, b, c)
PY
check "sluiced is still running" alive "$MASTERPID"

stop_sluiced
write_conf "smtpd_client_message_rate_limit = many"
out=$(sl check 2>&1)
rc=$?
[ $rc -ne 0 ] && printf '%s' "$out" | grep -q 'smtpd_client_message_rate_limit'
result "sluice check: a rate limit that is not a number is an error naming it" $?
