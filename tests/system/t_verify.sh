#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_verify.sh - reject_unverified_recipient and reject_unverified_sender,
# as a front MX uses them to ask the next hop before it accepts:
#   - a recipient the next hop (the sink) accepts: the first RCPT waits
#     while the queue manager probes (MAIL FROM:<double-bounce@myorigin>,
#     RCPT, QUIT: no DATA), then 250; the probe is logged
#     status=deliverable; the mail itself is then delivered;
#   - one the next hop refuses: 450 4.1.1 (Postfix's default
#     unverified_recipient_reject_code; a 4xx code says "unverified
#     address", as Postfix's does) "unverified address: host ... said:
#     550 ..."; with the code 550 on another service 550 5.1.1
#     "undeliverable address: ...", from the cache (no second probe);
#     unverified_recipient_reject_reason replaces the probe's text;
#   - a next hop that does not answer in time: 450 4.1.1 "unverified
#     address: Address verification in progress", and once the probe is
#     done, 250;
#   - a next hop that is down: the probe's connection failure, 450 4.1.1
#     "unverified address: connect to ...";
#   - local mail: deliverable (the local agent takes any name);
#   - reject_unverified_sender: 550 5.1.7 "Sender address rejected:
#     undeliverable address"; the null sender is not probed;
#   - address_verify_map: a cache made by Postfix's postmap (its
#     verify_cache format) is read at start: its address is answered
#     without a probe; at stop the answers are written back, and
#     Postfix's postmap -s reads them.
. "$(dirname "$0")/lib.sh"
need_binaries
POSTMAP=$(PATH=$PATH:/usr/sbin:/sbin command -v postmap) ||
    skip_all "postmap not installed (Debian package postfix)"
plan 15
setup
# a Postfix verify_cache entry: status 0 (ok), probed, updated, text
printf 'cached@example.com 0:0:%s:250 2.1.5 from the file\n' "$(date +%s)" \
    >"$T/verify_cache"
mkdir -p "$T/pf" # Postfix's commands want a main.cf; an empty one will do
: >"$T/pf/main.cf"
"$POSTMAP" -c "$T/pf" btree:"$T/verify_cache" || diag "postmap failed"

start_sink "$SINKPORT" "$SINKDIR" --rcpt-match '^bad' \
    --rcpt-reply "550 5.1.1 <bad> User unknown" \
    --rcpt-delay-match '^slow' --rcpt-delay 4 ||
    diag "sink did not start: $(cat "$T/sink.out")"
DOWN=$(free_port)
export DOWN

SVCS=""
svc c550 unverified_recipient_reject_code=550
svc why "{ unverified_recipient_reject_reason = Address lookup failed }"
svc snd smtpd_sender_restrictions=reject_unverified_sender \
    unverified_sender_reject_code=550 "smtpd_recipient_restrictions=permit"
MASTER_EXTRA=$SVCS
write_conf "relay_domains = example.com, down.example" \
    "transport_maps = inline:{down.example=smtp:[127.0.0.1]:$DOWN}" \
    "smtpd_recipient_restrictions = reject_unauth_destination, reject_unverified_recipient" \
    "address_verify_poll_delay = 1s" \
    "address_verify_map = btree:$T/verify_cache" \
    "address_verify_poll_count = 2"
start_ok

pytap <<'PY'
import os, re, time
from sink import *

P = int(env("PORT"))
T = env("T")
SP = env("SINKPORT")

def sinklog():
    try:
        return open(os.path.join(env("SINKDIR"), "sink.log")).read()
    except FileNotFoundError:
        return ""

def rcpt(port, to, sender="a@example.org"):
    return mail_rcpt(port, sender, to)

r = rcpt(P, "cached@example.com")
tap(r[1].code == 250 and "cached@" not in sinklog(),
    "address_verify_map: an answer Postfix's postmap wrote is used, no probe",
    r)

r = rcpt(P, "good@example.com")
l = log_wait(r"([0-9A-F]+): to=<good@example\.com>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%s, "
             r"delay=[0-9.]+, delays=[0-9./]+, dsn=2\.1\.5, status=deliverable "
             r"\(250 2\.1\.5 Ok\)" % SP, 10)
pid = l.group(1) if l else "-"
q = log_wait(r"%s: from=<double-bounce@mx\.test\.example>, size=0, nrcpt=1 "
             r"\(address verification probe\)" % pid, 2)
tap(r[1].code == 250 and l and q,
    "a recipient the next hop takes: 250 after the probe, logged "
    "status=deliverable (250 2.1.5 Ok) from double-bounce@$myorigin", r, l, q)
