#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_smtp_tls.sh - TLS in the SMTP client (STARTTLS toward next hops), with
# Postfix's parameters and log lines. One sluiced, one sink per next hop
# (tests/system/sink.py with its STARTTLS options), certificates made
# here by openssl: a test CA, a server certificate it signed for
# IP:127.0.0.1 and DNS:sink.test.example ("good"), one it signed for
# DNS:other.example only ("wrong name"), a self-signed one for
# IP:127.0.0.1 ("untrusted").
# - may: STARTTLS when offered (the message arrives over TLS, byte for
#   byte; smtp_tls_loglevel 1 logs "Trusted TLS connection established
#   to ..." with the sink's protocol and cipher: the chain is good, and
#   below verify names are not matched, so never "Verified", as Postfix), clear when not offered
#   or refused with 454; a handshake that fails (garbage after the 220,
#   or silence until smtp_starttls_timeout) is logged and the message
#   goes in clear on a new connection, once;
# - encrypt: TLS not offered (4.7.4), refused (the 454's 4.7.0), a
#   handshake failure (4.7.5): deferred, Postfix's texts; offered: sent
#   over TLS;
# - verify / secure with smtp_tls_CAfile: the good certificate is
#   "Verified"; a self-signed one is "not trusted", a certificate for
#   another name "not verified" (4.7.5), unless the policy's
#   match=other.example names it;
# - fingerprint, dane-only: deferred, not supported (4.7.5); dane: as may;
# - smtp_tls_mandatory_protocols = >=TLSv1.3: an encrypt next hop that
#   stops at TLS 1.2 is a handshake failure (deferred), a may next hop
#   that stops at TLS 1.2 still gets TLS 1.2;
# - two messages in quick succession to one TLS next hop: both over TLS
#   (one connection for both, if the cache reuses it); a 3 MB message over
#   TLS arrives byte for byte;
# - every deferred message is retried, stays queued, and is never sent in
#   clear (the sink never sees MAIL FROM);
# - the same queue manager all along; after a reload, smtp_tls_CApath (a
#   hashed directory) instead of the CAfile verifies too.
. "$(dirname "$0")/lib.sh"
need_binaries
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
"$PYTHON3" -c 'import ssl' 2>/dev/null || skip_all "python3 has no ssl module"
plan 50
setup

# --- certificates (EC P-256: quick to make)
cat >"$T/x509.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[good]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:sink.test.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[wrongname]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:other.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[untrusted]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:sink.test.example
subjectKeyIdentifier = hash
EOF
if ! { x509_self ca ca "Sluice Test CA" &&
    x509_signed good good sink.test.example 2 &&
    x509_signed wrongname wrongname other.example 3 &&
    x509_self untrusted untrusted sink.test.example &&
    openssl verify -CAfile "$T/ca.crt" "$T/good.crt" "$T/wrongname.crt" \
        >>"$T/openssl.out" 2>&1; }; then
    diag "openssl could not make the test certificates" "$(cat "$T/openssl.out")"
fi
mkdir -p "$T/capath"
cp "$T/ca.crt" "$T/capath/testca.pem"
openssl rehash "$T/capath" >>"$T/openssl.out" 2>&1 ||
    diag "openssl rehash failed" "$(tail -n 5 "$T/openssl.out")"

