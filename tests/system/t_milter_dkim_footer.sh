#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_milter_dkim_footer.sh - the milter ordering rule with a real signer:
# smtpd_milters = a footer-adding milter (tests/milter/tmilter -f TEXT,
# which replaces the body with body + TEXT), then OpenDKIM (Debian
# opendkim, key made at run time, simple/simple). OpenDKIM must get the
# content after the footer milter's changes, so the delivered message
# has the footer and its DKIM signature verifies (Python's dkim module
# with the generated public key instead of DNS), for a small message and
# a 200 KB one (body replaced in several chunks). Sanity: the footer
# removed, the signature fails (it covers the footer). With the order
# reversed (OpenDKIM first) the footer is added after signing and the
# signature does not verify: the list order is the order of changes.
. "$(dirname "$0")/lib.sh"
need_binaries
TMILTER=$top_builddir/tests/milter/tmilter
OPENDKIM=$(command -v opendkim 2>/dev/null || echo /usr/sbin/opendkim)
GENKEY=$(command -v opendkim-genkey 2>/dev/null || echo /usr/sbin/opendkim-genkey)
[ -x "$TMILTER" ] || skip_all "no test milter at $TMILTER (make check builds it)"
[ -x "$OPENDKIM" ] || skip_all "opendkim not installed (Debian package opendkim)"
[ -x "$GENKEY" ] || skip_all "opendkim-genkey not installed (Debian package opendkim-tools)"
"$PYTHON3" -c 'import dkim' 2>/dev/null ||
    skip_all "no dkim module for $PYTHON3 (Debian package python3-dkim)"
plan 14
. "$SYSDIR/dkim_lib.sh"
cat >"$T/dkimhelp.py" <<'PY'
from dkimcommon import *  # noqa: F401,F403 (the shared helpers)


# tmilter -f "$FOOTER" turns each \n into CRLF
FOOTER = b"-- \r\nSent through the footer milter\r\n"


def flip_body_byte(eml):
    i = eml.index(b"\r\n\r\n") + 4
    return eml[:i] + bytes([eml[i] ^ 0x20]) + eml[i + 1:]
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

# ------------------------------------------------------ footer milter
FOOTER='-- \nSent through the footer milter\n'
"$TMILTER" -s "unix:$T/footer.sock" -p "$T/footer.pid" -l "$T/footer.log" \
    -f "$FOOTER" >>"$T/footer.out" 2>&1 &
FOOTPID=$!
_T_PIDS="$_T_PIDS $FOOTPID"
if wait_for 10 test -s "$T/footer.pid" && alive "$FOOTPID"; then
    ok "the footer milter (tmilter -f) listens on $T/footer.sock"
else
    not_ok "the footer milter (tmilter -f) listens on $T/footer.sock"
    diag "$(tail -n 20 "$T/footer.out" 2>/dev/null)"
fi

start_sink
write_conf "clamav_enable = no" "smtpd_milters = unix:$T/footer.sock, unix:$T/dkim/dkim.sock"
start_ok

# -------------------------------------- footer milter, then OpenDKIM
pytap <<'PY'
from sink import *
from dkimhelp import *
port = int(env("PORT"))
footer = FOOTER
body = b"Hello Bob,\r\nthe footer follows.\r\n"
msg = message("foot-1@test.example", body=body)
r = send_mail(port, "a@example.org", ["b@example.net"], msg)
tap(r.code == 250 and queued_id(r), "smtpd_milters = footer, opendkim: 250 queued", r)
m = sink_find(re.escape("<foot-1@test.example>"), secs=30)
eml = m[1] if m else b""
tap(eml.endswith(b"\r\n\r\n" + body + footer),
    "the delivered body is the original body plus the footer", eml[-400:])
tags = sig_tags(eml)
tap(tags and tags.get(b"d") == b"example.org" and verify(eml),
    "the DKIM signature verifies: OpenDKIM signed the body with the footer", eml[:1500])
tap(tags and b"l" not in tags, "  the signature covers the whole body (no l= tag)", tags)
tap(tags and not verify(eml[:len(eml) - len(footer)]),
    "sanity: the footer removed again, the signature fails")
PY
like "the footer milter saw the message body" "$(cat "$T/footer.log" 2>/dev/null)" \
    '^body len=[0-9]+ <Hello Bob,'

pytap <<'PY'
from sink import *
from dkimhelp import *
port = int(env("PORT"))
footer = FOOTER
body = b"".join(b"%06d the quick brown fox jumps over the lazy dog 0123456789\r\n" % i
                for i in range(3000))
msg = message("foot-big@test.example", body=body)
r = send_mail(port, "a@example.org", ["b@example.net"], msg)
tap(r.code == 250 and queued_id(r),
    "a %d KB message through footer, opendkim: 250 queued" % (len(msg) // 1024), r)
m = sink_find(re.escape("<foot-big@test.example>"), secs=30)
eml = m[1] if m else b""
tap(eml.endswith(b"\r\n\r\n" + body + footer) and verify(eml),
    "  delivered with the footer and a signature that verifies", eml[:600], eml[-300:])
PY

# ------------------------------------- reversed: OpenDKIM, then footer
stop_sluiced
write_conf "clamav_enable = no" "smtpd_milters = unix:$T/dkim/dkim.sock, unix:$T/footer.sock"
start_ok
pytap <<'PY'
from sink import *
from dkimhelp import *
port = int(env("PORT"))
footer = FOOTER
body = b"Hello Bob,\r\nsigned first this time.\r\n"
msg = message("foot-rev@test.example", body=body)
r = send_mail(port, "a@example.org", ["b@example.net"], msg)
m = sink_find(re.escape("<foot-rev@test.example>"), secs=30)
eml = m[1] if m else b""
tap(r.code == 250 and eml.endswith(b"\r\n\r\n" + body + footer) and sig_tags(eml),
    "smtpd_milters = opendkim, footer: 250, delivered signed and with the footer", r,
    eml[-400:])
tap(sig_tags(eml) and not verify(eml),
    "  the signature does not verify: the footer was added after signing")
PY
stop_sluiced
stop_pid "$DKIMPID" 15
stop_pid "$FOOTPID" 15
