#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_fd_limit.sh - the open-file limit and the queue. Every message the
# queue manager holds keeps its queue file open, so with a low limit and
# a next hop that is down or stalls, a full active queue used to run out
# of descriptors, and each file it then failed to open was called
# corrupt and moved to corrupt/, where nothing delivers it. Now the
# active queue is capped below the limit (with a warning naming both),
# a file that cannot be opened for want of descriptors or memory goes
# back to deferred/ and is tried again, and sluiced raises its soft
# limit to the hard one. With 96 descriptors, 150 messages, the next hop
# first down, then accepting connections and never answering, then the
# queue manager's limit lowered under it, then a real sink: none reaches
# corrupt/ and every one is delivered once.
. "$(dirname "$0")/lib.sh"
need_binaries
command -v prlimit >/dev/null || skip_all "no prlimit (util-linux)"
plan 11
setup
write_conf "clamav_enable = no" "default_destination_concurrency_limit = 80" \
    "smtp_connect_timeout = 3s" "smtp_helo_timeout = 3s"
SLUICED_WRAP="prlimit --nofile=96:96" start_ok

check "log: the active queue capped below the open-file limit" log_wait 10 \
    'qmgr_message_active_limit = 20000 exceeds what the open file limit \(96\) allows: using 48'

out=$(py <<'PY'
from sink import *
print(sum(1 for i in send_numbered(int(env("PORT")), 150, "f") if i))
PY
)
is "150 messages queued with the next hop down" "$out" 150

# The next hop accepts and never answers: each delivery holds a
# connection as well as its queue file.
cat >"$T/stall.py" <<'PY'
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(512)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
PY
"$PYTHON3" "$T/stall.py" "$SINKPORT" >>"$T/stall.out" 2>&1 &
STALLPID=$!
_T_PIDS="$_T_PIDS $STALLPID"
wait_port 127.0.0.1 "$SINKPORT" 10
sleep 8
stop_pid "$STALLPID" 5

# Descriptors run out under the queue manager (its limit lowered while it
# runs, below what its cap assumed): the files it cannot open go back to
# deferred/ and are tried again.
QMGR=$(child_pid qmgr)
prlimit --pid "$QMGR" --nofile=24:24
check "log: a queue file that cannot be opened (EMFILE) is tried again" \
    log_wait 15 ': open [^ ]*/active/[^ ]*: Too many open files: trying again in 1s'
prlimit --pid "$QMGR" --nofile=96:96

corrupt=$(find "$T/spool/corrupt" -type f 2>/dev/null | wc -l)
is "no queue file moved to corrupt/" "$corrupt" 0
check_not "log: no 'corrupt queue file'" log_has 'corrupt queue file'
check_not "log: no queue file left in active/ for want of descriptors" \
    log_has 'left in active until'
check "qmgr still runs" alive "$(child_pid qmgr)"

start_sink
check "all 150 reach the next hop once it answers" sink_wait 150 90
check "the queue empties" wait_for 20 queue_empty
pytap <<'PY'
from sink import *
seqs = seqs_in(open(f, "rb").read() for f in eml_files(env("SINKDIR")))
tap(seqs == list(range(1, 151)),
    "each of the 150 delivered exactly once (%d files)" % len(seqs))
PY
