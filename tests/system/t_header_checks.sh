#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_header_checks.sh - Postfix's header_checks with a regexp: table, and
# the same table on MIME part headers (an attachment rule, nested
# multiparts, an attached message's header) and body_checks on body lines:
# REJECT (550 5.7.1 at end of DATA, the text, a DSN in the text, the
# default text), DISCARD (250, nothing delivered), HOLD (hold queue),
# WARN (delivered, logged), IGNORE, PREPEND and REPLACE (the delivered
# header, byte for byte, with repeated field names), a folded field
# matched across its line break, Postfix's cleanup log lines; a service
# with -o header_checks= has none; a bad table stops sluice check and
# sluiced with its file and line.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 39
setup

cat >"$T/hc" <<'EOF'
# header_checks as a Postfix site writes them
/^Subject: reject me/           REJECT no thanks
/^Subject: reject dsn/          REJECT 5.7.2 closed list
/^Subject: reject plain/        REJECT
/^Subject: discard me/          DISCARD spam
/^Subject: hold me/             HOLD look at this
/^Subject: warn me/             WARN suspicious subject
/^X-Remove:/                    IGNORE
/^X-Before: (.*)/               PREPEND X-Added: before $1
/^X-Swap: (.*)/                 REPLACE X-Swapped: was $1
/^Subject: folded.*second line/ REJECT folded match
/^Content-(Disposition|Type):.*name[[:space:]]*=[[:space:]]*"?([^"]+\.exe)"?/ REJECT attachment $2
/^Subject: forwarded secret/    REJECT attached message
EOF
printf '/cheap pills/ REJECT spam phrase\n' >"$T/bc"
P_OFF=$(free_port)
export P_OFF
MASTER_EXTRA="127.0.0.1:$P_OFF inet n - n - - smtpd -o header_checks="
start_sink
write_conf "header_checks = regexp:$T/hc" "body_checks = regexp:$T/bc" "clamav_enable = no"
start_ok
wait_port 127.0.0.1 "$P_OFF"

pytap <<'PY'
from sink import *
import re, time
port = int(env("PORT"))


def mail(subject, extra=b"", p=port):
    return send_mail(p, "s@sender.example", ["r@rcpt.example"],
                     b"From: <s@sender.example>\r\nSubject: " + subject + b"\r\n" + extra +
                     b"Message-ID: <" + re.sub(rb"\W", b"", subject) + b"@t>\r\n\r\nbody\r\n")


r = mail(b"reject me now")
tap(r.code == 550 and r.text == "550 5.7.1 no thanks", "REJECT text: 550 5.7.1 no thanks", r)
tap(log_wait(r"cleanup\[\d+\]: \w+: reject: header Subject: reject me now from "
             r"\S+\[127\.0\.0\.1\]; from=<s@sender\.example> to=<r@rcpt\.example> "
             r"proto=ESMTP helo=<[^>]*>: 5\.7\.1 no thanks"),
    "  logged as Postfix's cleanup does")
r = mail(b"reject dsn")
tap(r.code == 550 and r.text == "550 5.7.2 closed list", "REJECT with a DSN in the text", r)
r = mail(b"reject plain")
tap(r.code == 550 and r.text == "550 5.7.1 Message content rejected", "REJECT alone: the default text", r)
r = mail(b"folded\r\n second line")
tap(r.code == 550 and r.text == "550 5.7.1 folded match",
    "a folded field is matched across its line break", r)

r = mail(b"discard me")
time.sleep(1.5)
tap(r.code == 250 and sink_find(rb"Subject: discard me", secs=1) is None,
    "DISCARD: 250 and nothing delivered", r)
tap(log_wait(r"cleanup\[\d+\]: \w+: discard: header Subject: discard me from .*: spam"),
    "  logged")
r = mail(b"hold me")
tap(r.code == 250 and log_wait(r"cleanup\[\d+\]: \w+: hold: header Subject: hold me from .*: look at this"),
    "HOLD: 250, logged", r)
time.sleep(1.0)
tap(sink_find(rb"Subject: hold me", secs=1) is None, "  and not delivered (held)")
r = mail(b"warn me")
tap(r.code == 250 and sink_find(rb"Subject: warn me") is not None,
    "WARN: delivered", r)
tap(log_wait(r"cleanup\[\d+\]: \w+: warning: header Subject: warn me from .*: suspicious subject"),
    "  and logged as a warning")

# modifications: the delivered header, field by field
extra = (b"X-Remove: one\r\nX-Before: b1\r\nX-Keep: k\r\nX-Remove: two\r\n"
         b"X-Swap: s1\r\nX-Before: b2\r\nX-Swap: s2\r\n")
