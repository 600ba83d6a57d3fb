#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_data_gate.sh - DATA admission (sluice_data_concurrency_limit): with
# the limit taken, a DATA waits for its 354 until a session ahead gets its
# end-of-data verdict, or at most 1 s; a pipelined client's message bytes
# wait with it and are not read as commands; slots come back when a
# session holding one or waiting for one goes away; 0 turns it off; -1
# (the default) sizes it on the in-process scanner's threads.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 25
setup

cat >"$T/gate.py" <<'PY'
import os, select, signal, socket, time
from sink import *


def nothing_for(c, secs):
    """True when no reply byte arrives within secs."""
    r, _, _ = select.select([c.sock], [], [], secs)
    return not r


def open_txn(port, tag):
    """A session up to its RCPT: the client and the message text."""
    c = Client(port)
    c.reply()
    c.cmd("EHLO client.test")
    for line in ("MAIL FROM:<g@example.org>", "RCPT TO:<%s@example.net>" % tag):
        r = c.cmd(line)
        assert r.code == 250, r
    msg = (b"From: g@example.org\r\nTo: " + tag.encode() + b"@example.net\r\n"
           b"Subject: gate " + tag.encode() + b"\r\nMessage-ID: <" +
           tag.encode() + b"@example.org>\r\n\r\nbody of " + tag.encode() +
           b"\r\n")
    return c, msg


def hold(port, tag):
    """A session past its 354 with half its message sent: holds a slot."""
    c, msg = open_txn(port, tag)
    r = c.cmd("DATA")
    assert r.code == 354, r
    c.send(msg[:20])
    return c, msg


def finish(c, msg):
    c.send(msg[20:] + b".\r\n")
    return c.reply()
PY
export PYTHONPATH="$T${PYTHONPATH:+:$PYTHONPATH}"

write_conf "sluice_data_concurrency_limit = 1"
start_sink
start_ok
export MASTERPID
log_wait 10 "DATA admission: at most 1 session" &&
    ok "the limit is logged at start" || not_ok "the limit is logged at start"

pytap <<'PY'
from gate import *
port = int(env("PORT"))

# A holds the only slot; B's DATA waits until A's verdict.
a, ma = hold(port, "ga")
b, mb = open_txn(port, "gb")
t0 = time.time()
b.send(b"DATA\r\n")
tap(nothing_for(b, 0.4), "a second DATA gets no 354 while the slot is taken")
r = finish(a, ma)
tap(r.code == 250 and queued_id(r), "the session holding the slot is queued", r)
r = b.reply()
waited = time.time() - t0
tap(r.code == 354 and waited < 0.9,
    "the waiting DATA gets its 354 once the verdict is in, before the 1 s limit",
    r, waited)
r = finish(b, mb)
tap(r.code == 250 and queued_id(r), "the admitted message is queued", r)
a.cmd("QUIT"); b.cmd("QUIT"); a.close(); b.close()

# Nobody gives the slot back: the waiting DATA goes ahead after 1 s.
a, ma = hold(port, "gc")
b, mb = open_txn(port, "gd")
t0 = time.time()
r = b.cmd("DATA")
waited = time.time() - t0
tap(r.code == 354 and 0.9 <= waited < 5,
    "with the slot never given back the DATA goes ahead after about 1 s",
    r, waited)
tap(finish(b, mb).code == 250, "the message admitted over the limit is queued")
tap(finish(a, ma).code == 250, "the slow one is queued too")
a.close(); b.close()

# Pipelined: the message text waits in the socket with the DATA, and is
# read as message text once admitted.
a, ma = hold(port, "ge")
c = Client(port)
c.reply()
c.cmd("EHLO client.test")
mp = (b"From: g@example.org\r\nSubject: gate pipelined\r\n"
      b"Message-ID: <gp@example.org>\r\n\r\nQUIT\r\nRSET\r\n")
