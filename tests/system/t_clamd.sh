#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_clamd.sh - the clamd back end (clamav_backend = clamd:unix:PATH)
# against a real clamd (Debian clamav-daemon) that the test starts in the
# foreground with its own configuration, the repository's signature set
# (conf/clamav/sluice-test.ndb) and a unix socket in the test dir:
# EICAR (plain, base64 attachment, in a zip) and the test pattern are
# refused with 554 5.7.1 and logged; clean mail is delivered byte for
# byte; a message over clamd's StreamMaxLength gets clamav_limit_action
# (accept: delivered and logged not fully scanned; tempfail: 451); a hung
# clamd times out (451); clamd stopped gives 451 4.3.0 and nothing is
# queued; with clamav_failure_action = accept the mail is queued and the
# log says unscanned.
#
# clamd appends ".UNOFFICIAL" to the names of signatures from unsigned
# databases; the tests accept NAME with or without it.
. "$(dirname "$0")/lib.sh"
need_binaries
CLAMD=$(command -v clamd 2>/dev/null || echo /usr/sbin/clamd)
[ -x "$CLAMD" ] || skip_all "clamd not installed (Debian package clamav-daemon)"
DB=$top_srcdir/conf/clamav
[ -r "$DB/sluice-test.ndb" ] || skip_all "no signature set at $DB/sluice-test.ndb"
plan 35
setup
SOCK=$T/clamd.sock
export SOCK

# ------------------------------------------------------------- clamd

# start_clamd: clamd in the foreground on $SOCK with the test signatures
# and a 1 MB StreamMaxLength; sets CLAMDPID; waits up to 30 s for the
# socket.
start_clamd()
{
    mkdir -p "$T/clamd/db"
    cp "$DB/sluice-test.ndb" "$T/clamd/db/"
    cat >"$T/clamd/clamd.conf" <<EOF
LocalSocket $SOCK
DatabaseDirectory $T/clamd/db
Foreground yes
LogFile $T/clamd/clamd.log
LogTime yes
StreamMaxLength 1M
MaxThreads 4
SelfCheck 3600
EOF
    rm -f "$SOCK"
    "$CLAMD" --foreground --config-file="$T/clamd/clamd.conf" \
        >>"$T/clamd/clamd.out" 2>&1 &
    CLAMDPID=$!
    _T_PIDS="$_T_PIDS $CLAMDPID"
    wait_for 30 test -S "$SOCK"
}

if start_clamd && alive "$CLAMDPID"; then
    ok "clamd starts with the test signatures on $SOCK"
else
    not_ok "clamd starts with the test signatures on $SOCK"
    diag "$(tail -n 20 "$T/clamd/clamd.out" "$T/clamd/clamd.log" 2>/dev/null)"
fi

# Message builders for the inline python below.
cat >"$T/clamdmsg.py" <<'PY'
import base64, io, re, zipfile

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PAT1 = b"SLUICE-TEST-PATTERN-1-9f2c4e"


def vname(name):
    return re.escape(name) + r"(\.UNOFFICIAL)?"


def crlf(s):
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def zipof(name, data):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return b.getvalue()


def head(mid, subject, extra=b""):
    return crlf(b"From: Alice <a@example.org>\nTo: Bob <b@example.net>\n"
                b"Subject: " + subject + b"\nMessage-ID: <" + mid.encode() +
                b">\nDate: Sun, 22 Nov 2026 10:00:00 +0000\n" + extra)


def plain(mid, body, subject=b"plain"):
    return head(mid, subject) + b"\r\n" + crlf(body)


def attach(mid, fname, data, ctype="application/octet-stream"):
    bnd = b"=_sluice_clamd"
    e = base64.b64encode(data)
    b64 = b"\r\n".join(e[i:i + 76] for i in range(0, len(e), 76)) + b"\r\n"
    return (head(mid, b"attachment", b"MIME-Version: 1.0\nContent-Type: "
                 b"multipart/mixed; boundary=\"" + bnd + b"\"\n") +
            b"\r\n--" + bnd + b"\r\nContent-Type: text/plain\r\n\r\n"
            b"See the attachment.\r\n--" + bnd + b"\r\nContent-Type: " +
            ctype.encode() + b"; name=\"" + fname.encode() + b"\"\r\n"
            b"Content-Disposition: attachment; filename=\"" + fname.encode() +
            b"\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 +
            b"--" + bnd + b"--\r\n")


