#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_starttls.sh - the SMTP server's TLS, Postfix's parameters and replies:
# - smtpd_tls_security_level = may: EHLO lists STARTTLS (not at level
#   none, not once TLS is active; HELO as before); STARTTLS gets 220, the
#   handshake presents the configured certificate (cert and key in one
#   file, or -o cert and key files per service), the client says EHLO
#   again and its mail arrives byte for byte, "with ESMTPS" in the
#   Received: header (with smtpd_tls_received_header = yes also the
#   protocol and cipher and "No client certificate requested"); a 3 MB
#   message sent pipelined over TLS too;
# - STARTTLS with an argument (501), in a transaction (503), once TLS is
#   active (554), at level none (502);
# - level encrypt: MAIL FROM before STARTTLS gets 530, after it 250;
# - a MAIL FROM pipelined behind STARTTLS in clear is thrown away and
#   logged (RFC 3207, CVE-2011-0411);
# - handshakes that go wrong: garbage, silence (smtpd_starttls_timeout),
#   half a ClientHello, a plain client on a wrapper-mode port, a TLS 1.2
#   client where smtpd_tls_protocols or smtpd_tls_mandatory_protocols ask
#   for TLS 1.3: the connection ends, the log says why in Postfix's words
#   (SSL_accept error, lost connection or timeout after STARTTLS), and
#   the same front process goes on serving;
# - smtpd_tls_loglevel 1 logs the session's protocol and cipher, 0 not;
# - smtpd_tls_wrappermode = yes: TLS from the first byte, then 220;
# - a missing certificate, a key that does not match: TLS support is
#   disabled for that service (logged at start), EHLO does not offer it,
#   STARTTLS gets 502 (may) or 454 (encrypt, where MAIL gets 530), and
#   mail on the other services goes on;
# - swaks --tls and openssl s_client -starttls smtp.
. "$(dirname "$0")/lib.sh"
need_binaries
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
"$PYTHON3" -c 'import ssl' 2>/dev/null || skip_all "python3 has no ssl module"
plan 51
setup

# --- certificates: mx (cert and key in one file), enc (two files), and
# a key that belongs to neither
tls_selfsigned mx mx.test.example
tls_selfsigned enc enc.test.example
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
    -out "$T/other.key" >>"$T/openssl.out" 2>&1 ||
    diag "openssl could not make the other key" "$(cat "$T/openssl.out")"
cat "$T/mx.crt" "$T/mx.key" >"$T/mx.pem"

P_NONE=$(free_port)   # level none
P_ENC=$(free_port)    # level encrypt, the enc certificate in two files
P_WRAP=$(free_port)   # smtpd_tls_wrappermode = yes
P_RH=$(free_port)     # smtpd_tls_received_header = yes, loglevel 0
P_V13=$(free_port)    # smtpd_tls_protocols = >=TLSv1.3
P_MISS=$(free_port)   # certificate file missing
P_BADKEY=$(free_port) # key of another certificate
P_ENCBAD=$(free_port) # the same at level encrypt
export P_NONE P_ENC P_WRAP P_RH P_V13 P_MISS P_BADKEY P_ENCBAD
S="inet n - n - - smtpd"
MASTER_EXTRA="127.0.0.1:$P_NONE $S -o smtpd_tls_security_level=none
127.0.0.1:$P_ENC $S -o smtpd_tls_security_level=encrypt -o smtpd_tls_cert_file=$T/enc.crt -o smtpd_tls_key_file=$T/enc.key
127.0.0.1:$P_WRAP $S -o smtpd_tls_wrappermode=yes
127.0.0.1:$P_RH $S -o smtpd_tls_received_header=yes -o smtpd_tls_loglevel=0
127.0.0.1:$P_V13 $S -o smtpd_tls_protocols=>=TLSv1.3
127.0.0.1:$P_MISS $S -o smtpd_tls_cert_file=$T/missing.pem
127.0.0.1:$P_BADKEY $S -o smtpd_tls_key_file=$T/other.key
127.0.0.1:$P_ENCBAD $S -o smtpd_tls_security_level=encrypt -o smtpd_tls_key_file=$T/other.key"
write_conf "smtpd_tls_security_level = may" \
    "smtpd_tls_cert_file = $T/mx.pem" \
    "smtpd_tls_loglevel = 1" \
    "smtpd_starttls_timeout = 2s" \
    "smtpd_tls_mandatory_protocols = !SSLv2, !SSLv3, !TLSv1, !TLSv1.1, !TLSv1.2"

