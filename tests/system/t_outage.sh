#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_outage.sh - the next hop is down (mail waits in the queue and goes
# out once it is back), answers 451 to RCPT (deferred), 550 (bounced,
# with a bounce to the sender), 451 at end of data once (deferred, then
# delivered). transport_maps routes each case to its own sink. 40
# deferred messages requeued at once (one scan of incoming/ takes more
# files than the queue manager takes on its loop: the rest go through
# its pool) are each delivered exactly once. A deferred message whose
# queue file has left the page cache is read in the queue manager's pool,
# not on its loop, and goes out whole.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 37
setup
P2=$(free_port)
P3=$(free_port)
P4=$(free_port)
P5=$(free_port)
P6=$(free_port)
P7=$(free_port)
export P2 P3 P4 P5 P6 P7
write_conf "transport_maps = inline:{ temp.example=smtp:[127.0.0.1]:$P2, reject.example=smtp:[127.0.0.1]:$P3, data.example=smtp:[127.0.0.1]:$P4, later.example=smtp:[127.0.0.1]:$P5, again.example=smtp:[127.0.0.1]:$P6, cold.example=smtp:[127.0.0.1]:$P7 }"
start_ok

# --- next hop down
out=$(py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["down@example.net"],
              b"Subject: outage\r\nMessage-ID: <outage-1@example.org>\r\n\r\nwait for me\r\n")
print(queued_id(r) or r.text)
PY
)
ID=$out
like "next hop down: the client still gets 250 queued" "$ID" '^[0-9A-F]{14}$'
check "log: ID: to=<down@example.net>, ... status=deferred" \
    log_wait 15 "$ID: to=<down@example\.net>, relay=.*status=deferred \("
out=$(sl queue list 2>&1)
like "sluice queue list shows the deferred message" "$out" "^$ID"
like "  with its recipient" "$out" 'down@example\.net'

start_sink
check "next hop back: the message is delivered within 15 s" sink_wait 1 15
check "log: ID: ... status=sent" log_wait 10 "$ID: to=<down@example\.net>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$SINKPORT, .*status=sent"
check "log: ID: removed" log_wait 10 "$ID: removed"
check "queue becomes empty" wait_for 10 queue_empty

# --- 451 at RCPT, 550 at RCPT, 451 at end of data (first time only)
start_sink "$P2" "$T/sink2" --rcpt-match . --rcpt-reply "451 4.2.0 try later"
start_sink "$P3" "$T/sink3" --rcpt-match . --rcpt-reply "550 5.1.1 no such user"
start_sink "$P4" "$T/sink4" --data-reply "451 4.3.0 try again later" --data-fail-count 1
pytap <<'PY'
from sink import *
port = int(env("PORT"))
def send(sender, rcpt, tag):
    r = send_mail(port, sender, [rcpt],
                  b"Subject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\nbody\r\n" % (tag, tag))
    return queued_id(r), r
t_id, r1 = send("a@example.org", "x@temp.example", b"outage-temp")
j_id, r2 = send("bouncecheck@example.org", "x@reject.example", b"outage-reject")
d_id, r3 = send("a@example.org", "x@data.example", b"outage-data")
tap(t_id and j_id and d_id, "three messages queued", r1, r2, r3)
tap(log_wait(r"%s: to=<x@temp\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%s, .*status=deferred \(.*451 4\.2\.0 try later" % (t_id, env("P2"))),
    "451 at RCPT: status=deferred with the next hop's reply")
tap(log_wait(r"%s: to=<x@reject\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%s, .*dsn=5\.1\.1, status=bounced \(.*550 5\.1\.1 no such user" % (j_id, env("P3"))),
    "550 at RCPT: dsn=5.1.1, status=bounced with the next hop's reply")
tap(log_wait(r"%s: removed" % j_id), "the bounced message is removed")
b = sink_find(r"RCPT TO:<bouncecheck@example\.org>")
tap(b and b[0].startswith("MAIL FROM:<>\n"),
    "a bounce from the null sender goes to the original sender", b and b[0])
tap(b and b"x@reject.example" in b[1], "the bounce names the failed recipient", b and b[1][:600])
tap(log_wait(r"%s: to=<x@data\.example>, .*status=deferred \(.*451 4\.3\.0 try again later" % d_id),
    "451 at end of data: status=deferred")
tap(log_wait(r"%s: to=<x@data\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%s, .*status=sent" % (d_id, env("P4"))),
    "and delivered on a later attempt")
