#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_incoming_scan.sh - the queue manager reads incoming/ in its pool, not
# on its loop: with 3,000 files in incoming/ whose directory entries are
# made slow to read (1 ms each, tests/system/ioshim.c), a scan takes over
# 3 s, and a message that arrives meanwhile is delivered before that scan
# ends. Every one of the 3,000 files is then taken (empty, so moved to
# corrupt/): nothing is lost.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 10
setup
write_conf
start_sink
start_ok
stop_sluiced

# 3,000 files in incoming/, as after an outage of the queue manager
"$PYTHON3" - <<'PY'
import os
d = os.path.join(os.environ["T"], "spool", "incoming")
for i in range(3000):
    open(os.path.join(d, "%014X" % (0x10000000000000 + i)), "w").close()
PY
check "tests/system/ioshim.c builds" ioshim_wrap "$T/slow" \
    IOSHIM_READDIR_US=1000 IOSHIM_READDIR_COMM=qmgr
# the queue manager's first scan of incoming/ starts with it and takes
# over 3 s; the front starts at once (its threads are not slowed)
SLUICED_WRAP=$T/slow start_ok
out=$(py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["x@example.net"],
              b"Subject: during the scan\r\nMessage-ID: <iscan-1@example.org>\r\n\r\nhello\r\n")
print(queued_id(r) or r.text)
PY
)
ID=$out
export ID
like "a message sent while incoming/ is being scanned is queued" "$ID" '^[0-9A-F]{14}$'
check "and delivered" log_wait 20 "$ID: to=<x@example\.net>, .*status=sent"
check "log (debug): a scan of incoming/ reads the 3,000 files" \
    log_wait 30 "scan of incoming/: 300[01] file\(s\), [0-9]+ taken, [0-9.]+ ms in the pool"
pytap <<'PY'
from sink import *
lines = open(env("LOG"), errors="replace").read().splitlines()
sent = [i for i, l in enumerate(lines) if env("ID") in l and "status=sent" in l]
scan = [i for i, l in enumerate(lines)
        if re.search(r"scan of incoming/: 300[01] file\(s\)", l)]
tap(sent and scan and sent[0] < scan[0],
    "the delivery is logged before the scan's end: the loop did not wait for it",
    "sent at line %s, scan at line %s" % (sent[:1], scan[:1]))
ms = [float(re.search(r"([0-9.]+) ms in the pool", lines[i]).group(1)) for i in scan]
tap(ms and ms[0] >= 3000, "the scan took over 3 s (%s ms)" % (ms[:1],))
PY
incoming_empty() { [ -z "$(ls -A "$T/spool/incoming")" ]; }
corrupt_all() { [ "$(find "$T/spool/corrupt" -type f | wc -l)" -eq 3000 ]; }
check "every one of the 3,000 files is taken: incoming/ is empty" \
    wait_for 30 incoming_empty
check "and all 3,000 (empty, unreadable) are in corrupt/" wait_for 30 corrupt_all
stop_sluiced