# The clients' helpers, for the inline python below ("from tlsc import *").
cat >"$T/tlsc.py" <<'PY'
import ssl
from sink import *

T = env("T")
PORT = int(env("PORT"))


def der(name):
    with open(os.path.join(T, name + ".crt")) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def wrap(c, maxv=None):
    """TLS on the client's socket, no verification (self-signed)."""
    x = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    x.check_hostname = False
    x.verify_mode = ssl.CERT_NONE
    if maxv is not None:
        x.maximum_version = maxv
    c.sock = x.wrap_socket(c.sock)
    return c


def hello(port, helo="client.test"):
    """Connect, greeting, EHLO: (client, EHLO reply)."""
    c = Client(port)
    c.reply()
    return c, c.cmd("EHLO " + helo)


def starttls(c, maxv=None):
    """STARTTLS, and the handshake when it gets 220 and nothing else came
    in clear; the reply."""
    r = c.cmd("STARTTLS")
    if r.code == 220 and not c.buf:
        wrap(c, maxv)
    return r


def offers(r):
    return "STARTTLS" in r.lines


def transact(c, rcpt, data, sender="a@example.org"):
    """MAIL, RCPT, DATA, content: the first reply that is not the
    expected one, or the end-of-data reply."""
    for line, want in (("MAIL FROM:<%s>" % sender, 250),
                       ("RCPT TO:<%s>" % rcpt, 250), ("DATA", 354)):
        r = c.cmd(line)
        if r.code != want:
            return r
    c.send(dotstuff(data))
    return c.reply()


def bye(c):
    try:
        c.cmd("QUIT")
    except (OSError, EOFError, ValueError):
        pass
    c.close()


def msg(tag, extra=b""):
    return (b"Subject: tls %s\r\nMessage-ID: <%s@example.org>\r\n\r\n"
            b".leading dot\r\n..two dots\r\nline for %s\r\n%s"
            % (tag.encode(), tag.encode(), tag.encode(), extra))


def arrived(tag, secs=15):
    """(Received: field, the rest) of the message tag at the sink."""
    m = sink_find(r"(?i)Message-ID: <%s@example\.org>" % re.escape(tag), secs=secs)
    return split_received(m[1]) if m else (None, None)


def count(rx):
    return len(re.findall(rx, read_log(), re.M))


def count_wait(rx, n, secs=10):
    """Wait until the log has n lines matching rx; their count."""
    end = time.time() + secs
    while count(rx) < n and time.time() < end:
        time.sleep(0.1)
    return count(rx)


def received_rx(qid, rcpt, tls_lines=b""):
    return (rb"Received: from client\.test \(unknown \[127\.0\.0\.1\]\)\r\n"
            + tls_lines
            + rb"\tby mx\.test\.example \(Sluice\) with ESMTPS id " + qid.encode()
            + rb"\r\n\tfor <" + re.escape(rcpt.encode()) + rb">; [^\r\n]+\r\n")


SSL_ERR = r"SSL_accept error from unknown\[127\.0\.0\.1\]: "
LOST_STARTTLS = r"lost connection after STARTTLS from unknown\[127\.0\.0\.1\]"
ANON = r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]: "
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