time.sleep(1)
n = len(eml_files(os.path.join(env("T"), "sink4")))
tap(n == 1, "exactly one copy reaches that next hop (%d)" % n)
out = os.popen('"$SLUICE" -c "$CONF" queue list').read()
tap(t_id in out and "x@temp.example" in out, "the 451-at-RCPT message is still queued", out)
tap(j_id not in out and d_id not in out, "the bounced and the delivered ones are not", out)
PY

# queue_down N LOCALPART DOMAIN: N messages (X-Seq 1..N) to
# LOCALPARTi@DOMAIN, whose next hop is down: each queued, each deferred
queue_down()
{
    N=$1 LP=$2 DOM=$3 pytap <<'PY'
from sink import *
port, n, lp, dom = int(env("PORT")), int(env("N")), env("LP"), env("DOM")
ids = []
for i in range(1, n + 1):
    r = send_mail(port, "a@example.org", ["%s%d@%s" % (lp, i, dom)],
                  b"Subject: %s %d\r\nX-Seq: %d\r\n\r\nbody\r\n" % (lp.encode(), i, i))
    ids.append(queued_id(r))
tap(all(ids), "%d messages queued for %s, whose next hop is down" % (n, dom), ids)
pat = r"%s: to=<" + re.escape(lp) + r"\d+@" + re.escape(dom) + r">, .*status=deferred"
missing = [i for i in ids if i and not log_wait(pat % i, 10)]
tap(not missing, "each is deferred", missing)
PY
}

# --- several messages wait out an outage together
queue_down 20 m later.example
start_sink "$P5" "$T/sink5"
check "when it comes back all 20 are delivered within 20 s" sink_wait 20 20 "$T/sink5"

# --- 40 deferred messages requeued at once: one scan of incoming/ finds
# more files than the queue manager takes on its loop (16)
queue_down 40 r again.example
start_sink "$P6" "$T/sink6"
check "sluice queue requeue ALL" sl queue requeue ALL
check "all 40 are delivered within 15 s" sink_wait 40 15 "$T/sink6"
sleep 1
pytap <<'PY'
import re
from sink import *
seqs = []
for f in eml_files(os.path.join(env("T"), "sink6")):
    m = re.search(rb"\r\nX-Seq: (\d+)\r\n", open(f, "rb").read())
    if m:
        seqs.append(int(m.group(1)))
tap(sorted(seqs) == list(range(1, 41)), "each of the 40 exactly once", sorted(seqs))
PY

# --- a deferred 600 KB message whose queue file left the page cache: the
# queue manager (with -v, for its debug lines) reads the content in its
# pool, and the message arrives byte for byte. The kernel's readahead
# can bring pages back before the client asks for them, so
# tests/system/ioshim.c makes every RWF_NOWAIT read fail as a read of a
# page that is not in the cache does.
stop_sluiced
check "tests/system/ioshim.c builds" ioshim_wrap "$T/verbose" IOSHIM_NOWAIT_EAGAIN=1
SLUICED_WRAP=$T/verbose start_ok
out=$(py <<'PY'
from sink import *
body = b"".join(b"%06d cold line of the message body, long enough to fill it\r\n" % i
                for i in range(10000))
msg = b"Subject: cold\r\nMessage-ID: <cold-1@example.org>\r\n\r\n" + body
open(os.path.join(env("T"), "cold.eml"), "wb").write(msg)
r = send_mail(int(env("PORT")), "a@example.org", ["x@cold.example"], msg)
print(queued_id(r) or r.text)
PY
)
ID=$out
like "a 600 KB message for a next hop that is down is queued" "$ID" '^[0-9A-F]{14}$'
check "and deferred" log_wait 15 "$ID: to=<x@cold\.example>, relay=.*status=deferred \("
evict() { # drop the queue file's pages; 0 when none is left in memory
    python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$T/spool/deferred/$ID" &&
        [ "$(fincore --bytes --noheadings -o RES "$T/spool/deferred/$ID" | tr -d " ")" = 0 ]
}
check "its queue file is no longer in the page cache" evict
start_sink "$P7" "$T/sink7"
check "sluice queue flush" sl queue flush
check "next hop back: it is delivered" sink_wait 1 15 "$T/sink7"
check "log: the content was read in the pool" \
    log_wait 10 "$ID: smtp: content at [0-9]+ not in the page cache: read in the pool"
pytap <<'PY'
from sink import *
want = open(os.path.join(env("T"), "cold.eml"), "rb").read()
m = sink_find(r"<cold-1@example\.org>", os.path.join(env("T"), "sink7"), secs=10)
rcv, rest = split_received(m[1] if m else b"")
tap(rest == want, "the message arrives byte for byte (%d bytes)" % len(want),
    "got %d bytes" % len(rest))
PY