c.send(b"MAIL FROM:<g@example.org>\r\nRCPT TO:<gp@example.net>\r\nDATA\r\n"
       + dotstuff(mp) + b"QUIT\r\n")
r1, r2 = c.reply(), c.reply()
tap(r1.code == 250 and r2.code == 250 and nothing_for(c, 0.3),
    "pipelined MAIL and RCPT answered, DATA waits", r1, r2)
finish(a, ma)
codes = [c.reply().code for _ in range(3)]
tap(codes == [354, 250, 221], "then 354, 250 for the message, 221", codes)
c.close(); a.close()
got = sink_find(r"gp@example\.org")
tap(got and split_received(got[1])[1] == mp,
    "the pipelined message is delivered intact (its QUIT and RSET lines are text)",
    got and got[1][:300])

# A client that leaves while waiting, and one that leaves holding the
# slot: neither keeps a slot.
a, ma = hold(port, "gf")
b, mb = open_txn(port, "gg")
b.send(b"DATA\r\n")
tap(nothing_for(b, 0.3), "DATA waits behind the slot holder")
b.close()
a.close()  # gone in the middle of its message
time.sleep(0.3)
c, mc = open_txn(port, "gh")
t0 = time.time()
r = c.cmd("DATA")
tap(r.code == 354 and time.time() - t0 < 0.5,
    "after both left, a DATA gets its 354 at once", r, time.time() - t0)
tap(finish(c, mc).code == 250, "and its message is queued")
c.close()
for tag in ("ga", "gb", "gc", "gd", "ge", "gh"):
    got = sink_find(r"<%s@example\.org>" % tag)
    if not got:
        break
tap(got, "every queued message is delivered", tag)
tap(not sink_find(r"<g[fg]@example\.org>", secs=1),
    "nothing of the abandoned ones is")

# Shutdown: a DATA waiting for a slot gets the 421 at once.
a, ma = hold(port, "gs")
b, mb = open_txn(port, "gt")
b.send(b"DATA\r\n")
nothing_for(b, 0.2)
t0 = time.time()
os.kill(int(env("MASTERPID")), signal.SIGTERM)
r = b.reply()
tap(r.code == 421 and time.time() - t0 < 0.9,
    "on shutdown the waiting DATA gets 421 at once", r, time.time() - t0)
a.close(); b.close()
PY
stop_sluiced

# 0: no limit.
: >"$LOG"
write_conf "sluice_data_concurrency_limit = 0"
start_sluiced
pytap <<'PY'
from gate import *
port = int(env("PORT"))
a, ma = hold(port, "gi")
b, mb = open_txn(port, "gj")
t0 = time.time()
r = b.cmd("DATA")
tap(r.code == 354 and time.time() - t0 < 0.5,
    "limit 0: a second DATA gets its 354 at once", r)
tap(finish(b, mb).code == 250 and finish(a, ma).code == 250,
    "limit 0: both queued")
PY
check_not "no admission line with 0" grep -q "DATA admission" "$LOG"
stop_sluiced

# -1 (the default): eight per in-process scan thread.
: >"$LOG"
write_conf "clamav_enable = yes" "clamav_scan_threads = 1"
start_sluiced
log_wait 10 "DATA admission: at most 8 session" &&
    ok "default with one scan thread: 8 at once" ||
    not_ok "default with one scan thread: 8 at once"
pytap <<'PY'
from gate import *
port = int(env("PORT"))
held = [hold(port, "gk%d" % i) for i in range(8)]
c, mc = open_txn(port, "gm")
c.send(b"DATA\r\n")
tap(nothing_for(c, 0.4), "a ninth DATA waits while eight hold slots")
tap(finish(*held[0]).code == 250, "the first is scanned and queued")
r = c.reply()
tap(r.code == 354 and finish(c, mc).code == 250
    and all(finish(*h).code == 250 for h in held[1:]),
    "then the ninth is admitted, and all are queued", r)
PY
stop_sluiced