# --- one sink per next hop NAME, reached as x@NAME.example via
# transport_maps; POLICY: its smtp_tls_policy_maps entry (none: the global
# smtp_tls_security_level = may)
GOOD="--tls-cert $T/good.crt --tls-key $T/good.key"
REFUSE="454 4.7.0 TLS not available"
ROUTES=""
POLICY=""
NAMES=""
# hop NAME POLICY [sink options...]
hop()
{
    local name=$1 pol=$2 port
    shift 2
    port=$(free_port)
    eval "P_$name=$port"
    export "P_$name"
    NAMES="$NAMES $name"
    mkdir -p "$T/s.$name"
    ROUTES="$ROUTES $name.example=smtp:[127.0.0.1]:$port,"
    [ -n "$pol" ] && POLICY="$POLICY { [127.0.0.1]:$port = $pol },"
    start_sink "$port" "$T/s.$name" "$@" ||
        diag "the sink for $name did not start: $(tail -n 3 "$T/sink.out")"
}
# shellcheck disable=SC2086 # GOOD is words
{
    hop may "" $GOOD
    hop clear ""
    hop refuse "" --starttls-reply "$REFUSE"
    hop garbage "" --tls-misbehave garbage
    hop stall "" --tls-misbehave stall
    hop encclear encrypt
    hop encrefuse encrypt --starttls-reply "$REFUSE"
    hop encgarbage encrypt --tls-misbehave garbage
    hop enc encrypt $GOOD
    hop verify verify $GOOD
    hop secure secure $GOOD
    hop untrusted verify --tls-cert "$T/untrusted.crt" --tls-key "$T/untrusted.key"
    hop wrongname verify --tls-cert "$T/wrongname.crt" --tls-key "$T/wrongname.key"
    hop match "verify match=other.example" \
        --tls-cert "$T/wrongname.crt" --tls-key "$T/wrongname.key"
    hop fprint fingerprint $GOOD
    hop daneonly dane-only $GOOD
    hop dane dane $GOOD
    hop may12 "" $GOOD --tls-max-version TLSv1.2
    hop enc12 encrypt $GOOD --tls-max-version TLSv1.2
    hop reuse "" $GOOD
}
export NAMES
DEFERRED="encclear encrefuse encgarbage untrusted wrongname fprint daneonly enc12"
export DEFERRED
TLSCONF=("transport_maps = inline:{${ROUTES%,} }"
    "smtp_tls_security_level = may"
    "smtp_tls_policy_maps = inline:{${POLICY%,} }"
    "smtp_tls_loglevel = 1"
    "smtp_starttls_timeout = 2s"
    "smtp_tls_mandatory_protocols = >=TLSv1.3")
write_conf "${TLSCONF[@]}" "smtp_tls_CAfile = $T/ca.crt"

