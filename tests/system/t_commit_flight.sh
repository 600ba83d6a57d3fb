#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_commit_flight.sh - group commits in flight at once. The front's files
# wait for the batch in flight and go together in the next one, unless a
# big file (256 KB of content or more) waits or is in flight: then
# another batch starts beside it. With fsync slowed (tests/system/ioshim.c):
#   - a 1.2 MB message sent while a 2 MB one's commit is held gets its
#     250 first, and so does a 10 KB one: neither waits behind it;
#   - two 10 KB messages sent while a 10 KB one's commit is held wait for
#     it, and then go in one batch of 2 files.
# Every message is delivered byte for byte.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 15
setup
write_conf "sluice_worker_threads = 4"
start_sink

# fsync of files of 1.5 MB and more sleeps 3 s: the 2 MB message only
check "tests/system/ioshim.c builds" ioshim_wrap "$T/slow" \
    IOSHIM_FSYNC_US=3000000 IOSHIM_FSYNC_MIN=1500000
SLUICED_WRAP=$T/slow start_ok

# send_at "DELAY:SIZE ..." -> one line per message, in the order given:
# "<seconds from the start to its end-of-data reply> <code> <queue ID>"
cat >"$T/send_at.py" <<'PY'
import sys, threading, time
from sink import *

port = int(env("PORT"))
plan = [(float(d), int(n)) for d, n in (a.split(":") for a in sys.argv[1:])]
out = [None] * len(plan)
t0 = time.monotonic()

def one(i, delay, size):
    time.sleep(delay)
    line = "X" * 76 + "\r\n"
    body = ("Subject: flight %d\r\nX-Seq: %d\r\n\r\n" % (i, i)
            + line * (size // len(line)))
    r = send_mail(port, "a@example.org", ["x%d@example.net" % i],
                  body.encode())
    out[i] = "%.3f %d %s" % (time.monotonic() - t0, r.code, queued_id(r))

ts = [threading.Thread(target=one, args=(i, d, n))
      for i, (d, n) in enumerate(plan)]
for t in ts:
    t.start()
for t in ts:
    t.join()
for o in out:
    print(o)
PY
send_at()
{
    PYTHONPATH=$top_srcdir/tests/system "$PYTHON3" "$T/send_at.py" "$@"
}

# reply time of line N (1-based) of $R, its code, and whether $1 < $2
rt() { sed -n "${1}p" <<<"$R" | cut -d' ' -f1; }
rc() { sed -n "${1}p" <<<"$R" | cut -d' ' -f2; }
before() { "$PYTHON3" -c "import sys; sys.exit(0 if $1 < $2 else 1)"; }

# 1: a 2 MB message (its fsync held 3 s); 1 s later a 1.2 MB one, 1.5 s
# later a 10 KB one
R=$(send_at 0:2000000 1:1200000 1.5:10000)
diag "replies (s code id): $(tr '\n' ';' <<<"$R")"
check "big: all three get 250" \
    test "$(rc 1)$(rc 2)$(rc 3)" = "250250250"
check "the 1.2 MB message's 250 comes before the held 2 MB one's" \
    before "$(rt 2)" "$(rt 1)"
check "the 10 KB message's 250 comes before the held 2 MB one's" \
    before "$(rt 3)" "$(rt 1)"
check "log (debug): a batch started beside the held one" \
    log_has "group commit: 1 file\(s\)(, a big one)?, [23] batch\(es\) in flight"
check "the sink gets the three" sink_wait 3 30
stop_sluiced

# 2: every file's fsync held 1.5 s: a 10 KB message, then two more 0.5
# and 1 s later, while the first one's commit is held
check "ioshim: every fsync of a file held" ioshim_wrap "$T/slow2" \
    IOSHIM_FSYNC_US=1500000
SLUICED_WRAP=$T/slow2 start_ok
: >"$T/maillog"
R=$(send_at 0:10000 0.5:10000 1:10000)
diag "replies (s code id): $(tr '\n' ';' <<<"$R")"
check "small: all three get 250" \
    test "$(rc 1)$(rc 2)$(rc 3)" = "250250250"
check "the second waits for the first's commit" before "$(rt 1)" "$(rt 2)"
check "log (debug): the two that waited went in one batch" \
    log_has "group commit: 2 file\(s\), 1 batch\(es\) in flight"
check_not "log (debug): never two small batches in flight at once" \
    log_has "group commit: .*, [23] batch\(es\) in flight"
check "the sink gets all six, byte for byte" sink_wait 6 30
stop_sluiced
pytap <<'PY'
from sink import *
line = b"X" * 76
want = sorted(n // 78 for n in (2000000, 1200000, 10000, 10000, 10000, 10000))
got, bad = [], []
for e, c in sink_msgs():
    body = c.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1].rstrip(b"\n")
    lines = body.split(b"\n")
    if any(l != line for l in lines):
        bad.append(e)
    got.append(len(lines))
tap(not bad and sorted(got) == want,
    "the six bodies are the lines sent, none lost or cut",
    "line counts %s, want %s" % (sorted(got), want), *bad)
PY
result
