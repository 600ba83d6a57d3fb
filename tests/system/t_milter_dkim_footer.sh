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
setup

# ----------------------------------------------------------- opendkim

# start_opendkim: key, configuration and opendkim in the foreground on
# $T/dkim/dkim.sock; sets DKIMPID; waits up to 20 s for the socket.
start_opendkim()
{
    local d=$T/dkim
    mkdir -p "$d"
    chmod 700 "$d"
    "$GENKEY" -D "$d" -d example.org -s test || return 1
    cat >"$d/opendkim.conf" <<EOF
Mode sv
Domain example.org
Selector test
KeyFile $d/test.private
Socket local:$d/dkim.sock
PidFile $d/opendkim.pid
Canonicalization simple/simple
Syslog no
UMask 007
RequireSafeKeys false
EOF
    "$OPENDKIM" -f -x "$d/opendkim.conf" >>"$d/opendkim.out" 2>&1 &
    DKIMPID=$!
    _T_PIDS="$_T_PIDS $DKIMPID"
    wait_for 20 test -S "$d/dkim.sock"
}

if start_opendkim && alive "$DKIMPID"; then
    ok "opendkim starts with a key made at run time on $T/dkim/dkim.sock"
else
    not_ok "opendkim starts with a key made at run time on $T/dkim/dkim.sock"
    diag "$(tail -n 20 "$T/dkim/opendkim.out" 2>/dev/null)"
fi

# DKIM helpers for the inline python below: verification with the key
# of $T/dkim/test.txt instead of DNS.
cat >"$T/dkimhelp.py" <<'PY'
import email.utils, os, re, dkim


def txt_record():
    """The TXT record opendkim-genkey wrote, its quoted parts joined."""
    with open(os.path.join(os.environ["T"], "dkim", "test.txt")) as f:
        return "".join(re.findall(r'"([^"]*)"', f.read())).encode()


def dnsfunc(name, timeout=5):
    if name in (b"test._domainkey.example.org.", "test._domainkey.example.org."):
        return txt_record()
    return None


def verify(msg):
    try:
        return dkim.verify(msg, dnsfunc=dnsfunc)
    except Exception as e:  # a malformed signature is a failed one
        print("# dkim.verify: %r" % e)
        return False


def crlf(s):
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message(mid, sender=b"Alice <a@example.org>", body=b"Hello Bob,\n.leading dot\nbye\n"):
    date = email.utils.formatdate(localtime=False).encode()
    return crlf(b"From: " + sender + b"\nTo: Bob <b@example.net>\n"
                b"Subject: a signed message with a folded\n\tsubject line\n"
                b"Message-ID: <" + mid.encode() + b">\nDate: " + date +
                b"\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n" + body)


def sig_tags(eml):
    """Tags of the first DKIM-Signature header of eml, or None."""
    m = re.search(rb"^DKIM-Signature:((?:[^\r\n]*\r\n[ \t])*[^\r\n]*)\r\n", eml, re.M | re.I)
    if not m:
        return None
    v = re.sub(rb"\s+", b"", m.group(1))
    return dict(t.split(b"=", 1) for t in v.split(b";") if b"=" in t)


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
