#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_limits.sh - session limits: idle timeout, recipient limit, hard
# error limit, per-client connection limit, a stalled client does not
# block others, overlong command lines, VRFY (and -o in master.cf),
# HELP, EHLO keywords.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 16
setup
PORT2=$(free_port)
export PORT2
MASTER_EXTRA="127.0.0.1:$PORT2 inet n - n - - smtpd -o disable_vrfy_command=yes"
write_conf "mynetworks = 192.0.2.0/24" "relay_domains = example.net" \
    "smtpd_timeout = 2s" "smtpd_recipient_limit = 3" \
    "smtpd_hard_error_limit = 5" "smtpd_client_connection_count_limit = 2" \
    "message_size_limit = 5000000"
start_sink
start_ok

pytap <<'PY'
from sink import *
port = int(env("PORT"))
port2 = int(env("PORT2"))

def session(p=port):
    c = Client(p)
    c.reply()
    return c

def quit(c):
    try:
        c.cmd("QUIT")
        c.closed(2)
    except Exception:
        pass
    c.close()

# EHLO keywords
c = session()
e = c.cmd("EHLO client.test")
kw = [l.split(" ")[0] for l in e.lines[1:]]
tap(e.code == 250 and all(k in kw for k in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES")),
    "EHLO: PIPELINING SIZE 8BITMIME ENHANCEDSTATUSCODES", e)
tap("SIZE 5000000" in e.lines, "EHLO: SIZE shows message_size_limit", e)
r = c.cmd("HELP")
tap(r.code == 214, "HELP: 214", r)
r = c.cmd("VRFY postmaster")
tap(r.code == 252 and r.lines[0].startswith("2.0.0"), "VRFY: 252 2.0.0 when enabled", r)

# recipient limit
c.cmd("MAIL FROM:<a@example.org>")
codes = [c.cmd("RCPT TO:<r%d@example.net>" % i) for i in range(1, 5)]
tap([x.code for x in codes[:3]] == [250] * 3, "smtpd_recipient_limit = 3: three RCPTs accepted", *codes)
tap(codes[3].code == 452 and codes[3].lines[0] == "4.5.3 Error: too many recipients",
    "4th RCPT: 452 4.5.3 Error: too many recipients", codes[3])

# overlong command line
r = c.cmd("NOOP " + "a" * 10000)
tap(r.code == 500, "a 10 KB command line gets 500", r)
quit(c)

# VRFY disabled via master.cf -o
c = session(port2)
r = c.cmd("VRFY postmaster")
tap(r.code == 502 and r.lines[0] == "5.5.1 VRFY command is disabled",
    "-o disable_vrfy_command=yes: 502 5.5.1 VRFY command is disabled", r)
quit(c)

# hard error limit
c = session()
got = []
try:
    for _ in range(10):
        got.append(c.cmd("BOGUS"))
        if got[-1].code == 421:
            break
except Exception as ex:
    got.append(Reply(0, [repr(ex)]))
tap(got and got[0].code == 502 and got[0].lines[0] == "5.5.2 Error: command not recognized",
    "unknown command: 502 5.5.2 (as Postfix) Error: command not recognized", *got)
tap(got[-1].code == 421 and got[-1].lines[0] == "4.7.0 mx.test.example Error: too many errors"
    and len(got) <= 6, "smtpd_hard_error_limit = 5: 421 4.7.0 too many errors", *got)
tap(c.closed(), "  and the connection is closed")
c.close()

# idle timeout
c = session()
t0 = time.time()
try:
    c.sock.settimeout(8)
    r = c.reply()
except Exception as ex:
    r = Reply(0, [repr(ex)])
dt = time.time() - t0
tap(r.code == 421 and r.lines[0] == "4.4.2 mx.test.example Error: timeout exceeded" and 1 < dt < 6,
    "smtpd_timeout = 2s: idle client gets 421 4.4.2 timeout exceeded (%.1fs)" % dt, r)
c.close()

# connection count limit (127.0.0.1 is outside mynetworks)
time.sleep(0.5)
c1, c2 = session(), session()
c3 = Client(port)
try:
    r = c3.reply()
except Exception as ex:
    r = Reply(0, [repr(ex)])
tap(r.code == 421 and r.lines[0] == "4.7.0 mx.test.example Error: too many connections from 127.0.0.1",
    "3rd connection with smtpd_client_connection_count_limit = 2: 421 4.7.0", r)
c3.close()
quit(c1)
quit(c2)

# a stalled client does not stop another one
time.sleep(0.5)
st = session()
st.send(b"MAIL FRO")
t0 = time.time()
r = send_mail(port, "a@example.org", ["stall@example.net"],
              b"Subject: while-stalled\r\n\r\nhello\r\n")
tap(r.code == 250 and time.time() - t0 < 1.5,
    "while a client is stalled mid-command, another one sends mail", r)
st.close()
tap(sink_find(r"while-stalled"), "  and it is delivered")
PY
