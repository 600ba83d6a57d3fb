#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_clamav_milter.sh - a real clamav-milter (Debian clamav-milter) with a
# real clamd (Debian clamav-daemon), both started by the test in the
# foreground with their own configurations, the repository's signature
# set (conf/clamav/sluice-test.ndb) and unix sockets in the test dir;
# sluiced runs with smtpd_milters = unix:$T/clamav-milter.sock (and no
# clamav_backend of its own). EICAR (plain and as a base64 attachment)
# is refused at end of data with clamav-milter's own reply (RejectMsg
# "Virus found: %v" -> 550 5.7.1) and logged as a milter-reject; clean
# mail is delivered with the X-Virus-Scanned / X-Virus-Status headers
# clamav-milter adds and otherwise unchanged; with clamd stopped
# clamav-milter's OnFail Defer gives a 4xx and nothing is queued.
#
# clamd appends ".UNOFFICIAL" to the names of signatures from unsigned
# databases; the tests accept the name with or without it.
. "$(dirname "$0")/lib.sh"
need_binaries
CLAMD=$(command -v clamd 2>/dev/null || echo /usr/sbin/clamd)
CMILTER=$(command -v clamav-milter 2>/dev/null || echo /usr/sbin/clamav-milter)
[ -x "$CLAMD" ] || skip_all "clamd not installed (Debian package clamav-daemon)"
[ -x "$CMILTER" ] || skip_all "clamav-milter not installed (Debian package clamav-milter)"
DB=$top_srcdir/conf/clamav
[ -r "$DB/sluice-test.ndb" ] || skip_all "no signature set at $DB/sluice-test.ndb"
plan 15
setup
CSOCK=$T/clamd.sock
MSOCK=$T/clamav-milter.sock
export CSOCK MSOCK

# ---------------------------------------------------- clamd, the milter

# start_clamd: clamd in the foreground on $CSOCK with the test
# signatures; sets CLAMDPID; waits up to 30 s for the socket.
start_clamd()
{
    mkdir -p "$T/clamd/db"
    cp "$DB/sluice-test.ndb" "$T/clamd/db/"
    cat >"$T/clamd/clamd.conf" <<EOF
LocalSocket $CSOCK
DatabaseDirectory $T/clamd/db
Foreground yes
LogFile $T/clamd/clamd.log
LogTime yes
MaxThreads 4
SelfCheck 3600
EOF
    rm -f "$CSOCK"
    "$CLAMD" --foreground --config-file="$T/clamd/clamd.conf" \
        >>"$T/clamd/clamd.out" 2>&1 &
    CLAMDPID=$!
    _T_PIDS="$_T_PIDS $CLAMDPID"
    wait_for 30 test -S "$CSOCK"
}

# start_cmilter: clamav-milter in the foreground on $MSOCK, asking clamd
# on $CSOCK; sets CMPID; waits up to 20 s for the socket.
start_cmilter()
{
    mkdir -p "$T/cmilter"
    cat >"$T/cmilter/clamav-milter.conf" <<EOF
MilterSocket unix:$MSOCK
ClamdSocket unix:$CSOCK
Foreground yes
FixStaleSocket yes
PidFile $T/cmilter/clamav-milter.pid
LogFile $T/cmilter/clamav-milter.log
LogInfected Full
LogClean Full
OnClean Accept
OnInfected Reject
OnFail Defer
RejectMsg Virus found: %v
AddHeader Replace
EOF
    "$CMILTER" --config-file="$T/cmilter/clamav-milter.conf" \
        >>"$T/cmilter/clamav-milter.out" 2>&1 &
    CMPID=$!
    _T_PIDS="$_T_PIDS $CMPID"
    wait_for 20 test -S "$MSOCK"
}

if start_clamd && alive "$CLAMDPID"; then
    ok "clamd starts with the test signatures on $CSOCK"
else
    not_ok "clamd starts with the test signatures on $CSOCK"
    diag "$(tail -n 20 "$T/clamd/clamd.out" "$T/clamd/clamd.log" 2>/dev/null)"
fi
if start_cmilter && alive "$CMPID"; then
    ok "clamav-milter starts on $MSOCK"
else
    not_ok "clamav-milter starts on $MSOCK"
    diag "$(tail -n 20 "$T/cmilter/clamav-milter.out" "$T/cmilter/clamav-milter.log" 2>/dev/null)"
fi

cat >"$T/cmmsg.py" <<'PY'
import base64, email.utils, re

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def vname(name):
    return re.escape(name) + r"(\.UNOFFICIAL)?"


def crlf(s):
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def head(mid, subject, extra=b""):
    return crlf(b"From: Alice <a@example.org>\nTo: Bob <b@example.net>\n"
                b"Subject: " + subject + b"\nMessage-ID: <" + mid.encode() +
                b">\nDate: " + email.utils.formatdate().encode() + b"\n" + extra)