r = mail(b"modify", extra)
m = sink_find(rb"Subject: modify\r\n")
tap(r.code == 250 and m is not None, "a message with IGNORE, PREPEND and REPLACE fields is delivered", r)
hdr = m[1].split(b"\r\n\r\n", 1)[0].split(b"\r\n") if m else []
names = [h for h in hdr if h.startswith(b"X-")]
tap(names == [b"X-Added: before b1", b"X-Before: b1", b"X-Keep: k",
              b"X-Swapped: was s1", b"X-Added: before b2", b"X-Before: b2",
              b"X-Swapped: was s2"],
    "  IGNORE removed both X-Remove, PREPEND put X-Added before each X-Before, "
    "REPLACE swapped each X-Swap, in place", names)
tap(m is not None and m[1].endswith(b"\r\n\r\nbody\r\n") and hdr[0].startswith(b"Received: from"),
    "  the rest of the message unchanged (Received first, the body)", hdr[:2])

# MIME part headers (mime_header_checks = $header_checks by default), an
# attached message's header (nested_header_checks), body_checks
B = b"=_b1"


def multipart(subject, parts, boundary=B):
    body = b""
    for p in parts:
        body += b"--" + boundary + b"\r\n" + p + b"\r\n"
    body += b"--" + boundary + b"--\r\nepilogue\r\n"
    return (b"From: <s@sender.example>\r\nSubject: " + subject + b"\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed;\r\n boundary=\"" + boundary + b"\"\r\n\r\n" + body)


def send(data, p=port):
    return send_mail(p, "s@sender.example", ["r@rcpt.example"], data)


exe = (b"Content-Type: application/octet-stream; name=\"run.exe\"\r\n"
       b"Content-Disposition: attachment;\r\n filename=\"run.exe\"\r\n"
       b"Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n")
txt = b"Content-Type: text/plain\r\n\r\nhello there\r\n"
r = send(multipart(b"mime exe", [txt, exe]))
tap(r.code == 550 and r.text == "550 5.7.1 attachment run.exe",
    "a MIME part's header: the attachment rule rejects run.exe", r)
tap(log_wait(r"cleanup\[\d+\]: \w+: reject: header Content-Type: application/octet-stream; name=\"run\.exe\" from .*: 5\.7\.1 attachment run\.exe"),
    "  logged with the part's header field")
inner = (b"--=_in\r\n" + txt + b"\r\n--=_in\r\n" + exe + b"\r\n--=_in--\r\n")
r = send(multipart(b"mime nested", [txt, b"Content-Type: multipart/alternative; boundary==_in\r\n\r\n" + inner]))
tap(r.code == 550 and "run.exe" in r.text, "  also inside a nested multipart", r)
fwd = (b"Content-Type: message/rfc822\r\n\r\nFrom: <x@y.example>\r\nSubject: forwarded secret\r\n\r\ninner body\r\n")
r = send(multipart(b"mime forward", [txt, fwd]))
tap(r.code == 550 and r.text == "550 5.7.1 attached message",
    "an attached message's header (nested_header_checks)", r)
r = send(multipart(b"mime clean", [txt, b"Content-Type: text/plain\r\n\r\nrun.exe is only text here\r\n"]))
tap(r.code == 250 and sink_find(rb"Subject: mime clean\r\n") is not None,
    "  a clean multipart is delivered (a body line naming run.exe is not a header)", r)
r = send(multipart(b"mime fake", [b"Content-Type: text/plain\r\n\r\n--=_b0\r\nContent-Disposition: attachment; filename=\"run.exe\"\r\n"]))
tap(r.code == 250, "  a line that only looks like a boundary starts no part", r)
r = send(b"From: <s@sender.example>\r\nSubject: body word\r\n\r\nline one\r\nbuy cheap pills now\r\n")
tap(r.code == 550 and r.text == "550 5.7.1 spam phrase", "body_checks: a body line rejected", r)
tap(log_wait(r"cleanup\[\d+\]: \w+: reject: body buy cheap pills now from .*: 5\.7\.1 spam phrase"),
    "  logged as Postfix's cleanup does (reject: body ...)")
far = b"x" * 78 + b"\r\n"
r = send(b"From: <s@sender.example>\r\nSubject: body far\r\n\r\n" + far * 700 + b"buy cheap pills now\r\n")
tap(r.code == 250, "  past body_checks_size_limit (51200 bytes) a line is not checked", r)
r = send(multipart(b"mime body", [txt, b"Content-Type: text/plain\r\n\r\nbuy cheap pills now\r\n"]))
tap(r.code == 550 and r.text == "550 5.7.1 spam phrase", "  and body lines of a MIME part are", r)

