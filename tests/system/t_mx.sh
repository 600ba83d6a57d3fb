#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_mx.sh - the SMTP client's MX lookups, against a scripted DNS server
# on loopback (tests/system/dnsd.py, sluice_dns_servers): a next hop
# without [] is a domain whose exchangers are tried by preference (the
# better one first, the next one when it refuses the connection), a
# domain with no MX is its own exchanger, a CNAME'd exchanger is
# followed; [host] asks for addresses only. Failures are Postfix's,
# word for word: NXDOMAIN and an exchanger without an address bounce
# (5.4.4), SERVFAIL and a server that never answers defer (4.4.3), a
# null MX bounces (5.1.0, "nullMX"), an MX that is this machine
# (a listener, or an address in proxy_interfaces) bounces as a mail loop (5.4.6), or
# defers when the better exchangers have no address (4.4.4). A deferred
# message is delivered once its name resolves. smtp_mx_address_limit
# cuts the list; inet_protocols = ipv4 asks no AAAA; sluice check names
# a bad sluice_dns_servers or proxy_interfaces.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 37
setup

DP=$(free_port)
PA=$(free_port) # sink A on 127.0.0.1
PB=$(free_port) # sink B on ::1 only
export DP PA PB
ZONE=$T/zone
DNSLOG=$T/dns.log
export ZONE DNSLOG

cat >"$ZONE" <<EOF
# better exchanger first, even though listed second
pref.test MX 20 mxb.pref.test
pref.test MX 10 mxa.pref.test
mxa.pref.test A 127.0.0.1
mxb.pref.test A 127.0.0.2
# the best one refuses (nothing on 127.0.0.1:PB), the backup on ::1 takes it
fall.test MX 10 mxdead.fall.test
fall.test MX 20 mx6.fall.test
mxdead.fall.test A 127.0.0.1
mx6.fall.test AAAA ::1
# no MX: the domain is its own exchanger
plain.test A 127.0.0.1
# nx.test: not in the zone (NXDOMAIN)
sf.test SERVFAIL
null.test MX 0 .
# a "." beside a real exchanger is not a null MX (RFC 7505): skipped
mixnull.test MX 0 .
mixnull.test MX 10 mxa.pref.test
noaddr.test MX 10 ghost.noaddr.test
# an MX that is this Sluice (its listener 127.0.0.1:PORT)
loop.test MX 10 self.loop.test
self.loop.test A 127.0.0.1
# the primary has no address, the backup is this Sluice
backup.test MX 10 gone.backup.test
backup.test MX 20 me.backup.test
me.backup.test A 127.0.0.1
drop.test DROP
brk.test A 127.0.0.1
brk.test MX 10 mxa.pref.test
cn.test MX 10 alias.cn.test
alias.cn.test CNAME real.cn.test
real.cn.test A 127.0.0.1
# an MX record whose name has no final zero label
bad.test BADRDATA MX 000a03666f6f
# the first exchanger refuses, the second takes it (unless the limit is 1)
lim.test MX 10 a.lim.test
lim.test MX 20 b.lim.test
a.lim.test A 127.0.0.3
b.lim.test A 127.0.0.1
# proxy_interfaces = 127.0.0.4 (phase 2): a NAT address of this host
px.test MX 10 nat.px.test
nat.px.test A 127.0.0.4
EOF

if start_dnsd "$ZONE" --host 127.0.0.1 --host ::1; then
    ok "a scripted DNS server answers on 127.0.0.1:$DP and [::1]:$DP"
else
    not_ok "a scripted DNS server answers on 127.0.0.1:$DP and [::1]:$DP"
    diag "$(cat "$T/dnsd.out")"
fi
mkdir -p "$T/sA" "$T/sB"
start_sink "$PA" "$T/sA" || diag "sink A did not start"
start_sink6 "$PB" "$T/sB" || diag "sink B did not start"

ROUTES="pref.example=smtp:pref.test:$PA, fall.example=smtp:fall.test:$PB,
 implicit.example=smtp:plain.test:$PA, nx.example=smtp:nx.test:$PA,
 sf.example=smtp:sf.test:$PA, null.example=smtp:null.test:$PA,
 noaddr.example=smtp:noaddr.test:$PA, loop.example=smtp:loop.test:$PORT,
 backup.example=smtp:backup.test:$PORT, drop.example=smtp:drop.test:$PA,
 brk.example=smtp:[brk.test]:$PA, cname.example=smtp:cn.test:$PA,
 bad.example=smtp:bad.test:$PA, lim.example=smtp:lim.test:$PA,
 px.example=smtp:px.test:$PB, mixnull.example=smtp:mixnull.test:$PA"
