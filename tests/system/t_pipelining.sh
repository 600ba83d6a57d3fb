#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_pipelining.sh - a whole session in one write (RFC 2920): replies in
# order, both messages delivered; a pipelined transaction whose RCPT
# fails: DATA is refused and the message lines that follow are commands;
# commands that arrive while the end of data is being filtered and
# committed wait and are answered in order.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 17
setup
write_conf
start_sink
start_ok

pytap <<'PY'
from sink import *
port = int(env("PORT"))
def replies(c, n):
    """Up to n replies (an exception's text ends the list) and their codes."""
    got = []
    try:
        for _ in range(n):
            got.append(c.reply())
    except Exception as ex:
        got.append(repr(ex))
    return got, [r.code if isinstance(r, Reply) else r for r in got]

m1 = (b"From: p@example.org\r\nTo: r1@example.net\r\nSubject: pipelined one\r\n"
      b"Message-ID: <pipe-1@example.org>\r\n\r\n.first body\r\n")
m2 = (b"From: p@example.org\r\nTo: r4@example.net\r\nSubject: pipelined two\r\n"
      b"Message-ID: <pipe-2@example.org>\r\n\r\nsecond body\r\n")
c = Client(port)
g = c.reply()
tap(g.code == 220, "greeting 220", g)
burst = (b"EHLO client.test\r\nMAIL FROM:<p@example.org>\r\n"
         b"RCPT TO:<r1@example.net>\r\nRCPT TO:<r2@example.net>\r\n"
         b"RCPT TO:<r3@example.net>\r\nDATA\r\n" + dotstuff(m1) +
         b"MAIL FROM:<p@example.org>\r\nRCPT TO:<r4@example.net>\r\nDATA\r\n" +
         dotstuff(m2) + b"QUIT\r\n")
c.send(burst)
got, codes = replies(c, 12)
tap(codes == [250, 250, 250, 250, 250, 354, 250, 250, 250, 354, 250, 221],
    "one write: replies EHLO MAIL RCPT*3 DATA . MAIL RCPT DATA . QUIT in order",
    codes, *got)
ehlo = got[0].lines if isinstance(got[0], Reply) else []
tap("PIPELINING" in ehlo, "EHLO advertises PIPELINING", ehlo)
ids = [queued_id(r) for r in got if isinstance(r, Reply) and r.code == 250 and queued_id(r)]
tap(len(ids) == 2 and ids[0] != ids[1], "two distinct queue IDs", ids)
tap(c.closed(), "connection closed after QUIT")
c.close()

a = sink_find(r"pipe-1@")
b = sink_find(r"pipe-2@")
tap(a and split_received(a[1])[1] == m1, "first pipelined message delivered intact",
    a and a[1][:400])
tap(b and split_received(b[1])[1] == m2, "second pipelined message delivered intact",
    b and b[1][:400])
time.sleep(0.5)
rc = "".join(e for e, x in sink_msgs() if b"pipe-1@" in x)
tap(all("RCPT TO:<r%d@example.net>" % i in rc for i in (1, 2, 3)),
    "first message reaches all three recipients", rc)

# RCPT fails inside a pipelined group: DATA must be refused and the
# message text that follows must be read as (bad) commands.
c = Client(port)
c.reply()
c.send(b"EHLO client.test\r\nMAIL FROM:<p@example.org>\r\n"
       b"RCPT TO:<bad address@@example.net>\r\nDATA\r\n"
       b"Subject: smuggled\r\nhello world\r\n.\r\nQUIT\r\n")
got, codes = replies(c, 8)
tap(codes[:3] == [250, 250, 501], "bad RCPT in a pipelined group gets 501", *got)
tap(len(codes) > 3 and codes[3] in (503, 554) and "5.5.1" in got[3].text,
    "DATA after the only RCPT failed: 554 5.5.1 or 503 5.5.1", *got)
tap(len(codes) >= 8 and all(500 <= x < 600 for x in codes[4:7]),
    "the three message lines are answered as commands with 5xx", *got)
tap(len(codes) >= 8 and codes[7] == 221, "QUIT still answered 221", *got)
c.close()
time.sleep(1)
tap(not any(b"smuggled" in x for e, x in sink_msgs()), "nothing of it is delivered")

# Commands sent right behind the dot, each in its own packet, while the
# server still owes the dot's reply (its filters and the commit run):
# they wait in the socket and are answered, in order, after the 250.
import socket as _s
c = Client(port)
c.sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
c.reply()
for cmd in (b"EHLO client.test\r\n", b"MAIL FROM:<p@example.org>\r\n",
            b"RCPT TO:<r5@example.net>\r\n", b"DATA\r\n"):
    c.send(cmd)
    c.reply()
m3 = (b"From: p@example.org\r\nSubject: behind the dot\r\n"
      b"Message-ID: <pipe-3@example.org>\r\n\r\nthird body\r\n")
c.send(dotstuff(m3))
c.send(b"NOOP\r\n")
c.send(b"MAIL FROM:<p@example.org>\r\n")
c.send(b"QUIT\r\n")
got, codes = replies(c, 4)
tap(codes == [250, 250, 250, 221] and queued_id(got[0]),
    "commands sent during the end-of-data wait: . NOOP MAIL QUIT answered in order",
    codes, *got)
c.close()
d = sink_find(r"pipe-3@")
tap(d and split_received(d[1])[1] == m3, "and the message is delivered intact",
    d and d[1][:400])
PY
check "queue is empty" wait_for 10 queue_empty
