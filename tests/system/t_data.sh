#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_data.sh - the DATA stream: bare LF / bare CR refused by default and
# never end a message (SMTP smuggling), smtpd_forbid_bare_newline = no
# accepts and normalises to CRLF, message_size_limit at MAIL (SIZE=) and
# after DATA, and the session goes on after a size error.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 24
setup
# 127.0.0.1 outside mynetworks: smtpd_forbid_bare_newline_exclusions
# defaults to $mynetworks, as in Postfix.
write_conf "message_size_limit = 10000" "mynetworks = 192.0.2.0/24" \
    "relay_domains = example.net"
start_sink
start_ok

pytap <<'PY'
from sink import *
port = int(env("PORT"))

def open_data(rcpt="b@example.net", sender="a@example.org"):
    c = Client(port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<%s>" % sender)
    c.cmd("RCPT TO:<%s>" % rcpt)
    r = c.cmd("DATA")
    return c, r

def end_reply(c, data):
    c.send(data)
    try:
        return c.reply()
    except Exception as ex:
        return Reply(0, [repr(ex)])

# bare LF in DATA
c, r = open_data()
r = end_reply(c, b"Subject: bare-lf-1\r\n\r\nline one\nline two\r\n.\r\n")
tap(500 <= r.code < 600, "bare LF in DATA: 5xx", r)
tap("bare <LF>" in r.text, "  reply says bare <LF> received", r)
tap(c.closed(), "  and the server disconnects")
c.close()

# bare CR in DATA
c, r = open_data()
r = end_reply(c, b"Subject: bare-cr-1\r\n\r\nline one\rline two\r\n.\r\n")
tap(500 <= r.code < 600, "bare CR in DATA: 5xx", r)
c.close()

# bare LF in a command
c = Client(port)
c.reply()
c.send(b"EHLO client.test\r\nNOOP\n")
c.reply()
try:
    r = c.reply()
except Exception as ex:
    r = Reply(0, [repr(ex)])
tap(r.code == 521 and "bare <LF>" in r.text, "bare LF after a command: 521 ... bare <LF> received", r)
tap(c.closed(), "  and disconnect")
c.close()

# smuggling: "\n.\n" and friends followed by a second transaction
for i, end in enumerate([b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n"]):
    c, r = open_data()
    smug = (b"Subject: smuggle-%d\r\n\r\nhello" % i + end +
            b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim%d@example.net>\r\n" % i +
            b"DATA\r\nSubject: smuggled-%d\r\n\r\nevil\r\n.\r\n" % i)
    c.send(smug)
    c.sock.settimeout(3)
    got = []
    try:
        for _ in range(5):
            got.append(c.reply())
    except Exception:
        pass
    tap(not any(x.code == 250 and queued_id(x) for x in got),
        "smuggling with %r: no message is queued" % end, *got)
    c.close()
time.sleep(1)

# size limit at MAIL
c = Client(port)
c.reply()
e = c.cmd("EHLO client.test")
tap("SIZE 10000" in e.lines, "EHLO advertises SIZE 10000", e)
r = c.cmd("MAIL FROM:<a@example.org> SIZE=20000")
tap(r.code == 552 and r.lines[-1].startswith("5.3.4 Message size exceeds fixed limit"),
    "MAIL SIZE=20000: 552 5.3.4 Message size exceeds fixed limit", r)
time.sleep(0.3)
tap(re.search(r"NOQUEUE: reject: MAIL from unknown\[127\.0\.0\.1\]: 552 5\.3\.4 "
              r"Message size exceeds fixed limit; proto=ESMTP helo=<client\.test>\n",
              read_log()),
    "log: NOQUEUE: reject: MAIL from ...: 552 5.3.4 Message size exceeds fixed limit; "
    "proto=ESMTP helo=<..> (Postfix's line, no sender)")
r = c.cmd("MAIL FROM:<a@example.org> SIZE=5000")
tap(r.code == 250, "MAIL SIZE=5000 then accepted", r)
c.cmd("RCPT TO:<b@example.net>")
c.cmd("DATA")
big = b"Subject: too-big\r\n\r\n" + (b"x" * 98 + b"\r\n") * 200
r = end_reply(c, dotstuff(big))
tap(r.code == 552 and "5.3.4" in r.text, "20 KB of DATA: 552 5.3.4 after the end of data", r)
# the session goes on
r = c.cmd("MAIL FROM:<a@example.org>")
r2 = c.cmd("RCPT TO:<b@example.net>")
r3 = c.cmd("DATA")
r4 = end_reply(c, dotstuff(b"Subject: after-too-big\r\n\r\nsmall\r\n"))
tap([r.code, r2.code, r3.code, r4.code] == [250, 250, 354, 250],
    "after the size error a small message in the same session is queued", r, r2, r3, r4)
c.cmd("QUIT")
c.close()
tap(sink_find(r"after-too-big"), "the small message is delivered")
time.sleep(1)
bad = [x[:80] for e, x in sink_msgs()
       if re.search(rb"bare-lf-1|bare-cr-1|smuggle|Subject: too-big\r", x) or "evil@" in e]
tap(not bad, "nothing refused (bare LF/CR, smuggling, oversize) reached the next hop", bad)
tap(not re.search(r"from=<evil@", read_log()), "no smuggled transaction in the log")
PY

stop_sluiced
write_conf "message_size_limit = 10000" "mynetworks = 192.0.2.0/24" \
    "relay_domains = example.net" "smtpd_forbid_bare_newline = no"
start_sluiced
pytap <<'PY'
from sink import *
port = int(env("PORT"))
c = Client(port)
c.reply()
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<a@example.org>")
c.cmd("RCPT TO:<b@example.net>")
c.cmd("DATA")
c.send(b"Subject: lf-allowed\r\n\r\nline one\nline two\n.\nMAIL FROM:<evil@example.org>\nend\r\n.\r\n")
r = c.reply()
tap(r.code == 250, "smtpd_forbid_bare_newline = no: bare LF message queued", r)
c.cmd("QUIT")
c.close()
m = sink_find(r"lf-allowed")
rest = split_received(m[1])[1] if m else b""
tap(rest == b"Subject: lf-allowed\r\n\r\nline one\r\nline two\r\n.\r\nMAIL FROM:<evil@example.org>\r\nend\r\n",
    "delivered with CRLF, the \\n.\\n inside kept as content", rest)
time.sleep(1)
tap(not any("evil@" in e for e, x in sink_msgs()), "no smuggled message from evil@")
PY
check "queue is empty" wait_for 10 queue_empty
