#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_clamav.sh - the ClamAV filter (in-process libclamav) with the
# repository's signature set (conf/clamav: Eicar-Signature and
# Sluice.Test.Pattern-1): EICAR as text, base64, in a zip, in a zip in a
# zip; the test pattern; clean mail of several shapes passes untouched;
# a zip nested deeper than clamav_max_recursion gets clamav_limit_action
# (accept, reject, tempfail); clamav_virus_action discard and hold;
# clamav_header; no database (451, or accepted by clamav_failure_action);
# `sluice check`; malformed MIME, a truncated zip and a zip bomb get a
# verdict and the front process survives.
#
# libclamav appends ".UNOFFICIAL" to the names of signatures from
# unsigned databases; the tests accept NAME with or without it.
. "$(dirname "$0")/lib.sh"
need_binaries
DB=$top_srcdir/conf/clamav
[ -r "$DB/sluice-test.ndb" ] || skip_all "no signature set at $DB/sluice-test.ndb"
plan 87
setup
export DB

# Message builders for the inline python below.
cat >"$T/clammsg.py" <<'PY'
import base64, io, re, zipfile

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PAT1 = b"SLUICE-TEST-PATTERN-1-9f2c4e"


def vname(name):
    """Regex for a virus name as reported (libclamav may add .UNOFFICIAL)."""
    return re.escape(name) + r"(\.UNOFFICIAL)?"


def crlf(s):
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def zipof(name, data):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return b.getvalue()


def nested(data, depth):
    """data as eicar.com inside depth zips, one inside the other."""
    name = "eicar.com"
    for i in range(depth):
        data = zipof(name, data)
        name = "level%d.zip" % (i + 1)
    return data


def b64lines(data):
    e = base64.b64encode(data)
    return b"\r\n".join(e[i:i + 76] for i in range(0, len(e), 76)) + b"\r\n"


def head(mid, subject, extra=b""):
    return crlf(b"From: Alice <a@example.org>\nTo: Bob <b@example.net>\n"
                b"Subject: " + subject + b"\nMessage-ID: <" + mid.encode() +
                b">\nDate: Sun, 22 Nov 2026 10:00:00 +0000\n" + extra)


def plain(mid, body, subject=b"plain"):
    return head(mid, subject) + b"\r\n" + crlf(body)


def mime(mid, parts, subject=b"multipart"):
    """parts: [(content type, file name or None, data, encoding)]"""
    bnd = b"=_sluice_" + re.sub(rb"[^A-Za-z0-9]", b"_", mid.encode())
    out = head(mid, subject, b"MIME-Version: 1.0\nContent-Type: multipart/mixed; "
               b"boundary=\"" + bnd + b"\"\n") + crlf(
                   b"\nThis is a multi-part message in MIME format.\n")
    for ctype, fname, data, enc in parts:
        out += b"--" + bnd + b"\r\nContent-Type: " + ctype.encode()
        if fname:
            out += (b"; name=\"" + fname.encode() + b"\"\r\nContent-Disposition: "
                    b"attachment; filename=\"" + fname.encode() + b"\"")
        out += b"\r\nContent-Transfer-Encoding: " + enc.encode() + b"\r\n\r\n"
        if enc == "base64":
            out += b64lines(data)
        else:
            out += crlf(data)
            if not out.endswith(b"\r\n"):
                out += b"\r\n"
    return out + b"--" + bnd + b"--\r\n"


def attach(mid, fname, data, ctype="application/octet-stream"):
    return mime(mid, [("text/plain; charset=us-ascii", None,
                       b"See the attachment.\n", "7bit"),
                      (ctype, fname, data, "base64")], b"attachment " + fname.encode())
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

