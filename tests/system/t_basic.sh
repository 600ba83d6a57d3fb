#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_basic.sh - mail relayed to the next hop (the sink, as relayhost)
# arrives byte for byte: swaks and smtplib clients, the Received header,
# dot-stuffing both ways, an 8-bit body, a 2 MB message, the log lines.
. "$(dirname "$0")/lib.sh"
need_binaries
command -v swaks >/dev/null 2>&1 || skip_all "swaks not installed"
plan 25
setup
write_conf
start_sink
start_ok

# --- swaks
cat >"$T/msg1.txt" <<'MSG'
From: Alice <a@example.org>
To: Bob <b@example.net>
Subject: basic test via swaks
Message-ID: <basic-swaks-1@example.org>
Date: Sun, 22 Nov 2026 10:00:00 +0000

Hello Bob,
this is the first test message.
MSG
swaks --server "127.0.0.1:$PORT" --helo client.test --from a@example.org \
    --to b@example.net --data "$T/msg1.txt" >"$T/swaks.out" 2>&1
rc=$?
result "swaks sends a message (exit $rc)" $rc
[ $rc -eq 0 ] || diag "$(tail -n 20 "$T/swaks.out")"
ID=$(sed -n 's/.* 250 2\.0\.0 Ok: queued as \([0-9A-F]\{14\}\)\r\{0,1\}$/\1/p' "$T/swaks.out" | head -n 1)
# What exactly swaks sends (it adds a CRLF of its own, for one): the same
# command against a second sink, as the reference.
REFPORT=$(free_port)
start_sink "$REFPORT" "$T/ref"
swaks --server "127.0.0.1:$REFPORT" --helo client.test --from a@example.org \
    --to b@example.net --data "$T/msg1.txt" >/dev/null 2>&1
like "250 2.0.0 Ok: queued as ID (14 hex digits)" "$ID" '^[0-9A-F]{14}$'
export ID

pytap <<'PY'
import os, re
from sink import *
ID = os.environ["ID"]
ref = wait_eml(os.path.join(env("T"), "ref"), 1)
sent = open(ref[0], "rb").read() if ref else b"(reference sink got nothing)"
m = sink_find(r"basic-swaks-1@")
tap(m, "swaks message reaches the next hop")
e, c = m or ("", b"")
tap(e == "MAIL FROM:<a@example.org>\nRCPT TO:<b@example.net>\n",
    "next hop gets the envelope sender and recipient", e)
rcv, rest = split_received(c)
tap(rest == sent, "content after the Received header is byte for byte what swaks sent",
    "sent: %r" % sent[:300], "got:  %r" % rest[:300])
rx = (rb"Received: from client\.test \(unknown \[127\.0\.0\.1\]\)\r\n"
      rb"\tby mx\.test\.example \(Sluice\) with ESMTP id " + ID.encode() +
      rb"\r\n\tfor <b@example\.net>; [A-Z][a-z]{2}, [ 0-9]?[0-9] [A-Z][a-z]{2} "
      rb"[0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} [-+][0-9]{4}( \([A-Za-z0-9+-]+\))?\r\n")
tap(rcv and re.fullmatch(rx, rcv), "Received header has the documented shape and the queued-as ID",
    "got: %r" % rcv)
PY

check "log: connect from unknown[127.0.0.1]" \
    log_has 'postfix/smtpd\[[0-9]+\]: connect from unknown\[127\.0\.0\.1\]'
check "log: ID: client=unknown[127.0.0.1]" \
    log_has "$ID: client=unknown\[127\.0\.0\.1\]"
check "log: ID: message-id=<basic-swaks-1@example.org>" \
    log_has "$ID: message-id=<basic-swaks-1@example\.org>"
check "log: ID: from=<a@example.org>, size=N, nrcpt=1 (queue active)" \
    log_has "$ID: from=<a@example\.org>, size=[0-9]+, nrcpt=1 \(queue active\)"
