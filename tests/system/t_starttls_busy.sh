#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_starttls_busy.sh - a TLS session that the server ends while its
# handshake step waits in the worker pool. With one pool thread held by a
# slow fsync (tests/system/ioshim.c: 3 s per queue file), a client's
# ClientHello waits behind it; smtpd_starttls_timeout (1 s) then ends the
# session: the client is disconnected after about 1 s, not after the
# fsync, the log says "timeout after STARTTLS", the message being
# committed meanwhile still gets its 250 and is delivered, and the front
# goes on (the step, back later, only closes the socket it kept open: no
# descriptor is reused under it; no sanitizer report under ASan).
. "$(dirname "$0")/lib.sh"
need_binaries
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
plan 7
setup

tls_selfsigned mx mx.test.example
start_sink
write_conf "smtpd_tls_security_level = may" \
    "smtpd_tls_cert_file = $T/mx.crt" \
    "smtpd_tls_key_file = $T/mx.key" \
    "smtpd_starttls_timeout = 1s" \
    "sluice_worker_threads = 1" \
    "clamav_enable = no"
check "tests/system/ioshim.c builds" ioshim_wrap "$T/slow" IOSHIM_FSYNC_US=3000000
SLUICED_WRAP=$T/slow start_ok
SMTPD=$(child_pid smtpd)
export SMTPD

pytap <<'PY'
import os, ssl, threading, time
from sink import *

port = int(env("PORT"))
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
res = {}

def slow_mail():
    t0 = time.time()
    r = send_mail(port, "a@example.org", ["x@example.net"],
                  b"Subject: held\r\n\r\nbehind a slow fsync\r\n")
    res["mail"] = (r, time.time() - t0)

t = threading.Thread(target=slow_mail)
t.start()
time.sleep(0.5)  # its commit now holds the only pool thread
c = Client(port, timeout=10)
c.reply()
c.cmd("EHLO c.test")
r = c.cmd("STARTTLS")
t0 = time.time()
c.sock.settimeout(10)
i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(i, o)
try:
    obj.do_handshake()
except ssl.SSLWantReadError:
    pass
c.sock.sendall(o.read())  # the ClientHello: its step waits in the pool
closed_after = None
got = 0
try:
    while True:
        d = c.sock.recv(65536)
        if not d:
            closed_after = time.time() - t0
            break
        got += len(d)
except OSError:
    closed_after = time.time() - t0
c.close()
t.join()
# no ServerHello came: the step never ran before the session ended
tap(r.code == 220 and got == 0 and closed_after is not None
    and 0.7 < closed_after < 2.5,
    "the session whose handshake step waits in the pool (no ServerHello "
    "yet: %d bytes) is ended by smtpd_starttls_timeout after about 1 s "
    "(%s s), not after the fsync"
    % (got, closed_after and round(closed_after, 2)), r)
tap(log_wait(r"timeout after STARTTLS from unknown\[127\.0\.0\.1\]", 5),
    "the log says: timeout after STARTTLS")
mr, took = res["mail"]
tap(queued_id(mr) and took > 2.5,
    "the message held by the slow fsync still gets its 250 (after %.1f s)" % took, mr)
tap(sink_find(rb"behind a slow fsync", secs=15),
    "and is delivered")
r = send_mail(port, "a@example.org", ["x@example.net"], b"Subject: after\r\n\r\nok\r\n")
tap(queued_id(r) and os.path.exists("/proc/%s" % env("SMTPD")),
    "the same front process takes the next message", r)
PY
