#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_server_access.sh - check_*_mx_access, check_*_ns_access and
# check_*_a_access (Postfix's check_server_access) against a scripted DNS
# server on loopback (tests/system/dnsd.py, sluice_dns_servers):
#   - the sender's MX hosts are judged by name (with parent domains) and
#     then by address (with the networks above it), in order of
#     preference; the first entry found decides, DUNNO too;
#   - a domain without MX is its own MX host, an MX host written as an
#     address is that address, an address literal is its own MX host;
#   - a null MX decides nothing; a failed lookup logs Postfix's "Unable to
#     look up MX host ..." warning (once, though the list runs again for a
#     later restriction) and decides nothing;
#   - OK in such a table: 451 4.3.5 and Postfix's three warnings;
#   - _ns_ walks up to the parent domain while a name has no NS records;
#   - _a_ judges only the addresses, never the name;
#   - the recipient and HELO forms reply with their own class.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 24
setup

ZONE=$T/zone
cat >"$ZONE" <<'EOF2'
good.test MX 10 mx1.good.test
mx1.good.test A 127.0.0.11
bad.test MX 10 mx.badhost.test
mx.badhost.test A 127.0.0.66
badnet.test MX 20 mx.badnet.test
badnet.test MX 10 mx1.good.test
mx.badnet.test A 192.0.2.5
exempt.test MX 10 mx1.exempt.test
exempt.test MX 20 mx.badhost.test
mx1.exempt.test A 127.0.0.14
nomx.test A 192.0.2.9
ipmx.test MX 10 192.0.2.77
ok.test MX 10 okhost.test
okhost.test A 127.0.0.15
null.test MX 0 .
sf.test SERVFAIL
zone.test NS ns1.dnsprov.test
ns1.dnsprov.test A 198.51.100.53
sub.zone.test A 127.0.0.1
other.test NS ns.other.test
ns.other.test A 203.0.113.54
badns.test BADRDATA NS 03666f6f
drop.test DROP
EOF2
start_dnsd "$ZONE" || diag "dnsd did not start: $(cat "$T/dnsd.out")"

cat >"$T/mx" <<'EOF2'
mx.badhost.test REJECT hosted at a bad MX
192.0.2 REJECT bad network
mx1.exempt.test DUNNO
okhost.test OK
EOF2
cat >"$T/ns" <<'EOF2'
dnsprov.test REJECT DNS hosted at dnsprov
203.0.113.54 554 5.7.2 bad DNS server address
EOF2
cat >"$T/a" <<'EOF2'
192.0.2 REJECT helo in a bad network
good.test REJECT by name
EOF2

SVCS=""
END=permit_mynetworks,reject_unauth_destination
svc mx "smtpd_recipient_restrictions=check_sender_mx_access,texthash:$T/mx,reject_unknown_recipient_domain,$END"
svc rmx "smtpd_recipient_restrictions=check_recipient_mx_access,texthash:$T/mx,$END"
svc ns "smtpd_recipient_restrictions=check_sender_ns_access,texthash:$T/ns,$END"
svc a "smtpd_helo_restrictions=check_helo_a_access,texthash:$T/a"
MASTER_EXTRA=$SVCS
write_conf "sluice_dns_servers = 127.0.0.1:$DP" "sluice_dns_timeout = 2s"
start_ok
start_sink || diag "the sink did not start"

pytap <<'PY'
import re, socket, time
from sink import *

P = lambda n: int(env("P_" + n))

def rcpt(port, sender, to="x@good.test", helo="client.test"):
    return mail_rcpt(port, sender, to, helo)

def dnslog():
    return open(env("T") + "/dns.log").read().splitlines()

def count(pattern):
    return len([l for l in read_log().splitlines() if re.search(pattern, l)])

# --- check_sender_mx_access
m, r = rcpt(P("mx"), "a@bad.test")
want = "554 5.7.1 <a@bad.test>: Sender address rejected: hosted at a bad MX"
l = log_wait(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: "
             + re.escape(want) + r"; from=<a@bad\.test> to=<x@good\.test>", 5)
tap(m.code == 250 and r.text == want and l,
    "the sender domain's MX host by name: " + want + ", and the NOQUEUE "
    "line", m, r)

m, r = rcpt(P("mx"), "a@badnet.test")
q = dnslog()
tap(r.text == "554 5.7.1 <a@badnet.test>: Sender address rejected: bad "
    "network" and "udp MX badnet.test" in q and "udp A mx.badnet.test" in q,
    "the second MX host (preference 20) has an address in 192.0.2.0/24: "
    "the table's \"192.0.2\" entry rejects", r)

m, r = rcpt(P("mx"), "a@good.test")
tap(r.code == 250, "an MX host whose name and address are not in the "
    "table: accepted", r)

m, r = rcpt(P("mx"), "a@exempt.test")
tap(r.code == 250, "the first MX host's DUNNO entry decides: the second "
    "(mx.badhost.test, REJECT) is never judged, accepted", r)

rs = [rcpt(P("mx"), "a@" + d)[1] for d in ("nomx.test", "ipmx.test", "[192.0.2.1]")]
tap(all(r.text.startswith("554 5.7.1 <a@") and r.text.endswith(
    ">: Sender address rejected: bad network") for r in rs),
    "a domain without MX is its own MX host, an MX written as an address "
    "is that address, an address literal is its own: all in 192.0.2.0/24, "
    "rejected", *rs)

m, r = rcpt(P("mx"), "a@null.test")
tap(r.code == 250 and "udp A null.test" not in dnslog(),
    "a null MX: nothing judged, accepted", r)

