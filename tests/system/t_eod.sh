#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_eod.sh - smtpd_end_of_data_restrictions, as Postfix runs them: after
# the final dot, with the message's own size, before the message is
# judged by the filters and queued:
#   - a policy server (tests/system/policyd.py) sees
#     protocol_state=END-OF-MESSAGE, the real size and the recipient
#     count; its DUNNO lets the message through;
#   - its "552 5.2.2 Quota exceeded" refuses the message after the dot
#     (552 5.2.2 <END-OF-MESSAGE>: End-of-data rejected: Quota exceeded),
#     logged as Postfix logs it; nothing is queued and the scanner is not
#     run for it;
#   - its HOLD puts the message in the hold queue;
#   - a plain "reject" in the list: 554 5.7.1 <END-OF-MESSAGE>:
#     End-of-data rejected: Access denied;
#   - the session goes on after a refusal.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 7
setup

PP=$(free_port)
export PP
"$PYTHON3" "$top_srcdir/tests/system/policyd.py" --port "$PP" --log "$T/policy.log" \
    >>"$T/policyd.out" 2>&1 &
_T_PIDS="$_T_PIDS $!"
wait_port 127.0.0.1 "$PP" 10 || diag "policyd did not start: $(cat "$T/policyd.out")"

SVCS=""
svc rej smtpd_end_of_data_restrictions=reject
MASTER_EXTRA=$SVCS
write_conf "smtpd_end_of_data_restrictions = check_policy_service inet:127.0.0.1:$PP" \
    "clamav_enable = yes"
start_ok

pytap <<'PY'
import json, os, re, time
from sink import *

P = int(env("PORT"))
T = env("T")

def requests():
    try:
        with open(os.path.join(T, "policy.log")) as f:
            return [json.loads(l)["attrs"] for l in f if l.strip()]
    except FileNotFoundError:
        return []

small = b"Subject: small\r\n\r\n" + b"x" * 100 + b"\r\n"
r = send_mail(P, "a@example.org", ["u1@localhost", "u2@localhost"], small)
eod = [a for a in requests() if a.get("protocol_state") == "END-OF-MESSAGE"]
tap(r.code == 250 and len(eod) == 1
    and eod[0].get("recipient_count") == "2" and eod[0].get("recipient") == ""
    and eod[0].get("sender") == "a@example.org"
    and re.match(r"[0-9A-F]+$", eod[0].get("queue_id", "")),
    "a small message: the policy server is asked at END-OF-MESSAGE (2 "
    "recipients, the queue ID) and lets it through", r, eod)
size = int(eod[0]["size"]) if eod else -1
l = log_wait(r"from=<a@example\.org>, size=%d, nrcpt=2" % size, 10)
tap(size > len(small) and l,
    "  the size it gets is the message's own, as the queue manager logs it "
    "(%d bytes)" % size, eod)

big = b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 60
r = send_mail(P, "b@example.org", ["u1@localhost"], big)
m = re.match(r"552 5\.2\.2 <END-OF-MESSAGE>: End-of-data rejected: Quota "
             r"exceeded \(size (\d+)\)$", r.text)
l = log_wait(r"[0-9A-F]+: reject: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: "
             r"552 5\.2\.2 <END-OF-MESSAGE>: End-of-data rejected: Quota "
             r"exceeded \(size \d+\); from=<b@example\.org> "
             r"to=<u1@localhost> proto=ESMTP helo=<client\.test>", 10)
qid = re.search(r"([0-9A-F]+): reject: END-OF-MESSAGE", l.group(0)).group(1) if l else "-"
tap(m and int(m.group(1)) > 4200 and l,
    "over the quota: 552 5.2.2 <END-OF-MESSAGE>: End-of-data rejected: "
    "Quota exceeded ... after the dot, and Postfix's reject line", r)
time.sleep(1)
logtxt = open(os.path.join(T, "maillog")).read()
tap(qid != "-" and ("%s: clamav:" % qid) not in logtxt
    and ("%s: from=<b@example.org>" % qid) not in logtxt,
    "  the refused message was not scanned and not queued", qid)

r = send_mail(P, "hold@example.org", ["u1@localhost"], small)
l = log_wait(r"[0-9A-F]+: hold: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: "
             r"<END-OF-MESSAGE>: End-of-data quota review; "
             r"from=<hold@example\.org>", 10)
held = [f for f in os.listdir(os.path.join(T, "spool", "hold"))] \
    if os.path.isdir(os.path.join(T, "spool", "hold")) else []
tap(r.code == 250 and l and len(held) == 1,
    "HOLD at END-OF-MESSAGE: accepted into the hold queue, logged", r, held)

c = Client(int(env("P_rej")))
c.reply()
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<a@example.org>")
c.cmd("RCPT TO:<u1@localhost>")
c.cmd("DATA")
r1 = c.cmd("Subject: x\r\n\r\nx\r\n.")
c.cmd("MAIL FROM:<a@example.org>")
r2 = c.cmd("RCPT TO:<u1@localhost>")
c.cmd("QUIT")
c.close()
tap(r1.text == "554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: Access "
    "denied" and r2.code == 250,
    "a plain reject: 554 5.7.1 <END-OF-MESSAGE>: End-of-data rejected: "
    "Access denied, and the session goes on", r1, r2)
PY
stop_sluiced