def plain(mid, body, subject=b"plain"):
    return head(mid, subject) + b"\r\n" + crlf(body)


def attach(mid, fname, data):
    bnd = b"=_sluice_cmilter"
    e = base64.b64encode(data)
    return (head(mid, b"attachment", b"MIME-Version: 1.0\nContent-Type: "
                 b"multipart/mixed; boundary=\"" + bnd + b"\"\n") +
            b"\r\n--" + bnd + b"\r\nContent-Type: text/plain\r\n\r\n"
            b"See the attachment.\r\n--" + bnd + b"\r\nContent-Type: "
            b"application/octet-stream; name=\"" + fname.encode() + b"\"\r\n"
            b"Content-Disposition: attachment; filename=\"" + fname.encode() +
            b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + e + b"\r\n"
            b"--" + bnd + b"--\r\n")
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

start_sink
write_conf "clamav_enable = no" "smtpd_milters = unix:$MSOCK"
start_ok

# ------------------------------------------------------- infected mail
pytap <<'PY'
from sink import *
from cmmsg import *
port = int(env("PORT"))
cases = [
    ("cm-inf-plain", plain("cm-inf-plain@t", b"Hello,\n" + EICAR + b"\nbye\n"),
     "EICAR as plain text"),
    ("cm-inf-b64", attach("cm-inf-b64@t", "eicar.com", EICAR),
     "EICAR as a base64 attachment"),
]
for tag, msg, desc in cases:
    r = send_mail(port, tag + "@example.org", ["b@example.net"], msg)
    tap(r.code == 550 and re.match(r"550 5\.7\.1 Virus found: " + vname("Eicar-Signature") + "$",
                                   r.text) and not queued_id(r),
        "clamav-milter: %s: 550 5.7.1 Virus found: Eicar-Signature" % desc, r)
tap(log_wait(r"([0-9A-F]{14}|NOQUEUE): milter-reject: END-OF-MESSAGE from "
             r"unknown\[127\.0\.0\.1\]: 5\.7\.1 Virus found: " + vname("Eicar-Signature") +
             r"; from=<cm-inf-plain@example\.org> to=<b@example\.net> proto=ESMTP "
             r"helo=<client\.test>$"),
    "log: ID: milter-reject: END-OF-MESSAGE from unknown[127.0.0.1]: 5.7.1 Virus found: "
    "Eicar-Signature; from=<..> to=<..> proto=ESMTP helo=<client.test>")
PY
like "clamav-milter logged the detection" \
    "$(cat "$T/cmilter/clamav-milter.log" 2>/dev/null)" \
    "from <cm-inf-plain@example\.org> to <b@example\.net> .*infected by Eicar-Signature"

# ---------------------------------------------------------- clean mail
pytap <<'PY'
from sink import *
from cmmsg import *
port = int(env("PORT"))
msg = plain("cm-clean@t", b"Hello Bob,\nnothing here.\n.leading dot\n")
r = send_mail(port, "clean@example.org", ["b@example.net"], msg)
qid = queued_id(r)
tap(r.code == 250 and qid, "clamav-milter: clean mail: 250 queued", r)
m = sink_find(re.escape("<cm-clean@t>"), secs=30)
eml = m[1] if m else b""
tap(re.search(rb"^X-Virus-Scanned: clamav-milter [^\r\n]*\r\n", eml, re.M) and
    re.search(rb"^X-Virus-Status: Clean\r\n", eml, re.M),
    "  delivered with X-Virus-Scanned: clamav-milter ... and X-Virus-Status: Clean", eml[:800])
h, b = msg.split(b"\r\n\r\n", 1)
rcv, rest = split_received(eml)
added = re.sub(rb"^X-Virus-(Scanned|Status): [^\r\n]*\r\n", b"", rest, flags=re.M)
tap(added == msg, "  and otherwise byte for byte as sent", rest[:800])
bad = [c for e, c in sink_msgs() if re.search(rb"Message-ID: <cm-inf-", c)]
tap(not bad, "no infected message reached the next hop", bad[:1])
PY

# -------------------------------------------- clamd down: OnFail Defer
stop_pid "$CLAMDPID"
check "clamd stopped" dead "$CLAMDPID"
pytap <<'PY'
from sink import *
from cmmsg import *
port = int(env("PORT"))
t0 = time.time()
r = send_mail(port, "down@example.org", ["b@example.net"], plain("cm-down@t", b"hello\n"))
tap(400 <= r.code <= 499 and not queued_id(r) and time.time() - t0 < 20,
    "clamd down, clamav-milter OnFail Defer: 4xx, not queued (%.1f s)" % (time.time() - t0), r)
time.sleep(1.5)
tap(not sink_find(re.escape("<cm-down@t>"), secs=0), "  and not delivered")
PY
check "nothing is queued" queue_empty
stop_sluiced
stop_pid "$CMPID" 15