m, r = rcpt(P("mx"), "a@ok.test")
want = "451 4.3.5 Server configuration error"
w = log_wait(r"warning: restriction check_sender_mx_access returns OK for "
             r"a@ok\.test", 5)
tap(r.text == want and w
    and count(r"warning: this is not allowed for security reasons") == 1
    and count(r"warning: use DUNNO instead of OK if you want to make an "
              r"exception") == 1,
    "OK in the table: " + want + " and Postfix's three warnings", r)

m, r = rcpt(P("mx"), "a@sf.test", "x@good.test")
w = log_wait(r"warning: Unable to look up MX host for sf\.test: Host not "
             r"found, try again", 5)
time.sleep(0.3)
tap(r.code == 250 and w
    and count(r"warning: Unable to look up MX host for sf\.test") == 1,
    "SERVFAIL for the sender's MX: Postfix's warning, logged once although "
    "the list ran again for reject_unknown_recipient_domain; accepted", r)

m, r = rcpt(P("mx"), "a@nxmx.test")
w = log_wait(r"warning: Unable to look up MX host nxmx\.test for Sender "
             r"address a@nxmx\.test: Host not found", 5)
tap(r.code == 250 and w,
    "a sender domain that does not exist is its own MX host; it has no "
    "address: Postfix's warning naming the host, accepted", r)

m, r = rcpt(P("mx"), "")
tap(r.code == 250, "the null sender: not judged, accepted", r)

# --- check_recipient_mx_access
m, r = rcpt(P("rmx"), "a@good.test", "x@bad.test")
tap(r.text == "554 5.7.1 <x@bad.test>: Recipient address rejected: hosted "
    "at a bad MX",
    "check_recipient_mx_access: the recipient domain's MX host by name", r)

# --- check_sender_ns_access
m, r = rcpt(P("ns"), "a@sub.zone.test")
q = dnslog()
tap(r.text == "554 5.7.1 <a@sub.zone.test>: Sender address rejected: DNS "
    "hosted at dnsprov" and "udp NS sub.zone.test" in q
    and "udp NS zone.test" in q,
    "check_sender_ns_access: sub.zone.test has no NS records, zone.test's "
    "DNS server ns1.dnsprov.test matches the parent domain entry", r)

m, r = rcpt(P("ns"), "a@other.test")
tap(r.text == "554 5.7.2 <a@other.test>: Sender address rejected: bad DNS "
    "server address",
    "a DNS server's address in the table, with its own code and DSN", r)

m, r = rcpt(P("ns"), "a@[192.0.2.1]")
tap(r.code == 250, "an address literal has no DNS servers: accepted", r)

m, r = rcpt(P("ns"), "a@good.test")
tap(r.code == 250, "a domain whose DNS servers are not in the table "
    "(the walk reaches test's, which has none: Postfix's warning): accepted", r)

m, r = rcpt(P("ns"), "a@badns.test")
w = log_wait(r"warning: Unable to look up NS host for badns\.test: Host not "
             r"found, try again", 5)
tap(r.code == 250 and w,
    "an NS record whose name runs past its end (libunbound refuses the "
    "answer: a failure for now): Postfix's warning, accepted", r)

# a client that leaves while its MX lookup is out (the server never
# answers): the lookup ends after sluice_dns_timeout, the front goes on
s = socket.create_connection(("127.0.0.1", P("mx")))
s.recv(1000)
s.sendall(b"EHLO client.test\r\nMAIL FROM:<a@drop.test>\r\n"
          b"RCPT TO:<x@good.test>\r\n")
time.sleep(0.3)
s.close()
time.sleep(2.5)
m, r = rcpt(P("mx"), "a@bad.test")
tap(r.code == 554 and "udp MX drop.test" in dnslog(),
    "a client that leaves while its MX lookup is unanswered: the next "
    "client is judged as before", r)

# --- check_helo_a_access
m, r = rcpt(P("a"), "a@good.test", helo="nomx.test")
tap(r.text == "554 5.7.1 <nomx.test>: Helo command rejected: helo in a bad "
    "network",
    "check_helo_a_access: the HELO name's address in 192.0.2.0/24", r)
m, r = rcpt(P("a"), "a@good.test", helo="good.test")
tap(r.code == 250, "check_helo_a_access never looks the name up in the "
    "table (good.test REJECT by name): accepted", r)
m, r = rcpt(P("a"), "a@good.test", helo="[192.0.2.3]")
tap(r.text == "554 5.7.1 <[192.0.2.3]>: Helo command rejected: helo in a "
    "bad network", "an address literal HELO: its address judged", r)

r = send_mail(P("mx"), "a@good.test", ["x@good.test"],
              b"Subject: mx ok\r\n\r\nsender with a good MX\r\n")
got = sink_find(r"sender with a good MX", secs=15)
tap(r.code == 250 and got and got[1].endswith(b"sender with a good MX\r\n"),
    "a message whose sender passes check_sender_mx_access: queued and "
    "delivered byte for byte", r)
PY
check "sluiced is still running" alive "$MASTERPID"

stop_sluiced
MASTER_EXTRA=""
write_conf "smtpd_recipient_restrictions = reject_unauth_destination, check_sender_mx_access"
out=$(sl check 2>&1)
rc=$?
[ $rc -ne 0 ] && printf '%s' "$out" | grep -q 'check_sender_mx_access: missing TYPE:TABLE after it'
result "sluice check: check_sender_mx_access without a table is an error naming it" $?
