#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_relay_faults.sh - next hops that misbehave: a 5xx or 421 greeting
# (deferred, as Postfix's smtp_skip_5xx_greeting does by default; with
# it off a 5xx greeting bounces), a greeting that is not SMTP, a reply
# line over the limit, a reply of too many lines, a connection dropped
# in the middle of the content, no reply to the end of data (the
# smtp_data_done_timeout), a SIZE limit below the message (bounced
# before MAIL FROM), EHLO refused (HELO instead). Each gets its
# Postfix-form log line; every deferred message stays in the queue and,
# once its next hop behaves, arrives exactly once and byte for byte. A
# next hop with two addresses (tests/system/ioshim.c answers its
# getaddrinfo) whose first greets with 554: the second one gets the mail.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 39
setup

CASES="g554 g421 garbage longline manylines dropdata nodot size100 helo"
export CASES
ROUTES=""
for c in $CASES; do
    p=$(free_port)
    eval "P_$c=$p"
    export "P_$c"
    ROUTES="$ROUTES $c.example=smtp:[127.0.0.1]:$p,"
done
P_two=$(free_port)
# a host name through getaddrinfo (smtp_host_lookup = native; the shim
# answers it): [] so that no MX lookup is made
ROUTES="$ROUTES twoaddr.example=smtp:[twoaddr.test]:$P_two,"
write_conf "transport_maps = inline:{${ROUTES%,} }" \
    "smtp_data_done_timeout = 2s" "smtp_helo_timeout = 5s" \
    "smtp_host_lookup = native"

# A scripted next hop: its behaviour on each new connection is the word in
# DIR/mode (good, or the case's name). Good connections store each
# message, dot-stuffing undone, as DIR/N.eml; every command received goes
# to DIR/cmds.
cat >"$T/badhop.py" <<'PY'
import os, socket, socketserver, sys, threading, time

port, d = int(sys.argv[1]), sys.argv[2]
host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
lock = threading.Lock()

def mode():
    try:
        return open(os.path.join(d, "mode")).read().strip()
    except OSError:
        return "good"

def note(line):
    with lock:
        with open(os.path.join(d, "cmds"), "ab") as f:
            f.write(line + b"\n")

class H(socketserver.StreamRequestHandler):
    timeout = 30

    def out(self, s):
        self.wfile.write(s.encode() + b"\r\n")
        self.wfile.flush()

    def cmd(self):
        line = self.rfile.readline(65536)
        if not line:
            raise EOFError
        line = line.rstrip(b"\r\n")
        note(line)
        return line

    def handle(self):
        try:
            self.session(mode())
        except (EOFError, OSError):
            pass

    def session(self, m):
        if m == "g554":
            self.out("554 5.7.1 no service for you")
            self.cmd()  # QUIT
            return
        if m == "g421":
            self.out("421 4.3.2 too busy, come back later")
            return
        if m == "garbage":
            self.out("hello, this is not SMTP")
            self.cmd()
            return
        self.out("220 hop.test ESMTP")
        while True:
            c = self.cmd()
            v = c[:4].upper()
            if v == b"EHLO":
                if m == "helo":
                    self.out("502 5.5.2 EHLO not implemented")
                elif m == "longline":
                    self.out("250-hop.test " + "x" * 5000)
                    self.out("250 8BITMIME")
                elif m == "manylines":
                    for i in range(150):
                        self.out("250-X-EXT%d" % i)
                    self.out("250 8BITMIME")
                elif m == "size100":
                    self.out("250-hop.test")
                    self.out("250 SIZE 100")
                else:
                    self.out("250-hop.test")
                    self.out("250 8BITMIME")
            elif v == b"HELO":
                self.out("250 hop.test")
            elif v == b"MAIL" or v == b"RCPT" or v == b"RSET":
                self.out("250 2.1.0 Ok")
            elif v == b"DATA":
                self.out("354 End data with <CR><LF>.<CR><LF>")
                if m == "dropdata":
                    self.rfile.read(40)
                    return
                lines = []
                while True:
                    l = self.rfile.readline(1 << 20)
                    if not l:
                        raise EOFError
                    if l == b".\r\n":
                        break
                    lines.append(l[1:] if l.startswith(b".") else l)
                body = b"".join(lines)
                if m == "nodot":
                    time.sleep(20)
                    return
                with lock:
                    n = len([f for f in os.listdir(d) if f.endswith(".eml")])
                    open(os.path.join(d, "%d.eml" % (n + 1)), "wb").write(body)
                self.out("250 2.0.0 Ok: queued as HOP%d" % (n + 1))
            elif v == b"QUIT":
                self.out("221 2.0.0 Bye")
                return
            else:
                self.out("500 5.5.2 what?")

