#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_dns_restrictions.sh - the restrictions that look the sender, the
# recipient or the HELO name up in DNS, against a scripted DNS server on
# loopback (tests/system/dnsd.py, sluice_dns_servers), one master.cf
# service per list, with Postfix's replies and log lines:
#   reject_unknown_sender_domain: a domain with MX, A or AAAA passes;
#     NXDOMAIN: 450 4.1.8 ... Domain not found; a null MX: 550 5.7.27 ...
#     (nullMX); SERVFAIL: 450 only when the request would pass
#     (defer_if_permit), a later reject wins; our own domain (mydestination)
#     and <> are not looked up; a lookup that never answers costs
#     sluice_dns_timeout, then 450.
#   reject_unknown_recipient_domain: 450 4.1.2, null MX 556 5.1.10.
#   reject_unknown_helo_hostname: 450 4.7.1 ... Helo command rejected:
#     Host not found; a name with an MX or a literal passes.
#   reject_rhsbl_sender / _recipient / _helo: 554 5.7.1 Service
#     unavailable; Sender address [a@spam.test] blocked using dbl.test; TXT.
# A command that waits for DNS holds the pipelined ones behind it, in
# order; a client that leaves while its lookup runs harms nothing; a WARN
# logged before a lookup is logged once, not again when the list runs
# again with the answer; warn_if_reject only logs.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 26
setup

DP=$(free_port)
export DP
ZONE=$T/zone
cat >"$ZONE" <<'EOF'
good.test MX 10 mx.good.test
mx.good.test A 127.0.0.9
aonly.test A 127.0.0.9
v6only.test AAAA ::9
null.test MX 0 .
sf.test SERVFAIL
badmx.test BADRDATA MX 000a03666f6f
drop.test DROP
slow.test DELAY 0.4
slow.test A 127.0.0.9
spam.test MX 10 mx.good.test
spam.test.dbl.test A 127.0.1.2
spam.test.dbl.test TXT "https://dbl.test/lookup?spam.test"
spam.test.rhs.test A 127.0.0.2
EOF
start_dnsd "$ZONE" || diag "dnsd did not start: $(cat "$T/dnsd.out")"

SVCS=""
END=permit_mynetworks,reject_unauth_destination
svc sndr "smtpd_recipient_restrictions=reject_unknown_sender_domain,$END"
svc relay "smtpd_recipient_restrictions=reject_unknown_sender_domain,reject_unauth_destination"
svc rcpt "smtpd_recipient_restrictions=reject_unknown_recipient_domain,$END"
svc helo "smtpd_helo_restrictions=reject_unknown_helo_hostname"
svc rhs "smtpd_recipient_restrictions=reject_rhsbl_helo,dbl.test,reject_rhsbl_sender,dbl.test=127.0.1.[1..3],reject_rhsbl_recipient,rhs.test,$END"
echo "a@nx.test WARN seen" >"$T/warn"
svc warn "smtpd_recipient_restrictions=check_sender_access,texthash:$T/warn,warn_if_reject,reject_unknown_sender_domain,$END"
MASTER_EXTRA=$SVCS
write_conf "sluice_dns_servers = 127.0.0.1:$DP" "sluice_dns_timeout = 2s"
start_ok
start_sink || diag "the sink did not start"

pytap <<'PY'
import re, socket, time
from sink import *

P = lambda n: int(env("P_" + n))

def rcpt(port, sender, to="x@example.com", helo="client.test"):
    return mail_rcpt(port, sender, to, helo)

def dnslog():
    return open(env("T") + "/dns.log").read()

# --- reject_unknown_sender_domain
ok = [rcpt(P("sndr"), "a@" + d)[1] for d in ("good.test", "aonly.test", "v6only.test")]
tap(all(r.code == 250 for r in ok),
    "reject_unknown_sender_domain: a sender domain with an MX, with only an "
    "A, with only an AAAA record: accepted", *ok)

m, r = rcpt(P("sndr"), "a@nx.test")
want = "450 4.1.8 <a@nx.test>: Sender address rejected: Domain not found"
l = log_wait(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: " + re.escape(want)
             + r"; from=<a@nx\.test> to=<x@example\.com> proto=ESMTP helo=<client\.test>$", 5)
tap(m.code == 250 and r.text == want and l,
    "a sender domain that does not exist (NXDOMAIN): " + want +
    ", and Postfix's NOQUEUE: reject: line", m, r)

