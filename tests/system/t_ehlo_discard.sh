#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_ehlo_discard.sh - smtpd_discard_ehlo_keywords and
# smtpd_discard_ehlo_keyword_address_maps, as Postfix's: the keywords are
# left out of the EHLO reply (its last line still "250 "), logged
# "discarding EHLO keywords: ..." unless silent-discard is one of them;
# STARTTLS not offered is refused (502 5.5.1); a client the address table
# lists gets that table's list instead; names Sluice does not offer (dsn)
# are ignored.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 5
setup
tls_selfsigned mx mx.test.example || exit 1
printf '127.0.0.1 8bitmime, enhancedstatuscodes, silent-discard\n' >"$T/ehlo.cidr"

SVCS=""
svc dis "{ smtpd_discard_ehlo_keywords = pipelining, starttls, dsn }"
svc silent "{ smtpd_discard_ehlo_keywords = silent-discard, size }"
svc map "smtpd_discard_ehlo_keyword_address_maps=cidr:$T/ehlo.cidr"
MASTER_EXTRA=$SVCS
write_conf "smtpd_tls_security_level = may" \
    "smtpd_tls_cert_file = $T/mx.crt" "smtpd_tls_key_file = $T/mx.key"
start_ok

pytap <<'PY'
import re, time
from sink import *

def ehlo(port, extra=None):
    c = Client(port)
    try:
        c.reply()
        r = c.cmd("EHLO client.test")
        x = c.cmd(extra) if extra else None
        c.cmd("QUIT")
        return r, x
    finally:
        c.close()

full = ["mx.test.example", "PIPELINING", "SIZE 10240000", "VRFY", "STARTTLS",
        "ENHANCEDSTATUSCODES", "8BITMIME"]
r, _ = ehlo(int(env("PORT")))
tap(r.lines == full, "no discards: the full EHLO reply", r)

r, x = ehlo(int(env("P_dis")), "STARTTLS")
tap(r.lines == [l for l in full if l not in ("PIPELINING", "STARTTLS")]
    and r.text.endswith("250 8BITMIME") and x.code == 502
    and x.lines == ["5.5.1 Error: command not implemented"]
    and log_wait(r"postfix/smtpd\[\d+\]: discarding EHLO keywords: PIPELINING STARTTLS$", 5),
    "pipelining, starttls, dsn: neither offered, STARTTLS refused 502 5.5.1, "
    "logged as Postfix logs it (dsn: not offered anyway)", r, x)

r, _ = ehlo(int(env("P_silent")))
n = len(re.findall(r"discarding EHLO keywords", read_log()))
tap(r.lines == [l for l in full if not l.startswith("SIZE")] and n == 1,
    "silent-discard, size: no SIZE, nothing logged", r)

r, _ = ehlo(int(env("P_map")))
tap(r.lines == full[:-2] and r.text.endswith("250 STARTTLS")
    and len(re.findall(r"discarding EHLO keywords", read_log())) == 1,
    "the address table's list for 127.0.0.1: no ENHANCEDSTATUSCODES, no "
    "8BITMIME, the last line 250 STARTTLS", r)
PY
stop_sluiced
result