def big(mid, size):
    """A clean text message of about size bytes."""
    lines, n, i = [], 0, 0
    while n < size:
        lines.append(b"%08d " % i + b"abcdefghijklmnopqrstuvwxyz0123456789" * 2)
        n += len(lines[-1]) + 2
        i += 1
    return plain(mid, b"\n".join(lines) + b"\n", b"big")
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

# restart [main.cf lines...]: (re)start sluiced with the clamd back end.
restart()
{
    [ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
    write_conf "clamav_backend = clamd:unix:$SOCK" "$@"
    start_ok
}

start_sink
restart

# ------------------------------------------------------- infected mail
pytap <<'PY'
from sink import *
from clamdmsg import *
port = int(env("PORT"))
cases = [
    ("inf-plain", plain("inf-plain@t", b"Hello,\n" + EICAR + b"\nbye\n"),
     "Eicar-Signature", "EICAR as plain text"),
    ("inf-b64", attach("inf-b64@t", "eicar.com", EICAR),
     "Eicar-Signature", "EICAR as a base64 attachment"),
    ("inf-zip", attach("inf-zip@t", "eicar.zip", zipof("eicar.com", EICAR),
                       "application/zip"),
     "Eicar-Signature", "EICAR inside a zip attachment"),
    ("inf-pat1", plain("inf-pat1@t", b"before " + PAT1 + b" after\n"),
     "Sluice.Test.Pattern-1", "Sluice.Test.Pattern-1 in the body"),
]
for tag, msg, name, desc in cases:
    r = send_mail(port, tag + "@example.org", ["b@example.net"], msg)
    tap(r.code == 554 and re.match(r"554 5\.7\.1 .*Infected: " + vname(name) + "$", r.text),
        "clamd: %s: 554 5.7.1 ... Infected: %s" % (desc, name), r)
m = log_wait(r"([0-9A-F]{14}): reject: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: "
             r"554 5\.7\.1 Message rejected: Infected: " + vname("Eicar-Signature") +
             r"; from=<inf-plain@example\.org> to=<b@example\.net>")
tap(m, "log: ID: reject: END-OF-MESSAGE from unknown[127.0.0.1]: 554 5.7.1 Message "
    "rejected: Infected: Eicar-Signature; from=<..> to=<..>")
qid = m.group(1) if m else "NOQUEUE"
tap(log_wait(qid + r": filter=clamav, action=reject, virus=" + vname("Eicar-Signature") +
             r" \(scan [0-9]+ ms\)$", 2),
    "log: ID: filter=clamav, action=reject, virus=Eicar-Signature (scan N ms)")
PY
like "clamd logged the detection" "$(cat "$T/clamd/clamd.log" 2>/dev/null)" \
    'instream\(.*\): Eicar-Signature(\.UNOFFICIAL)? FOUND'

# ---------------------------------------------------------- clean mail
pytap <<'PY'
from sink import *
from clamdmsg import *
port = int(env("PORT"))
cases = [
    ("clean-plain", plain("clean-plain@t", b"Hello Bob,\nnothing here.\n.leading dot\n"),
     "plain text"),
    ("clean-zip", attach("clean-zip@t", "notes.zip", zipof("notes.txt", b"harmless\n" * 300),
                         "application/zip"), "a zip of harmless text"),
    ("clean-500k", big("clean-500k@t", 500 * 1024), "a 500 KB message"),
]
sent = []
for tag, msg, desc in cases:
    r = send_mail(port, tag + "@example.org", ["b@example.net"], msg)
    qid = queued_id(r)
    tap(r.code == 250 and qid, "clamd: clean %s: 250 queued" % desc, r)
    sent.append((tag, msg, qid, desc))
for tag, msg, qid, desc in sent:
    m = sink_find(re.escape("<%s@t>" % tag), secs=30)
    rcv, rest = split_received(m[1] if m else b"")
    tap(m and rest == msg, "clean %s arrives byte for byte (%d bytes)" % (desc, len(msg)),
        "got %d bytes" % len(rest))
    tap(qid and log_wait(qid + r": clamav: clean \(scan [0-9]+ ms\)$", 5),
        "log: ID: clamav: clean (scan N ms) for %s" % desc)
bad = [c for e, c in sink_msgs() if re.search(rb"Message-ID: <inf-", c)]
tap(not bad, "no infected message reached the next hop", bad[:1])
PY

# --------------------------------- over clamd's StreamMaxLength (1 MB)
pytap <<'PY'
from sink import *
from clamdmsg import *
port = int(env("PORT"))
msg = big("big-accept@t", 2 * 1024 * 1024)
r = send_mail(port, "big@example.org", ["b@example.net"], msg)
qid = queued_id(r)
tap(r.code == 250 and qid,
    "2 MB over clamd's StreamMaxLength, clamav_limit_action = accept: 250 queued", r)
m = sink_find(re.escape("<big-accept@t>"), secs=30)
rcv, rest = split_received(m[1] if m else b"")
tap(m and rest == msg, "  and delivered byte for byte", "got %d bytes" % len(rest))
tap(qid and log_wait(qid + r": clamav: not fully scanned \(clamd: INSTREAM size limit "
                     r"exceeded\), accepted$", 5),
    "log: ID: clamav: not fully scanned (clamd: INSTREAM size limit exceeded), accepted")
PY

restart "clamav_limit_action = tempfail" "clamav_clamd_timeout = 2s"
pytap <<'PY'
from sink import *
from clamdmsg import *
port = int(env("PORT"))
r = send_mail(port, "big@example.org", ["b@example.net"], big("big-tempfail@t", 2 << 20))
tap(r.code == 451 and r.text.startswith("451 4.3.0") and not queued_id(r),
    "2 MB over StreamMaxLength, clamav_limit_action = tempfail: 451 4.3.0", r)
PY

# A hung clamd (stopped): the reply never comes, clamav_clamd_timeout.
kill -STOP "$CLAMDPID"
pytap <<'PY'
from sink import *
from clamdmsg import *
port = int(env("PORT"))
t0 = time.time()
r = send_mail(port, "hung@example.org", ["b@example.net"], plain("hung@t", b"hello\n"))
dt = time.time() - t0
tap(r.code == 451 and r.text.startswith("451 4.3.0") and 1.5 < dt < 10,
    "clamd hung: 451 4.3.0 after clamav_clamd_timeout (%.1f s)" % dt, r)
tap(log_wait(r"clamav: unscanned \(clamd unix:" + re.escape(env("SOCK")) +
             r": timeout waiting for the reply\), action=tempfail$", 5),
    "log: clamav: unscanned (clamd ...: timeout waiting for the reply), action=tempfail")
PY
kill -CONT "$CLAMDPID"

# ------------------------------------------------------- clamd stopped
stop_pid "$CLAMDPID"
check "clamd stopped" dead "$CLAMDPID"
pytap <<'PY'
from sink import *
from clamdmsg import *
port = int(env("PORT"))
r = send_mail(port, "down@example.org", ["b@example.net"], plain("down-1@t", b"hello\n"))
tap(r.code == 451 and re.match(r"451 4\.3\.0 .*virus scanner failure", r.text)
    and not queued_id(r), "clamd down: 451 4.3.0 Error: virus scanner failure", r)
tap(log_wait(r"clamav: unscanned \(connect to unix:" + re.escape(env("SOCK")) +
             r": (No such file or directory|Connection refused)\), action=tempfail$", 5),
    "log: clamav: unscanned (connect to unix:...: ...), action=tempfail")
time.sleep(1.5)
tap(not sink_find(re.escape("<down-1@t>"), secs=0), "the refused message is not delivered")
PY
check "nothing is queued" queue_empty

restart "clamav_failure_action = accept"
pytap <<'PY'
from sink import *
from clamdmsg import *
port = int(env("PORT"))
r = send_mail(port, "down@example.org", ["b@example.net"], plain("down-2@t", b"hello\n"))
qid = queued_id(r)
tap(r.code == 250 and qid, "clamd down, clamav_failure_action = accept: 250 queued", r)
tap(qid and log_wait(qid + r": clamav: unscanned \(connect to unix:.*\), accepted by "
                     r"clamav_failure_action$", 5),
    "log: ID: clamav: unscanned (connect to ...), accepted by clamav_failure_action")
tap(sink_find(re.escape("<down-2@t>"), secs=30), "  and delivered")
PY
stop_sluiced
