#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_lmtp.sh - delivery by LMTP (RFC 2033), as Postfix's lmtp(8), to a
# scripted LMTP server (sink.py --lmtp):
#   - transport_maps "lmtp:[127.0.0.1]:PORT": LHLO, not EHLO; after the dot
#     one reply per recipient: those accepted are logged
#     postfix/lmtp ... relay=127.0.0.1[127.0.0.1]:PORT status=sent
#     (250 2.0.0 <rcpt> Saved), one refused for now deferred with the
#     server's reply "(in reply to end of DATA command)";
#   - a 5xx for one recipient after the dot bounces that one only;
#   - local_transport = lmtp:unix:private/lmtp: mail for mydestination
#     goes to a unix socket under queue_directory, logged
#     relay=myhostname[private/lmtp];
#   - a unix socket nobody listens on: deferred, "connect to
#     myhostname[path]: No such file or directory";
#   - a server that closes after the first of three replies to the dot:
#     that recipient is delivered, the two others deferred ("lost
#     connection ... while sending end of data"): never lost, never
#     taken as delivered.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 8
setup

LP=$(free_port)
LP5=$(free_port)
LPC=$(free_port)
export LP LP5 LPC
mkdir -p "$T/l1" "$T/l5" "$T/lu" "$T/lc" "$T/spool/private"
start_sink "$LP" "$T/l1" --lmtp --lmtp-fail-match '^full' ||
    diag "lmtp sink did not start"
start_sink "$LP5" "$T/l5" --lmtp --lmtp-fail-match '^gone' \
    --lmtp-fail-reply "550 5.1.1 <gone> User unknown" ||
    diag "lmtp sink 2 did not start"
start_sink "$LPC" "$T/lc" --lmtp --lmtp-close-after 1 ||
    diag "lmtp sink 3 did not start"
"$PYTHON3" "$SINK" --port 0 --dir "$T/lu" --lmtp --unix "$T/spool/private/lmtp" \
    >>"$T/sink.out" 2>&1 &
_T_PIDS="$_T_PIDS $!"
wait_for 10 test -S "$T/spool/private/lmtp" || diag "unix lmtp sink did not start"

write_conf "transport_maps = inline:{ lmtp.example=lmtp:[127.0.0.1]:$LP, five.example=lmtp:inet:127.0.0.1:$LP5, close.example=lmtp:[127.0.0.1]:$LPC, nosock.example=lmtp:unix:$T/nosuch.sock }" \
    "local_transport = lmtp:unix:private/lmtp"
start_ok

pytap <<'PY'
import os, re, time
from sink import *

P = int(env("PORT"))
T = env("T")
LP = env("LP")

msg = b"Subject: lmtp\r\n\r\nhello\r\n"
r = send_mail(P, "s@example.org", ["a@lmtp.example", "full1@lmtp.example",
                                   "b@lmtp.example"], msg)
qid = queued_id(r)
la = log_wait(r"postfix/lmtp\[\d+\]: %s: to=<a@lmtp\.example>, "
              r"relay=127\.0\.0\.1\[127\.0\.0\.1\]:%s, .*dsn=2\.0\.0, "
              r"status=sent \(250 2\.0\.0 <a@lmtp\.example> Saved\)" % (qid, LP), 10)
lb = log_wait(r"%s: to=<b@lmtp\.example>, .*status=sent" % qid, 5)
fs = wait_eml(os.path.join(T, "l1"), 1, 10)
env1 = open(fs[0][:-4] + ".env").read() if fs else ""
tap(la and lb and "RCPT TO:<a@lmtp.example>" in env1
    and "RCPT TO:<b@lmtp.example>" in env1 and "full1" not in env1,
    "lmtp:[127.0.0.1]:PORT: the accepted recipients delivered, each logged "
    "by postfix/lmtp with its own reply", r, env1)
lf = log_wait(r"%s: to=<full1@lmtp\.example>, .*dsn=4\.2\.2, status=deferred "
              r"\(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 452 4\.2\.2 Mailbox "
              r"full \(in reply to end of DATA command\)\)" % qid, 5)
tap(lf, "  the one refused for now after the dot: deferred with its reply")
sl = open(os.path.join(T, "l1", "sink.log")).read()
tap(re.search(r"< LHLO mx\.test\.example", sl) and "< EHLO" not in sl,
    "  LHLO, never EHLO", sl[-2000:])

r = send_mail(P, "s@example.org", ["ok@five.example", "gone@five.example"], msg)
qid = queued_id(r)
tap(log_wait(r"%s: to=<gone@five\.example>, .*dsn=5\.1\.1, status=bounced "
             r"\(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 <gone> User "
             r"unknown \(in reply to end of DATA command\)\)" % qid, 10)
    and log_wait(r"%s: to=<ok@five\.example>, .*status=sent" % qid, 5),
    "lmtp:inet:host:port: a 5xx after the dot bounces that recipient only", r)

r = send_mail(P, "s@example.org", ["bob@localhost"], msg)
qid = queued_id(r)
l = log_wait(r"postfix/lmtp\[\d+\]: %s: to=<bob@localhost>, "
             r"relay=mx\.test\.example\[private/lmtp\], .*status=sent "
             r"\(250 2\.0\.0 <bob@localhost> Saved\)" % qid, 10)
tap(l and wait_eml(os.path.join(T, "lu"), 1, 5),
    "local_transport = lmtp:unix:private/lmtp: mydestination mail over the "
    "unix socket under queue_directory, relay=myhostname[private/lmtp]", r)

r = send_mail(P, "s@example.org", ["x@nosock.example"], msg)
qid = queued_id(r)
tap(log_wait(r"%s: to=<x@nosock\.example>, relay=none, .*status=deferred "
             r"\(connect to mx\.test\.example\[%s/nosuch\.sock\]: No such file "
             r"or directory\)" % (qid, re.escape(T)), 10),
    "a unix socket nobody listens on: deferred, connect to "
    "myhostname[path]: No such file or directory", r)

r = send_mail(P, "s@example.org", ["c1@close.example", "c2@close.example",
                                   "c3@close.example"], msg)
qid = queued_id(r)
l1 = log_wait(r"%s: to=<c1@close\.example>, .*status=sent" % qid, 10)
l2 = log_wait(r"%s: to=<c2@close\.example>, .*dsn=4\.4\.2, status=deferred "
              r"\(lost connection with 127\.0\.0\.1\[127\.0\.0\.1\] while "
              r"sending end of data" % qid, 5)
l3 = log_wait(r"%s: to=<c3@close\.example>, .*status=deferred" % qid, 5)
tap(l1 and l2 and l3,
    "a server that closes after the first of three replies to the dot: the "
    "first delivered, the others deferred (lost connection ... while "
    "sending end of data)", r)
PY
stop_sluiced
result
