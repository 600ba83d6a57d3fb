#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_peername.sh - smtpd_peername_lookup = yes: the client name comes from
# a reverse lookup confirmed by a forward one (127.0.0.1 is localhost in
# /etc/hosts), and a client that connects again within 60 s gets the same
# name from the front's cache; with the lookup off the name is "unknown".
. "$(dirname "$0")/lib.sh"
need_binaries
getent hosts 127.0.0.1 | grep -qw localhost ||
    skip_all "127.0.0.1 has no name in this machine's hosts file"
plan 6
setup
write_conf "smtpd_peername_lookup = yes"
start_sink
start_ok

connect_twice() {
    "$PYTHON3" - <<'PY'
from sink import *
for i in range(2):
    c = Client(int(env("PORT")))
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("QUIT")
    c.close()
PY
}

connect_twice
check "first connection: connect from localhost[127.0.0.1]" \
    log_wait 10 'connect from localhost\[127\.0\.0\.1\]'
check "second connection (from the cache): the same name" \
    wait_for 10 sh -c "[ \$(grep -c 'connect from localhost\[127\.0\.0\.1\]' '$T/maillog') -ge 2 ]"
is "no connection was logged as unknown" \
    "$(grep -c 'connect from unknown\[' "$T/maillog")" "0"
"$PYTHON3" - <<'PY'
from sink import *
send_mail(int(env("PORT")), "a@example.org", ["b@example.net"],
          b"Subject: named\r\n\r\nbody\r\n")
PY
check "mail from a named client is logged with its name" \
    log_wait 10 'client=localhost\[127\.0\.0\.1\]'

stop_sluiced
write_conf "smtpd_peername_lookup = no"
start_sluiced
connect_twice
check "lookup off: connect from unknown[127.0.0.1]" \
    log_wait 10 'connect from unknown\[127\.0\.0\.1\]'
