#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_virtual.sh - virtual_alias_maps and domain lists with tables, as
# Postfix does them:
#   - virtual_alias_domains (default $virtual_alias_maps: a domain that is
#     a key of the table, made by Postfix's postmap): a listed address is
#     accepted, an unlisted one gets 550 5.1.1 ... User unknown in virtual
#     alias table, and mail for it is not relayed;
#   - the message is queued for what the address expands into: one local
#     Maildir and one remote address, recursively, with the extension
#     propagated and "@domain" forms; each delivery is logged with
#     orig_to=<the address the client gave>;
#   - an alias of a mydestination domain (user form), and an address
#     rewritten into itself and another;
#   - recipients that expand to the same address get one copy;
#   - an alias loop is not accepted: 451 4.6.0 Alias expansion error and
#     Postfix's warning;
#   - relay_domains from a hash: table and a /file, with a !negation.
. "$(dirname "$0")/lib.sh"
need_binaries
POSTMAP=$(PATH=$PATH:/usr/sbin:/sbin command -v postmap) ||
    skip_all "postmap not installed (Debian package postfix)"
plan 11
setup

mkdir -p "$T/pf"
: >"$T/pf/main.cf"
cat >"$T/virtual" <<'V'
# virtual alias domains: keys of the table
virt.example          domain
info@virt.example     alice, bob@remote.example
sales@virt.example    info@virt.example
team@virt.example     team@virt.example, carol@remote.example
@catch.example        @remote.example
catch.example         domain
loop1@virt.example    loop2@virt.example
loop2@virt.example    loop1@virt.example
help@localhost        dave@remote.example
V
"$POSTMAP" -c "$T/pf" hash:"$T/virtual" 2>"$T/postmap.out" ||
    diag "postmap failed: $(cat "$T/postmap.out")"
printf '%s\n' "relay.example OK" >"$T/relay_domains"
"$POSTMAP" -c "$T/pf" hash:"$T/relay_domains" 2>>"$T/postmap.out" ||
    diag "postmap failed: $(cat "$T/postmap.out")"
printf '%s\n' "# relayed too" "!no.file.example, .file.example" \
    >"$T/relay_list"

SVCS=""
svc nonet mynetworks=192.0.2.0/24
MASTER_EXTRA=$SVCS
write_conf "virtual_alias_maps = hash:$T/virtual" \
    "myorigin = localhost" "recipient_delimiter = +" \
    "relay_domains = hash:$T/relay_domains, $T/relay_list"
start_ok
start_sink || diag "the sink did not start"

pytap <<'PY'
import glob, os, re, time
from sink import *

P = int(env("PORT"))
T = env("T")

m, r = mail_rcpt(P, "a@example.org", "nobody@virt.example")
want = ("550 5.1.1 <nobody@virt.example>: Recipient address rejected: "
        "User unknown in virtual alias table")
tap(r.text == want,
    "an address of a virtual alias domain the table does not list: " + want,
    r)

rs = [mail_rcpt(P, "a@example.org", a)[1]
      for a in ("info@virt.example", "Info+news@Virt.Example",
                "anyone@catch.example", "help@localhost")]
tap(all(x.code == 250 for x in rs),
    "listed addresses, an extension, an @domain key and an alias of ours: "
    "accepted", *rs)

def maildir(user, pat, secs=15):
    box = os.path.join(T, "mail", user, "new")
    end = time.time() + secs
    while time.time() < end:
        for f in glob.glob(box + "/*"):
            b = open(f, "rb").read()
            if re.search(pat, b):
                return b
        time.sleep(0.1)
    return None

r = send_mail(P, "a@example.org", ["sales@virt.example"],
              b"Subject: v1\r\n\r\nfor sales\r\n")
box = maildir("alice", rb"for sales")
got = sink_find(rb"for sales", secs=15)
tap(r.code == 250 and box is not None
    and b"Delivered-To: alice@localhost\n" in box
    and got and "bob@remote.example" in got[0],
    "sales -> info -> alice (unqualified: @myorigin) and bob@remote.example: "
    "one copy in alice's Maildir, one at the next hop", r, got)
