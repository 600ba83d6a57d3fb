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
during_slow_scan incoming/ "scan of incoming/: 300[01] file\(s\)"
check "log (debug): that scan read the 3,000 files" \
    log_has "scan of incoming/: 300[01] file\(s\), [0-9]+ taken, [0-9.]+ ms in the pool"
incoming_empty() { [ -z "$(ls -A "$T/spool/incoming")" ]; }
corrupt_all() { [ "$(find "$T/spool/corrupt" -type f | wc -l)" -eq 3000 ]; }
check "every one of the 3,000 files is taken: incoming/ is empty" \
    wait_for 30 incoming_empty
check "and all 3,000 (empty, unreadable) are in corrupt/" wait_for 30 corrupt_all
stop_sluiced
