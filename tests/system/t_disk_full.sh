#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_disk_full.sh - a full queue file system (the queue on a small tmpfs):
# - a non-delivery notice that cannot be queued leaves its failed
#   recipients queued and the message deferred; once there is room the
#   recipients fail again, the notice goes out, and a recipient that was
#   delivered is not delivered twice;
# - local delivery to a Maildir on a full file system is deferred, leaves
#   no half-written file, and is delivered once there is room;
# - MAIL FROM gets 452 4.3.1 when the queue has less than 1.5 x
#   message_size_limit or less than queue_minfree free (Postfix's check,
#   Postfix's log lines);
# - a message that does not fit gets 451 4.3.0 at the end of data, both
#   when its own queue file cannot be written and when the copy a milter's
#   body change needs cannot be; no queue file is left behind, nothing is
#   delivered, and the same message goes through once there is room.
# Needs root (mount); skipped otherwise.
. "$(dirname "$0")/lib.sh"
need_binaries
TMILTER=${TMILTER:-$top_builddir/tests/milter/tmilter}
[ "$(id -u)" = 0 ] || skip_all "mounting a tmpfs needs root"
[ -x "$TMILTER" ] || skip_all "no tests/milter/tmilter"
plan 41
export TMILTER
. "$SYSDIR/milter_lib.sh" # setup, start_tmilter
Q=$T/spool
mkdir -p "$Q"
mount -t tmpfs -o size=8m,mode=0755 sluice-test "$Q" ||
    skip_all "cannot mount a tmpfs"
_T_MOUNTS="$Q"

