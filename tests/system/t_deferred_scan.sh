#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_deferred_scan.sh - the queue manager scans deferred/ in its pool, not
# on its loop: with 3,000 deferred messages whose inode reads are made
# slow (1 ms each, tests/system/ioshim.c), a scan takes over 3 s, and a
# message that arrives meanwhile is delivered before that scan ends. The
# scan still finds the one due message among them, and takes none of
# those that are not due.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 10
setup
write_conf
start_sink
start_ok
stop_sluiced

# 3,000 deferred messages due in a day (empty files: not due, so never
# read)
"$PYTHON3" - <<'PY'
import os, time
d = os.path.join(os.environ["T"], "spool", "deferred")
later = time.time() + 86400
for i in range(3000):
    p = os.path.join(d, "%014X" % (0x10000000000000 + i))
    open(p, "w").close()
    os.utime(p, (later, later))
PY
check "3,000 not-due files in deferred/" \
    test "$(find "$T/spool/deferred" -type f | wc -l)" -eq 3000

check "tests/system/ioshim.c builds" ioshim_wrap "$T/slow" IOSHIM_FSTATAT_US=1000
SLUICED_WRAP=$T/slow start_ok
during_slow_scan deferred/ "scan of deferred/: 3000 file\(s\)"
check "log (debug): the scan of deferred/ ends: 3000 files, none taken" \
    log_wait 30 "scan of deferred/: 3000 file\(s\), 0 taken, [0-9.]+ ms in the pool"
check "no file of deferred/ was taken" \
    test "$(find "$T/spool/deferred" -type f | wc -l)" -eq 3000
stop_sluiced
