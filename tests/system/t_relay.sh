#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_relay.sh - relay control for a client outside mynetworks: local and
# relay_domains recipients are accepted, everything else (including
# the classic address tricks) is refused with 554 5.7.1 under
# reject_unauth_destination, and with Postfix's default
# smtpd_relay_restrictions (defer_unauth_destination) with 454 4.7.1;
# from inside mynetworks relaying works. The NOQUEUE reject log line.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 17
setup
write_conf "mynetworks = 192.0.2.0/24" "relay_domains = relay.example" \
    "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
start_sink
start_ok

# rcpt_code ADDR...: "ADDR CODE TEXT" per address, each on a new session.
cat >"$T/rcpt.py" <<'PY'
import sys
from sink import *
port = int(env("PORT"))
for a in sys.argv[1:]:
    c = Client(port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@example.org>")
    r = c.cmd("RCPT TO:<%s>" % a)
    print("%s\t%d\t%s" % (a, r.code, r.lines[-1]))
    c.cmd("QUIT")
    c.close()
PY
rcpt() {
    "$PYTHON3" "$T/rcpt.py" "$@" 2>&1
}

for a in testuser@localhost x@relay.example postmaster; do
    out=$(rcpt "$a")
    like "outside client: <$a> accepted" "$out" "^[^	]*	250	"
done

out=$(rcpt x@other.example)
is "outside client: <x@other.example> refused with 554 5.7.1 Relay access denied" \
    "$out" "$(printf 'x@other.example\t554\t5.7.1 <x@other.example>: Relay access denied')"

for a in 'user%other.example@localhost' '"user@other.example"@localhost' \
    'other.example!user@localhost' '@localhost:user@other.example'; do
    out=$(rcpt "$a")
    like "outside client: <$a> refused (554 5.7.1)" "$out" "	554	5\.7\.1 "
done
for a in 'user@other.example@localhost' 'x@[127.0.0.1]'; do
    out=$(rcpt "$a")
    like "outside client: <$a> refused (501 or 554, never 250)" "$out" "	(501|554)	"
done

check "log: NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <x@other.example>: Relay access denied; from=<a@example.org> to=<x@other.example> proto=ESMTP helo=<client.test>" \
    log_has 'NOQUEUE: reject: RCPT from unknown\[127\.0\.0\.1\]: 554 5\.7\.1 <x@other\.example>: Relay access denied; from=<a@example\.org> to=<x@other\.example> proto=ESMTP helo=<client\.test>'

# --- Postfix's default relay restrictions: the same refusal, deferred
stop_sluiced
write_conf "mynetworks = 192.0.2.0/24" "relay_domains = relay.example"
start_sluiced
out=$(rcpt x@other.example)
is "default smtpd_relay_restrictions: <x@other.example> refused with 454 4.7.1" \
    "$out" "$(printf 'x@other.example\t454\t4.7.1 <x@other.example>: Relay access denied')"
out=$(rcpt x@relay.example)
like "  and <x@relay.example> accepted" "$out" "	250	"

# --- inside mynetworks: relaying is allowed
stop_sluiced
write_conf "mynetworks = 127.0.0.0/8" "relay_domains = relay.example"
start_sluiced
out=$(rcpt x@other.example)
like "inside mynetworks: <x@other.example> accepted" "$out" "	250	"
pytap <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["x@other.example"],
              b"Subject: relayed\r\nMessage-ID: <relay-1@example.org>\r\n\r\nhi\r\n")
tap(r.code == 250, "inside mynetworks: mail to other.example queued", r)
tap(sink_find(r"relay-1@"), "and relayed to the next hop")
PY
