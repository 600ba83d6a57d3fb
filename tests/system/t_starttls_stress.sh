#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_starttls_stress.sh - many TLS sessions at once, cut at every point of
# their life: 60 clients in threads, each for a few rounds of: connect,
# STARTTLS, then one of: close before the ClientHello, close in the
# middle of the handshake (half a ClientHello; a whole one and no more),
# close right after the handshake, close in the middle of DATA, QUIT
# after a message, or a message that completes. With sluice_worker_threads
# = 1 the handshake steps queue up in the pool behind each other while
# clients go away. (A session the server closes while its step is in the
# pool: t_starttls_busy.sh.) Checked: every completed
# message was delivered once, byte for byte; the front process is the
# one that started (no crash, no restart); a new session still works; no
# sanitizer report (the run under ASan in ./quickstart test).
. "$(dirname "$0")/lib.sh"
need_binaries
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
plan 5
setup

tls_selfsigned mx mx.test.example
start_sink
write_conf "smtpd_tls_security_level = may" \
    "smtpd_tls_cert_file = $T/mx.crt" \
    "smtpd_tls_key_file = $T/mx.key" \
    "smtpd_starttls_timeout = 3s" \
    "sluice_worker_threads = 1" \
    "clamav_enable = no"
start_ok
SMTPD=$(child_pid smtpd)
export SMTPD

pytap <<'PY'
import os, random, socket, ssl, threading, time
from sink import *

port = int(env("PORT"))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
lock = threading.Lock()
sent = {}     # body tag -> queue id
errors = []

def hello_bytes():
    """A real ClientHello, taken from a memory BIO handshake."""
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(i, o)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return o.read()

HELLO = hello_bytes()

def one(rnd, tag):
    how = rnd.choice(["before", "half", "hello", "after", "mid-data",
                      "quit", "mail", "mail", "mail"])
    c = Client(port, timeout=15)
    try:
        c.reply()
        c.cmd("EHLO c.test")
        r = c.cmd("STARTTLS")
        if r.code != 220:
            raise RuntimeError("STARTTLS: %r" % r)
        if how == "before":
            return
        if how == "half":
            c.sock.sendall(HELLO[:len(HELLO) // 2])
            return
        if how == "hello":
            c.sock.sendall(HELLO)
            time.sleep(rnd.random() * 0.05)
            return
        c.sock = ctx.wrap_socket(c.sock)
        if how == "after":
            return
        c.cmd("EHLO c.test")
        c.cmd("MAIL FROM:<a@example.org>")
        c.cmd("RCPT TO:<x@example.net>")
        r = c.cmd("DATA")
        body = ("Subject: %s\r\n\r\n" % tag) + ("line of %s\r\n" % tag) * 2000
        if how == "mid-data":
            c.send(body[:len(body) // 2])
            return
        if how == "quit":
            c.cmd(body + ".")
            c.cmd("QUIT")
            return
        r = c.cmd(body + ".")
        qid = queued_id(r)
        if not qid:
            raise RuntimeError("DATA: %r" % r)
        with lock:
            sent[tag] = qid
    finally:
        c.close()

def worker(n):
    rnd = random.Random(n)
    for k in range(4):
        try:
            one(rnd, "t%02d-%d" % (n, k))
        except Exception as e:
            with lock:
                errors.append("%d/%d: %s" % (n, k, e))

ts = [threading.Thread(target=worker, args=(n,)) for n in range(60)]
for t in ts:
    t.start()
for t in ts:
    t.join()
tap(not errors, "240 TLS sessions from 60 clients at once, cut at every "
    "point, gave no unexpected reply (%d completed messages)" % len(sent),
    errors[:5])

# every completed message delivered once, byte for byte
want = {tag: ("line of %s\r\n" % tag) * 2000 for tag in sent}
deadline = time.time() + 30
while time.time() < deadline:
    got = {}
    for d, b in sink_msgs():
        s = b.decode("latin-1")
        for tag in want:
            if ("Subject: %s\r\n" % tag) in s:
                got.setdefault(tag, []).append(s)
    if len(got) >= len(want):
        break
    time.sleep(0.3)
bad = [t for t in want if len(got.get(t, [])) != 1
       or not got[t][0].endswith("\r\n\r\n" + want[t])]
tap(want and not bad, "each of the %d completed messages was delivered "
    "once, byte for byte" % len(want), bad[:5])
alive = os.path.exists("/proc/%s" % env("SMTPD"))
tap(alive, "the same front process served them all (pid %s)" % env("SMTPD"))
r = send_mail(port, "a@example.org", ["x@example.net"], b"Subject: after\r\n\r\nok\r\n")
tap(queued_id(r), "a new session after it all: 250 queued", r)
PY