ROUTES=$(printf '%s' "$ROUTES" | tr '\n' ' ')
conf()
{
    write_conf "transport_maps = inline:{ $ROUTES }" \
        "sluice_dns_servers = 127.0.0.1:$DP" \
        "sluice_dns_timeout = 3s" \
        "smtp_randomize_addresses = no" "$@"
}
conf
start_ok

# each phase sends one message per case, to LP@CASE.example with the
# header X-TAG: CASE, and reads each one's status line
cat >"$T/mxt.py" <<'PY'
from sink import *


class Phase:
    def __init__(self, lp, tag, cases):
        self.lp, self.ids = lp, {}
        port = int(env("PORT"))
        for case in cases:
            body = b"Subject: mx %s\r\nX-%s: %s\r\n\r\nto the %s next hop\r\n" % (
                case.encode(), tag.encode(), case.encode(), case.encode())
            r = send_mail(port, "a@example.org", ["%s@%s.example" % (lp, case)],
                          body)
            self.ids[case] = (queued_id(r), body)

    def status(self, case, secs=15):
        """relay, dsn, status and text of the case's status line"""
        return log_wait(r"%s: to=<%s@%s\.example>, relay=(\S+), .*dsn=(\S+), "
                        r"status=(\w+) \((.*)\)$"
                        % (self.ids[case][0] or "NOID", self.lp, case), secs)
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

# --- phase 1: one message per case
pytap <<'PY'
import os, re, time
from sink import *

from mxt import Phase

PA, PB = env("PA"), env("PB")
ph = Phase("x", "Case", ("pref", "fall", "implicit", "nx", "sf", "null",
                         "noaddr", "loop", "backup", "drop", "brk", "cname",
                         "bad", "lim", "mixnull"))
ids, status = ph.ids, ph.status
tap(all(v[0] for v in ids.values()),
    "15 messages queued, one per next hop",
    *["%s: %s" % (k, v[0]) for k, v in ids.items()])

def delivered(case, relay, d):
    m = status(case)
    body = ids[case][1]
    got = sink_find(r"X-Case: %s\r\n" % case, d, 5)
    ok = (m is not None and m.group(1) == relay and m.group(3) == "sent"
          and got is not None and got[1].endswith(body)
          and len([c for e, c in sink_msgs(d)
                   if b"X-Case: %s\r\n" % case.encode() in c]) == 1)
    return ok, (m.group(0) if m else "no status line for " + case)

ok, why = delivered("pref", "mxa.pref.test[127.0.0.1]:" + PA, env("T") + "/sA")
tap(ok, "MX 10 before MX 20 (listed second): status=sent, "
    "relay=mxa.pref.test[127.0.0.1]:PORT, at the sink once, byte for byte", why)

ok, why = delivered("fall", "mx6.fall.test[::1]:" + PB, env("T") + "/sB")
tap(ok, "the MX 10 host refuses the connection: the MX 20 host on ::1 gets "
    "it (relay=mx6.fall.test[::1]:PORT), once", why)

ok, why = delivered("implicit", "plain.test[127.0.0.1]:" + PA, env("T") + "/sA")
tap(ok, "a domain with an A record and no MX is its own exchanger "
    "(relay=plain.test[127.0.0.1]:PORT)", why)

m = status("nx")
tap(m and m.group(1) == "none" and m.group(2) == "5.4.4"
    and m.group(3) == "bounced"
    and re.fullmatch(r"Host or domain name not found\. Name service error "
                     r"for name=nx\.test type=A{1,4}: Host not found",
                     m.group(4)),
    "NXDOMAIN: relay=none, dsn=5.4.4, status=bounced (Host or domain name "
    "not found. Name service error for name=nx.test type=A: Host not found)",
    m.group(0) if m else "no status line")

m = status("sf")
tap(m and m.group(2) == "4.4.3" and m.group(3) == "deferred"
    and m.group(4) == "Host or domain name not found. Name service error "
    "for name=sf.test type=MX: Host not found, try again",
    "SERVFAIL: dsn=4.4.3, status=deferred (... name=sf.test type=MX: "
    "Host not found, try again)", m.group(0) if m else "no status line")

