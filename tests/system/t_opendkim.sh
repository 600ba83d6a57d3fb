#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_opendkim.sh - a real OpenDKIM (Debian opendkim) as a before-queue
# milter (smtpd_milters = unix:$T/dkim/dkim.sock). The test makes a key
# at run time (opendkim-genkey), starts opendkim in the foreground with
# its own configuration (Mode sv, Domain example.org, Selector test,
# simple/simple canonicalization: the strictest, so a header or body byte
# changed on the way fails it), sends mail through sluiced and checks
# what reaches the next hop: mail from example.org carries a
# DKIM-Signature (d=example.org, s=test) that verifies with the public
# key of the generated test.txt (Python's dkim module, Debian
# python3-dkim, with a DNS function reading that file, as DNS is not
# reachable here); a byte changed after signing fails verification; a
# 200 KB message (several body chunks) verifies; two transactions in one
# SMTP session are both signed; mail from another domain is not signed.
. "$(dirname "$0")/lib.sh"
need_binaries
OPENDKIM=$(command -v opendkim 2>/dev/null || echo /usr/sbin/opendkim)
GENKEY=$(command -v opendkim-genkey 2>/dev/null || echo /usr/sbin/opendkim-genkey)
[ -x "$OPENDKIM" ] || skip_all "opendkim not installed (Debian package opendkim)"
[ -x "$GENKEY" ] || skip_all "opendkim-genkey not installed (Debian package opendkim-tools)"
"$PYTHON3" -c 'import dkim' 2>/dev/null ||
    skip_all "no dkim module for $PYTHON3 (Debian package python3-dkim)"
plan 17
. "$SYSDIR/dkim_lib.sh"
cat >"$T/dkimhelp.py" <<'PY'
from dkimcommon import *  # noqa: F401,F403 (the shared helpers)


def flip_body_byte(eml):
    i = eml.index(b"\r\n\r\n") + 4
    return eml[:i] + bytes([eml[i] ^ 0x20]) + eml[i + 1:]
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

start_sink
write_conf "clamav_enable = no" "smtpd_milters = unix:$T/dkim/dkim.sock"
start_ok

# ------------------------------------------------------ signed mail
pytap <<'PY'
from sink import *
from dkimhelp import *
port = int(env("PORT"))
msg = message("dkim-1@test.example")
r = send_mail(port, "a@example.org", ["b@example.net"], msg)
qid = queued_id(r)
tap(r.code == 250 and qid, "mail from a@example.org through opendkim: 250 queued", r)
m = sink_find(re.escape("<dkim-1@test.example>"), secs=30)
eml = m[1] if m else b""
tags = sig_tags(eml)
tap(tags and tags.get(b"d") == b"example.org" and tags.get(b"s") == b"test",
    "the delivered message carries DKIM-Signature with d=example.org s=test", eml[:1500])
tap(verify(eml), "the DKIM signature verifies with the generated public key", eml[:1500])
tap(b"\n" not in eml.replace(b"\r\n", b"") and b"\r" not in eml.replace(b"\r\n", b""),
    "the delivered message has CRLF line ends only (the milter's folded header too)")
rcv, rest = split_received(eml)
tap(rest.endswith(msg[msg.index(b"\r\n\r\n"):]), "the body is delivered unchanged", rest[-300:])
tap(tags and not verify(flip_body_byte(eml)), "sanity: one body byte changed, the signature fails")
tap(tags and not verify(eml.replace(b"Subject: a signed", b"Subject: A signed", 1)),
    "sanity: the Subject changed, the signature fails")
tap(qid and log_wait(qid + r": .*to=<b@example\.net>.*status=sent", 15),
    "log: ID: to=<b@example.net> ... status=sent")
PY

# ------------------------------------- a large message, several chunks
pytap <<'PY'
from sink import *
from dkimhelp import *
port = int(env("PORT"))
body = b"".join(b"%06d the quick brown fox jumps over the lazy dog 0123456789\n" % i
                for i in range(3000))
msg = message("dkim-big@test.example", body=body)
r = send_mail(port, "a@example.org", ["b@example.net"], msg)
tap(r.code == 250 and queued_id(r),
    "a %d KB message through opendkim: 250 queued" % (len(msg) // 1024), r)
m = sink_find(re.escape("<dkim-big@test.example>"), secs=30)
eml = m[1] if m else b""
tap(sig_tags(eml) and verify(eml), "  its signature verifies (body sent in several chunks)",
    eml[:800])
PY

# ------------------------- two transactions in one session, other domain
pytap <<'PY'
from sink import *
from dkimhelp import *
port = int(env("PORT"))
c = Client(port)
codes = [c.reply().code, c.cmd("EHLO client.test").code]
for n in (1, 2):
    codes.append(c.cmd("MAIL FROM:<a@example.org>").code)
    codes.append(c.cmd("RCPT TO:<b@example.net>").code)
    codes.append(c.cmd("DATA").code)
    c.send(dotstuff(message("dkim-sess-%d@test.example" % n)))
    codes.append(c.reply().code)
codes.append(c.cmd("QUIT").code)
c.close()
tap(codes == [220, 250] + [250, 250, 354, 250] * 2 + [221],
    "two transactions in one SMTP session through opendkim: both 250", codes)
for n in (1, 2):
    m = sink_find(re.escape("<dkim-sess-%d@test.example>" % n), secs=30)
    eml = m[1] if m else b""
    tap(sig_tags(eml) and verify(eml), "  message %d of the session is signed and verifies" % n,
        eml[:800])
msg = message("dkim-other@test.example", sender=b"Carol <c@example.com>")
r = send_mail(port, "c@example.com", ["b@example.net"], msg)
tap(r.code == 250 and queued_id(r), "mail from c@example.com (not opendkim's domain): 250", r)
m = sink_find(re.escape("<dkim-other@test.example>"), secs=30)
eml = m[1] if m else b""
tap(m and sig_tags(eml) is None, "  delivered without a DKIM-Signature", eml[:800])
PY
stop_sluiced
stop_pid "$DKIMPID" 15