# restart [main.cf lines...]: (re)start sluiced with the repository's
# signature set plus the given lines; waits for the engine to load.
restart()
{
    local n
    [ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
    write_conf "clamav_database_directory = $DB" "$@"
    n=$(log_count 'clamav: engine loaded')
    start_ok
    wait_for 20 loaded_more "$n"
}

loaded_more()
{
    [ "$(log_count 'clamav: engine loaded')" -gt "$1" ]
}

start_sink

# ------------------------------------------------ defaults: infected
restart
check "log: clamav: engine loaded" log_has 'clamav: engine loaded'

# policies CHILD: "name:policy" for each thread of the child process
# (policy from /proc/TID/stat: 0 SCHED_OTHER, 3 SCHED_BATCH).
policies()
{
    local t pid
    pid=$(child_pid "$1")
    for t in /proc/"$pid"/task/*; do
        echo "$(cat "$t/comm"):$(awk '{print $41}' "$t/stat")"
    done
}
FRONTPOL=$(policies smtpd | sort -u | tr '\n' ' ')
QMGRPOL=$(policies qmgr | sort -u | tr '\n' ' ')
diag "front threads: $FRONTPOL; qmgr threads: $QMGRPOL"
like "sluice_batch_scheduling (default yes): the front's loop is SCHED_BATCH" \
    "$FRONTPOL" "(^| )smtpd:3 "
like "sluice_batch_scheduling: the front's scan threads are SCHED_BATCH" \
    "$FRONTPOL" "clamscan:3 "
unlike "sluice_batch_scheduling: no thread of the front under another policy" \
    "$FRONTPOL" ":[0-24-9]"
like "sluice_batch_scheduling: the queue manager is SCHED_BATCH" \
    "$QMGRPOL" "(^| )qmgr:3 "

pytap <<'PY'
from sink import *
from clammsg import *
port = int(env("PORT"))
cases = [
    ("inf-plain", plain("inf-plain@t", b"Hello,\n" + EICAR + b"\nbye\n"),
     "Eicar-Signature", "EICAR as plain text in the body"),
    ("inf-b64", attach("inf-b64@t", "eicar.com", EICAR),
     "Eicar-Signature", "EICAR as a base64 attachment"),
    ("inf-zip", attach("inf-zip@t", "eicar.zip", nested(EICAR, 1), "application/zip"),
     "Eicar-Signature", "EICAR inside a zip attachment"),
    ("inf-zip2", attach("inf-zip2@t", "eicar.zip", nested(EICAR, 2), "application/zip"),
     "Eicar-Signature", "EICAR inside a zip inside a zip"),
    ("inf-pat1", plain("inf-pat1@t", b"text before " + PAT1 + b" text after\n"),
     "Sluice.Test.Pattern-1", "Sluice.Test.Pattern-1 in the body"),
    ("inf-pat1-zip", attach("inf-pat1-zip@t", "p.zip", zipof("p.txt", b"x\n" + PAT1 + b"\n"),
                            "application/zip"),
     "Sluice.Test.Pattern-1", "Sluice.Test.Pattern-1 inside a zip attachment"),
]
for tag, msg, name, desc in cases:
    r = send_mail(port, tag + "@example.org", ["b@example.net"], msg)
    tap(r.code == 554 and re.match(r"554 5\.7\.1 .*Infected: " + vname(name) + "$", r.text),
        "%s: 554 5.7.1 ... Infected: %s" % (desc, name), r)
# the log lines of the first one
m = log_wait(r"([0-9A-F]{14}): reject: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: "
             r"554 5\.7\.1 Message rejected: Infected: " + vname("Eicar-Signature") +
             r"; from=<inf-plain@example\.org> to=<b@example\.net> proto=ESMTP "
             r"helo=<client\.test>$")
tap(m, "log: ID: reject: END-OF-MESSAGE from unknown[127.0.0.1]: 554 5.7.1 Message "
    "rejected: Infected: Eicar-Signature; from=<..> to=<..> proto=ESMTP helo=<..>")
qid = m.group(1) if m else "NOQUEUE"
tap(log_wait(qid + r": filter=clamav, action=reject, virus=" + vname("Eicar-Signature") +
             r" \(scan [0-9]+ ms\)$", 2),
    "log: ID: filter=clamav, action=reject, virus=Eicar-Signature (scan N ms)")
PY

# A refused message too big for free/ (128 KB) is removed by a worker
# thread, not on the loop: its file must still go, and the next client
# must be served.
pytap <<'PY'
from sink import *
from clammsg import *
port = int(env("PORT"))
big = plain("inf-big@t", b"a line of filler text for a big message\n" * 16000 + EICAR + b"\n")
r = send_mail(port, "inf-big@example.org", ["b@example.net"], big)
tap(r.code == 554 and re.match(r"554 5\.7\.1 .*Infected: " + vname("Eicar-Signature") + "$", r.text),
    "a 640 KB message with EICAR at its end: 554 5.7.1", r)
r = send_mail(port, "after-big@example.org", ["b@example.net"], plain("after-big@t", b"ok\n"))
tap(r.code == 250, "the next message is accepted", r)
PY
incoming_has_only_committed() { ! ls -A "$T/spool/incoming" | grep -q '^\.'; }
check "the big refused message's temp file is gone from incoming/" \
    wait_for 5 incoming_has_only_committed

# ------------------------------------------------ defaults: clean mail
pytap <<'PY'
import os, random
from sink import *
from clammsg import *
port = int(env("PORT"))
rnd = random.Random(7)
i = 0
body = []
size = 0
while size < 2 * 1024 * 1024:
    body.append(b"%08d " % i + b"abcdefghijklmnopqrstuvwxyz0123456789" * 2)
    size += len(body[-1]) + 2
    i += 1
cases = [
    ("clean-plain", plain("clean-plain@t", b"Hello Bob,\nnothing to see here.\n-- \nAlice\n"),
     "plain text"),
    ("clean-mixed", mime("clean-mixed@t", [
        ("text/plain; charset=us-ascii", None, b"Random bytes attached.\n", "7bit"),
        ("application/octet-stream", "random.bin",
         bytes(rnd.getrandbits(8) for _ in range(20000)), "base64")]),
     "multipart with a base64 random attachment"),
    ("clean-html", mime("clean-html@t", [
        ("text/plain; charset=us-ascii", None, b"Hello in plain text.\n", "7bit"),
        ("text/html; charset=us-ascii", None,
         b"<html><head><title>t</title><script>var x = 1;</script></head>\n"
         b"<body><p>Hello <b>Bob</b>, <a href=\"http://example.org/\">link</a></p>\n"
         b"<img src=\"cid:x\"></body></html>\n", "7bit")], b"html"),
     "HTML part"),
    ("clean-zip", attach("clean-zip@t", "notes.zip",
                         zipof("notes.txt", b"harmless text\n" * 200), "application/zip"),
     "zip of harmless text"),
    ("clean-8bit", plain("clean-8bit@t",
                         b"caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac \xff\xfe\x80\n.leading dot\n..\n"),
     "8-bit text"),
    ("clean-big", plain("clean-big@t", b"\n".join(body) + b"\n", b"big"),
     "2 MB message"),
]
sent = {}
for tag, msg, desc in cases:
    r = send_mail(port, tag + "@example.org", ["b@example.net"], msg)
    qid = queued_id(r)
    tap(r.code == 250 and qid, "clean mail, %s: 250 queued" % desc, r)
    sent[tag] = (msg, qid, desc)
for tag, (msg, qid, desc) in sent.items():
    m = sink_find(re.escape("<%s@t>" % tag), secs=30)
    rcv, rest = split_received(m[1] if m else b"")
    tap(m and rest == msg, "clean mail, %s, arrives untouched (%d bytes)" % (desc, len(msg)),
        "got %d bytes" % len(rest), rest[:300])
    tap(qid and log_wait(qid + r": clamav: clean \(scan [0-9]+ ms\)$", 5),
        "log: ID: clamav: clean (scan N ms) for the %s" % desc)
# the infected ones of the block before never reach the next hop
bad = [c for e, c in sink_msgs() if re.search(rb"Message-ID: <inf-", c)]
tap(not bad, "no infected message reached the next hop", bad[:1])
PY

# ------------------------------------------------ defaults: malformed input
FRONT=$(child_pid smtpd)
pytap <<'PY'
import threading
from sink import *
from clammsg import *
port = int(env("PORT"))
broken = attach("bad-b64@t", "broken.bin", b"x" * 3000)
broken = broken.replace(b"eHh4", b"!*~", 3).replace(b"eHh4eHh4\r\n", b"eHh\r\n", 2)
trunc = attach("bad-trunc@t", "trunc.zip", nested(EICAR, 1)[:45], "application/zip")
bomb = attach("bad-bomb@t", "zeros.zip", zipof("zeros.bin", bytes(50 << 20)),
              "application/zip")
for tag, msg, desc in (("bad-b64", broken, "MIME part with broken base64"),
                       ("bad-trunc", trunc, "truncated zip")):
    r = send_mail(port, tag + "@example.org", ["b@example.net"], msg)
    # nothing infected in them: libclamav's verdict is clean
    tap(r.code == 250 and queued_id(r), "%s: a clear verdict, 250 (clean)" % desc, r)

# the zip bomb: scanned on a worker, other sessions are served meanwhile
res = {}
sent = threading.Event()
def bombsend():
    c = Client(port, timeout=60)
    try:
        for line in (None, "EHLO client.test", "MAIL FROM:<bad-bomb@example.org>",
                     "RCPT TO:<b@example.net>", "DATA"):
            res["r"] = c.reply() if line is None else c.cmd(line)
        c.send(dotstuff(bomb))
        sent.set()
        res["r"] = c.reply()
        c.cmd("QUIT")
    finally:
        sent.set()
        c.close()
th = threading.Thread(target=bombsend)
th.start()
sent.wait(30)
time.sleep(0.05)
t0 = time.time()
c = Client(port)
g = c.reply()
e = c.cmd("EHLO other.test")
c.cmd("QUIT")
c.close()
dt = time.time() - t0
th.join(60)
r = res.get("r")
tap(r and r.code == 250 and queued_id(r),
    "zip of 50 MB of zeros with default limits: 250 (scanned whole, clean)", r)
tap(g.code == 220 and e.code == 250 and dt < 2,
    "another session is served while the zip bomb is scanned (%.2f s)" % dt, g, e)
tap(r and queued_id(r) and log_wait(queued_id(r) + r": clamav: clean \(scan [0-9]+ ms\)$", 5),
    "log: the zip bomb scan logged as clean")
PY
is "the front process survived the malformed input (same pid)" "$(child_pid smtpd)" "$FRONT"

# ------------------------------------------------ limits: clamav_max_recursion = 3
deep_send() { # deep_send TAG EXPECTED-REPLY-ERE DESC; the queue ID goes to $T/deep.id
    pytap "$@" <<'PY'
import sys
from sink import *
from clammsg import *
tag, want, desc = sys.argv[1:4]
msg = attach(tag + "@t", "deep.zip", nested(EICAR, 6), "application/zip")
r = send_mail(int(env("PORT")), tag + "@example.org", ["b@example.net"], msg)
tap(re.match(want, r.text), desc, r)
with open(os.path.join(env("T"), "deep.id"), "w") as f:
    f.write(queued_id(r) or "NONE")
PY
}

restart "clamav_max_recursion = 3"
deep_send deep-accept '^250 ' 'EICAR 6 zips deep, clamav_max_recursion = 3, default limit action: 250'
DID=$(cat "$T/deep.id")
pytap "$DID" <<'PY'
import sys
from sink import *
qid = sys.argv[1]
m = log_wait(qid + r": clamav: not fully scanned \((.+)\), accepted$", 5)
tap(m, "log: ID: clamav: not fully scanned (REASON), accepted")
tap(m and re.search(r"(?i)recursion", m.group(1)),
    "the reason names the recursion limit", m and m.group(0))
tap(sink_find(r"<deep-accept@t>", secs=15), "the message is delivered")
PY

restart "clamav_max_recursion = 3" "clamav_limit_action = reject"
deep_send deep-reject '^554 5\.7\.1 ' 'clamav_limit_action = reject: 554 5.7.1'
restart "clamav_max_recursion = 3" "clamav_limit_action = tempfail"
deep_send deep-tempfail '^451 4\.3\.0 ' 'clamav_limit_action = tempfail: 451 4.3.0'
check "limit reject/tempfail: nothing queued" wait_for 5 queue_empty

# ------------------------------------------------ virus action discard
restart "clamav_virus_action = discard"
pytap <<'PY'
from sink import *
from clammsg import *
port = int(env("PORT"))
r = send_mail(port, "disc@example.org", ["b@example.net"], attach("disc@t", "e.com", EICAR))
qid = queued_id(r)
tap(r.code == 250 and qid, "clamav_virus_action = discard: 250 to the client", r)
tap(qid and log_wait(qid + r": filter=clamav, action=discard, virus=" +
                     vname("Eicar-Signature") + r" \(scan [0-9]+ ms\)$", 5),
    "log: ID: filter=clamav, action=discard, virus=Eicar-Signature (scan N ms)")
tap(qid and log_wait(qid + r": discard: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: ", 5),
    "log: ID: discard: END-OF-MESSAGE from unknown[127.0.0.1]: ...")
r = send_mail(port, "disc-clean@example.org", ["b@example.net"], plain("disc-clean@t", b"ok\n"))
tap(r.code == 250 and sink_find(r"<disc-clean@t>"), "a clean message after it is delivered", r)
time.sleep(0.5)
tap(not sink_find(r"<disc@t>", secs=0), "the discarded message is not delivered")
PY
check "discard: queue empty" wait_for 10 queue_empty

# ------------------------------------------------ hold, clamav_header
restart "clamav_virus_action = hold" "clamav_header = X-Virus-Scanned"
out=$(py <<'PY'
from sink import *
from clammsg import *
r = send_mail(int(env("PORT")), "held@example.org", ["b@example.net"], attach("held@t", "e.com", EICAR))
print(r.code, queued_id(r) or r.text)
PY
)
like "clamav_virus_action = hold: 250 queued" "$out" '^250 [0-9A-F]{14}$'
HID=${out#250 }
check "log: ID: filter=clamav, action=hold, virus=Eicar-Signature" \
    log_wait 5 "$HID: filter=clamav, action=hold, virus=Eicar-Signature(\.UNOFFICIAL)? \(scan [0-9]+ ms\)$"
like "queue list shows it held (ID!)" "$(sl queue list 2>&1)" "^$HID!"
sleep 1
is "the held message is not delivered" "$(grep -l '<held@t>' "$SINKDIR"/*.eml 2>/dev/null)" ""
check "sluice queue release ID" sl queue release "$HID"
check "released: the message is delivered" wait_for 15 grep -q '<held@t>' -r "$SINKDIR" --include='*.eml'

pytap <<'PY'
from sink import *
from clammsg import *
msg = plain("hdr@t", b"with a scan header\n")
r = send_mail(int(env("PORT")), "hdr@example.org", ["b@example.net"], msg)
tap(r.code == 250, "clamav_header: clean message 250", r)
m = sink_find(r"<hdr@t>")
eml = m[1] if m else b""
hx = re.match(rb"X-Virus-Scanned: ClamAV [^\r\n]*; clean\r\n", eml)
tap(hx, "the delivered message starts with X-Virus-Scanned: ClamAV ...; clean "
    "(the top, above our Received:)", eml[:400])
rcv, rest = split_received(eml[hx.end():] if hx else eml)
tap(rcv is not None, "then comes our Received:", rcv)
tap(hx and re.search(rb" at mx\.test\.example;", hx.group(0)),
    "the header names the host (at mx.test.example)", hx and hx.group(0))
tap(hx and rest == msg,
    "otherwise the message is untouched", rest[:400])
PY

# ------------------------------------------------ no database
mkdir -p "$T/emptydb"
export EMPTYDB=$T/emptydb
[ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
write_conf "clamav_database_directory = $T/emptydb"
start_ok
check "start-up log says there is no database" wait_for 10 grep -Eiq \
    "clamav.*([Nn]o ([a-z]+ )*(database|signatures)|database.*(empty|missing|not found))" \
    "$T/maillog" "$T/sluiced.out"
pytap <<'PY'
from sink import *
from clammsg import *
r = send_mail(int(env("PORT")), "nodb@example.org", ["b@example.net"], plain("nodb@t", b"x\n"))
tap(re.match(r"451 4\.3\.0 Error: virus scanner failure$", r.text),
    "no database: 451 4.3.0 Error: virus scanner failure", r)
PY
check "no database: nothing queued" queue_empty

out=$(sl check 2>&1)
rc=$?
is "sluice check with an empty database directory exits 1" "$rc" 1
like "sluice check: an error line naming the directory" "$out" "error: .*$T/emptydb"

[ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
write_conf "clamav_database_directory = $T/emptydb" "clamav_failure_action = accept"
start_ok
pytap <<'PY'
from sink import *
from clammsg import *
r = send_mail(int(env("PORT")), "nodb-acc@example.org", ["b@example.net"],
              plain("nodb-acc@t", b"x\n"))
qid = queued_id(r)
tap(r.code == 250 and qid, "no database, clamav_failure_action = accept: 250 queued", r)
tap(sink_find(r"<nodb-acc@t>"), "and delivered")
tap(qid and log_wait(qid + r": clamav: unscanned \(.+\), accepted by clamav_failure_action$", 5),
    "log: ID: clamav: unscanned (REASON), accepted by clamav_failure_action")
PY

# ------------------------------------------------ sluice check: limits
write_conf "clamav_database_directory = $DB" "message_size_limit = 10240000" \
    "clamav_max_filesize = 1m"
out=$(sl check 2>&1)
rc=$?
like "sluice check: clamav_max_filesize below message_size_limit -> a warning" "$out" \
    "warning: .*clamav_max_filesize"
is "sluice check: a warning alone does not fail the check" "$rc" 0
write_conf "clamav_database_directory = $DB"
check "sluice check with the repository's signature set exits 0" sl check

# ------------------------------------------------ sluice_batch_scheduling = no
restart "sluice_batch_scheduling = no"
FRONTPOL=$(policies smtpd | sort -u | tr '\n' ' ')
diag "front threads: $FRONTPOL"
like "sluice_batch_scheduling = no: the front's loop has the default policy" \
    "$FRONTPOL" "(^| )smtpd:0 "
like "sluice_batch_scheduling = no: the scan threads stay SCHED_BATCH" \
    "$FRONTPOL" "clamscan:3 "