m, r = rcpt(P("sndr"), "a@null.test")
tap(r.text == "550 5.7.27 <a@null.test>: Sender address rejected: Domain "
    "null.test does not accept mail (nullMX)",
    "a sender domain with a null MX (RFC 7505): 550 5.7.27 ... does not "
    "accept mail (nullMX)", r)

m, r = rcpt(P("sndr"), "a@badmx.test")
tap(r.text == "450 4.1.8 <a@badmx.test>: Sender address rejected: Domain not "
    "found",
    "an MX record whose name runs past its end: lib/dns takes the answer "
    "for a temporary failure, so 450 4.1.8 (defer_if_permit), no crash", r)

m, r = rcpt(P("sndr"), "a@sf.test")
tap(r.text == "450 4.1.8 <a@sf.test>: Sender address rejected: Domain not found",
    "SERVFAIL for the sender domain, the request otherwise allowed: "
    "deferred (450 4.1.8, defer_if_permit)", r)

m, r = rcpt(P("relay"), "a@sf.test")
tap(r.text == "554 5.7.1 <x@example.com>: Relay access denied",
    "SERVFAIL for the sender domain but relaying denied later in the list: "
    "the 554 wins over the deferral", r)

before = dnslog()
rs = [rcpt(P("sndr"), "a@localhost")[1], rcpt(P("sndr"), "")[1]]
time.sleep(0.3)
tap(all(r.code == 250 for r in rs) and dnslog() == before,
    "a sender in mydestination and the null sender: accepted, and no DNS "
    "query was made", *rs)

t0 = time.time()
m, r = rcpt(P("sndr"), "a@drop.test")
dt = time.time() - t0
tap(r.text == "450 4.1.8 <a@drop.test>: Sender address rejected: Domain not "
    "found" and dt >= 1.5,
    "a DNS server that never answers: 450 after sluice_dns_timeout (2 s; "
    "took %.1f s)" % dt, r)

# --- reject_unknown_recipient_domain
m, r = rcpt(P("rcpt"), "a@example.org", "x@nx.test")
tap(r.text == "450 4.1.2 <x@nx.test>: Recipient address rejected: Domain not found",
    "reject_unknown_recipient_domain, NXDOMAIN: 450 4.1.2", r)
m, r = rcpt(P("rcpt"), "a@example.org", "x@null.test")
tap(r.text == "556 5.1.10 <x@null.test>: Recipient address rejected: Domain "
    "null.test does not accept mail (nullMX)",
    "reject_unknown_recipient_domain, null MX: 556 5.1.10", r)
m, r = rcpt(P("rcpt"), "a@example.org", "x@good.test")
tap(r.code == 250, "reject_unknown_recipient_domain, a domain with an MX: "
    "accepted", r)

# --- reject_unknown_helo_hostname
m, r = rcpt(P("helo"), "a@example.org", helo="nohost.test")
tap(r.text == "450 4.7.1 <nohost.test>: Helo command rejected: Host not found",
    "reject_unknown_helo_hostname, a HELO name without A, AAAA or MX: "
    "450 4.7.1 ... Host not found", r)
rs = [rcpt(P("helo"), "a@example.org", helo=h)[1]
      for h in ("good.test", "aonly.test", "[127.0.0.1]")]
tap(all(r.code == 250 for r in rs),
    "reject_unknown_helo_hostname: a name with an MX, one with an A record, "
    "an address literal: accepted", *rs)

# --- reject_rhsbl_*
m, r = rcpt(P("rhs"), "a@spam.test")
want = ("554 5.7.1 Service unavailable; Sender address [a@spam.test] "
        "blocked using dbl.test; https://dbl.test/lookup?spam.test")