m = status("null")
tap(m and m.group(2) == "5.1.0" and m.group(3) == "bounced"
    and m.group(4) == "Domain null.test does not accept mail (nullMX)",
    "null MX (MX 0 .): dsn=5.1.0, status=bounced (Domain null.test does "
    "not accept mail (nullMX))", m.group(0) if m else "no status line")

m = status("noaddr")
w = log_wait(r"warning: no MX host for noaddr\.test has a valid address "
             r"record$", 1)
tap(m and w and m.group(2) == "5.4.4" and m.group(3) == "bounced"
    and "name=ghost.noaddr.test type=" in m.group(4),
    "the only exchanger has no address: warning: no MX host for noaddr.test "
    "has a valid address record; dsn=5.4.4, bounced, naming "
    "ghost.noaddr.test", m.group(0) if m else "no status line",
    "warning " + ("logged" if w else "missing"))

m = status("loop")
tap(m and m.group(2) == "5.4.6" and m.group(3) == "bounced"
    and m.group(4) == "mail for loop.test loops back to myself",
    "the MX is this Sluice's listener: dsn=5.4.6, status=bounced (mail for "
    "loop.test loops back to myself)", m.group(0) if m else "no status line")

m = status("backup")
tap(m and m.group(2) == "4.4.4" and m.group(3) == "deferred"
    and m.group(4) == "unable to find primary relay for backup.test",
    "the primary MX has no address and the backup is this Sluice: "
    "dsn=4.4.4, status=deferred (unable to find primary relay for "
    "backup.test)", m.group(0) if m else "no status line")

m = status("drop", 20)
tap(m and m.group(2) == "4.4.3" and m.group(3) == "deferred"
    and m.group(4).endswith("name=drop.test type=MX: Host not found, "
                            "try again"),
    "a server that never answers: after sluice_dns_timeout, dsn=4.4.3, "
    "status=deferred (... type=MX: Host not found, try again)",
    m.group(0) if m else "no status line")

ok, why = delivered("brk", "brk.test[127.0.0.1]:" + PA, env("T") + "/sA")
q = open(env("DNSLOG")).read()
tap(ok and re.search(r"^udp A brk\.test$", q, re.M)
    and not re.search(r"^\S+ MX brk\.test$", q, re.M),
    "[brk.test]:PORT: addresses only (A asked, its MX record never "
    "asked), status=sent, relay=brk.test[127.0.0.1]:PORT", why)

ok, why = delivered("cname", "alias.cn.test[127.0.0.1]:" + PA, env("T") + "/sA")
tap(ok, "an exchanger that is a CNAME is followed: status=sent, "
    "relay=alias.cn.test[127.0.0.1]:PORT", why)

m = status("bad")
tap(m and m.group(2) == "4.4.3" and m.group(3) == "deferred",
    "an MX record with malformed data: dsn=4.4.3, status=deferred",
    m.group(0) if m else "no status line")

ok, why = delivered("lim", "b.lim.test[127.0.0.1]:" + PA, env("T") + "/sA")
tap(ok, "MX 10 refuses, MX 20 takes it (smtp_mx_address_limit 5): "
    "relay=b.lim.test[127.0.0.1]:PORT", why)

ok, why = delivered("mixnull", "mxa.pref.test[127.0.0.1]:" + PA,
                    env("T") + "/sA")
w = log_wait(r"warning: mixnull\.test: 1 malformed MX record ignored$", 1)
tap(ok and w, "MX 0 . beside MX 10 is no null MX (RFC 7505): the \".\" is "
    "skipped with a warning, the MX 10 host gets the mail", why,
    "warning " + ("logged" if w else "missing"))

for case, what in (("sf", "SERVFAIL"), ("drop", "no answer")):
    qid = ids[case][0] or "NOID"
    n = len(re.findall(r"%s: to=<x@%s\.example>.*status=deferred" % (qid, case),
                       read_log()))
    tap(n >= 1 and not re.search(r"%s: to=.*status=(sent|bounced)" % qid,
                                 read_log()),
        "%s: still queued, deferred (%d time(s)), never bounced" % (what, n))
open(env("T") + "/ids", "w").write(
    "\n".join("%s %s" % (k, v[0]) for k, v in ids.items()) + "\n")
PY

# sf.test and drop.test come to resolve: the deferred mail goes, once
sed -e 's/^sf\.test SERVFAIL$/sf.test A 127.0.0.1/' \
    -e 's/^drop\.test DROP$/drop.test MX 5 mxa.pref.test/' "$ZONE" >"$ZONE.new"