sl = sinklog()
tap("MAIL FROM:<double-bounce@mx.test.example>" in sl
    and "RCPT TO:<good@example.com>" in sl and "DATA" not in sl,
    "  the probe: MAIL FROM:<double-bounce@...>, RCPT TO, no DATA", sl)

r = send_mail(P, "a@example.org", ["good@example.com"],
              b"Subject: hello\r\n\r\nbody\r\n")
tap(r.code == 250 and len(wait_eml(env("SINKDIR"), 1, 10)) == 1,
    "  the mail itself is then accepted and delivered (the answer is cached)",
    r)

r = rcpt(P, "bad@example.com")
why = ("host 127.0.0.1[127.0.0.1] said: 550 5.1.1 <bad> User unknown (in "
       "reply to RCPT TO command)")
l = log_wait(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 450 4\.1\.1 "
             r"<bad@example\.com>: Recipient address rejected: unverified "
             r"address: host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550", 5)
tap(r[1].code == 450 and r[1].lines[0] == "4.1.1 <bad@example.com>: Recipient "
    "address rejected: unverified address: " + why and l,
    "one the next hop refuses, with Postfix's default code 450: 450 4.1.1 ... "
    "unverified address: host ... said: 550 ..., and the reject line", r, l)

r = rcpt(int(env("P_c550")), "bad@example.com")
tap(r[1].code == 550 and r[1].lines[0] == "5.1.1 <bad@example.com>: Recipient "
    "address rejected: undeliverable address: " + why
    and sinklog().count("RCPT TO:<bad@example.com>") == 1,
    "  unverified_recipient_reject_code = 550: 550 5.1.1, from the cache "
    "(the next hop was asked once)", r)

r = rcpt(int(env("P_why")), "bad@example.com")
tap(r[1].code == 450 and r[1].lines[0] == "4.1.1 <bad@example.com>: Recipient "
    "address rejected: unverified address: Address lookup failed",
    "  unverified_recipient_reject_reason replaces the probe's text", r)

t0 = time.time()
r = rcpt(P, "slow@example.com")
took = time.time() - t0
tap(r[1].code == 450 and r[1].lines[0] == "4.1.1 <slow@example.com>: Recipient "
    "address rejected: unverified address: Address verification in progress"
    and 0.8 < took < 3.5,
    "a next hop slower than the polls (2 x 1 s): 450 4.1.1 unverified "
    "address: Address verification in progress (after %.1f s)" % took, r)
l = log_wait(r"to=<slow@example\.com>, relay=.*status=deliverable", 10)
r = rcpt(P, "slow@example.com")
tap(l and r[1].code == 250, "  once its probe is done: 250", r)

r = rcpt(P, "x@down.example")
tap(r[1].code == 450 and re.match(
    r"4\.1\.1 <x@down\.example>: Recipient address rejected: unverified "
    r"address: connect to 127\.0\.0\.1\[127\.0\.0\.1\]:%s: Connection "
    r"refused$" % env("DOWN"), r[1].lines[0])
    and log_wait(r"to=<x@down\.example>, relay=none, .*status=undeliverable "
                 r"\(connect to", 2),
    "a next hop that is down: 450 4.1.1 unverified address: connect to ... "
    "Connection refused, logged status=undeliverable", r)

r = rcpt(P, "someone@localhost")
tap(r[1].code == 250 and log_wait(
    r"to=<someone@localhost>, relay=local, .*status=deliverable "
    r"\(delivers to mailbox\)", 5),
    "local mail: deliverable (delivers to mailbox)", r)

r = rcpt(int(env("P_snd")), "good@example.com", sender="bad@example.com")
tap(r[1].code == 550 and r[1].lines[0] == "5.1.7 <bad@example.com>: Sender "
    "address rejected: undeliverable address: host 127.0.0.1[127.0.0.1] "
    "said: 550 5.1.1 <bad> User unknown (in reply to RCPT TO command)",
    "reject_unverified_sender: 550 5.1.7 Sender address rejected: "
    "undeliverable address", r)

r = rcpt(int(env("P_snd")), "good@example.com", sender="")
tap(r[1].code == 250 and sinklog().count("MAIL FROM:<>") == 0
    and not re.search(r"to=<>,", read_log()),
    "  the null sender is not probed", r)
PY
wait_for 10 queue_empty
stop_sluiced
dump=$("$POSTMAP" -c "$T/pf" -s btree:"$T/verify_cache" 2>&1)
like "at stop the cache is saved: Postfix's postmap -s reads it" "$dump" \
    "good@example\.com[[:space:]]+0:0:[0-9]+:250 2\.1\.5 Ok"
result