class S(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True
    address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

S((host, port), H).serve_forever()
PY

for c in $CASES; do
    mkdir -p "$T/hop.$c"
    echo "$c" >"$T/hop.$c/mode"
    eval "p=\$P_$c"
    "$PYTHON3" "$T/badhop.py" "$p" "$T/hop.$c" >>"$T/hop.out" 2>&1 &
    _T_PIDS="$_T_PIDS $!"
    wait_port 127.0.0.1 "$p" 10
done
# twoaddr.test: ::1 greets with 554, 127.0.0.1 takes the mail
mkdir -p "$T/hop.two6" "$T/hop.two4"
echo g554 >"$T/hop.two6/mode"
"$PYTHON3" "$T/badhop.py" "$P_two" "$T/hop.two6" ::1 >>"$T/hop.out" 2>&1 &
_T_PIDS="$_T_PIDS $!"
"$PYTHON3" "$T/badhop.py" "$P_two" "$T/hop.two4" >>"$T/hop.out" 2>&1 &
_T_PIDS="$_T_PIDS $!"
wait_port ::1 "$P_two" 10
wait_port 127.0.0.1 "$P_two" 10
start_sink
ioshim_wrap "$T/hosts" "IOSHIM_HOSTS=twoaddr.test=::1,127.0.0.1" ||
    diag "tests/system/ioshim.c does not build"
SLUICED_WRAP=$T/hosts start_ok

# Every case's message: a body with dot-leading lines and a long one
# (3 MB for the connection dropped during the content).
pytap <<'PY'
from sink import *
port = int(env("PORT"))
ids = {}
for c in env("CASES").split() + ["twoaddr"]:
    body = (b"Subject: fault %s\r\nMessage-ID: <fault-%s@example.org>\r\n\r\n"
            b".leading dot\r\n..two dots\r\nline for %s\r\n" % (c.encode(), c.encode(), c.encode())
            + b"y" * 900 + b"\r\n")
    if c == "dropdata":  # more than the socket buffers hold
        body += b"".join(b"%05d %s\r\n" % (i, b"z" * 72) for i in range(40000))
    r = send_mail(port, "sender@example.org", ["x@%s.example" % c], body)
    ids[c] = queued_id(r)
    open(os.path.join(env("T"), "id." + c), "w").write(ids[c] or "")
    open(os.path.join(env("T"), "body." + c), "wb").write(body)
tap(all(ids.values()), "one message queued for each faulty next hop", ids)
PY

id_of() { cat "$T/id.$1"; }
relay_of() {
    local p
    eval "p=\$P_$1"
    printf '127\\.0\\.0\\.1\\[127\\.0\\.0\\.1\\]:%s' "$p"
}

check "5xx greeting: deferred with the greeting, dsn 5.7.1 made 4.7.1 (smtp_skip_5xx_greeting)" \
    log_wait 15 "$(id_of g554): to=<x@g554\.example>, relay=$(relay_of g554), .*dsn=4\.7\.1, status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] refused to talk to me: 554 5\.7\.1 no service for you\)"
check "421 greeting: deferred with the greeting" \
    log_wait 15 "$(id_of g421): to=<x@g421\.example>, relay=$(relay_of g421), .*dsn=4\.3\.2, status=deferred \(host 127\.0\.0\.1\[127\.0\.0\.1\] refused to talk to me: 421 4\.3\.2 too busy, come back later\)"
check "a greeting that is not SMTP: deferred, protocol error (malformed reply)" \
    log_wait 15 "$(id_of garbage): to=<x@garbage\.example>, .*dsn=4\.5\.0, status=deferred \(protocol error with 127\.0\.0\.1\[127\.0\.0\.1\]: malformed reply while receiving the initial server greeting\)"
check "a reply line over 4096 bytes: deferred, protocol error (reply line too long)" \
    log_wait 15 "$(id_of longline): to=<x@longline\.example>, .*dsn=4\.5\.0, status=deferred \(protocol error with 127\.0\.0\.1\[127\.0\.0\.1\]: reply line too long while performing the EHLO handshake\)"
check "a reply of 151 lines: deferred, protocol error (too many lines)" \
    log_wait 15 "$(id_of manylines): to=<x@manylines\.example>, .*dsn=4\.5\.0, status=deferred \(protocol error with 127\.0\.0\.1\[127\.0\.0\.1\]: reply has too many lines while performing the EHLO handshake\)"
check "connection dropped during the content: deferred, lost connection while sending message body" \
    log_wait 15 "$(id_of dropdata): to=<x@dropdata\.example>, .*dsn=4\.4\.2, status=deferred \(lost connection with 127\.0\.0\.1\[127\.0\.0\.1\] while sending message body\)"
check "no reply to the end of data: deferred after smtp_data_done_timeout, may be sent twice" \
    log_wait 15 "$(id_of nodot): to=<x@nodot\.example>, .*dsn=4\.4\.2, status=deferred \(conversation with 127\.0\.0\.1\[127\.0\.0\.1\] timed out while sending end of data -- message may be sent more than once\)"
check "SIZE 100 below the message: bounced with dsn 5.3.4" \
    log_wait 15 "$(id_of size100): to=<x@size100\.example>, relay=$(relay_of size100), .*dsn=5\.3\.4, status=bounced \(message size [0-9]+ exceeds size limit 100 of server 127\.0\.0\.1\[127\.0\.0\.1\]\)"
check_not "  and neither MAIL FROM nor content was sent to that server" \
    grep -Eq '^(MAIL|DATA)' "$T/hop.size100/cmds"
pytap <<'PY'
from sink import *
b = sink_find(r"RCPT TO:<sender@example\.org>")
tap(b and b[0].startswith("MAIL FROM:<>\n") and b"x@size100.example" in b[1],
    "  the sender gets a non-delivery notice naming the recipient", b and b[0])
PY
check "EHLO refused with 502: HELO, and the message is delivered" \
    log_wait 15 "$(id_of helo): to=<x@helo\.example>, relay=$(relay_of helo), .*dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as HOP1\)"
like "  the server saw EHLO, then HELO with smtp_helo_name" \
    "$(head -n 2 "$T/hop.helo/cmds" | tr '\n' ' ')" '^EHLO mx\.test\.example HELO mx\.test\.example $'

check "two addresses, the first greets with 554: the second one gets the mail" \
    log_wait 15 "$(id_of twoaddr): to=<x@twoaddr\.example>, relay=twoaddr\.test\[127\.0\.0\.1\]:$P_two, .*status=sent"
check "  after the first one was asked (it saw QUIT, not EHLO)" \
    grep -qx QUIT "$T/hop.two6/cmds"
is "  and nothing was deferred for it" \
    "$(log_count "x@twoaddr\.example>, .*status=deferred")" 0

out=$(sl queue list 2>&1)
for c in g554 g421 garbage longline manylines dropdata nodot; do
    like "the $c message waits in the queue" "$out" "^$(id_of "$c")"
done
unlike "the bounced (size100) and the delivered (helo) ones do not" \
    "$out" "^($(id_of size100)|$(id_of helo))"

# The next hops come to their senses: each deferred message arrives once,
# byte for byte (with the Received: field Sluice adds on top).
for c in g554 g421 garbage longline manylines dropdata nodot; do
    echo good >"$T/hop.$c/mode"
done
check "once the next hops behave, every deferred message is delivered within 20 s" \
    wait_for 20 queue_empty
sleep 1
pytap <<'PY'
from sink import *
T = env("T")
for c in "g554 g421 garbage longline manylines dropdata nodot".split():
    d = os.path.join(T, "hop." + c)
    emls = sorted(f for f in os.listdir(d) if f.endswith(".eml"))
    want = open(os.path.join(T, "body." + c), "rb").read()
    got = [split_received(open(os.path.join(d, f), "rb").read())[1] for f in emls]
    tap(len(got) == 1 and got[0] == want,
        "%s: delivered exactly once, byte for byte" % c,
        "copies: %d, sizes %s, want %d" % (len(got), [len(g) for g in got], len(want)))
PY
check "log: the 5xx-greeting message is sent on a later attempt" \
    log_has "$(id_of g554): to=<x@g554\.example>, relay=$(relay_of g554), .*status=sent"

# smtp_skip_5xx_greeting = no: a 5xx greeting bounces at once.
echo g554 >"$T/hop.g554/mode"
write_conf "transport_maps = inline:{${ROUTES%,} }" "smtp_skip_5xx_greeting = no" \
    "smtp_host_lookup = native"
check "sluice reload with smtp_skip_5xx_greeting = no" sl reload
sleep 1
out=$(py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "sender2@example.org", ["y@g554.example"],
              b"Subject: no skip\r\n\r\nbody\r\n")
print(queued_id(r) or r.text)
PY
)
like "a second message for the 5xx-greeting hop is queued" "$out" '^[0-9A-F]{14}$'
check "  and bounced: dsn=5.7.1, status=bounced (host ... refused to talk to me: 554 ...)" \
    log_wait 15 "$out: to=<y@g554\.example>, relay=$(relay_of g554), .*dsn=5\.7\.1, status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] refused to talk to me: 554 5\.7\.1 no service for you\)"
check "  removed from the queue" log_wait 10 "$out: removed"
check "sluiced is still running" alive "$MASTERPID"