l1 = log_wait(r"to=<alice@localhost>, orig_to=<sales@virt\.example>, "
              r"relay=local, .*status=sent", 5)
l2 = log_wait(r"to=<bob@remote\.example>, orig_to=<sales@virt\.example>, "
              r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent", 10)
tap(l1 and l2, "  each delivery is logged with orig_to=<sales@virt.example>")

r = send_mail(P, "a@example.org", ["info+news@virt.example"],
              b"Subject: v2\r\n\r\nwith an extension\r\n")
got = sink_find(rb"with an extension", secs=15)
tap(r.code == 250 and got and "bob+news@remote.example" in got[0]
    and maildir("alice", rb"with an extension") is not None,
    "info+news: the extension goes with each address "
    "(bob+news@remote.example; alice+news delivers to alice)", r, got)

r = send_mail(P, "a@example.org", ["joe@catch.example", "help@localhost"],
              b"Subject: v3\r\n\r\ncatch all\r\n")
got = sink_find(rb"catch all", secs=15)
tap(r.code == 250 and got and "joe@remote.example" in got[0]
    and "dave@remote.example" in got[0],
    "@catch.example -> @remote.example keeps the user (joe@remote.example); "
    "help@localhost -> dave@remote.example", r, got)

r = send_mail(P, "a@example.org", ["team@virt.example"],
              b"Subject: v4\r\n\r\nthe team\r\n")
got = sink_find(rb"the team", secs=15)
tap(r.code == 250 and got and "carol@remote.example" in got[0]
    and log_wait(r"to=<team@virt\.example>, relay=none, .*dsn=5\.1\.1, "
                 r"status=bounced \(User unknown in virtual alias table\)",
                 10),
    "team -> itself and carol: carol gets it; team@virt.example itself has "
    "no mailbox and bounces (5.1.1 User unknown in virtual alias table)", r,
    got)

r = send_mail(P, "dup@example.org", ["info@virt.example", "sales@virt.example",
                                     "Info@Virt.Example"],
              b"Subject: v6\r\n\r\nonce each\r\n")
got = sink_find(rb"once each", secs=15)
l = log_wait(r"from=<dup@example\.org>, size=\d+, nrcpt=2 ", 10)
tap(r.code == 250 and got and got[0].count("bob@remote.example") == 1 and l,
    "three recipients that expand to the same two addresses: each queued "
    "and delivered once (nrcpt=2)", r, got)

r = send_mail(P, "a@example.org", ["loop1@virt.example"],
              b"Subject: v5\r\n\r\nloop\r\n")
l = log_wait(r"warning: [0-9A-F]+: unreasonable virtual_alias_maps map "
             r"nesting for loop1@virt\.example -- message not accepted, "
             r"try again later", 5)
tap(r.text == "451 4.6.0 Alias expansion error" and l,
    "an alias loop: 451 4.6.0 Alias expansion error, and Postfix's warning",
    r)

Q = int(env("P_nonet"))  # a client outside mynetworks
rs = [mail_rcpt(Q, "a@example.org", a)[1]
      for a in ("x@relay.example", "x@a.file.example")]
tap(all(x.code == 250 for x in rs),
    "relay_domains (a client outside mynetworks): a hash: table and a /file "
    "entry (.file.example): accepted", *rs)
rs = [mail_rcpt(Q, "a@example.org", a)[1]
      for a in ("x@no.file.example", "x@sub.relay.example")]
tap(all(x.text.startswith("454 4.7.1 <") and
        x.text.endswith(">: Relay access denied") for x in rs),
    "  a !negated entry and a subdomain the table does not list: 454 4.7.1 "
    "Relay access denied (defer_unauth_destination, Postfix's default)", *rs)
PY
stop_sluiced
