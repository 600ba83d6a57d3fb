#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_kill9.sh - durability and supervision. 20 messages that got 250
# survive kill -9 of every process and are delivered exactly once after
# a restart; kill -9 of the front only: the master logs it and restarts
# it, the queue manager carries on.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 14
setup
write_conf
start_ok

out=$(py <<'PY'
from sink import *
print(sum(1 for i in send_numbered(int(env("PORT")), 20, "k") if i))
PY
)
is "20 messages queued (next hop down)" "$out" 20

kids=$(children "$MASTERPID")
kill9_sluiced
sleep 0.2
left=""
for k in $kids; do alive "$k" && left="$left $k"; done
is "kill -9 of master and children leaves no process" "$left" ""

start_sink
start_sluiced
result "sluiced starts again on the same queue" "$(alive "$MASTERPID"; echo $?)"
check "all 20 reach the next hop" sink_wait 20 30
sleep 2
pytap <<'PY'
from sink import *
seqs = seqs_in(c for e, c in sink_msgs())
tap(seqs == list(range(1, 21)), "each of the 20 delivered exactly once", seqs)
PY
check "queue is empty" wait_for 10 queue_empty

# --- kill -9 of the front only
FRONT=$(child_pid smtpd)
QMGR=$(child_pid qmgr)
like "front (smtpd) and qmgr children are running" "$FRONT $QMGR" '^[0-9]+ [0-9]+$'
export FRONT
pytap <<'PY'
import signal
from sink import *
c = Client(int(env("PORT")))
c.reply()
c.cmd("EHLO client.test")
os.kill(int(env("FRONT")), signal.SIGKILL)
tap(c.closed(5), "a connected client is disconnected when the front dies")
c.close()
PY
check "log: warning: process smtpd pid N killed by signal 9" \
    log_wait 10 "warning: process smtpd pid $FRONT killed by signal 9"
new_front() {
    local f
    f=$(child_pid smtpd)
    [ -n "$f" ] && [ "$f" != "$FRONT" ]
}
check "the master starts a new front" wait_for 15 new_front
pytap <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["after@example.net"],
              b"Subject: after-front-kill\r\n\r\nhello\r\n")
tap(r.code == 250, "new connections work after the restart", r)
tap(sink_find(r"after-front-kill"), "and their mail is delivered")
PY
is "the qmgr pid is unchanged" "$(child_pid qmgr)" "$QMGR"
