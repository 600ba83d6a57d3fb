#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_session_restrictions.sh - the restrictions that judge the session
# rather than a name, with Postfix's replies and codes:
#   - reject_plaintext_session: 450 4.7.1 Session encryption is required
#     in clear, nothing after STARTTLS (Python's smtplib over TLS);
#   - reject_multi_recipient_bounce: the null sender's second RCPT gets
#     550 5.5.3 ... Multi-recipient bounce; in smtpd_data_restrictions,
#     DATA with more than one recipient;
#   - check_sasl_access: the SASL login name (Dovecot's alice) in a table;
#   - reject_known_sender_login_mismatch: a sender smtpd_sender_login_maps
#     lists must be its owner's, other senders pass;
#   - smtpd_client_auth_rate_limit: 450 4.7.1 Error: too many AUTH
#     commands from A, and Postfix's warning.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/dovecot_lib.sh"
need_binaries
need_dovecot
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
"$PYTHON3" -c 'import ssl' 2>/dev/null || skip_all "python3 has no ssl module"
plan 15
setup

tls_selfsigned srv localhost
if dovecot_conf && start_dovecot; then
    ok "a private Dovecot answers on $DOVESOCK"
else
    not_ok "a private Dovecot answers on $DOVESOCK"
fi
printf '%s\n' "alice@example.org alice" >"$T/logins"

SASL="smtpd_sasl_auth_enable=yes smtpd_sasl_type=dovecot smtpd_sasl_path=$T/auth"
SVCS=""
# shellcheck disable=SC2086 # SASL is words
svc plain smtpd_tls_security_level=may smtpd_tls_cert_file=$T/srv.crt \
    smtpd_tls_key_file=$T/srv.key \
    smtpd_recipient_restrictions=reject_plaintext_session,permit_auth_destination,reject
svc multi smtpd_recipient_restrictions=reject_multi_recipient_bounce,permit_auth_destination,reject
svc multid smtpd_data_restrictions=reject_multi_recipient_bounce
# shellcheck disable=SC2086
svc sasl $SASL "{ smtpd_recipient_restrictions = check_sasl_access inline:{ { alice = REJECT account on hold } }, permit_sasl_authenticated, permit_auth_destination, reject }"
# shellcheck disable=SC2086
svc known $SASL smtpd_sender_restrictions=reject_known_sender_login_mismatch
# shellcheck disable=SC2086
svc authr $SASL smtpd_client_auth_rate_limit=1
MASTER_EXTRA=$SVCS
write_conf "clamav_enable = no" "smtpd_sender_login_maps = texthash:$T/logins" \
    "mynetworks = 192.0.2.0/24"
start_ok
start_sink || diag "the sink did not start"

pytap <<'PY'
import base64, smtplib, ssl
from sink import *

P = lambda n: int(env("P_" + n))

def session(port, mail, rcpts, auth=None, data=False):
    """The replies ("CODE TEXT") to MAIL, each RCPT and (data) DATA."""
    c = Client(port)
    out = []
    try:
        c.reply()
        c.cmd("EHLO client.test")
        if auth:
            ir = base64.b64encode(("\0%s\0%s" % auth).encode()).decode()
            out.append(str(c.cmd("AUTH PLAIN " + ir).code))
        out.append(c.cmd("MAIL FROM:<%s>" % mail).text)
        for r in rcpts:
            out.append(c.cmd("RCPT TO:<%s>" % r).text)
        if data:
            out.append(c.cmd("DATA").text)
        c.cmd("QUIT")
    finally:
        c.close()
    return out

# --- reject_plaintext_session
s = session(P("plain"), "a@example.org", ["x@localhost"])
tap(s[1] == "450 4.7.1 Session encryption is required",
    "reject_plaintext_session in clear: 450 4.7.1 Session encryption is "
    "required", s)
