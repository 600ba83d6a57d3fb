#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_rbl.sh - DNS lists of the client address, against a scripted DNS
# server on loopback (tests/system/dnsd.py, sluice_dns_servers), one
# master.cf service per restriction list: reject_rbl_client refuses a
# listed client at RCPT with Postfix's reply and log line (554 5.7.1
# Service unavailable; Client host [127.0.0.1] blocked using DOMAIN; TXT),
# without "; TXT" when the list has none; a reply filter (=127.0.0.3, or
# =127.0.0.[1..2]) picks the listings that count; a name that is not
# listed, or whose lookup fails (SERVFAIL: a warning, as Postfix), lets
# the client through; permit_dnswl_client ends its list with a permit;
# warn_if_reject only logs; the service without DNS lists asks nothing.
# A TXT record of 500 bytes, or with control bytes and a bad string
# length, gives a printable reason of at most 255 bytes. A client that
# leaves while its lookups run harms nothing. sluice check
# names a DNS list without a domain and a bad filter.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 19
setup

DP=$(free_port)
export DP
ZONE=$T/zone
cat >"$ZONE" <<'EOF'
1.0.0.127.bl.test A 127.0.0.2
1.0.0.127.bl.test TXT "listed: see http://bl.test/q?127.0.0.1"
1.0.0.127.bl2.test A 127.0.0.4
1.0.0.127.sf.test SERVFAIL
1.0.0.127.wl.test A 127.0.2.1
1.0.0.127.slow.test DELAY 0.3
1.0.0.127.slow.test A 127.0.0.2
1.0.0.127.long.test A 127.0.0.2
1.0.0.127.ctl.test A 127.0.0.2
1.0.0.127.ctl.test BADRDATA TXT 0461016209ff
EOF
# a TXT record of 500 bytes with UTF-8 in it (two character-strings)
printf '1.0.0.127.long.test TXT "%s%s%s"\n' "$(printf 'x%.0s' $(seq 200))" \
    "ééé" "$(printf 'y%.0s' $(seq 294))" >>"$ZONE"
start_dnsd "$ZONE" || diag "dnsd did not start: $(cat "$T/dnsd.out")"

# one service per case (lib.sh's svc)
SVCS=""
END=permit_mynetworks,reject_unauth_destination
svc bl "smtpd_recipient_restrictions=reject_rbl_client,bl.test,$END"
svc notxt "smtpd_recipient_restrictions=reject_rbl_client,bl2.test,$END"
svc filt "smtpd_recipient_restrictions=reject_rbl_client,bl.test=127.0.0.3,reject_rbl_client,bl2.test=127.0.0.[1..3;5],$END"
svc range "smtpd_recipient_restrictions=reject_rbl_client,bl.test=127.0.[0..1].[1;2],$END"
svc pass "smtpd_recipient_restrictions=reject_rbl_client,nl.test,reject_rbl_client,sf.test,$END"
svc wl "smtpd_recipient_restrictions=permit_dnswl_client,wl.test,reject_rbl_client,bl.test,$END"
svc warn "smtpd_recipient_restrictions=warn_if_reject,reject_rbl_client,bl.test,$END"
svc slow "smtpd_recipient_restrictions=reject_rbl_client,slow.test,$END"
svc long "smtpd_recipient_restrictions=reject_rbl_client,long.test,$END"
svc ctl "smtpd_recipient_restrictions=reject_rbl_client,ctl.test,$END"
MASTER_EXTRA=$SVCS
write_conf "sluice_dns_servers = 127.0.0.1:$DP" "sluice_dns_timeout = 10s"
start_ok
start_sink || diag "the sink did not start"

pytap <<'PY'
import re, socket, time
from sink import *

def rcpt(port, to="x@example.com"):
    c = Client(port)
    try:
        g = c.reply()
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<a@example.org>")
        r = c.cmd("RCPT TO:<%s>" % to)
        c.cmd("QUIT")
        return g, r
    finally:
        c.close()

P = lambda n: int(env("P_" + n))
BL = ("Service unavailable; Client host [127.0.0.1] blocked using bl.test; "
      "listed: see http://bl.test/q?127.0.0.1")
g, r = rcpt(P("bl"))
m = log_wait(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 "
             + re.escape(BL) + r"; from=<a@example\.org> to=<x@example\.com> "
             r"proto=ESMTP helo=<client\.test>$", 5)
tap(g.code == 220 and r.code == 554 and r.text == "554 5.7.1 " + BL and m,
    "reject_rbl_client bl.test, client listed with a TXT record: 554 5.7.1 "
    "Service unavailable; Client host [127.0.0.1] blocked using bl.test; "
    "<TXT>, and Postfix's NOQUEUE: reject: line", r, m)

# bad TXT records: 500 bytes with UTF-8, and control bytes with a string
# length running past the record's end: printable, bounded, no crash
g, r = rcpt(P("long"))
want = "x" * 200 + "??????" + "y" * 49
tap(r.code == 554 and r.text == "554 5.7.1 Service unavailable; Client host "
    "[127.0.0.1] blocked using long.test; " + want,
    "a TXT record of 500 bytes with UTF-8: the reason is its first 255 "
    "bytes, each non-ASCII byte shown as '?'", r)
g, r = rcpt(P("ctl"))
tap(r.code == 554 and r.text == "554 5.7.1 Service unavailable; Client host "
    "[127.0.0.1] blocked using ctl.test; a?b?",
    "a TXT record with control bytes and a string length past its end: "
    "'a?b?', the rest ignored", r)

