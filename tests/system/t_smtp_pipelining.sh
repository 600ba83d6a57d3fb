#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_smtp_pipelining.sh - the SMTP client's PIPELINING (RFC 2920): with a
# server that announces it, MAIL FROM, every RCPT TO and DATA arrive in
# one group before the server's first reply, and the replies are matched
# to them in order (a refused recipient among accepted ones bounces
# alone); recipients beyond one group's size go in further groups; when
# every RCPT is refused and a broken server still answers 354 to DATA,
# no content is sent and the transaction is aborted; a server without
# PIPELINING, or one whose PIPELINING smtp_discard_ehlo_keywords discards,
# gets one command at a time.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 24
setup

# A scripted server: per transaction it records the commands that arrive
# before it answers the first one (waiting 0.4 s for more), then answers
# them in order. RCPTs containing "refuse" get 550; DATA with no accepted
# recipient gets 554, or 354 with --broken. Messages go to DIR/msg.N,
# groups to DIR/batch.N (one command per line), aborts to DIR/aborted.N.
cat >"$T/pipesrv.py" <<'PY'
import os, select, socket, socketserver, sys, threading

port, d, pipelining, broken = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "yes", sys.argv[4] == "yes"
lock = threading.Lock()
count = {"batch": 0, "msg": 0, "aborted": 0}

def save(kind, data):
    with lock:
        count[kind] += 1
        n = count[kind]
    with open(os.path.join(d, "%s.%d.tmp" % (kind, n)), "wb") as f:
        f.write(data)
    os.rename(os.path.join(d, "%s.%d.tmp" % (kind, n)), os.path.join(d, "%s.%d" % (kind, n)))