check "log: ID: to=<b@example.net>, relay=127.0.0.1[127.0.0.1]:PORT, ..., dsn=2.0.0, status=sent (250 ...)" \
    log_wait 10 "$ID: to=<b@example\.net>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$SINKPORT, .*delay=[0-9.]+, .*dsn=2\.0\.0, status=sent \(250 "
check "log: ID: removed" log_wait 10 "$ID: removed"
check "log: disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5" \
    log_has 'disconnect from unknown\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5'

# --- smtplib: dots, a lone "." line, 8-bit body, two recipients
pytap <<'PY'
import smtplib
from sink import *
port = int(env("PORT"))
msg = (b"From: a@example.org\r\nTo: dots@example.net\r\nSubject: dots and 8bit\r\n"
       b"Message-ID: <basic-dots@example.org>\r\n\r\n"
       b".leading dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n...\r\n"
       b". space\r\n8bit: caf\xc3\xa9 \xff\xfe\x80\r\nlast line\r\n")
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10)
s.ehlo()
tap(s.has_extn("8bitmime"), "EHLO advertises 8BITMIME")
s.mail("a@example.org", ["BODY=8BITMIME"])
s.rcpt("dots@example.net")
code, resp = s.data(msg)
tap(code == 250 and re.match(rb"2\.0\.0 Ok: queued as [0-9A-F]{14}$", resp),
    "smtplib: 250 queued for a dotted 8-bit message", (code, resp))
# two recipients: one Received header without "for <...>"
msg2 = (b"From: a@example.org\r\nTo: two@example.net, three@example.net\r\n"
        b"Subject: two recipients\r\nMessage-ID: <basic-two@example.org>\r\n\r\nbody\r\n")
s.mail("a@example.org")
s.rcpt("two@example.net")
s.rcpt("three@example.net")
code, resp = s.data(msg2)
tap(code == 250, "smtplib: 250 for a message to two recipients", (code, resp))
s.quit()

m = sink_find(r"basic-dots@")
tap(m, "dotted message reaches the next hop")
rcv, rest = split_received(m[1] if m else b"")
tap(rest == msg, "dotted 8-bit content arrives byte for byte (unstuffed, lone '.' kept)",
    "sent: %r" % msg, "got:  %r" % rest)
tap(rcv and b"\tfor <dots@example.net>; " in rcv, "Received has for <dots@example.net>", rcv)

m = sink_find(r"basic-two@")
time.sleep(0.5)  # a second transaction for the other recipient, if any
envs = "".join(e for e, c in sink_msgs() if b"basic-two@" in c)
tap("RCPT TO:<two@example.net>" in envs and "RCPT TO:<three@example.net>" in envs,
    "both recipients of the two-recipient message reach the next hop", envs)
rcv, rest = split_received(m[1] if m else b"")
tap(rest == msg2 and rcv and b"for <" not in rcv,
    "two-recipient message: content intact, Received without for <...>", rcv, rest[:200])
PY

# --- ~2 MB message
pytap <<'PY'
from sink import *
port = int(env("PORT"))
lines = [b"From: a@example.org", b"To: big@example.net", b"Subject: big",
         b"Message-ID: <basic-big@example.org>", b""]
i = 0
size = 0
while size < 2 * 1024 * 1024:
    lines.append(b"%08d " % i + b"abcdefghijklmnopqrstuvwxyz0123456789" * 2)
    size += len(lines[-1]) + 2
    if i % 1000 == 0:
        lines.append(b".dot line %d" % i)
    i += 1
msg = b"\r\n".join(lines) + b"\r\n"
r = send_mail(port, "a@example.org", ["big@example.net"], msg)
tap(r.code == 250 and queued_id(r), "2 MB message: 250 queued", r)
m = sink_find(r"basic-big@", secs=30)
rcv, rest = split_received(m[1] if m else b"")
tap(rest == msg, "2 MB message arrives byte for byte (%d bytes)" % len(msg),
    "got %d bytes" % len(rest))
PY

check "queue is empty after delivery" wait_for 10 queue_empty