# bad input: a 200 KB body line (checked by its start), a multipart that
# never closes, nesting past the 20 levels followed, a boundary of 200
# characters: each answered, nothing lost
r = send(b"From: <s@sender.example>\r\nSubject: long line\r\n\r\nbuy cheap pills" + b"y" * 200000 + b"\r\n")
tap(r.code == 550 and r.text == "550 5.7.1 spam phrase",
    "a 200 KB body line is checked by its start", r)
r = send(b"From: <s@sender.example>\r\nSubject: long clean\r\n\r\n" + b"z" * 200000 + b"\r\nend\r\n")
m = sink_find(rb"Subject: long clean\r\n")
tap(r.code == 250 and m is not None and m[1].endswith(b"z" * 1000 + b"\r\nend\r\n"),
    "  and a clean one is delivered whole", r)
r = send(b"From: <s@sender.example>\r\nSubject: unclosed\r\nContent-Type: multipart/mixed; boundary=u\r\n\r\n"
         b"--u\r\nContent-Type: text/plain\r\n\r\nno end\r\n--u\r\nContent-Type: text/plain\r\n")
tap(r.code == 250 and sink_find(rb"Subject: unclosed\r\n") is not None,
    "a multipart that never closes (and a part header cut short) is delivered", r)
deep = b""
for i in range(25):
    deep += b"--d%d\r\nContent-Type: multipart/mixed; boundary=d%d\r\n\r\n" % (i, i + 1)
deep += b"--d25\r\n" + exe + b"--d25--\r\n"
r = send(b"From: <s@sender.example>\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=d0\r\n\r\n" + deep)
tap(r.code == 250 and sink_find(rb"Subject: deep\r\n") is not None,
    "  nesting past 20 levels: the parts below are not followed, the message is delivered", r)
r = send(multipart(b"mime exe long boundary", [txt, exe], boundary=b"B" * 200))
tap(r.code == 250 and sink_find(rb"Subject: mime exe long boundary\r\n") is not None,
    "  a 200-character boundary (over RFC 2046's 70) is not followed: delivered", r)

# the service without header_checks
r = mail(b"reject me on the other port", p=int(env("P_OFF")))
tap(r.code == 250 and sink_find(rb"Subject: reject me on the other port") is not None,
    "-o header_checks= : that service has none", r)
PY
stop_sluiced "$MASTERPID"

# a bad table: sluice check and sluiced name the file and line
printf '/^Subject: ok/ WARN x\n/^Subject: (unclosed/ REJECT\n' >"$T/bad"
write_conf "header_checks = regexp:$T/bad" "clamav_enable = no"
out=$(sl check 2>&1)
is "sluice check fails on a bad header_checks pattern" "$?" 1
like "  naming the file and line" "$out" \
    "header_checks: regexp:$T/bad: $T/bad:2: bad pattern: "
"$SLUICED" -c "$CONF" >>"$T/sluiced.out" 2>&1 &
BAD=$!
_T_MASTERS="$_T_MASTERS $BAD"
wait_for 10 dead "$BAD"
check "  sluiced refuses to start" dead "$BAD"
write_conf "header_checks = regexp:$T/hc" "clamav_enable = no"
out=$(sl check 2>&1)
is "sluice check accepts the good table" "$?" 0
unlike "  with no warning about MIME part headers (they are checked)" "$out" \
    "not checked|not implemented"

# tables only root may read: the front reads them before it drops root
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    chmod 755 "$T" # for nobody: the queue directory is in $T
    cp "$T/hc" "$T/hc_root"
    printf 'blocked@rcpt.example REJECT root-only table\n' >"$T/access_root"
    chmod 600 "$T/hc_root" "$T/access_root"
    write_conf "header_checks = regexp:$T/hc_root" "clamav_enable = no" \
        "mail_owner = nobody" \
        "smtpd_recipient_restrictions = check_recipient_access texthash:$T/access_root"
    start_ok
    FRONT=$(child_pid smtpd)
    export FRONT
    pytap <<'PY'
from sink import *
import pwd
port = int(env("PORT"))
who = pwd.getpwuid(os.stat("/proc/%s" % env("FRONT")).st_uid).pw_name
r = send_mail(port, "s@sender.example", ["r@rcpt.example"],
              b"Subject: reject me root\r\n\r\nx\r\n")
tap(who == "nobody" and r.code == 550 and r.text == "550 5.7.1 no thanks",
    "mail_owner = nobody (the front runs as %s): a header_checks table of mode 0600 owned by root is used" % who, r)
c = Client(port)
c.reply()
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<s@sender.example>")
r = c.cmd("RCPT TO:<blocked@rcpt.example>")
c.close()
tap(r.code == 554 and "root-only table" in r.text,
    "  and so is a root-only access table (check_recipient_access)", r)
PY
    stop_sluiced "$MASTERPID"
else
    ok "# SKIP not root (or no user nobody): no root-only table test"
    ok "# SKIP not root (or no user nobody): no root-only table test"
fi