avail() {
    df -B1 --output=avail "$Q" | tail -n 1 | tr -d ' '
}
# leave BYTES: the filler takes all but about BYTES of the file system.
# free/ is emptied first (its recycled files are space the next queue
# file may or may not reuse), so what is left is exact to a block.
leave() {
    local n
    rm -f "$Q/filler" "$Q"/free/*
    n=$((($(avail) - $1) / 4096))
    if [ "$n" -gt 0 ]; then
        dd if=/dev/zero of="$Q/filler" bs=4096 count="$n" status=none
    fi
    return 0
}
fill_all() {
    rm -f "$Q"/free/*
    dd if=/dev/zero of="$Q/filler" bs=64k status=none 2>/dev/null
    return 0
}
# files in incoming/, active/ and deferred/ (queued or half-written)
queued() {
    find "$Q/incoming" "$Q/active" "$Q/deferred" -type f | wc -l
}
# send SIZE [SENDER [RCPT...]]: a message with a body of about SIZE
# bytes; prints the end-of-data reply (or the failing one)
send() {
    "$PYTHON3" - "$@" <<'PY'
import sys
from sink import *
size = int(sys.argv[1])
sender = sys.argv[2] if len(sys.argv) > 2 else "a@example.org"
rcpts = sys.argv[3:] or ["b@example.net"]
line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq\r\n"
body = b"Subject: size %d\r\n\r\n" % size + line * (size // len(line))
r = send_mail(int(env("PORT")), sender, rcpts, body)
print(r.text.replace("\n", " "))
PY
}

# --- a notice that cannot be queued ---------------------------------
# the next hop is down: the message waits in deferred/
write_conf "message_size_limit = 100000"
start_ok
out=$(send 2000 s@example.org good@example.net bad@example.net)
like "accepted while the next hop is down" "$out" '^250 .*queued as [0-9A-F]{14}'
ID=$(sed -n 's/.*queued as \([0-9A-F]\{14\}\).*/\1/p' <<<"$out")
check "deferred while the next hop is down" \
    log_wait 15 "$ID: to=<good@example.net>, .*status=deferred"
fill_all
is "the queue file system is full" "$(avail)" 0
start_sink "$SINKPORT" "$SINKDIR" --rcpt-match '^bad@'
sl queue flush >/dev/null 2>&1
check "log: the failed recipient is bounced" \
    log_wait 20 "$ID: to=<bad@example.net>, .*status=bounced"
check "log: the notice cannot be queued, the recipient stays queued" \
    log_wait 10 "warning: $ID: cannot queue non-delivery notice: .*No space left on device; its recipients stay queued"
check "the message stays in deferred/" wait_for 10 test -f "$Q/deferred/$ID"
check "the recipient that was accepted is delivered" sink_wait 1
rm -f "$Q/filler"
sl queue flush >/dev/null 2>&1
check "with room: the notice is queued" \
    log_wait 20 "$ID: sender non-delivery notification: [0-9A-F]{14}"
check "the message is removed" log_wait 10 "$ID: removed"
pytap <<'PY'
from sink import *
b = sink_find(r"RCPT TO:<s@example.org>")
tap(b and b"<bad@example.net>" in b[1] and b"Undelivered Mail" in b[1],
    "the notice reaches the sender and names the failed recipient",
    sink_msgs())
notes = [e for e, c in sink_msgs() if "RCPT TO:<s@example.org>" in e]
tap(len(notes) == 1, "one notice", "%d notices" % len(notes))
good = [e for e, c in sink_msgs() if "RCPT TO:<good@example.net>" in e]
tap(len(good) == 1, "the delivered recipient got the message once",
    "%d copies" % len(good))
PY
n=$(log_count "$ID: to=<bad@example.net>, .*status=bounced")
check "the failed recipient was tried again (bounced $n times in the log)" \
    test "$n" -ge 2
is "the queue is empty" "$(queued)" 0

# --- MAIL FROM with too little room ---------------------------------
leave 120000
out=$(send 2000)
is "MAIL with < 1.5 x message_size_limit free: 452 4.3.1" "$out" \
    "452 4.3.1 Insufficient system storage"
check "log: the reject line" log_has \
    "NOQUEUE: reject: MAIL from unknown\\[127\\.0\\.0\\.1\\]: 452 4\\.3\\.1 Insufficient system storage; from=<a@example.org> proto=ESMTP helo=<client.test>"
check "log: the free space warning" log_has \
    "warning: not enough free space in mail queue: [0-9]+ bytes < 1\\.5\\*message size limit"
leave 200000
out=$(send 2000)
like "MAIL with > 1.5 x message_size_limit free: accepted" "$out" '^250 '
check "and delivered" sink_wait 3

# --- messages that do not fit ---------------------------------------
stop_sluiced
start_tmilter m1 -f 'footer from the milter\n'
write_conf "message_size_limit = 0" "queue_minfree = 300000" \
    "smtpd_milters = unix:$T/m1.sock"
start_sluiced
leave 250000
out=$(send 2000)
is "MAIL with < queue_minfree free: 452 4.3.1" "$out" \
    "452 4.3.1 Insufficient system storage"

leave 400000
before=$(avail)
out=$(send 600000)
is "a message larger than the room: 451 4.3.0" "$out" \
    "451 4.3.0 Error: queue file write error"
check "log: the write error names the cause" log_has \
    "warning: [0-9A-F]{14}: queue file write error: No space left on device"
is "no queue file is left" "$(queued)" 0
is "its space is given back" "$(avail)" "$before"

leave 900000
before=$(avail)
out=$(send 600000)
is "a message that fits once but not twice (the milter's body change): 451 4.3.0" \
    "$out" "451 4.3.0 Error: queue file write error"
check "log: the rewrite error names the cause" log_has \
    "warning: [0-9A-F]{14}: queue file rewrite failed: .*No space left on device"
is "no queue file is left after the failed rewrite" "$(queued)" 0
is "the space of both copies is given back" "$(avail)" "$before"
check "the milter saw the message (its end of message)" grep -q '^eom' "$T/m1.log"
is "nothing of the refused messages was delivered" "$(sink_count)" 3

rm -f "$Q/filler"
out=$(send 600000)
like "with room the same message is accepted" "$out" '^250 '
check "and delivered" sink_wait 4
pytap <<'PY'
from sink import *
line = b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopq\r\n"
want = b"Subject: size 600000\r\n\r\n" + line * (600000 // len(line)) \
    + b"footer from the milter\r\n"
got = [c for e, c in sink_msgs() if b"Subject: size 600000" in c]
tap(len(got) == 1 and got[0].endswith(want),
    "delivered byte for byte with the milter's footer",
    "%d copies" % len(got), got and got[0][-200:])
PY

# --- local delivery to a full file system ---------------------------
M=$T/mail
mount -t tmpfs -o size=1m,mode=0755 sluice-mail "$M" || diag "cannot mount $M"
_T_MOUNTS="$_T_MOUNTS $M"
dd if=/dev/zero of="$M/filler" bs=64k status=none 2>/dev/null
out=$(send 20000 a@example.org user1@localhost)
like "mail for a local Maildir on a full disk is accepted" "$out" '^250 .*queued as [0-9A-F]{14}'
ID=$(sed -n 's/.*queued as \([0-9A-F]\{14\}\).*/\1/p' <<<"$out")
check "log: local delivery is deferred with the cause" \
    log_wait 15 "$ID: to=<user1@localhost>, relay=local, .*dsn=4\\.3\\.0, status=deferred \\(.*No space left on device"
is "no half-written file is left in the Maildir" \
    "$(find "$M/user1/tmp" -type f | wc -l)" 0
rm -f "$M/filler"
sl queue flush >/dev/null 2>&1
check "with room it is delivered" \
    log_wait 15 "$ID: to=<user1@localhost>, relay=local, .*status=sent"
is "one copy in the Maildir" "$(find "$M/user1/new" -type f | wc -l)" 1
is "the queue is empty at the end" "$(queued)" 0
check "sluiced still runs" alive "$MASTERPID"