g, r = rcpt(P("notxt"))
tap(r.code == 554 and r.text == "554 5.7.1 Service unavailable; Client host "
    "[127.0.0.1] blocked using bl2.test",
    "a listing without a TXT record: the reply ends with the domain", r)

g, r = rcpt(P("filt"))
tap(r.code == 250,
    "reply filters that the listings do not match (bl.test=127.0.0.3 for "
    "127.0.0.2, bl2.test=127.0.0.[1..3;5] for 127.0.0.4): accepted", r)

g, r = rcpt(P("range"))
tap(r.code == 554 and "blocked using bl.test" in r.text,
    "a filter that matches (bl.test=127.0.[0..1].[1;2] for 127.0.0.2): 554",
    r)

g, r = rcpt(P("pass"))
w = log_wait(r"warning: unknown\[127\.0\.0\.1\]: RBL lookup error: Host or "
             r"domain name not found\. Name service error for "
             r"name=1\.0\.0\.127\.sf\.test type=A: Host not found, try again$",
             5)
tap(r.code == 250 and w,
    "not listed (NXDOMAIN) and a failed lookup (SERVFAIL, with Postfix's "
    "RBL lookup error warning): accepted", r, "warning " +
    ("logged" if w else "missing"))

g, r = rcpt(P("wl"), "x@localhost")
tap(r.code == 250,
    "permit_dnswl_client wl.test before reject_rbl_client bl.test, the client "
    "in both, a recipient of ours: the permit ends the list, accepted", r)
g, r = rcpt(P("wl"))
tap(r.text.startswith("554 5.7.1 Service unavailable; Client host "
                      "[127.0.0.1] blocked using bl.test"),
    "  a recipient elsewhere: the allow list does not let a listed client "
    "relay (Postfix), reject_rbl_client bl.test refuses", r)

g, r = rcpt(P("warn"))
m = log_wait(r"NOQUEUE: reject_warning: RCPT from unknown\[127\.0\.0\.1\]: "
             r"554 5\.7\.1 Service unavailable; Client host \[127\.0\.0\.1\] "
             r"blocked using bl\.test", 5)
tap(r.code == 250 and m,
    "warn_if_reject reject_rbl_client bl.test: accepted, reject_warning "
    "logged", r)

# the service without DNS lists: no query at all for its sessions
before = open(env("T") + "/dns.log").read()
g, r = rcpt(int(env("PORT")))
time.sleep(0.5)
after = open(env("T") + "/dns.log").read()
tap(r.code == 250 and before == after,
    "the service without DNS lists: accepted, and no DNS query was made",
    r, after[len(before):])

# the slow list (answers after 0.3 s): the greeting waits for it
t0 = time.time()
g, r = rcpt(P("slow"))
dt = time.time() - t0
tap(g.code == 220 and r.code == 554 and "slow.test" in r.text,
    "a list that answers after 0.3 s: greeted once the answer is in, then "
    "554 at RCPT (%.1f s)" % dt, g, r)

# a client that leaves while its lookup runs
s = socket.create_connection(("127.0.0.1", P("slow")))
s.close()
time.sleep(1)
g, r = rcpt(P("bl"))
tap(r.code == 554,
    "a client gone before its DNS list answered: the front goes on "
    "(the next client is refused as before)", r)

# a message that passes, delivered whole
body = b"Subject: rbl\r\n\r\nnot listed anywhere\r\n"
r = send_mail(P("pass"), "a@example.org", ["x@example.com"], body)
got = sink_find(r"not listed anywhere", secs=15)
tap(r.code == 250 and got and got[1].endswith(body),
    "through the service whose lists do not list the client: queued and "
    "delivered byte for byte", r)
PY
check "sluiced is still running (its sanitizer report, if any, is checked at exit)" alive "$MASTERPID"
stop_sluiced

# --- sluice check
MASTER_EXTRA=""
# check_list DESC WANT LIST [ERE]: sluice check with that recipient list
# exits WANT (0 or 1) and its output matches ERE (or, WANT 0, says
# nothing is not implemented)
check_list()
{
    local desc=$1 want=$2 list=$3 rx=${4:-} out rc good=0
    write_conf "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination, $list"
    out=$(sl check 2>&1)
    rc=$?
    if [ "$want" = 0 ]; then
        [ $rc -eq 0 ] && ! printf '%s' "$out" | grep -q 'not implemented' && good=1
    else
        [ $rc -ne 0 ] && printf '%s' "$out" | grep -Eq -- "$rx" && good=1
    fi
    if [ $good = 1 ]; then ok "sluice check: $desc"; else
        not_ok "sluice check: $desc"
        diag "exit $rc" "$out"
    fi
}
check_list "reject_rbl_client without a domain is an error" 1 \
    "reject_rbl_client" 'reject_rbl_client: missing DNS list domain'
check_list "a bad reply filter (127.0.0) is an error naming it" 1 \
    "reject_rbl_client bl.test=127.0.0" 'bad reply filter "127\.0\.0"'
check_list "reject_rbl_client and permit_dnswl_client with filters, no not-implemented warning" 0 \
    "reject_rbl_client zen.spamhaus.org, permit_dnswl_client list.dnswl.org=127.0.[0..255].[1..3]"
