#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_queue_faults.sh - what the queue does when things go wrong: mail that
# cannot be delivered within maximal_queue_lifetime is logged
# status=expired and kept in the hold queue; a queue file that cannot be
# parsed goes to corrupt/ with a log line, never silently dropped; a kill
# -9 of the queue manager is logged, it is restarted, the front goes on
# accepting mail meanwhile and that mail is delivered; datagrams on its
# wake-up socket that name no queue file (bad names, an unknown ID, too
# long) are ignored.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 16
setup
# the next hop is down for the whole first part
write_conf "maximal_queue_lifetime = 3s"
start_ok

out=$(py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["late@example.net"],
              b"Subject: expire me\r\n\r\nnever delivered\r\n")
print(queued_id(r) or "none")
PY
)
like "message queued while the next hop is down" "$out" '^[0-9A-F]{14}$'
ID=$out
check "log: status=deferred first" log_wait 10 "$ID: to=<late@example.net>, .*status=deferred"
check "log: status=expired after maximal_queue_lifetime" \
    log_wait 20 "$ID: to=<late@example.net>, relay=none, .*dsn=4\\.4\\.7, status=expired"
check "the expired message is kept in the hold queue" \
    wait_for 10 test -f "$T/spool/hold/$ID"
like "queue list shows it held (!)" "$(sl queue list)" "$ID!"

# a queue file that cannot be parsed
BAD=0123456789ABCD
printf 'this is not a queue file\n' >"$T/spool/incoming/$BAD"
sl queue flush >/dev/null 2>&1
check "a corrupt queue file is moved to corrupt/" \
    wait_for 15 test -f "$T/spool/corrupt/$BAD"
check "log: the corrupt file is named with the reason" \
    log_wait 5 "warning: $BAD: corrupt queue file moved to corrupt: .+"

# kill -9 of the queue manager
QMGR=$(child_pid qmgr)
FRONT=$(child_pid smtpd)
kill -KILL "$QMGR" 2>/dev/null
check "log: warning: process qmgr pid N killed by signal 9" \
    log_wait 10 "warning: process qmgr pid $QMGR killed by signal 9"
start_sink
out=$(py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["after@example.net"],
              b"Subject: after qmgr crash\r\n\r\nhello\r\n")
print(queued_id(r) or "none")
PY
)
like "the front accepts mail while the qmgr restarts" "$out" '^[0-9A-F]{14}$'
check "that mail is delivered by the restarted qmgr" sink_wait 1 20
NEWQ=$(child_pid qmgr)
like "a new qmgr runs and the front is the same process" \
    "$NEWQ $(child_pid smtpd)" "^[0-9]+ $FRONT\$"

# bad wake-up datagrams on public/qmgr: names that are not queue IDs, an
# ID with no file, one too long for the buffer; the queue manager ignores
# what it cannot use, scans, and goes on
"$PYTHON3" - "$T/spool/public/qmgr" "$T/spool/incoming" <<'PY'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for d in [b"N ../../etc/passwd", b"N 0123456789ABCZ", b"N 0123456789ABC",
          b"N 0123456789ABCD0", b"N  ", b"N FFFFFFFFFFFFF1", b"X",
          b"N " + b"0123456789ABCD " * 400, b""]:
    s.sendto(d, sys.argv[1])
PY
check "the queue manager survives bad datagrams" alive "$NEWQ"
out=$(py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["after2@example.net"],
              b"Subject: after bad datagrams\r\n\r\nhello\r\n")
print(queued_id(r) or "none")
PY
)
like "mail is accepted after them" "$out" '^[0-9A-F]{14}$'
check "and delivered" sink_wait 2 20
check_not "no warning about a queue ID that has no file" \
    grep -q "FFFFFFFFFFFFF1" "$T/maillog"
