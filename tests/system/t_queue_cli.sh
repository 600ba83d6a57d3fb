#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_queue_cli.sh - `sluice queue list|--json|cat|hold|release|delete|
# requeue|flush` against a running daemon and a stopped one.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 39
setup
write_conf
start_ok

queue_msg() { # queue_msg N -> prints the queue ID
    py "$1" <<'PY'
import sys
from sink import *
n = int(sys.argv[1])
r = send_mail(int(env("PORT")), "s%d@example.org" % n, ["r%d@example.net" % n],
              b"Subject: cli message %d\r\nMessage-ID: <cli-%d@example.org>\r\n\r\nbody %d\r\n" % (n, n, n))
print(queued_id(r) or r.text)
PY
}
ID1=$(queue_msg 1)
ID2=$(queue_msg 2)
ID3=$(queue_msg 3)
like "three messages queued with the next hop down" "$ID1 $ID2 $ID3" \
    '^[0-9A-F]{14} [0-9A-F]{14} [0-9A-F]{14}$'
export ID1 ID2 ID3
log_wait 10 "$ID3: to=<r3@example\.net>.*status=deferred"

out=$(sl queue list 2>&1)
rc=$?
result "queue list exits 0" $rc
pytap "$out" <<'PY'
import sys
from sink import *
out = sys.argv[1]
for n in (1, 2, 3):
    i = env("ID%d" % n)
    blk = [b for b in out.split("\n\n") if i in b]
    tap(blk and ("s%d@example.org" % n) in blk[0] and ("r%d@example.net" % n) in blk[0],
        "queue list: ID%d with its sender and recipient" % n, out)
tap(re.search(r"\b3 Requests?\.", out) or "in 3 Requests" in out,
    "queue list ends with the mailq summary (3 Requests)", out)
PY

out=$(sl queue list --json 2>&1)
pytap "$out" <<'PY'
import json, sys
from sink import *
objs = []
try:
    objs = [json.loads(l) for l in sys.argv[1].splitlines() if l.strip()]
except ValueError as ex:
    tap(False, "queue list --json: one JSON object per line", ex, sys.argv[1])
else:
    tap(len(objs) == 3, "queue list --json: one JSON object per message", sys.argv[1])
o = [x for x in objs if x.get("queue_id") == env("ID1")]
o = o[0] if o else {}
tap(o.get("sender") == "s1@example.org"
    and [r.get("address") for r in o.get("recipients", [])] == ["r1@example.net"]
    and o.get("queue_name") in ("deferred", "active", "incoming")
    and isinstance(o.get("message_size"), int) and o["message_size"] > 0
    and isinstance(o.get("arrival_time"), int) and abs(o["arrival_time"] - time.time()) < 600,
    "--json: queue_name, queue_id, arrival_time, message_size, sender, recipients", o)
PY

out=$(sl queue cat "$ID1" 2>&1)
rc=$?
result "queue cat ID exits 0" $rc
like "queue cat shows the envelope" "$out" 's1@example\.org'
like "queue cat shows the content" "$out" '^Subject: cli message 1'

check "queue hold ID1" sl queue hold "$ID1"
like "queue list marks it held with !" "$(sl queue list 2>&1)" "^$ID1!"
like "--json: queue_name hold" "$(sl queue list --json 2>&1)" "\"queue_name\": *\"hold\", *\"queue_id\": *\"$ID1\"|\"queue_id\": *\"$ID1\".*\"queue_name\": *\"hold\""
check "queue release ID1" sl queue release "$ID1"
unlike "released: no ! any more" "$(sl queue list 2>&1)" "^$ID1!"

check "queue delete ID2" sl queue delete "$ID2"
unlike "deleted: gone from the list" "$(sl queue list 2>&1)" "^$ID2"
check_not "queue cat of a deleted ID fails" sl queue cat "$ID2"
check_not "queue delete of an unknown ID fails" sl queue delete 0123456789ABCD
check "queue requeue ID3" sl queue requeue "$ID3"
like "requeued: still listed" "$(sl queue list 2>&1)" "^$ID3"

ID4=$(queue_msg 4)
ID5=$(queue_msg 5)
export ID4 ID5
stop_sluiced
is "SIGTERM: sluiced exits 0" "$STOP_RC" 0

# --- daemon stopped
out=$(sl queue list 2>&1)
like "stopped: queue list still works" "$out" "^$ID4"
check "stopped: queue delete ID4" sl queue delete "$ID4"
unlike "stopped: deleted one gone" "$(sl queue list 2>&1)" "^$ID4"
check "stopped: queue hold ID3" sl queue hold "$ID3"

# --- requeue from corrupt/: a sound file (as a queue manager out of
# descriptors used to put there) goes back; one that does not parse stays
f5=$(find "$T/spool" -type f -name "$ID5" | head -n 1)
mv "$f5" "$T/spool/corrupt/$ID5"
printf 'not a queue file\n' >"$T/spool/corrupt/ABCDEF01234567"
unlike "a file in corrupt/ is not listed" "$(sl queue list 2>&1)" "^$ID5"
out=$(sl queue requeue ABCDEF01234567 2>&1)
rc=$?
like "requeue of a file that does not parse fails: Bad message" "$rc $out" \
    "^[1-9][0-9]* .*ABCDEF01234567: requeue: Bad message"
check "it stays in corrupt/" test -f "$T/spool/corrupt/ABCDEF01234567"
check "requeue of a sound file in corrupt/ (ID5)" sl queue requeue "$ID5"
check "ID5 left corrupt/" test ! -e "$T/spool/corrupt/$ID5"
like "ID5 is listed again" "$(sl queue list 2>&1)" "^$ID5"

# --- restart with the next hop up
start_sink
start_sluiced
check "queue flush exits 0" sl queue flush
check "ID1 and ID5 are delivered" sink_wait 2 15
sleep 2
pytap <<'PY'
from sink import *
envs = "".join(e for e, c in sink_msgs())
tap("r1@example.net" in envs and "r5@example.net" in envs
    and not any(("r%d@" % n) in envs for n in (2, 3, 4)),
    "ID1 and the requeued ID5 delivered: deleted ones never, the held one not yet", envs)
PY
sl queue release "$ID3" >/dev/null 2>&1
sl queue flush >/dev/null 2>&1
check "released ID3 is delivered" sink_wait 3 15
check "queue is empty" wait_for 10 queue_empty
