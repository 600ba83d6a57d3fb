#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_starttls_milter.sh - what a milter learns of TLS, as from Postfix:
# after STARTTLS the HELO stage (milter_helo_macros, Postfix's default
# list) carries {tls_version}, {cipher} and {cipher_bits} with the
# values the client negotiated; in clear the milter gets none of them.
. "$(dirname "$0")/lib.sh"
need_binaries
: "${TMILTER:=$top_builddir/tests/milter/tmilter}"
[ -x "$TMILTER" ] || skip_all "no test milter at $TMILTER (make check builds it)"
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
export TMILTER
plan 5
. "$SYSDIR/milter_lib.sh"

tls_selfsigned mx mx.test.example
start_sink
start_tmilter m1
write_conf "smtpd_milters = unix:$T/m1.sock" \
    "smtpd_tls_security_level = may" \
    "smtpd_tls_cert_file = $T/mx.crt" \
    "smtpd_tls_key_file = $T/mx.key"
start_ok

pytap <<'PY'
import re, ssl
from tmh import *

def session(tls):
    c = Client(PORT)
    c.reply()
    c.cmd("EHLO client.test")
    got = None
    if tls:
        r = c.cmd("STARTTLS")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        c.sock = ctx.wrap_socket(c.sock)
        got = (c.sock.version(), c.sock.cipher())
        c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<x@example.net>")
    c.cmd("DATA")
    r = c.cmd("Subject: t\r\n\r\nhello\r\n.")
    c.cmd("QUIT")
    c.close()
    return r, got

r, got = session(True)
tap(r.code == 250, "mail over TLS through the milter: 250", r)
helo = mlog_wait(r"^helo .*\{tls_version\}")
h = helo.string if helo else ""
ver, (cipher, _proto, bits) = got
tap(("{tls_version}=<%s>" % ver) in h and ("{cipher}=<%s>" % cipher) in h
    and ("{cipher_bits}=<%d>" % bits) in h,
    "the milter's HELO after STARTTLS has {tls_version}, {cipher} and "
    "{cipher_bits} as negotiated (%s, %s, %d)" % (ver, cipher, bits), h, mlog())
milter([])
r, _ = session(False)
tap(r.code == 250, "mail in clear through the milter: 250", r)
helo = mlog_wait(r"^helo ")
h = helo.string if helo else ""
tap(helo and "{tls_version}" not in h and "{cipher}" not in h,
    "in clear the milter's HELO has no TLS macros", h)
PY