out=$(sl check 2>&1)
rc=$?
if [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -Eq 'smtp_(tls|starttls)_.*not implemented'; then
    ok "sluice check takes the SMTP client's TLS settings, none called not implemented"
else
    not_ok "sluice check takes the SMTP client's TLS settings, none called not implemented"
    diag "exit $rc" "$out"
fi
start_ok
QMGR=$(child_pid qmgr)

# The helpers of the inline python below ("from tt import *").
cat >"$T/tt.py" <<'PY'
from sink import *

T = env("T")
ADDR = r"127\.0\.0\.1\[127\.0\.0\.1\]"
EST = (r"(Untrusted|Anonymous|Trusted|Verified) TLS connection established to "
       + ADDR + r":%d: (TLSv1\.[23]) with cipher ([A-Z0-9_-]+) \(([0-9]+)/([0-9]+) bits\)")


def port(n):
    return int(env("P_" + n))


def sdir(n):
    return os.path.join(T, "s." + n)


def qid(n):
    try:
        return open(os.path.join(T, "id." + n)).read().strip()
    except OSError:
        return "NONE"


def body(n):
    return open(os.path.join(T, "body." + n), "rb").read()


def msg(tag, extra=b""):
    return (b"Subject: client tls %s\r\nMessage-ID: <%s@example.org>\r\n\r\n"
            b".leading dot\r\n..two dots\r\nline for %s\r\n%s"
            % (tag.encode(), tag.encode(), tag.encode(), extra))


def queue(n, rcpt, data, port_=None):
    """Send one message to Sluice, remember its ID and bytes as n."""
    r = send_mail(port_ or int(env("PORT")), "a@example.org", [rcpt], data)
    open(os.path.join(T, "id." + n), "w").write(queued_id(r) or "")
    open(os.path.join(T, "body." + n), "wb").write(data)
    return queued_id(r), r


def stored(n):
    """[(content after Received:, .tls line or None, SINK number)] of
    the messages at the sink of n."""
    out = []
    for p in eml_files(sdir(n)):
        tls = None
        if os.path.exists(p[:-4] + ".tls"):
            tls = open(p[:-4] + ".tls").read().strip()
        out.append((split_received(open(p, "rb").read())[1], tls,
                    int(os.path.basename(p)[:-4])))
    return out


def stored_wait(n, k=1, secs=15):
    wait_eml(sdir(n), k, secs)
    return stored(n)


def slog(n):
    """The sink's log: [(time, client port, text)]."""
    out = []
    try:
        for l in open(os.path.join(sdir(n), "sink.log"), errors="replace"):
            t, p, text = (l.rstrip("\n").split(" ", 2) + ["", ""])[:3]
            out.append((float(t), p, text))
    except OSError:
        pass
    return out


def conn_of(n, num):
    """Client port of the connection on which SINKnum was stored."""
    for t, p, text in slog(n):
        if text == "> 250 2.0.0 Ok: queued as SINK%04d" % num:
            return p
    return None


def tls_conns(n):
    return [p for t, p, text in slog(n) if re.match(r"tls TLSv", text)]


def conns(n):
    return [p for t, p, text in slog(n) if text == "connect"]


def status(n, rest, secs=15, rcpt=None):
    """Wait for the log line of n's message matching rest (after the
    to=<...>, part)."""
    rcpt = rcpt or "x@%s.example" % n
    return log_wait(r"%s: to=<%s>, relay=[^,]*, .*%s" % (qid(n), re.escape(rcpt), rest), secs)


def sent(n, secs=15):
    return status(n, r"dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as SINK", secs)


def one_copy(n, tls, secs=15):
    """Check (as text for a diagnostic, "" when fine) that n's sink holds
    exactly its message, byte for byte, over TLS or in clear."""
    got = stored_wait(n, 1, secs)
    time.sleep(0.2)
    got = [g for g in stored(n) if g[0] == body(n)] if got else []
    if len(got) != 1:
        return "copies of the message at the sink: %d (of %d messages there)" % (
            len(got), len(stored(n)))
    if tls and not got[0][1]:
        return "stored in clear"
    if not tls and got[0][1]:
        return "stored over TLS: %s" % got[0][1]
    return ""


def est(n, secs=10):
    return log_wait(EST % port(n), secs)


def deferred(n):
    return len(re.findall(r"%s: to=<x@%s\.example>, .*status=deferred" % (qid(n), n), read_log()))
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

# --- one message per next hop, one session each; two in one session for
# "reuse"; a 3 MB one to "may"
pytap <<'PY'
import base64
from tt import *
ids = {}
for n in env("NAMES").split():
    if n != "reuse":
        ids[n] = queue(n, "x@%s.example" % n, msg(n))[0]
# reuse: one session, two transactions, to the same next hop
c = Client(int(env("PORT")))
c.reply()
c.cmd("EHLO client.test")
for i in (1, 2):
    m = msg("reuse%d" % i)
    open(os.path.join(T, "body.reuse%d" % i), "wb").write(m)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<r%d@reuse.example>" % i)
    c.cmd("DATA")
    c.send(dotstuff(m))
    ids["reuse%d" % i] = queued_id(c.reply())
    open(os.path.join(T, "id.reuse%d" % i), "w").write(ids["reuse%d" % i] or "")
c.cmd("QUIT")
c.close()
blob = base64.encodebytes(os.urandom(2300000)).replace(b"\n", b"\r\n")
ids["big"] = queue("big", "big@may.example",
                   msg("big", b".dot line\r\n" + blob + b".\r\n..\r\nend\r\n"))[0]
tap(all(ids.values()), "%d messages queued, one per next hop, two for reuse, a 3 MB one" % len(ids),
    [k for k, v in ids.items() if not v])
PY

# --- level may
pytap <<'PY'
from tt import *
tap(sent("may"), "may, STARTTLS offered: status=sent")
tap(one_copy("may", True) == "", "  over TLS, byte for byte", one_copy("may", True))
m = est("may")
tls = [g[1] for g in stored("may") if g[0] == body("may")]
want = tls[0].split() if tls and tls[0] else ["?", "?", "0"]
tap(m and m.group(1) == "Trusted" and [m.group(2), m.group(3), m.group(4)] == want,
    "  smtp_tls_loglevel = 1: Trusted TLS connection established to 127.0.0.1[127.0.0.1]:PORT: %s with cipher %s (%s/N bits)"
    % tuple(want), m and m.group(0), "the sink: %s" % want)

tap(sent("clear"), "may, STARTTLS not offered: status=sent")
tap(one_copy("clear", False) == "" and
    not [x for x in slog("clear") if x[2] == "< STARTTLS"],
    "  in clear, byte for byte, no STARTTLS sent", one_copy("clear", False))

tap(sent("refuse"), "may, STARTTLS answered with 454: status=sent")
st = stored("refuse")
p454 = [x[1] for x in slog("refuse") if x[2] == "> " + "454 4.7.0 TLS not available"]
tap(one_copy("refuse", False) == "" and st and p454 and conn_of("refuse", st[0][2]) in p454,
    "  in clear, byte for byte, on the connection that got the 454",
    one_copy("refuse", False), "454 on %s, message on %s" % (p454, st and conn_of("refuse", st[0][2])))
PY

pytap <<'PY'
from tt import *
for n, what in (("garbage", "garbage after the 220"),
                ("stall", "silence after the 220 (smtp_starttls_timeout = 2s)")):
    w = log_wait(r"warning: .*TLS handshake failed with %s:%d.*" % (ADDR, port(n)), 15)
    tap(w and "trying again without TLS" in w.group(0),
        "may, %s: warning: ...TLS handshake failed with 127.0.0.1[127.0.0.1]:PORT... trying again without TLS" % what,
        w and w.group(0))
    s = sent(n)
    st = stored(n)
    first = [x[1] for x in slog(n) if x[2] == "> 220 2.0.0 Ready to start TLS"]
    other = st and conn_of(n, st[0][2]) not in first
    tap(s and one_copy(n, False) == "" and other,
        "  then status=sent: in clear, once, byte for byte, on another connection",
        one_copy(n, False), "220 to STARTTLS on %s; message on %s" % (first, st and conn_of(n, st[0][2])))
L = slog("stall")
t220 = [t for t, p, x in L if x == "> 220 2.0.0 Ready to start TLS"]
tcon = [t for t, p, x in L if x == "connect" and t220 and t > t220[0]]
dt = tcon[0] - t220[0] if tcon else -1
tap(1.5 <= dt <= 10, "  the stalled handshake was given up after ~2 s (%.1f s)" % dt)
PY

# --- encrypt
pytap <<'PY'
from tt import *
tap(status("encclear", r"dsn=4\.7\.4, status=deferred \(TLS is required, but was not offered by host %s\)" % ADDR),
    "encrypt, STARTTLS not offered: dsn=4.7.4, status=deferred (TLS is required, but was not offered by host 127.0.0.1[127.0.0.1])")
tap(status("encrefuse", r"dsn=4\.7\.0, status=deferred \(TLS is required, but host %s refused to start TLS: 454 4\.7\.0 TLS not available\)" % ADDR),
    "encrypt, STARTTLS answered with 454: dsn=4.7.0, status=deferred (TLS is required, but host 127.0.0.1[127.0.0.1] refused to start TLS: 454 4.7.0 TLS not available)")
tap(status("encgarbage", r"dsn=4\.7\.5, status=deferred \(Cannot start TLS: handshake failure\)"),
    "encrypt, garbage after the 220: dsn=4.7.5, status=deferred (Cannot start TLS: handshake failure)")
tap(sent("enc") and one_copy("enc", True) == "", "encrypt, STARTTLS offered: status=sent, over TLS, byte for byte",
    one_copy("enc", True))
tap(status("enc12", r"dsn=4\.7\.5, status=deferred \(Cannot start TLS: handshake failure\)"),
    "encrypt, the server stops at TLS 1.2, smtp_tls_mandatory_protocols = >=TLSv1.3: deferred (Cannot start TLS: handshake failure)")
m = est("may12")
tap(sent("may12") and one_copy("may12", True) == "" and stored("may12")[0][1].startswith("TLSv1.2 ")
    and m and m.group(2) == "TLSv1.2",
    "may, the same server: sent over TLS 1.2 (smtp_tls_protocols by default allows it), logged as TLSv1.2",
    one_copy("may12", True), stored("may12"), m and m.group(0))
PY

# --- verify, secure, match=, unsupported levels
pytap <<'PY'
from tt import *
for n in ("verify", "secure"):
    tap(sent(n) and one_copy(n, True) == "",
        "%s, certificate from smtp_tls_CAfile's CA for IP:127.0.0.1: status=sent, over TLS, byte for byte" % n,
        one_copy(n, True))
    m = est(n)
    tap(m and m.group(1) == "Verified",
        "  log: Verified TLS connection established to 127.0.0.1[127.0.0.1]:PORT", m and m.group(0))
tap(status("untrusted", r"dsn=4\.7\.5, status=deferred \(Server certificate not trusted\)"),
    "verify, self-signed certificate: dsn=4.7.5, status=deferred (Server certificate not trusted)")
tap(status("wrongname", r"dsn=4\.7\.5, status=deferred \(Server certificate not verified\)"),
    "verify, certificate for DNS:other.example only: dsn=4.7.5, status=deferred (Server certificate not verified)")
tap(sent("match") and one_copy("match", True) == "",
    "  the same certificate, policy verify match=other.example: status=sent, over TLS",
    one_copy("match", True))
for n, lv in (("fprint", "fingerprint"), ("daneonly", "dane-only")):
    tap(status(n, r"dsn=4\.7\.5, status=deferred \(TLS security level %s is not supported by this Sluice\)" % lv),
        "%s: dsn=4.7.5, status=deferred (TLS security level %s is not supported by this Sluice)" % (lv, lv))
tap(sent("dane") and one_copy("dane", True) == "", "dane (no DNSSEC here: as may): status=sent, over TLS",
    one_copy("dane", True))
PY

# --- two messages close together; 3 MB
pytap <<'PY'
from tt import *
a = status("reuse1", r"status=sent", rcpt="r1@reuse.example")
b = status("reuse2", r"status=sent", rcpt="r2@reuse.example")
got = stored_wait("reuse", 2)
time.sleep(0.3)
got = stored("reuse")
want = [body("reuse1"), body("reuse2")]
tap(a and b and sorted(g[0] for g in got) == sorted(want) and all(g[1] for g in got),
    "two messages in one session to the same next hop: both sent over TLS, byte for byte",
    [(len(g[0]), g[1]) for g in got])
cs = [conn_of("reuse", g[2]) for g in got]
tl = tls_conns("reuse")
tap(len(tl) <= len(conns("reuse")) and all(c in tl for c in cs),
    "  each on a connection that had done the TLS handshake (%d message(s) per connection: %s)"
    % (len(cs), "one connection for both" if len(set(cs)) == 1 else "separate connections"),
    "message connections %s, TLS connections %s, connections %s" % (cs, tl, conns("reuse")))
n_est = len(re.findall(EST % port("reuse"), read_log()))
tap(n_est == len(tl), "  smtp_tls_loglevel = 1: one TLS connection line per handshake (%d)" % len(tl),
    "log lines: %d, sink handshakes: %d" % (n_est, len(tl)))

s = status("big", r"status=sent", 30, rcpt="big@may.example")
big = [g for g in stored("may") if g[0] == body("big")]
tap(s and len(big) == 1 and big[0][1],
    "3 MB over TLS: sent, arrives once, byte for byte (%d bytes)" % len(body("big")),
    [(len(g[0]), g[1]) for g in stored("may")])
PY

# --- nothing that was deferred goes out in clear later
pytap <<'PY'
from tt import *
end = time.time() + 20
while time.time() < end and min(deferred(n) for n in env("DEFERRED").split()) < 2:
    time.sleep(0.2)
import subprocess
ql = subprocess.run([env("SLUICE"), "-c", env("CONF"), "queue", "list"],
                    capture_output=True, text=True).stdout
for n in env("DEFERRED").split():
    mail = [x for x in slog(n) if x[2].startswith("< MAIL")]
    queued = re.search(r"^%s[*!]?( |$)" % qid(n), ql, re.M)
    tap(deferred(n) >= 2 and queued and not stored(n) and not mail,
        "%s: deferred again on retry (%d times), still queued, the sink never saw MAIL FROM"
        % (n, deferred(n)),
        "in queue list: %s, stored: %d, MAIL commands: %d" % (bool(queued), len(stored(n)), len(mail)))
PY

check_not "the log never says the SMTP client has no TLS (the old warning)" \
    log_has "has no TLS client|our TLS engine is unavailable"
check "sluiced is still running" alive "$MASTERPID"
now=$(child_pid qmgr)
if [ -n "$QMGR" ] && [ "$now" = "$QMGR" ]; then
    ok "the queue manager is the same process all along (pid $QMGR)"
else
    not_ok "the queue manager is the same process all along (pid $QMGR)"
    diag "qmgr now: '$now'"
fi

# --- smtp_tls_CApath instead of smtp_tls_CAfile
UNTRUSTED_N0=$(log_count "$(cat "$T/id.untrusted"): to=<x@untrusted\.example>, .*status=deferred")
export UNTRUSTED_N0
write_conf "${TLSCONF[@]}" "smtp_tls_CApath = $T/capath"
check "sluice reload with smtp_tls_CApath (hashed directory) and no CAfile" sl reload
sleep 1
pytap <<'PY'
from tt import *
n_est = len(re.findall(EST % port("verify"), read_log()))
qid_, r = queue("verify2", "y@verify.example", msg("verify2"))
s = status("verify2", r"dsn=2\.0\.0, status=sent", 15, rcpt="y@verify.example")
got = [g for g in stored("verify") if g[0] == body("verify2")]
end = time.time() + 5
while time.time() < end and len(re.findall(EST % port("verify"), read_log())) <= n_est:
    time.sleep(0.1)
ms = re.findall(EST % port("verify"), read_log())
tap(qid_ and s and len(got) == 1 and got[0][1] and len(ms) > n_est and ms[-1][0] == "Verified",
    "verify with the CA in smtp_tls_CApath: sent over TLS, Verified", r, ms[-1:] if ms else None,
    [(len(g[0]), g[1]) for g in stored("verify")])
n0 = int(env("UNTRUSTED_N0"))
end = time.time() + 15
while time.time() < end and deferred("untrusted") <= n0:
    time.sleep(0.2)
last = re.findall(r"%s: to=<x@untrusted\.example>, .*status=deferred \(([^)]*)\)" % qid("untrusted"), read_log())
tap(deferred("untrusted") > n0 and last[-1:] == ["Server certificate not trusted"] and not stored("untrusted"),
    "  the self-signed certificate is still not trusted on the next retry, nothing delivered there",
    "deferrals before the reload %d, now %d, last: %s" % (n0, deferred("untrusted"), last[-1:]))
PY
check "sluiced is still running after the reload" alive "$MASTERPID"