class H(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        self.buf = b""
        s.sendall(b"220 pipesrv ESMTP\r\n")
        while True:
            line = self.line()
            if line is None:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                s.sendall(b"250-pipesrv\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"") + b"250 8BITMIME\r\n")
            elif verb == b"QUIT":
                s.sendall(b"221 bye\r\n")
                return
            elif verb == b"MAIL":
                if not self.transaction(line):
                    return
            else:
                s.sendall(b"502 5.5.2 no\r\n")

    def line(self, wait=60.0):
        while b"\r\n" not in self.buf:
            r, _, _ = select.select([self.request], [], [], wait)
            if not r:
                return b"" if wait < 60 else None
            chunk = self.request.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def transaction(self, mail):
        s = self.request
        group = [mail]
        while True:  # everything the client sends before our first reply
            line = self.line(0.4)
            if line is None:
                break
            if line == b"":
                break
            group.append(line)
        save("batch", b"\n".join(group) + b"\n")
        pending = group
        rcpts = []
        while True:
            for c in pending:
                v = c[:4].upper()
                if v == b"MAIL":
                    s.sendall(b"250 2.1.0 ok\r\n")
                elif v == b"RCPT":
                    if b"refuse" in c:
                        s.sendall(b"550 5.1.1 refused here\r\n")
                    else:
                        rcpts.append(c[8:])
                        s.sendall(b"250 2.1.5 ok\r\n")
                elif v == b"DATA":
                    if not rcpts and not broken:
                        s.sendall(b"554 5.5.1 no valid recipients\r\n")
                        return True
                    s.sendall(b"354 go\r\n")
                    body = []
                    while True:
                        l = self.line()
                        if l is None:
                            save("aborted", b"\n".join(rcpts) + b"\n")
                            return False
                        if l == b".":
                            break
                        body.append(l)
                    save("msg", b"\n".join(rcpts) + b"\n--\n" + b"\n".join(body) + b"\n")
                    s.sendall(b"250 2.0.0 stored\r\n")
                    return True
                elif v == b"QUIT":
                    s.sendall(b"221 bye\r\n")
                    return False
                else:
                    s.sendall(b"502 5.5.2 no\r\n")
            line = self.line()  # a client without PIPELINING: one at a time
            if line is None:
                return False
            pending = [line]

class S(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

S(("127.0.0.1", port), H).serve_forever()
PY

# start_srv PIPELINING BROKEN: the server on $SINKPORT, files in $SINKDIR
start_srv() {
    rm -rf "$SINKDIR"
    mkdir -p "$SINKDIR"
    "$PYTHON3" "$T/pipesrv.py" "$SINKPORT" "$SINKDIR" "$1" "$2" >>"$T/srv.out" 2>&1 &
    SRVPID=$!
    _T_PIDS="$_T_PIDS $SRVPID"
    wait_port 127.0.0.1 "$SINKPORT" 10
}
stop_srv() {
    kill "$SRVPID" 2>/dev/null
    wait "$SRVPID" 2>/dev/null
}
# send RCPT...: one message from a@example.org; prints the refusal if any
send() {
    "$PYTHON3" - "$@" <<'PY'
import sys
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", sys.argv[1:],
              b"Subject: pipelined\r\n\r\nline one\r\n.dot line\r\n")
if r.code != 250:
    print("refused", r)
PY
}
has_file() { [ -e "$SINKDIR/$1" ]; }

write_conf "smtp_connection_cache_on_demand = no" \
    "smtp_destination_recipient_limit = 200"

# 1: one group, replies in order, one refused recipient
start_srv yes no
start_ok
out=$(send r1@example.net refuse-me@example.net r3@example.net)
is "accepted by sluice" "$out" ""
check "delivered" wait_for 15 has_file msg.1
is "MAIL, the three RCPTs and DATA came as one group" "$(cat "$SINKDIR/batch.1")" \
    "MAIL FROM:<a@example.org>
RCPT TO:<r1@example.net>
RCPT TO:<refuse-me@example.net>
RCPT TO:<r3@example.net>
DATA"
is "the accepted recipients got the message" "$(sed '/^--$/q' "$SINKDIR/msg.1")" \
    "<r1@example.net>
<r3@example.net>
--"
like "content dot-stuffed as usual" "$(cat "$SINKDIR/msg.1")" "
\.\.dot line"
check "r1 and r3 logged sent" wait_for 10 sh -c "[ \$(grep -Ec 'to=<r[13]@example.net>.*status=sent' '$T/maillog') -eq 2 ]"
check "the refused one bounced with the server's reply to its own RCPT" \
    log_wait 10 'to=<refuse-me@example.net>.*dsn=5\.1\.1, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 refused here \(in reply to RCPT TO command\)\)'
stop_sluiced
stop_srv

# 2: more recipients than one group holds (16 KB of RCPT lines)
start_srv yes no
: >"$T/maillog"
start_sluiced
dom=$(printf 'a%.0s' $(seq 60)).$(printf 'b%.0s' $(seq 60)).$(printf 'c%.0s' $(seq 60)).example
rcpts=$(for i in $(seq -w 1 100); do printf 'r%s@%s ' "$i" "$dom"; done)
# shellcheck disable=SC2086
out=$(send $rcpts)
is "100 long recipients accepted by sluice" "$out" ""
check "delivered" wait_for 15 has_file msg.1
first=$(cat "$SINKDIR/batch.1")
n1=$(grep -c '^RCPT' <<<"$first")
check "the first group is cut short (RCPTs: $n1) and holds no DATA" \
    sh -c "[ $n1 -ge 60 ] && [ $n1 -lt 100 ] && ! grep -q '^DATA' \"$SINKDIR/batch.1\""
is "the message reached all 100" "$(sed '/^--$/q' "$SINKDIR/msg.1" | grep -c '^<r')" "100"
stop_sluiced
stop_srv

# 3: every RCPT refused, and the server answers DATA with 354 anyway
start_srv yes yes
: >"$T/maillog"
start_sluiced
out=$(send refuse1@example.net refuse2@example.net)
is "accepted by sluice" "$out" ""
check "both recipients bounced" wait_for 15 sh -c "[ \$(grep -Ec 'to=<refuse[12]@example.net>.*status=bounced' '$T/maillog') -eq 2 ]"
check "the server saw the connection close in DATA (no content sent)" wait_for 10 has_file aborted.1
check_not "and stored nothing for them" sh -c "for f in '$SINKDIR'/msg.*; do [ -e \"\$f\" ] && sed '/^--\$/q' \"\$f\" | grep -q refuse && exit 0; done; exit 1"
stop_sluiced
stop_srv

# unpipelined PIPE SENDS_354 DESC_DELIVERED DESC_ALONE RCPT...: a server
# (start_srv PIPE SENDS_354) gets the message, and its first batch of
# commands is MAIL alone (sluiced and the server stay up for more checks)
unpipelined()
{
    local d1=$3 d2=$4
    start_srv "$1" "$2"
    shift 4
    : >"$T/maillog"
    start_sluiced
    out=$(send "$@")
    check "$d1" wait_for 15 has_file msg.1
    is "$d2" "$(cat "$SINKDIR/batch.1")" "MAIL FROM:<a@example.org>"
}

# 4: no PIPELINING: one command at a time
unpipelined no no "delivered" "MAIL alone until its reply" \
    r1@example.net r2@example.net
stop_sluiced
stop_srv

# 5: smtp_discard_ehlo_keywords = pipelining (Postfix's switch for a server
# whose PIPELINING is broken): one command at a time, and a log line
write_conf "smtp_connection_cache_on_demand = no" \
    "smtp_destination_recipient_limit = 200" \
    "smtp_discard_ehlo_keywords = pipelining"
unpipelined yes no "discarded PIPELINING: delivered" "and MAIL went alone" \
    r1@example.net r2@example.net
check "logged: discarding EHLO keywords: PIPELINING" \
    log_wait 10 'postfix/smtp\[[0-9]+\]: [0-9A-F]+: discarding EHLO keywords: PIPELINING$'
stop_sluiced
stop_srv
# with silent-discard: the same, without the log line
write_conf "smtp_connection_cache_on_demand = no" \
    "smtp_discard_ehlo_keywords = silent-discard, pipelining"
unpipelined yes no "silent-discard: delivered" "MAIL alone again" \
    r1@example.net
check_not "and nothing logged about it" log_has 'discarding EHLO keywords'
stop_sluiced
stop_srv