mv "$ZONE.new" "$ZONE"
pytap <<'PY'
import re
from sink import *
ids = dict(l.split() for l in open(env("T") + "/ids"))
PA = env("PA")
for case, relay in (("sf", "sf.test[127.0.0.1]:" + PA),
                    ("drop", "mxa.pref.test[127.0.0.1]:" + PA)):
    m = log_wait(r"%s: to=<x@%s\.example>, relay=(\S+), .*status=sent"
                 % (ids[case], case), 20)
    got = sink_find(r"X-Case: %s\r\n" % case, env("T") + "/sA", 5)
    n = len([c for e, c in sink_msgs(env("T") + "/sA")
             if b"X-Case: %s\r\n" % case.encode() in c])
    tap(m and m.group(1) == relay and got and n == 1,
        "once %s.test resolves, the deferred message is sent "
        "(relay=%s), once" % (case, relay.replace(PA, "PORT")),
        m.group(0) if m else "no sent line")
PY
check "sluiced is still running (its sanitizer report, if any, is checked at exit)" alive "$MASTERPID"
stop_sluiced

# --- phase 2: proxy_interfaces, smtp_mx_address_limit, inet_protocols
conf "proxy_interfaces = 127.0.0.4" "smtp_mx_address_limit = 1" \
    "inet_protocols = ipv4"
: >"$DNSLOG"
start_ok
pytap <<'PY'
import re
from sink import *
from mxt import Phase
status = Phase("y", "Case2", ("px", "lim", "pref")).status

m = status("px")
tap(m and m.group(2) == "5.4.6" and m.group(3) == "bounced"
    and m.group(4) == "mail for px.test loops back to myself",
    "proxy_interfaces = 127.0.0.4 and an MX there (any port): dsn=5.4.6, "
    "bounced (mail for px.test loops back to myself)",
    m.group(0) if m else "no status line")
m = status("lim")
tap(m and m.group(3) == "deferred"
    and m.group(4).startswith("connect to a.lim.test[127.0.0.3]:")
    and not sink_find(r"X-Case2: lim\r\n", env("T") + "/sA", 1),
    "smtp_mx_address_limit = 1: only MX 10 is tried; it refuses: "
    "deferred (connect to a.lim.test[127.0.0.3]:PORT: ...)",
    m.group(0) if m else "no status line")
m = status("pref")
q = open(env("DNSLOG")).read()
tap(m and m.group(3) == "sent" and re.search(r" A mxa\.pref\.test$", q, re.M)
    and not re.search(r" AAAA ", q),
    "inet_protocols = ipv4: A asked, no AAAA query at all, status=sent",
    m.group(0) if m else "no status line", q)
PY
stop_sluiced

# --- phase 3: TLS at verify and secure through an MX (as Postfix: verify
# matches the exchanger's name, secure the next hop or its subdomains,
# since an MX answer without DNSSEC can be forged)
cat >"$T/x509.cnf" <<'CNF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[inside]
basicConstraints = critical, CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:mx1.tlsmx.test
[outside]
basicConstraints = critical, CA:FALSE
extendedKeyUsage = serverAuth
subjectAltName = DNS:mx.elsewhere.test
CNF
certs_ok=0
x509_self ca ca "MX Test CA" && x509_signed inside inside inside 2 &&
    x509_signed outside outside outside 3 && certs_ok=1
[ $certs_ok = 1 ] || diag "openssl could not make the test certificates" \
    "$(tail -n 20 "$T/openssl.out")"
PC=$(free_port)
PD=$(free_port)
export PC PD
mkdir -p "$T/sC" "$T/sD"
start_sink "$PC" "$T/sC" --tls-cert "$T/inside.crt" --tls-key "$T/inside.key" ||
    diag "sink C did not start"
start_sink "$PD" "$T/sD" --tls-cert "$T/outside.crt" --tls-key "$T/outside.key" ||
    diag "sink D did not start"