l = log_wait(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 450 4\.7\.1 "
             r"Session encryption is required; from=<a@example\.org> "
             r"to=<x@localhost>", 5)
tap(l, "  and Postfix's NOQUEUE: reject: line")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = smtplib.SMTP("127.0.0.1", P("plain"), timeout=10)
m.ehlo("client.test")
m.starttls(context=ctx)
m.ehlo("client.test")
m.mail("a@example.org")
code, text = m.rcpt("x@localhost")
m.quit()
tap(code == 250, "  after STARTTLS (smtplib): the recipient is accepted",
    code, text)

# --- reject_multi_recipient_bounce
s = session(P("multi"), "", ["x@localhost", "y@localhost"])
tap(s[1:] == ["250 2.1.5 Ok", "550 5.5.3 <y@localhost>: Recipient address "
              "rejected: Multi-recipient bounce"],
    "reject_multi_recipient_bounce: the null sender's first recipient "
    "accepted, the second 550 5.5.3 ... Multi-recipient bounce", s)
s = session(P("multi"), "a@example.org", ["x@localhost", "y@localhost"])
tap(s[1:] == ["250 2.1.5 Ok", "250 2.1.5 Ok"],
    "  a sender that is not <>: both recipients accepted", s)
s = session(P("multid"), "", ["x@localhost", "y@localhost"], data=True)
tap(s[3] == "550 5.5.3 <DATA>: Data command rejected: Multi-recipient "
    "bounce", "  in smtpd_data_restrictions: DATA with two recipients: "
    "550 5.5.3 <DATA>: Data command rejected: Multi-recipient bounce", s)
r = send_mail(P("multid"), "", ["x@localhost"],
              b"Subject: bounce\r\n\r\none recipient bounce\r\n")
tap(r.code == 250, "  a bounce to one recipient is queued", r)

# --- check_sasl_access
s = session(P("sasl"), "a@example.org", ["x@other.example"],
            auth=("alice", "alice-secret"))
tap(s[0] == "235" and s[2] == "554 5.7.1 <alice>: SASL login name "
    "rejected: account on hold",
    "check_sasl_access: alice logged in, her name in the table: 554 5.7.1 "
    "<alice>: SASL login name rejected: account on hold", s)
s = session(P("sasl"), "a@example.org", ["x@localhost"])
tap(s[1] == "250 2.1.5 Ok", "  not logged in: no login name to look up, "
    "accepted for a local recipient", s)

# --- reject_known_sender_login_mismatch
s = session(P("known"), "alice@example.org", ["x@localhost"])
tap(s[1] == "553 5.7.1 <alice@example.org>: Sender address rejected: not "
    "logged in",
    "reject_known_sender_login_mismatch: a listed sender in clear: 553 "
    "5.7.1 ... not logged in", s)
s = session(P("known"), "nobody@example.org", ["x@localhost"])
tap(s[1] == "250 2.1.5 Ok", "  a sender the maps do not list: accepted "
    "(reject_sender_login_mismatch would not)", s)

# --- smtpd_client_auth_rate_limit
c = Client(P("authr"))
c.reply()
c.cmd("EHLO client.test")
bad = base64.b64encode(b"\0alice\0wrong").decode()
r1 = c.cmd("AUTH PLAIN " + bad)
r2 = c.cmd("AUTH PLAIN " + bad)
c.close()
w = log_wait(r"warning: AUTH command rate limit exceeded: 2 from "
             r"unknown\[127\.0\.0\.1\] for service 127\.0\.0\.1:%d$" % P("authr"), 5)
tap(r1.code == 535 and r2.text == "450 4.7.1 Error: too many AUTH commands "
    "from 127.0.0.1" and w,
    "smtpd_client_auth_rate_limit = 1: the second AUTH gets 450 4.7.1 "
    "Error: too many AUTH commands from 127.0.0.1, and the warning", r1, r2)
PY
check "sluiced is still running" alive "$MASTERPID"
