#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_smtp_cache.sh - the SMTP client's connection cache
# (smtp_connection_cache_on_demand): messages to the same next hop in
# quick succession share one connection (MAIL FROM again, no new EHLO);
# a cached connection the server has given up on (closed, or 421 to the
# reused MAIL) costs a new connection, never a deferral; with the cache
# off every message has its own connection.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 19
setup

# send N: N messages, one session each, 0.3 s apart (each is delivered
# before the next arrives, so the next one can use the cached connection)
send() {
    "$PYTHON3" - "$1" <<'PY'
import sys, time
from sink import *
for i in range(int(sys.argv[1])):
    if i:
        time.sleep(0.3)
    r = send_mail(int(env("PORT")), "a@example.org", ["b@example.net"],
                  b"Subject: cache %d\r\n\r\nbody\r\n" % i)
    if r.code != 250:
        print("refused", r)
PY
}
# connections the sink accepted (one greeting each), without the one of
# start_sink's readiness probe
conns() {
    echo $(($(grep -c '> 220 sink' "$SINKDIR/sink.log") - 1))
}

write_conf
start_sink
start_ok
out=$(send 5)
is "5 messages accepted" "$out" ""
check "all 5 delivered" sink_wait 5
check "they are logged status=sent" wait_for 10 sh -c "[ \$(grep -c 'status=sent' '$T/maillog') -ge 5 ]"
n=$(conns)
is "they shared one connection" "$n" "1"

# a server that closes a cached connection when it is used
stop_sluiced
kill "$SINKPID"
wait "$SINKPID" 2>/dev/null
rm -rf "$SINKDIR"
mkdir -p "$SINKDIR"
start_sink "$SINKPORT" "$SINKDIR" --reused-mail-reply close
start_sluiced
out=$(send 4)
is "server closes reused connections: 4 messages accepted" "$out" ""
check "all 4 delivered" sink_wait 4
is "none deferred" "$(grep -c 'status=deferred' "$T/maillog")" "0"
check "the server did close a reused connection" grep -q 'closed at a reused MAIL' "$SINKDIR/sink.log"

# 421 to the reused MAIL
stop_sluiced
kill "$SINKPID"
wait "$SINKPID" 2>/dev/null
rm -rf "$SINKDIR"
mkdir -p "$SINKDIR"
start_sink "$SINKPORT" "$SINKDIR" --reused-mail-reply "421 4.4.2 idle too long"
start_sluiced
out=$(send 3)
check "421 to a reused MAIL: all 3 delivered" sink_wait 3
is "none deferred" "$(grep -c 'status=deferred' "$T/maillog")" "0"

# a server that gives up on an idle cached connection (421, close): the
# cache sees it at once and closes its end (with a 60 s cache limit, a
# socket nobody watched would wait in CLOSE-WAIT); the next message gets
# a new connection, without a deferral
stop_sluiced
kill "$SINKPID"
wait "$SINKPID" 2>/dev/null
rm -rf "$SINKDIR"
mkdir -p "$SINKDIR"
start_sink "$SINKPORT" "$SINKDIR" --idle-close 0.3
write_conf "smtp_connection_cache_time_limit = 60s" \
    "smtp_connection_reuse_time_limit = 300s"
start_sluiced
# sockets toward the sink in CLOSE-WAIT (/proc/net/tcp state 08)
close_wait() {
    awk -v p=":$(printf '%04X' "$SINKPORT")" \
        '$4 == "08" && substr($3, length($3) - 4) == p { n++ } END { print n + 0 }' \
        /proc/net/tcp
}
out=$(send 1)
check "idle close: the first message delivered" sink_wait 1
check "the sink closed the idle cached connection" \
    wait_for 10 grep -q 'idle, closed' "$SINKDIR/sink.log"
no_close_wait() { [ "$(close_wait)" = 0 ]; }
check "Sluice closed its end at once (no CLOSE-WAIT)" wait_for 3 no_close_wait
out=$(send 1)
check "idle close: the second message delivered" sink_wait 2
is "idle close: a new connection for it" "$(conns)" "2"
is "idle close: none deferred" "$(grep -c 'status=deferred' "$T/maillog")" "0"

# cache off: one connection per message
stop_sluiced
kill "$SINKPID"
wait "$SINKPID" 2>/dev/null
rm -rf "$SINKDIR"
mkdir -p "$SINKDIR"
start_sink
write_conf "smtp_connection_cache_on_demand = no"
start_sluiced
out=$(send 3)
check "cache off: 3 delivered" sink_wait 3
sleep 0.5
is "cache off: 3 connections for 3 messages" "$(conns)" "3"
