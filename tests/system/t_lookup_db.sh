#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_lookup_db.sh - Postfix's indexed tables, made by Postfix's own postmap:
# transport_maps = hash:FILE and btree:FILE route mail as their text says
# (the route's domain to the sink, the others to relayhost, which is
# down: deferred); smtp_tls_policy_maps = hash:FILE is read too (a
# "none" entry for the sink beside a global "encrypt" that would defer);
# a table whose .db file is missing, or is not a database, stops
# sluice check and sluiced with the file named and the postmap command
# that makes it; keys are case-insensitive as in Postfix.
. "$(dirname "$0")/lib.sh"
need_binaries
POSTMAP=$(PATH=$PATH:/usr/sbin:/sbin command -v postmap) ||
    skip_all "postmap not installed (Debian package postfix)"
plan 16
setup

# postmap reads main.cf from its config directory: an empty one
mkdir -p "$T/pf"
: >"$T/pf/main.cf"
pm() { "$POSTMAP" -c "$T/pf" "$@"; }

DEAD=$(free_port) # nothing listens there: mail that goes to relayhost waits
cat >"$T/transport" <<EOF
# routes, as a Postfix site writes them
Routed.Example   smtp:[127.0.0.1]:$SINKPORT
other.example    error:5.1.2 no mail here
EOF
cp "$T/transport" "$T/transport_bt"
cat >"$T/tls_policy" <<EOF
[127.0.0.1]:$SINKPORT none
EOF
pm hash:"$T/transport" && pm btree:"$T/transport_bt" && pm hash:"$T/tls_policy"
is "postmap makes the hash and btree files" "$(ls "$T"/*.db | wc -l)" 3

start_sink
write_conf "relayhost = [127.0.0.1]:$DEAD" \
    "transport_maps = hash:$T/transport" \
    "smtp_tls_policy_maps = hash:$T/tls_policy" \
    "smtp_tls_security_level = encrypt" "clamav_enable = no"
out=$(sl check 2>&1)
is "sluice check accepts hash: tables" "$?" 0
start_ok

export T DEAD
pytap <<'PY'
from sink import *
import re, time
port = int(env("PORT"))
r = send_mail(port, "a@sender.example", ["rcpt@routed.example"],
              b"Subject: hash-routed\r\n\r\nvia the hash table\r\n")
m = sink_find(rb"Subject: hash-routed\r\n")
tap(r.code == 250 and m is not None and b"via the hash table" in m[1],
    "hash: transport_maps: ROUTED.example's entry (upper case in the file) "
    "sends the mail to the sink", r)
tap(log_wait(r"to=<rcpt@routed\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%s, .*status=sent"
             % env("SINKPORT")),
    "  logged as sent through the table's next hop, in clear as the hash: "
    "TLS policy says (the global level is encrypt)")
r = send_mail(port, "a@sender.example", ["x@other.example"], b"Subject: err\r\n\r\nx\r\n")
tap(log_wait(r"to=<x@other\.example>, relay=none, .*dsn=5\.1\.2, status=bounced \(no mail here\)"),
    "  the error: entry bounces with its text")
r = send_mail(port, "a@sender.example", ["y@elsewhere.example"], b"Subject: relay\r\n\r\nx\r\n")
tap(log_wait(r"to=<y@elsewhere\.example>, relay=.*status=deferred"),
    "  a domain not in the table goes to relayhost (down: deferred)")
PY
stop_sluiced "$MASTERPID"

# btree: the same routes
write_conf "relayhost = [127.0.0.1]:$DEAD" \
    "transport_maps = btree:$T/transport_bt" "clamav_enable = no"
start_ok
pytap <<'PY'
from sink import *
port = int(env("PORT"))
r = send_mail(port, "a@sender.example", ["rcpt@routed.example"],
              b"Subject: btree-routed\r\n\r\nvia the btree table\r\n")
m = sink_find(rb"Subject: btree-routed\r\n")
tap(r.code == 250 and m is not None, "btree: transport_maps routes to the sink", r)
PY
stop_sluiced "$MASTERPID"

# a missing .db: sluice check and sluiced say which file and how to make it
write_conf "transport_maps = hash:$T/nosuch" "clamav_enable = no"
out=$(sl check 2>&1)
rc=$?
is "sluice check fails on a hash: table without its .db" "$rc" 1
like "  naming the parameter, the file and the postmap command" "$out" \
    "transport_maps: hash:$T/nosuch: cannot open $T/nosuch\.db: No such file or directory \(make it with: postmap hash:$T/nosuch\)"
"$SLUICED" -c "$CONF" >>"$T/sluiced.out" 2>&1 &
BAD=$!
_T_MASTERS="$_T_MASTERS $BAD"
wait_for 10 dead "$BAD"
check "  sluiced refuses to start with it" dead "$BAD"
like "  and says why" "$(cat "$T/sluiced.out" "$LOG" 2>/dev/null)" \
    "transport_maps: hash:$T/nosuch: cannot open $T/nosuch\.db"

# a btree file named as hash: (or any file that is not a hash database)
cp "$T/transport_bt.db" "$T/wrong.db"
write_conf "transport_maps = hash:$T/wrong" "clamav_enable = no"
out=$(sl check 2>&1)
is "sluice check fails on a file that is not a hash database" "$?" 1
like "  with Berkeley DB's reason, not on standard error raw" "$out" \
    "cannot open $T/wrong\.db as a hash table: unexpected file type or format"
unlike "  (no BDB message of its own)" "$out" "BDB[0-9]"