l = log_wait(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: " + re.escape(want), 5)
tap(r.text == want and l,
    "reject_rhsbl_sender dbl.test=127.0.1.[1..3], the sender domain listed "
    "at 127.0.1.2 with a TXT record: " + want, r)
m, r = rcpt(P("rhs"), "a@good.test", "x@spam.test")
tap(r.text == "554 5.7.1 Service unavailable; Recipient address "
    "[x@spam.test] blocked using rhs.test",
    "reject_rhsbl_recipient rhs.test, the recipient domain listed without "
    "TXT: 554 ... blocked using rhs.test", r)
m, r = rcpt(P("rhs"), "a@good.test", helo="spam.test")
tap(r.text == "554 5.7.1 Service unavailable; Helo command [spam.test] "
    "blocked using dbl.test; https://dbl.test/lookup?spam.test",
    "reject_rhsbl_helo dbl.test, the HELO name listed: 554 ... Helo "
    "command [spam.test] blocked", r)
m, r = rcpt(P("rhs"), "a@good.test")
q = [l for l in dnslog().splitlines() if "dbl.test" in l or "rhs.test" in l]
tap(r.code == 250 and "udp A good.test.dbl.test" in q
    and "udp A client.test.dbl.test" in q and "udp A example.com.rhs.test" in q,
    "nothing listed: accepted; the names asked were HELO.dbl.test, "
    "SENDERDOMAIN.dbl.test, RCPTDOMAIN.rhs.test", r, q[-6:])

# --- logs: held while a list waits, said once
m, r = rcpt(P("warn"), "a@nx.test")
time.sleep(0.3)
w = [l for l in read_log().splitlines() if re.search(
    r"NOQUEUE: warn: RCPT from unknown\[127\.0\.0\.1\]: seen;", l)]
rw = log_wait(r"NOQUEUE: reject_warning: RCPT from unknown\[127\.0\.0\.1\]: "
              r"450 4\.1\.8 <a@nx\.test>: Sender address rejected: Domain not "
              r"found;", 5)
tap(r.code == 250 and len(w) == 1 and rw,
    "a WARN before the DNS lookup is logged once (the list ran twice); "
    "warn_if_reject reject_unknown_sender_domain: accepted, "
    "reject_warning logged", r, w)

# --- pipelining: the commands behind a lookup wait their turn
c = Client(P("sndr"))
c.reply()
c.cmd("EHLO client.test")
t0 = time.time()
c.send("MAIL FROM:<a@slow.test>\r\nRCPT TO:<x@example.com>\r\n"
       "RCPT TO:<y@example.com>\r\nRCPT TO:<z@example.com>\r\nDATA\r\n")
rs = [c.reply() for _ in range(4)]
d = c.reply()
c.send(dotstuff(b"Subject: slow\r\n\r\nafter three slow lookups\r\n"))
e = c.reply()
c.cmd("QUIT")
c.close()
dt = time.time() - t0
tap([x.code for x in rs] == [250, 250, 250, 250] and d.code == 354
    and e.code == 250 and dt > 1.0,
    "pipelined MAIL, 3 RCPT, DATA behind lookups that take 0.4 s each: "
    "the replies come in order (250 x4, 354), the message is queued "
    "(%.1f s)" % dt, *(rs + [d, e]))
got = sink_find(r"after three slow lookups", secs=15)
tap(got and got[1].endswith(b"after three slow lookups\r\n")
    and all(x + "@example.com" in got[0] for x in "xyz"),
    "  and delivered whole to the three recipients", got[0] if got else None)

# --- a client gone while its lookup runs
s = socket.create_connection(("127.0.0.1", P("sndr")))
s.recv(1000)
s.sendall(b"EHLO client.test\r\nMAIL FROM:<a@slow.test>\r\nRCPT TO:<x@example.com>\r\n")
time.sleep(0.1)
s.close()
time.sleep(0.8)
m, r = rcpt(P("sndr"), "a@nx.test")
tap(r.code == 450,
    "a client that leaves while its RCPT's lookup runs: the front goes on "
    "(the next client gets its 450)", r)

r = send_mail(P("sndr"), "a@good.test", ["x@example.com"],
              b"Subject: known\r\n\r\nknown sender domain\r\n")
got = sink_find(r"known sender domain", secs=15)
tap(r.code == 250 and got and got[1].endswith(b"known sender domain\r\n"),
    "a message from a known sender domain: queued and delivered byte for "
    "byte", r)
PY
check "sluiced is still running" alive "$MASTERPID"
stop_sluiced

MASTER_EXTRA=""
write_conf "smtpd_recipient_restrictions = reject_unauth_destination, reject_rhsbl_sender"
out=$(sl check 2>&1)
rc=$?
[ $rc -ne 0 ] && printf '%s' "$out" | grep -q 'reject_rhsbl_sender: missing DNS list domain'
result "sluice check: reject_rhsbl_sender without a domain is an error naming it" $?
write_conf "unknown_address_tempfail_action = later"
out=$(sl check 2>&1)
rc=$?
[ $rc -ne 0 ] && printf '%s' "$out" | grep -q 'unknown_address_tempfail_action: "later" is neither defer_if_permit nor defer'
result "sluice check: a bad unknown_address_tempfail_action is an error" $?