cat >>"$ZONE" <<ZONE3
tlsmx.test MX 10 mx1.tlsmx.test
mx1.tlsmx.test A 127.0.0.1
spoof.test MX 10 mx.elsewhere.test
spoofv.test MX 10 mx.elsewhere.test
mx.elsewhere.test A 127.0.0.1
dual.test MX 10 d.dual.test
d.dual.test A 127.0.0.1
d.dual.test AAAA ::1
ZONE3
mkdir -p "$T/sA6"
start_sink6 "$PA" "$T/sA6" || diag "sink A6 ([::1]:PA) did not start"
ROUTES="$ROUTES, tlsmx.example=smtp:tlsmx.test:$PC,
 spoof.example=smtp:spoof.test:$PD, spoofv.example=smtp:spoofv.test:$PD,
 dual.example=smtp:dual.test:$PA"
ROUTES=$(printf '%s' "$ROUTES" | tr '\n' ' ')
conf "smtp_tls_CAfile = $T/ca.crt" "smtp_tls_loglevel = 1" \
    "smtp_address_preference = ipv6" \
    "smtp_tls_policy_maps = inline:{ tlsmx.test=secure, spoof.test=secure, spoofv.test=verify }"
start_ok
pytap <<'PY'
from sink import *
from mxt import Phase
status = Phase("z", "Case3", ("tlsmx", "spoof", "spoofv", "dual")).status

PC, PD = env("PC"), env("PD")
m = status("tlsmx")
v = log_wait(r"Verified TLS connection established to "
             r"mx1\.tlsmx\.test\[127\.0\.0\.1\]:%s: " % PC, 1)
tap(m and m.group(3) == "sent" and v
    and sink_find(r"X-Case3: tlsmx\r\n", env("T") + "/sC", 2),
    "secure via MX: a certificate for mx1.tlsmx.test, a subdomain of the "
    "next hop tlsmx.test (dot-nexthop): Verified, status=sent",
    m.group(0) if m else "no status line", "Verified line " +
    ("logged" if v else "missing"))
m = status("spoof")
tap(m and m.group(2) == "4.7.5" and m.group(3) == "deferred"
    and "Server certificate not verified" in m.group(4)
    and not sink_find(r"X-Case3: spoof\r\n", env("T") + "/sD", 1),
    "secure via MX: a certificate for the exchanger mx.elsewhere.test but "
    "not for spoof.test: dsn=4.7.5, deferred (Server certificate not "
    "verified), nothing sent", m.group(0) if m else "no status line")
m = status("spoofv")
tap(m and m.group(3) == "sent"
    and m.group(1) == "mx.elsewhere.test[127.0.0.1]:" + PD,
    "verify via MX: the exchanger's name is matched (as Postfix's "
    "smtp_tls_verify_cert_match = hostname): status=sent",
    m.group(0) if m else "no status line")
m = status("dual")
tap(m and m.group(3) == "sent"
    and m.group(1) == "d.dual.test[::1]:" + env("PA")
    and sink_find(r"X-Case3: dual\r\n", env("T") + "/sA6", 2),
    "smtp_address_preference = ipv6: an exchanger with A and AAAA "
    "(A answered first) is reached over IPv6 (relay=d.dual.test[::1]:PORT)",
    m.group(0) if m else "no status line")
PY
stop_sluiced

# --- sluice check: the resolver settings
# bad_setting DESC SETTING WORD...: sluice check fails, naming each WORD
bad_setting()
{
    local desc=$1 setting=$2 out rc w good
    shift 2
    conf "$setting"
    out=$(sl check 2>&1)
    rc=$?
    good=$([ $rc -ne 0 ] && echo 1 || echo 0)
    for w in "$@"; do
        printf '%s' "$out" | grep -qF -- "$w" || good=0
    done
    if [ "$good" = 1 ]; then
        ok "sluice check: $desc is an error naming it"
    else
        not_ok "sluice check: $desc is an error naming it"
        diag "exit $rc" "$out"
    fi
}
bad_setting "a sluice_dns_servers entry that is not an address" \
    "sluice_dns_servers = 127.0.0.1:$DP, 300.1.2.3" sluice_dns_servers 300.1.2.3
bad_setting "a proxy_interfaces entry that is not an address" \
    "proxy_interfaces = mail.example.com" proxy_interfaces mail.example.com
bad_setting "smtp_address_preference = ipv5" \
    "smtp_address_preference = ipv5" smtp_address_preference ipv5
bad_setting "an unknown smtp_host_lookup word" \
    "smtp_host_lookup = dns, carrier-pigeon" smtp_host_lookup carrier-pigeon
conf
if sl check >/dev/null 2>&1; then
    ok "sluice check takes the resolver settings of this test"
else
    not_ok "sluice check takes the resolver settings of this test"
    diag "$(sl check 2>&1)"
fi
