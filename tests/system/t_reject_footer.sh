#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_reject_footer.sh - smtpd_reject_footer, as Postfix's: every 4xx and
# 5xx reply of the SMTP server gets it, with the reply's code and enhanced
# status code on each new line ("\n" in the template) and the lines
# before continued with '-'; "\c" at the start puts the first part on the
# reply's last line; $client_address, $server_name, ${helo_name?...}
# expanded at the reply; 2xx and 3xx replies are untouched; an unknown
# macro name adds nothing (and is logged).
. "$(dirname "$0")/lib.sh"
need_binaries
plan 5
setup

SVCS=""
svc nl '{ smtpd_reject_footer = For help contact postmaster@$server_name\nand quote [$client_address]${helo_name? helo $helo_name} }'
svc bad '{ smtpd_reject_footer = see $no_such_macro }'
MASTER_EXTRA=$SVCS
write_conf 'smtpd_reject_footer = \c (client $client_address, server $server_name)' \
    "mynetworks = 192.0.2.0/24"
start_ok

pytap <<'PY'
import re
from sink import *

def rcpt(port, to):
    return mail_rcpt(port, "a@example.org", to)

m, r = rcpt(int(env("PORT")), "x@elsewhere.example")
tap(m.code == 250 and m.lines == ["2.1.0 Ok"] and r.code == 454
    and r.lines == ["4.7.1 <x@elsewhere.example>: Relay access denied (client "
                    "127.0.0.1, server mx.test.example)"],
    "\\c: the footer goes on the reply's last line; a 2xx reply has none",
    m, r)

m, r = rcpt(int(env("P_nl")), "x@elsewhere.example")
tap(r.code == 454 and r.lines == [
        "4.7.1 <x@elsewhere.example>: Relay access denied",
        "4.7.1 For help contact postmaster@mx.test.example",
        "4.7.1 and quote [127.0.0.1] helo client.test"],
    "\\n: new lines with the reply's code and enhanced status code, the "
    "lines before continued", r)

c = Client(int(env("P_nl")))
c.reply()
r = c.cmd("RCPT TO:<x@example.org>")
c.close()
tap(r.code == 503 and r.lines == [
        "5.5.1 Error: need MAIL command",
        "5.5.1 For help contact postmaster@mx.test.example",
        "5.5.1 and quote [127.0.0.1]"],
    "a protocol error gets it too; ${helo_name?...} is empty before HELO", r)

m, r = rcpt(int(env("P_bad")), "x@elsewhere.example")
tap(r.lines == ["4.7.1 <x@elsewhere.example>: Relay access denied"]
    and log_wait(r'warning: smtpd_reject_footer: unknown macro name '
                 r'"no_such_macro"', 5),
    "an unknown macro name: no footer, a warning", r)
PY
stop_sluiced
result
