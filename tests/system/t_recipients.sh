#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_recipients.sh - recipient validation at RCPT, as Postfix does it:
#   - local_recipient_maps at its default (proxy:unix:passwd.byname
#     $alias_maps): a system account of a mydestination domain is
#     accepted and delivered, an unknown user gets 550 5.1.1 ... User
#     unknown in local recipient table (and Postfix's NOQUEUE line), a
#     name from the alias database (made by Postfix's postalias) is
#     accepted, postmaster always;
#   - relay_recipient_maps for relay_domains: listed addresses and
#     @domain wild cards pass and are relayed, others get 550 5.1.1 ...
#     User unknown in relay recipient table;
#   - smtpd_reject_unlisted_sender = yes: an unknown sender of ours gets
#     550 5.1.0;
#   - an alias database not made yet (no .db file): a warning at start,
#     and the recipients only it could list are deferred (451 4.3.0).
. "$(dirname "$0")/lib.sh"
need_binaries
POSTALIAS=$(PATH=$PATH:/usr/sbin:/sbin command -v postalias) ||
    skip_all "postalias not installed (Debian package postfix)"
plan 13
setup

ME=$(id -un)
export ME
printf '%s\n' "support: $ME" "# a comment" "abuse: $ME" >"$T/aliases"
mkdir -p "$T/pf"
: >"$T/pf/main.cf"
"$POSTALIAS" -c "$T/pf" hash:"$T/aliases" 2>"$T/postalias.out" ||
    diag "postalias failed: $(cat "$T/postalias.out")"
printf '%s\n' "carol@relay.example x" "@open.example x" >"$T/relay_rcpts"

SVCS=""
svc unl smtpd_reject_unlisted_sender=yes
MASTER_EXTRA=$SVCS
write_conf "mydestination = localhost" "alias_maps = hash:$T/aliases" \
    "local_recipient_maps = proxy:unix:passwd.byname \$alias_maps" \
    "relay_domains = relay.example, open.example" \
    "relay_recipient_maps = texthash:$T/relay_rcpts"
start_ok
start_sink || diag "the sink did not start"

pytap <<'PY'
import re
from sink import *

P = int(env("PORT"))
ME = env("ME")

def rcpt(to, sender="a@example.org", port=P):
    return mail_rcpt(port, sender, to)

m, r = rcpt("nosuchuser@localhost")
want = ("550 5.1.1 <nosuchuser@localhost>: Recipient address rejected: "
        "User unknown in local recipient table")
l = log_wait(r"NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: "
             + re.escape(want) + r"; from=<a@example\.org> "
             r"to=<nosuchuser@localhost> proto=ESMTP helo=<client\.test>$", 5)
tap(r.text == want and l,
    "an unknown local user: " + want + ", and Postfix's NOQUEUE line", r)

rs = [rcpt(a)[1] for a in (ME + "@localhost", "support@localhost",
                           "Abuse@LocalHost", "postmaster@localhost")]
tap(all(x.code == 250 for x in rs),
    "a system account (unix:passwd.byname), two names from the alias "
    "database (postalias, any case) and postmaster: accepted", *rs)

r = send_mail(P, "a@example.org", [ME + "@localhost"],
              b"Subject: local\r\n\r\nto a real account\r\n")
import glob, os, time
box = os.path.join(env("T"), "mail", ME, "new")
got = []
for _ in range(100):
    got = glob.glob(box + "/*")
    if got:
        break
    time.sleep(0.1)
tap(r.code == 250 and got and open(got[0], "rb").read().endswith(
    b"to a real account\n"),
    "  and the account's message is delivered to its Maildir", r, got)

m, r = rcpt("dan@relay.example")
tap(r.text == "550 5.1.1 <dan@relay.example>: Recipient address rejected: "
    "User unknown in relay recipient table",
    "relay_recipient_maps: an address it does not list: 550 5.1.1 ... User "
    "unknown in relay recipient table", r)
rs = [rcpt(a)[1] for a in ("carol@relay.example", "anyone@open.example")]
tap(all(x.code == 250 for x in rs),
    "  a listed address and an @domain wild card: accepted", *rs)
r = send_mail(P, "a@example.org", ["carol@relay.example"],
              b"Subject: relay\r\n\r\nfor carol\r\n")
got = sink_find(r"for carol", secs=15)
tap(r.code == 250 and got and "carol@relay.example" in got[0],
    "  and relayed to the next hop", r)

m, r = rcpt("x@other.example", sender="nosuchuser@localhost",
            port=int(env("P_unl")))
tap(r.text == "550 5.1.0 <nosuchuser@localhost>: Sender address rejected: "
    "User unknown in local recipient table",
    "smtpd_reject_unlisted_sender = yes: an unknown local sender: 550 5.1.0",
    r)
m, r = rcpt(ME + "@localhost", sender="", port=int(env("P_unl")))
tap(r.code == 250, "  the null sender is not checked", r)
PY
check "sluiced is still running" alive "$MASTERPID"
stop_sluiced

# an alias database not made yet: a warning; its recipients wait
MASTER_EXTRA=""
write_conf "alias_maps = hash:$T/nosuch" \
    "local_recipient_maps = proxy:unix:passwd.byname \$alias_maps"
out=$(sl check 2>&1)
rc=$?
[ $rc -eq 0 ] && printf '%s' "$out" | grep -q "warning: local_recipient_maps: hash:$T/nosuch: its .db file does not exist (newaliases or postmap makes it): the addresses it would list are deferred with 451 4.3.0 until it does"
result "an alias database that does not exist: sluice check passes, with a warning naming it" $?
start_ok
pytap <<'PY'
from sink import *
P = int(env("PORT"))
c = Client(P)
c.reply()
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<a@example.org>")
r1 = c.cmd("RCPT TO:<nosuchuser@localhost>")
r2 = c.cmd("RCPT TO:<%s@localhost>" % env("ME"))
c.cmd("QUIT")
c.close()
tap(r1.text == "451 4.3.0 <nosuchuser@localhost>: Recipient address "
    "rejected: Temporary lookup failure" and r2.code == 250,
    "  then a recipient the other tables do not list waits (451 4.3.0 "
    "Temporary lookup failure), a system account is accepted", r1, r2)
PY