# --- the settings and the start
out=$(sl check 2>&1)
rc=$?
if [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -Eq 'smtpd_(tls|starttls)_.*not implemented'; then
    ok "sluice check takes the TLS settings, none called not implemented"
else
    not_ok "sluice check takes the TLS settings, none called not implemented"
    diag "exit $rc" "$out"
fi
start_sink
start_ok
FRONT=$(child_pid smtpd)
check "log: service :P_MISS cannot get certificate from file \"missing.pem\"" \
    log_wait 5 "warning: service 127\.0\.0\.1:$P_MISS: cannot get certificate from file \"$T/missing\.pem\""
# the front logs the key warnings, then (in its loop's set-up) the encrypt
# one: wait for that last one before looking at them all
log_wait 10 "warning: service 127\.0\.0\.1:$P_ENCBAD: smtpd_tls_security_level = encrypt, but TLS support is disabled"
warnings=$(grep 'warning: service' "$LOG")
n=$(printf '%s\n' "$warnings" |
    grep -Ec "warning: service 127\.0\.0\.1:($P_BADKEY|$P_ENCBAD): certificate and private key do not match")
if [ "$n" -eq 2 ]; then
    ok "log: services :P_BADKEY and :P_ENCBAD: certificate and private key do not match"
else
    not_ok "log: services :P_BADKEY and :P_ENCBAD: certificate and private key do not match"
    diag "ports $P_BADKEY and $P_ENCBAD; the services' warnings:" "$warnings"
fi
like "log: service :P_ENCBAD: smtpd_tls_security_level = encrypt, but TLS support is disabled" \
    "$warnings" "warning: service 127\.0\.0\.1:$P_ENCBAD: smtpd_tls_security_level = encrypt, but TLS support is disabled"
n=$(log_count 'disabling TLS support')
check "log: disabling TLS support, for each of the three ($n lines)" test "$n" -ge 3
unlike "log: no warning about the services whose TLS is fine" \
    "$(cat "$LOG")" "warning: service 127\.0\.0\.1:($PORT|$P_NONE|$P_ENC|$P_WRAP|$P_RH|$P_V13):"

# --- level may: the whole dialogue (behaviours 1, 2, 3, 4, 9)
pytap <<'PY'
from tlsc import *
c = Client(PORT)
c.reply()
r = c.cmd("HELO client.test")
tap(r.code == 250 and r.lines == ["mx.test.example"],
    "HELO: one line, 250 mx.test.example, as before", r)
r = c.cmd("EHLO client.test")
tap(r.code == 250 and offers(r), "level may: EHLO lists STARTTLS", r)
r = c.cmd("STARTTLS foo")
tap(r.text == "501 5.5.4 Syntax: STARTTLS", "STARTTLS foo: 501 5.5.4 Syntax: STARTTLS", r)
c.cmd("MAIL FROM:<a@example.org>")
r = c.cmd("STARTTLS")
tap(r.text == "503 5.5.1 Error: MAIL transaction in progress",
    "STARTTLS after MAIL FROM: 503 5.5.1 Error: MAIL transaction in progress", r)
c.cmd("RSET")
r = c.cmd("STARTTLS")
got, shake = r.text, None
if r.code == 220 and not c.buf:
    try:
        wrap(c)
        shake = c.sock.getpeercert(True) == der("mx")
    except (OSError, ssl.SSLError) as e:
        shake = e
tap(got == "220 2.0.0 Ready to start TLS" and shake is True,
    "STARTTLS: 220 2.0.0 Ready to start TLS, then the handshake, with the certificate of smtpd_tls_cert_file (key in the same file)",
    got, "left in clear: %r" % c.buf, "handshake: %r" % shake)
cipher = c.sock.cipher() if shake is True else ("?", "?", 0)
r = c.cmd("EHLO client.test")
tap(r.code == 250 and r.lines[0] == "mx.test.example" and "PIPELINING" in r.lines
    and not offers(r), "EHLO over TLS: 250, STARTTLS no longer listed", r)
r = c.cmd("STARTTLS")
tap(r.text == "554 5.5.1 Error: TLS already active",
    "STARTTLS over TLS: 554 5.5.1 Error: TLS already active", r)
body = msg("tls-main")
r = transact(c, "x@example.net", body)
bye(c)
qid = queued_id(r)
rcv, rest = arrived("tls-main")
tap(qid and rest == body, "mail over TLS: 250 queued as ID, and the sink gets it byte for byte",
    r, "got: %r" % (rest,))
tap(rcv and qid and re.fullmatch(received_rx(qid, "x@example.net"), rcv),
    "its Received: says with ESMTPS id ID, no TLS details by default", rcv)
m = log_wait(ANON + r"(TLSv1\.[23]) with cipher ([A-Z0-9_-]+) \(([0-9]+)/([0-9]+) bits\)", 5)
tap(m and m.group(1) == cipher[1] and m.group(2) == cipher[0] and int(m.group(3)) == cipher[2],
    "smtpd_tls_loglevel = 1: Anonymous TLS connection established from unknown[127.0.0.1]: %s with cipher %s (%d/N bits)" % (cipher[1], cipher[0], cipher[2]),
    m and m.group(0))

# plain mail on the same service
body = msg("plain-main")
c, r = hello(PORT)
r = transact(c, "y@example.net", body)
bye(c)
qid = queued_id(r)
rcv, rest = arrived("plain-main")
tap(qid and rest == body and rcv and
    re.search(rb"\tby mx\.test\.example \(Sluice\) with ESMTP id " + qid.encode() + rb"\r\n", rcv),
    "plain mail on that service: delivered, Received: says with ESMTP id", r, rcv)
PY

# --- level none, level encrypt (behaviours 1, 4, 5)
pytap <<'PY'
from tlsc import *
c, e = hello(int(env("P_NONE")))
r = c.cmd("STARTTLS")
tap(e.code == 250 and not offers(e) and r.text == "502 5.5.1 Error: command not implemented",
    "level none: EHLO does not list STARTTLS, STARTTLS gets 502 5.5.1 Error: command not implemented", e, r)
bye(c)

c, r = hello(int(env("P_ENC")))
e = r
r = c.cmd("MAIL FROM:<a@example.org>")
tap(offers(e) and r.text == "530 5.7.0 Must issue a STARTTLS command first",
    "level encrypt: EHLO lists STARTTLS, MAIL FROM gets 530 5.7.0 Must issue a STARTTLS command first", e, r)
r = starttls(c)
shook = isinstance(c.sock, ssl.SSLSocket) and c.sock.getpeercert(True) == der("enc")
c.cmd("EHLO client.test")
r = c.cmd("MAIL FROM:<a@example.org>")
tap(shook and r.code == 250,
    "level encrypt: after STARTTLS (the service's own -o cert and key files) and EHLO, MAIL FROM gets 250", r)
body = msg("tls-enc")
c.cmd("RCPT TO:<z@example.net>")
c.cmd("DATA")
c.send(dotstuff(body))
r = c.reply()
bye(c)
rcv, rest = arrived("tls-enc")
tap(queued_id(r) and rest == body and re.fullmatch(received_rx(queued_id(r), "z@example.net"), rcv or b""),
    "  and the message arrives byte for byte, with ESMTPS", r, rcv, rest)

c, r = hello(int(env("P_ENC")))
r = c.cmd("STARTTLS")
try:
    wrap(c, ssl.TLSVersion.TLSv1_2)
    res = "handshake succeeded with %s" % c.sock.version()
except (ssl.SSLError, ConnectionResetError) as e:
    res = e
tap(r.code == 220 and not isinstance(res, str),
    "level encrypt, smtpd_tls_mandatory_protocols without TLSv1.2: a TLS 1.2 client fails the handshake", r, res)
c.close()
PY

# --- smtpd_tls_received_header = yes; smtpd_tls_loglevel = 0 (3, 9)
pytap <<'PY'
from tlsc import *
anon = count(ANON)
disc = count(r"disconnect from unknown\[127\.0\.0\.1\]")
c, r = hello(int(env("P_RH")))
starttls(c)
cipher = c.sock.cipher() if isinstance(c.sock, ssl.SSLSocket) else ("?", "?", 0)
c.cmd("EHLO client.test")
body = msg("tls-rh")
r = transact(c, "r@example.net", body)
bye(c)
qid = queued_id(r) or "?"
rcv, rest = arrived("tls-rh")
lines = (rb"[ \t]+\(using " + re.escape(cipher[1].encode()) + rb" with cipher " + re.escape(cipher[0].encode())
         + rb" \(%d/[0-9]+ bits\)\)\r\n" % cipher[2]
         + rb"[ \t]+\(No client certificate requested\)\r\n")
tap(cipher[1] == "TLSv1.3" and rest == body and rcv and re.fullmatch(received_rx(qid, "r@example.net", lines), rcv),
    "smtpd_tls_received_header = yes: (using TLSv1.3 with cipher %s (%d/N bits)) and (No client certificate requested) between from and by; content byte for byte"
    % (cipher[0], cipher[2]), rcv, cipher)
count_wait(r"disconnect from unknown\[127\.0\.0\.1\]", disc + 1)
tap(count(ANON) == anon, "smtpd_tls_loglevel = 0: no Anonymous TLS connection line for that session",
    "lines before %d, after %d" % (anon, count(ANON)))
PY

# --- MAIL FROM pipelined behind STARTTLS (6)
pytap <<'PY'
from tlsc import *
c = Client(PORT)
c.reply()
c.cmd("EHLO client.test")
c.send("STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
r = c.reply()
clear = c.buf
wrap(c)
e = c.cmd("EHLO client.test")
r2 = c.cmd("RCPT TO:<x@example.net>")
bye(c)
tap(r.code == 220 and clear == b"" and e.code == 250 and e.lines[0] == "mx.test.example"
    and r2.text == "503 5.5.1 Error: need MAIL command",
    "STARTTLS and MAIL FROM in one write: only the 220 in clear; after TLS and EHLO, RCPT gets 503 5.5.1 Error: need MAIL command",
    r, "clear: %r" % clear, e, r2)
tap(log_wait(r"improper command pipelining after STARTTLS from unknown\[127\.0\.0\.1\]", 5),
    "log: improper command pipelining after STARTTLS from unknown[127.0.0.1]")
tap(not re.search(r"from=<evil@example\.org>", read_log()),
    "log: no from=<evil@example.org>: the MAIL FROM sent in clear was thrown away")
PY

# --- handshakes that go wrong (7, 8)
pytap <<'PY'
from tlsc import *
ssl_err = count(SSL_ERR)
c, r = hello(PORT)
r = c.cmd("STARTTLS")
c.send("HELLO THIS IS NOT TLS\r\n")
tap(r.code == 220 and c.closed(5), "garbage instead of a ClientHello: the server closes the connection", r)
c.close()
tap(count_wait(SSL_ERR, ssl_err + 1, 5) > ssl_err and count_wait(LOST_STARTTLS, 1, 5) >= 1,
    "log: SSL_accept error from unknown[127.0.0.1]: ..., lost connection after STARTTLS from unknown[127.0.0.1]",
    "SSL_accept errors: %d -> %d, lost after STARTTLS: %d" % (ssl_err, count(SSL_ERR), count(LOST_STARTTLS)))

c, r = hello(PORT)
r = c.cmd("STARTTLS")
t0 = time.time()
gone = c.closed(8)
dt = time.time() - t0
c.close()
tap(r.code == 220 and gone and 1.5 <= dt <= 5 and
    log_wait(r"timeout after STARTTLS from unknown\[127\.0\.0\.1\]", 5),
    "silence after the 220: disconnected after smtpd_starttls_timeout = 2s (%.1f s), log: timeout after STARTTLS from unknown[127.0.0.1]" % dt,
    r, "closed: %s" % gone)

time.sleep(0.3)
lost = count(LOST_STARTTLS)
c, r = hello(PORT)
c.cmd("STARTTLS")
c.send(b"\x16\x03\x01\x00")
c.close()
tap(count_wait(LOST_STARTTLS, lost + 1, 5) > lost,
    "half a ClientHello, then close: log: lost connection after STARTTLS (one more)")

c = Client(PORT)
g = c.reply()
r = c.cmd("EHLO client.test")
bye(c)
tap(g.code == 220 and r.code == 250 and offers(r), "after all that, a new session gets 220 and EHLO", g, r)
PY
now=$(child_pid smtpd)
if [ -n "$FRONT" ] && [ "$now" = "$FRONT" ]; then
    ok "  served by the same front process (pid $FRONT)"
else
    not_ok "  served by the same front process (pid $FRONT)"
    diag "front process now: '$now'"
fi

# --- smtpd_tls_wrappermode = yes (10)
pytap <<'PY'
from tlsc import *
port = int(env("P_WRAP"))
c = wrap(Client(port))
g = c.reply()
e = c.cmd("EHLO client.test")
tap(g.code == 220 and e.code == 250 and not offers(e),
    "wrapper mode: TLS at once, then 220 and EHLO (no STARTTLS listed)", g, e)
body = msg("tls-wrap")
r = transact(c, "w@example.net", body)
bye(c)
rcv, rest = arrived("tls-wrap")
tap(queued_id(r) and rest == body and re.fullmatch(received_rx(queued_id(r), "w@example.net"), rcv or b""),
    "wrapper mode: mail arrives byte for byte, with ESMTPS", r, rcv, rest)

ssl_err = count(SSL_ERR)
c = Client(port)
c.sock.settimeout(1)
try:
    early = c.sock.recv(100)
except (socket.timeout, TimeoutError):
    early = None
c.send("EHLO x\r\n")
gone = c.closed(5)
c.close()
tap(early is None and gone and b"220" not in c.buf,
    "wrapper mode, plain client: no 220 in 1 s; after EHLO x the server closes", early, gone, c.buf)
tap(count_wait(SSL_ERR, ssl_err + 1, 5) > ssl_err and
    log_wait(r"lost connection after CONNECT from unknown\[127\.0\.0\.1\]", 5),
    "log: SSL_accept error from unknown[127.0.0.1], lost connection after CONNECT")
PY

# --- 3 MB over TLS, pipelined (11)
pytap <<'PY'
import base64
from tlsc import *
c, r = hello(PORT)
starttls(c)
c.cmd("EHLO client.test")
blob = base64.encodebytes(os.urandom(2300000)).replace(b"\n", b"\r\n")
body = msg("tls-big", b".dot line\r\n" + blob + b".\r\n..\r\nend\r\n")
c.send("MAIL FROM:<a@example.org>\r\nRCPT TO:<big@example.net>\r\nDATA\r\n")
rs = [c.reply(), c.reply(), c.reply()]
c.sock.settimeout(30)
c.send(dotstuff(body))
r = c.reply()
bye(c)
rcv, rest = arrived("tls-big", 30)
tap([x.code for x in rs] == [250, 250, 354] and queued_id(r) and rest == body,
    "3 MB over TLS, MAIL RCPT DATA in one write: 250 250 354, 250 queued, delivered byte for byte (%d bytes)" % len(body),
    rs, r, "got %s bytes" % (len(rest) if rest else None))
PY

# --- smtpd_tls_protocols = >=TLSv1.3 at level may (12)
pytap <<'PY'
from tlsc import *
port = int(env("P_V13"))
ssl_err = count(SSL_ERR)
c, r = hello(port)
r = c.cmd("STARTTLS")
try:
    wrap(c, ssl.TLSVersion.TLSv1_2)
    res = "handshake succeeded with %s" % c.sock.version()
except (ssl.SSLError, ConnectionResetError) as e:
    res = e
c.close()
tap(r.code == 220 and not isinstance(res, str) and count_wait(SSL_ERR, ssl_err + 1, 5) > ssl_err,
    "smtpd_tls_protocols = >=TLSv1.3: a TLS 1.2 client fails the handshake, SSL_accept error logged", r, res)
c, r = hello(port)
starttls(c)
v = c.sock.version() if isinstance(c.sock, ssl.SSLSocket) else None
e = c.cmd("EHLO client.test")
bye(c)
tap(v == "TLSv1.3" and e.code == 250, "  a TLS 1.3 client gets through (%s)" % v, e)
c, r = hello(PORT)
try:
    starttls(c, ssl.TLSVersion.TLSv1_2)
    v = c.sock.version() if isinstance(c.sock, ssl.SSLSocket) else None
    e = c.cmd("EHLO client.test")
except (OSError, ssl.SSLError, EOFError) as x:
    v, e = None, x
bye(c)
tap(v == "TLSv1.2" and getattr(e, "code", 0) == 250,
    "level may, default smtpd_tls_protocols: a TLS 1.2 client gets through (mandatory protocols do not apply)", v, e)
PY

# --- certificate problems (13)
pytap <<'PY'
from tlsc import *
c, e = hello(int(env("P_MISS")))
r = c.cmd("STARTTLS")
tap(e.code == 250 and not offers(e) and r.text == "502 5.5.1 Error: command not implemented",
    "missing certificate, level may: EHLO without STARTTLS, STARTTLS gets 502 5.5.1", e, r)
body = msg("plain-miss")
r = transact(c, "m@example.net", body)
bye(c)
tap(queued_id(r) and arrived("plain-miss")[1] == body,
    "  and plain mail still goes through there", r)
c, e = hello(int(env("P_BADKEY")))
bye(c)
tap(e.code == 250 and not offers(e), "key that does not match: EHLO without STARTTLS", e)
c, e = hello(int(env("P_ENCBAD")))
r = c.cmd("MAIL FROM:<a@example.org>")
tap(r.text == "530 5.7.0 Must issue a STARTTLS command first",
    "TLS disabled at level encrypt: MAIL FROM gets 530 5.7.0 Must issue a STARTTLS command first", r)
r = c.cmd("STARTTLS")
tap(r.text == "454 4.7.0 TLS not available due to local problem",
    "  and STARTTLS gets 454 4.7.0 TLS not available due to local problem", r)
bye(c)
PY

# --- real clients (14)
if command -v swaks >/dev/null 2>&1; then
    swaks --server "127.0.0.1:$PORT" --tls --helo client.test \
        --from a@example.org --to swaks@example.net \
        --header "Message-Id: <tls-swaks@example.org>" \
        --header "Subject: swaks over TLS" --timeout 10 >"$T/swaks.out" 2>&1
    rc=$?
    if [ $rc -eq 0 ] && grep -q 'TLS started' "$T/swaks.out"; then
        ok "swaks --tls: TLS started, exit 0"
    else
        not_ok "swaks --tls: TLS started, exit 0"
        diag "exit $rc" "$(tail -n 30 "$T/swaks.out")"
    fi
    SWAKS_ID=$(sed -n 's/.* 250 2\.0\.0 Ok: queued as \([0-9A-F]\{14\}\)\r\{0,1\}$/\1/p' "$T/swaks.out" | head -n 1)
    export SWAKS_ID
    pytap <<'PY'
from tlsc import *
rcv, rest = arrived("tls-swaks")
tap(env("SWAKS_ID") and rcv and re.search(rb"with ESMTPS id " + env("SWAKS_ID").encode() + rb"\r\n", rcv),
    "  the sink gets swaks' message, Received: with ESMTPS id ID", env("SWAKS_ID"), rcv)
PY
else
    ok "# SKIP swaks not installed"
    ok "# SKIP swaks not installed"
fi
out=$( (sleep 1; printf 'EHLO c.test\r\nQUIT\r\n'; sleep 1) |
    timeout 10 openssl s_client -starttls smtp -connect "127.0.0.1:$PORT" -quiet 2>&1)
if printf '%s\n' "$out" | grep -q 'CN *= *mx\.test\.example' &&
    printf '%s\n' "$out" | grep -q '^250-mx\.test\.example' &&
    printf '%s\n' "$out" | grep -Eq '^221 '; then
    ok "openssl s_client -starttls smtp: our certificate, then 250 to EHLO and 221 to QUIT"
else
    not_ok "openssl s_client -starttls smtp: our certificate, then 250 to EHLO and 221 to QUIT"
    diag "$out"
fi

check "sluiced is still running" alive "$MASTERPID"
