#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""sink.py - a small SMTP server for the system tests, and client helpers.

As a program: an SMTP sink that stores every accepted message as
DIR/NNNN.eml (the exact DATA bytes after dot-unstuffing, final CRLF
included) and DIR/NNNN.env ("MAIL FROM:<..>" and "RCPT TO:<..>" lines).
The .eml file appears last (written then renamed), so counting *.eml
counts complete messages. DIR/sink.log records every command and reply.

  sink.py --port N --dir DIR [--host 127.0.0.1|::1] [--pidfile F]
          [--rcpt-match REGEX --rcpt-reply "550 5.1.1 no such user"]
          [--rcpt-delay-match REGEX --rcpt-delay SECS]
          [--lmtp [--lmtp-fail-match REGEX --lmtp-fail-reply R]
                  [--lmtp-close-after N]]
          [--unix PATH]
          [--data-reply "451 4.3.0 try later" [--data-fail-count N]]
          [--idle-close SECS]
          [--tls-cert FILE [--tls-key FILE]]
          [--tls-min-version TLSv1.2|TLSv1.3] [--tls-max-version ...]
          [--starttls-reply "454 4.7.0 TLS not available"]
          [--tls-misbehave garbage|stall]

--lmtp: an LMTP server (RFC 2033): LHLO gets the EHLO answer, EHLO and
HELO get 500; after the dot, one reply per accepted recipient: R (default
"452 4.2.2 Mailbox full") for those --lmtp-fail-match matches, "250 2.0.0
<rcpt> Saved" for the others, which are stored (one message, their
envelope); with --lmtp-close-after N the connection is closed after N of
those replies. --unix PATH listens on that unix socket instead of TCP (--port
is then only a label: the connections are numbered 1, 2, ...).

Each connection logs "PORT connect" first (PORT: the client's port, the
prefix of all that connection's lines), so counting " connect$" lines
counts connections (start_sink's readiness probe is one of them).

STARTTLS (server side), off unless one of the --tls-*/--starttls-*
options is given: EHLO then lists "250-STARTTLS" (as its last line but
one) while the connection is in clear, and STARTTLS gets:
  --starttls-reply R    R, and the session goes on in clear;
  --tls-misbehave garbage
                        "220 2.0.0 Ready to start TLS", then the bytes
                        "this is not TLS\r\n" in clear instead of a
                        handshake; the sink shuts its side, reads what the
                        client sends until it closes (5 s at most), and
                        closes ("PORT tls garbage sent, closed");
  --tls-misbehave stall "220 2.0.0 Ready to start TLS", then silence: what
                        the client sends is read and ignored until it
                        closes ("PORT tls stall ended: client closed");
  otherwise             "220 2.0.0 Ready to start TLS" and a server-side
                        handshake with --tls-cert (and --tls-key, else the
                        key is in the cert file), within the versions
                        given; the session goes on over TLS (a new EHLO
                        is expected; STARTTLS is no longer listed, and
                        gets 554 5.5.1 Error: TLS already active). The log
                        has "PORT tls VERSION CIPHER BITS", or "PORT tls
                        handshake failed: ERROR" (connection closed).
STARTTLS without those options: 502 as any unknown command.
A message stored on a TLS connection also gets DIR/NNNN.tls (written
before NNNN.eml appears): one line "VERSION CIPHER BITS", e.g.
"TLSv1.3 TLS_AES_256_GCM_SHA384 256". No .tls file: it came in clear.

AUTH (server side, RFC 4954), off unless --auth-mechs is given:
          [--auth-mechs "PLAIN LOGIN CRAM-MD5" [--auth-user USER:PASS ...]
           [--auth-required] [--auth-old | --auth-old-only] [--auth-tls-only]
           [--auth-reply "454 4.7.0 try later" [--auth-reply-count N]]
           [--auth-misbehave loop|badchallenge|emptychallenge|stall|close|
                             garbage]
           [--auth-334-lines K] [--auth-challenge-size N]]
  --auth-mechs M        EHLO lists "250-AUTH M" (M as given; before
                        250-STARTTLS, so STARTTLS stays last but one).
                        PLAIN, LOGIN and CRAM-MD5 are checked for real;
                        any other listed name gets 504 5.5.4.
  --auth-user U:P       credentials accepted (repeatable; split at the
                        first ':', so P may hold ':'). None: every AUTH
                        fails.
  --auth-old            also "250-AUTH=M" (right after 250-AUTH M);
  --auth-old-only       only "250-AUTH=M".
  --auth-tls-only       AUTH is listed (and accepted) only over TLS; in
                        clear AUTH gets 503 5.5.1.
  --auth-required       MAIL before a successful AUTH gets
                        "530 5.7.0 Authentication required".
  --auth-reply R        the final reply of every AUTH exchange is R (the
                        credentials are checked and logged all the same;
                        R starting with 235 authenticates), for the first
                        --auth-reply-count N exchanges only when given.
Exchanges: PLAIN with or without an initial response ("334 " then the
response; "=" is empty), base64("authzid NUL user NUL pass"); LOGIN: "334
VXNlcm5hbWU6" (unless the user came as initial response), then "334
UGFzc3dvcmQ6"; CRAM-MD5: "334 base64(<RANDOM.TIME@sink.test.example>)",
the response base64("user " + hex HMAC-MD5(pass, challenge)). A response
"*" gets 501 5.7.0 Authentication aborted, one that is not base64 501
5.5.2 Cannot decode response. Success: "235 2.7.0 Authentication
successful"; failure: "535 5.7.8 Error: authentication failed:
authentication failure". Also 503 5.5.1 when already authenticated or in
a transaction, 504 5.5.4 for a mechanism not listed, 501 5.5.4 for AUTH
without one. The authentication stays over EHLO and RSET, STARTTLS drops
it. The log has "PORT auth MECH ok user=U" or "PORT auth MECH failed
user=U" (U: "?" when the response could not be read), "PORT auth MECH
aborted" (after a 501) or "PORT auth MECH aborted: client closed", for
CRAM-MD5 first "PORT auth CRAM-MD5 challenge <...>" (the decoded
challenge), and for the misbehaviours the lines below.
  --auth-challenge-size N
                        CRAM-MD5's 334 line is exactly N bytes (CRLF not
                        counted; N - 4 a multiple of 4, at least 40): the
                        challenge is padded with digits inside the <...>.
  --auth-334-lines K    every 334 reply is K lines: K - 1 "334-" lines
                        (base64 of "line I"), then the "334 " line.
  --auth-misbehave loop after the mechanism's last step, each response
                        gets one more "334 base64(again N)" instead of
                        the final reply, until the client sends "*" (501),
                        something not base64 (501) or closes ("PORT auth
                        MECH loop ended after N extra 334").
  --auth-misbehave badchallenge
                        CRAM-MD5's challenge line is "334 not base64!!"
                        (PLAIN and LOGIN as usual).
  --auth-misbehave emptychallenge
                        CRAM-MD5's challenge line is "334 " (empty).
  --auth-misbehave stall
                        AUTH is read and never answered; what the client
                        sends is read and ignored until it closes ("PORT
                        auth stall", then "PORT auth stall ended: client
                        closed").
  --auth-misbehave close
                        the connection is closed when AUTH arrives ("PORT
                        auth closed at AUTH").
  --auth-misbehave garbage
                        AUTH is answered with the line "this is no reply"
                        (no reply code); the session goes on.
A message stored on an authenticated connection also gets DIR/NNNN.auth
(written before NNNN.eml appears): one line "MECH USER". No .auth file:
the connection did not authenticate.

As a module (PYTHONPATH=tests/system): Client, send_mail, dotstuff,
split_received, eml_files for the test scripts' inline python.
Standard library only.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import os
import random
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time

LINE_MAX = 1 << 20


# ---------------------------------------------------------------- server


class SinkState:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.count = 0          # messages stored
        self.data_seen = 0      # end-of-data events (for --data-fail-count)
        self.rcpt_re = re.compile(args.rcpt_match) if args.rcpt_match else None
        # STARTTLS is offered with any of the TLS options
        self.starttls = bool(args.tls_cert or args.starttls_reply
                             or args.tls_misbehave)
        self.tls_ctx = None
        if args.tls_cert:
            x = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            x.load_cert_chain(args.tls_cert, args.tls_key)
            if args.tls_min_version:
                x.minimum_version = TLS_VERSIONS[args.tls_min_version]
            if args.tls_max_version:
                x.maximum_version = TLS_VERSIONS[args.tls_max_version]
            self.tls_ctx = x
        self.auth_users = {}
        for u in args.auth_user or []:
            name, _, pw = u.partition(":")
            self.auth_users[name] = pw
        self.auth_mechs = (args.auth_mechs or "").split()
        self.auth_seen = 0      # finished AUTH exchanges (--auth-reply-count)
        self.logf = open(os.path.join(args.dir, "sink.log"), "a",
                         buffering=1, encoding="utf-8", errors="replace")

    def log(self, text):
        with self.lock:
            self.logf.write("%.3f %s\n" % (time.time(), text))

    def store(self, sender, rcpts, data, tls=None, auth=None):
        with self.lock:
            self.count += 1
            n = self.count
        base = os.path.join(self.args.dir, "%04d" % n)
        with open(base + ".env", "w", encoding="utf-8",
                  errors="surrogateescape") as f:
            f.write("MAIL FROM:<%s>\n" % sender)
            for r in rcpts:
                f.write("RCPT TO:<%s>\n" % r)
        if tls:
            with open(base + ".tls", "w") as f:
                f.write("%s %s %d\n" % tls)
        if auth:
            with open(base + ".auth", "w", encoding="utf-8",
                      errors="surrogateescape") as f:
                f.write("%s %s\n" % auth)
        with open(base + ".tmp", "wb") as f:
            f.write(data)
        os.rename(base + ".tmp", base + ".eml")
        return n

    def data_reply(self):
        """Reply for an end of data, and whether the message is stored."""
        with self.lock:
            self.data_seen += 1
            seen = self.data_seen
        a = self.args
        if a.data_reply and (a.data_fail_count < 0 or seen <= a.data_fail_count):
            return a.data_reply, False
        return None, True

    def auth_final(self, good):
        """Final reply of an AUTH exchange, and whether it authenticates."""
        with self.lock:
            self.auth_seen += 1
            seen = self.auth_seen
        a = self.args
        if a.auth_reply and (a.auth_reply_count < 0 or seen <= a.auth_reply_count):
            return a.auth_reply, a.auth_reply.startswith("235")
        if good:
            return "235 2.7.0 Authentication successful", True
        return ("535 5.7.8 Error: authentication failed: authentication "
                "failure"), False

    def cram_challenge(self):
        n = self.args.auth_challenge_size
        pre = "<%d." % random.randrange(1000, 100000)
        post = "@sink.test.example>"
        if not n:
            return "%s%d%s" % (pre, int(time.time()), post)
        raw = (n - 4) // 4 * 3   # its base64 is n - 4 bytes, no padding
        return pre + "7" * (raw - len(pre) - len(post)) + post


class AuthEnd(Exception):
    """The AUTH exchange ended early (reply already sent, or closed)."""

    def __init__(self, closed=False):
        super().__init__()
        self.closed = closed


def b64dec(text):
    """Strict base64 (RFC 4954: "=" is an empty response); None if bad."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def addr_of(arg):
    """The address inside <...> of a MAIL FROM:/RCPT TO: argument."""
    m = re.match(r"\s*<([^>]*)>", arg)
    if m:
        return m.group(1)
    return arg.strip().split(" ")[0]


TLS_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2,
                "TLSv1.3": ssl.TLSVersion.TLSv1_3}


class SinkHandler(socketserver.StreamRequestHandler):
    timeout = 60
    tls = None          # (version, cipher, bits) once TLS is active
    tls_sock = None
    authed = None       # (mech, user) once AUTH succeeded

    def auth_offered(self):
        st = self.server.state
        return bool(st.auth_mechs) and (self.tls is not None
                                        or not st.args.auth_tls_only)

    def auth_334(self, text):
        """Send a 334 (with --auth-334-lines) and read the response line;
        AuthEnd when the exchange is over."""
        st = self.server.state
        k = st.args.auth_334_lines
        for i in range(1, k):
            self.out("334-" + base64.b64encode(b"line %d" % i).decode())
        self.out("334 " + text)
        raw = self.rfile.readline(LINE_MAX)
        if not raw:
            raise AuthEnd(closed=True)
        line = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        st.log("%s < %s" % (self.client_address[1], line))
        if line == "*":
            self.out("501 5.7.0 Authentication aborted")
            raise AuthEnd()
        return line

    def auth_decode(self, text):
        d = b64dec(text)
        if d is None:
            self.out("501 5.5.2 Cannot decode response")
            raise AuthEnd()
        return d

    def auth(self, arg, in_transaction):
        """AUTH arg; False when the session ends."""
        st = self.server.state
        a = st.args
        me = self.client_address[1]
        if not self.auth_offered():
            self.out("503 5.5.1 Error: authentication not enabled")
            return True
        if self.authed:
            self.out("503 5.5.1 Error: already authenticated")
            return True
        if in_transaction:
            self.out("503 5.5.1 Error: MAIL transaction in progress")
            return True
        parts = arg.split()
        if not parts:
            self.out("501 5.5.4 Syntax: AUTH mechanism")
            return True
        mech = parts[0].upper()
        initial = parts[1] if len(parts) > 1 else None
        if mech not in [m.upper() for m in st.auth_mechs]:
            self.out("504 5.5.4 Unrecognized authentication type")
            return True
        if a.auth_misbehave == "close":
            st.log("%s auth closed at AUTH" % me)
            return False
        if a.auth_misbehave == "stall":
            st.log("%s auth stall" % me)
            self.drain(None)
            st.log("%s auth stall ended: client closed" % me)
            return False
        if a.auth_misbehave == "garbage":
            self.out("this is no reply")
            return True
        user = "?"
        try:
            if mech == "PLAIN":
                resp = initial if initial is not None else self.auth_334("")
                d = self.auth_decode(resp).split(b"\0")
                good = False
                if len(d) == 3:
                    user = d[1].decode("utf-8", "surrogateescape")
                    pw = d[2].decode("utf-8", "surrogateescape")
                    good = st.auth_users.get(user) == pw
            elif mech == "LOGIN":
                resp = initial if initial is not None else self.auth_334("VXNlcm5hbWU6")
                user = self.auth_decode(resp).decode("utf-8", "surrogateescape")
                pw = self.auth_decode(self.auth_334("UGFzc3dvcmQ6")).decode(
                    "utf-8", "surrogateescape")
                good = st.auth_users.get(user) == pw
            elif mech == "CRAM-MD5":
                if initial is not None:
                    self.out("501 5.5.4 CRAM-MD5 takes no initial response")
                    return True
                chal = st.cram_challenge()
                st.log("%s auth CRAM-MD5 challenge %s" % (me, chal))
                if a.auth_misbehave == "badchallenge":
                    text = "not base64!!"
                elif a.auth_misbehave == "emptychallenge":
                    text = ""
                else:
                    text = base64.b64encode(chal.encode()).decode()
                d = self.auth_decode(self.auth_334(text))
                u, _, digest = d.decode("utf-8", "surrogateescape").rpartition(" ")
                good = False
                if u:
                    user = u
                    if user in st.auth_users:
                        want = hmac.new(st.auth_users[user].encode("utf-8", "surrogateescape"),
                                        chal.encode(), hashlib.md5).hexdigest()
                        good = hmac.compare_digest(want, digest)
            else:
                st.log("%s auth %s unsupported" % (me, mech))
                self.out("504 5.5.4 %s is not supported by this sink" % mech)
                return True
            if a.auth_misbehave == "loop":
                n = 0
                try:
                    while True:
                        n += 1
                        self.auth_decode(self.auth_334(
                            base64.b64encode(b"again %d" % n).decode()))
                finally:
                    st.log("%s auth %s loop ended after %d extra 334" % (me, mech, n))
        except AuthEnd as e:
            if e.closed:
                st.log("%s auth %s aborted: client closed" % (me, mech))
                return False
            st.log("%s auth %s aborted" % (me, mech))
            return True
        reply, ok = st.auth_final(good)
        st.log("%s auth %s %s user=%s" % (me, mech, "ok" if good else "failed", user))
        self.out(reply)
        if ok:
            self.authed = (mech, user)
        return True

    def out(self, line):
        self.server.state.log("%s > %s" % (self.client_address[1], line))
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def finish(self):
        try:
            super().finish()
        finally:
            if self.tls_sock is not None:
                try:
                    self.tls_sock.close()
                except OSError:
                    pass

    def drain(self, secs):
        """Read and drop what the client sends until it closes (or secs
        pass, when secs is not None)."""
        end = None if secs is None else time.time() + secs
        self.connection.settimeout(0.5)
        while end is None or time.time() < end:
            try:
                d = self.connection.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not d:
                return

    def starttls(self):
        """STARTTLS with the TLS options; False when the session ends."""
        st = self.server.state
        a = st.args
        me = self.client_address[1]
        if a.starttls_reply:
            self.out(a.starttls_reply)
            return True
        self.out("220 2.0.0 Ready to start TLS")
        if a.tls_misbehave == "garbage":
            try:
                self.connection.sendall(b"this is not TLS\r\n")
                self.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self.drain(5)
            st.log("%s tls garbage sent, closed" % me)
            return False
        if a.tls_misbehave == "stall":
            st.log("%s tls stall" % me)
            self.drain(None)
            st.log("%s tls stall ended: client closed" % me)
            return False
        if st.tls_ctx is None:  # not reached: STARTTLS is offered without
            return False        # a certificate only with the two above
        self.rfile.close()
        self.wfile.close()
        try:
            s = st.tls_ctx.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError, ValueError) as e:
            st.log("%s tls handshake failed: %s" % (me, e))
            return False
        self.tls_sock = self.connection = s
        self.rfile = s.makefile("rb")
        self.wfile = s.makefile("wb")
        c = s.cipher()
        self.tls = (s.version(), c[0], c[2])
        st.log("%s tls %s %s %d" % ((me,) + self.tls))
        return True

    def handle(self):
        st = self.server.state
        st.log("%s connect" % self.client_address[1])
        self.out("220 sink.test.example ESMTP sink")
        sender = None
        rcpts = []
        done = 0  # messages finished on this connection
        while True:
            idle = st.args.idle_close
            if done > 0 and idle and sender is None:
                self.connection.settimeout(idle)
            try:
                raw = self.rfile.readline(LINE_MAX)
            except socket.timeout:
                st.log("%s idle, closed" % self.client_address[1])
                self.out("421 4.4.2 sink.test.example idle too long")
                return
            except (OSError, ValueError):
                return
            self.connection.settimeout(self.timeout)
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            st.log("%s < %s" % (self.client_address[1], line))
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip() if " " in line else ""
            if st.args.lmtp and verb in ("EHLO", "HELO"):
                self.out("500 5.5.1 Error: this is LMTP: LHLO")
                continue
            if verb == "EHLO" or (verb == "LHLO" and st.args.lmtp):
                sender, rcpts = None, []
                self.out("250-sink.test.example")
                self.out("250-PIPELINING")
                self.out("250-8BITMIME")
                self.out("250-SIZE 104857600")
                if self.auth_offered():
                    m = " ".join(st.auth_mechs)
                    if not st.args.auth_old_only:
                        self.out("250-AUTH " + m)
                    if st.args.auth_old or st.args.auth_old_only:
                        self.out("250-AUTH=" + m)
                if st.starttls and self.tls is None:
                    self.out("250-STARTTLS")
                self.out("250 ENHANCEDSTATUSCODES")
            elif verb in ("HELO", "LHLO"):
                sender, rcpts = None, []
                self.out("250 sink.test.example")
            elif verb == "MAIL":
                again = st.args.reused_mail_reply
                if done > 0 and again == "close":
                    st.log("%s closed at a reused MAIL" % self.client_address[1])
                    return
                if done > 0 and again:
                    self.out(again)
                    return
                if not line.upper().startswith("MAIL FROM:"):
                    self.out("501 5.5.4 Syntax: MAIL FROM:<address>")
                    continue
                if st.args.auth_required and not self.authed:
                    self.out("530 5.7.0 Authentication required")
                    continue
                sender, rcpts = addr_of(line[10:]), []
                self.out("250 2.1.0 Ok")
            elif verb == "RCPT":
                if sender is None:
                    self.out("503 5.5.1 Error: need MAIL command")
                    continue
                if not line.upper().startswith("RCPT TO:"):
                    self.out("501 5.5.4 Syntax: RCPT TO:<address>")
                    continue
                r = addr_of(line[8:])
                if st.args.rcpt_delay_match and re.search(
                        st.args.rcpt_delay_match, r):
                    time.sleep(st.args.rcpt_delay)
                if st.rcpt_re and st.rcpt_re.search(r):
                    self.out(st.args.rcpt_reply)
                    continue
                rcpts.append(r)
                self.out("250 2.1.5 Ok")
            elif verb == "DATA":
                if not rcpts:
                    self.out("503 5.5.1 Error: need RCPT command")
                    continue
                self.out("354 End data with <CR><LF>.<CR><LF>")
                chunks = []
                while True:
                    d = self.rfile.readline(LINE_MAX)
                    if not d:
                        st.log("connection lost in DATA")
                        return
                    if d == b".\r\n":
                        break
                    if d.startswith(b"."):
                        d = d[1:]
                    chunks.append(d)
                data = b"".join(chunks)
                if st.args.lmtp:
                    ok = [r for r in rcpts if not (
                        st.args.lmtp_fail_match
                        and re.search(st.args.lmtp_fail_match, r))]
                    if ok:
                        st.store(sender, ok, data, self.tls, self.authed)
                    for k, r in enumerate(rcpts):
                        if k == st.args.lmtp_close_after:
                            st.log("%s closed after %d replies"
                                   % (self.client_address[1], k))
                            return
                        self.out("250 2.0.0 <%s> Saved" % r if r in ok
                                 else st.args.lmtp_fail_reply)
                    done += 1
                    sender, rcpts = None, []
                    continue
                reply, keep = st.data_reply()
                if keep:
                    n = st.store(sender, rcpts, data, self.tls, self.authed)
                    reply = "250 2.0.0 Ok: queued as SINK%04d" % n
                self.out(reply)
                done += 1
                sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts = None, []
                self.out("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.out("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.out("221 2.0.0 Bye")
                return
            elif verb == "STARTTLS" and st.starttls:
                if self.tls is not None:
                    self.out("554 5.5.1 Error: TLS already active")
                    continue
                if not self.starttls():
                    return
                sender, rcpts = None, []
                self.authed = None
            elif verb == "AUTH" and st.auth_mechs:
                if not self.auth(arg, sender is not None):
                    return
            else:
                self.out("502 5.5.2 Error: command not recognized")


class Server4(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    # the default backlog of 5 drops connections when Sluice delivers 20
    # messages at once; the client then waits out its greeting timeout
    request_queue_size = 256


class ServerUnix(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 256
    n = 0

    def get_request(self):
        conn, _ = self.socket.accept()
        ServerUnix.n += 1
        return conn, ("unix", ServerUnix.n)


class Server6(Server4):
    address_family = socket.AF_INET6


def sink_main(argv):
    p = argparse.ArgumentParser(description="SMTP sink for tests")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--dir", required=True)
    p.add_argument("--pidfile")
    p.add_argument("--rcpt-match", help="regex of recipients to refuse")
    p.add_argument("--rcpt-reply", default="550 5.1.1 Recipient rejected")
    p.add_argument("--rcpt-delay-match",
                   help="regex of recipients whose reply is late")
    p.add_argument("--rcpt-delay", type=float, default=0,
                   help="seconds those replies wait")
    p.add_argument("--lmtp", action="store_true", help="speak LMTP")
    p.add_argument("--lmtp-fail-match",
                   help="regex of recipients refused after the dot")
    p.add_argument("--lmtp-fail-reply", default="452 4.2.2 Mailbox full")
    p.add_argument("--lmtp-close-after", type=int, default=-1,
                   help="close after this many replies to the dot")
    p.add_argument("--unix", help="listen on this unix socket")
    p.add_argument("--data-reply", help='end-of-data reply, e.g. "451 4.3.0 later"')
    p.add_argument("--reused-mail-reply",
                   help='a MAIL after a finished message on the same '
                        'connection gets this reply and the connection is '
                        'closed ("close": closed without a reply)')
    p.add_argument("--idle-close", type=float, default=0,
                   help="421 and close a connection idle this many seconds "
                        "after a message")
    p.add_argument("--data-fail-count", type=int, default=-1,
                   help="use --data-reply for the first N messages only")
    p.add_argument("--tls-cert",
                   help="offer STARTTLS; the server certificate (PEM, may "
                        "hold the key too)")
    p.add_argument("--tls-key", help="its private key (PEM)")
    p.add_argument("--tls-min-version", choices=sorted(TLS_VERSIONS))
    p.add_argument("--tls-max-version", choices=sorted(TLS_VERSIONS))
    p.add_argument("--starttls-reply",
                   help='offer STARTTLS, answer it with this reply, e.g. '
                        '"454 4.7.0 TLS not available", and go on in clear')
    p.add_argument("--tls-misbehave", choices=("garbage", "stall"),
                   help="offer STARTTLS; after its 220, garbage: send "
                        "\"this is not TLS\" and close; stall: send nothing "
                        "until the client closes")
    p.add_argument("--auth-mechs",
                   help='offer AUTH: EHLO lists "250-AUTH M", e.g. '
                        '"PLAIN LOGIN CRAM-MD5"')
    p.add_argument("--auth-user", action="append",
                   help="USER:PASS accepted by AUTH (repeatable)")
    p.add_argument("--auth-required", action="store_true",
                   help="MAIL before a successful AUTH gets 530 5.7.0")
    p.add_argument("--auth-old", action="store_true",
                   help='also list "250-AUTH=M"')
    p.add_argument("--auth-old-only", action="store_true",
                   help='list only "250-AUTH=M"')
    p.add_argument("--auth-tls-only", action="store_true",
                   help="list and accept AUTH only over TLS")
    p.add_argument("--auth-reply",
                   help='final reply of every AUTH exchange, e.g. '
                        '"454 4.7.0 Temporary authentication failure"')
    p.add_argument("--auth-reply-count", type=int, default=-1,
                   help="use --auth-reply for the first N exchanges only")
    p.add_argument("--auth-misbehave",
                   choices=("loop", "badchallenge", "emptychallenge",
                            "stall", "close", "garbage"))
    p.add_argument("--auth-334-lines", type=int, default=1,
                   help="every 334 reply is this many lines")
    p.add_argument("--auth-challenge-size", type=int, default=0,
                   help="CRAM-MD5's 334 line is exactly this many bytes")
    a = p.parse_args(argv)
    if (a.tls_key or a.tls_min_version or a.tls_max_version) and not a.tls_cert:
        p.error("--tls-key and --tls-*-version need --tls-cert")
    if not a.auth_mechs and (a.auth_user or a.auth_required or a.auth_old
                             or a.auth_old_only or a.auth_tls_only
                             or a.auth_reply or a.auth_misbehave
                             or a.auth_334_lines != 1
                             or a.auth_challenge_size):
        p.error("the --auth-* options need --auth-mechs")
    if a.auth_334_lines < 1:
        p.error("--auth-334-lines must be at least 1")
    if a.auth_challenge_size and (a.auth_challenge_size < 40
                                  or (a.auth_challenge_size - 4) % 4):
        p.error("--auth-challenge-size: at least 40, and N - 4 a multiple of 4")
    os.makedirs(a.dir, exist_ok=True)
    if a.unix:
        if os.path.exists(a.unix):
            os.unlink(a.unix)
        srv = ServerUnix(a.unix, SinkHandler)
    else:
        cls = Server6 if ":" in a.host else Server4
        srv = cls((a.host, a.port), SinkHandler)
    srv.state = SinkState(a)
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
    return 0


# ---------------------------------------------------------- client helpers


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines      # text after "NNN-" / "NNN "

    @property
    def text(self):
        return "\n".join("%d %s" % (self.code, l) for l in self.lines)

    def __repr__(self):
        return "Reply(%r)" % self.text


class Client:
    """Raw SMTP client: exact bytes out, replies parsed one at a time."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _line(self):
        while b"\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("connection closed by server")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            l = self._line()
            if len(l) < 3 or not l[:3].isdigit():
                raise ValueError("bad reply line %r" % l)
            lines.append(l[4:])
            if len(l) == 3 or l[3] == " ":
                return Reply(int(l[:3]), lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closes the connection (after any data)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
                self.buf += d
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def dotstuff(data):
    """Dot-stuff a message and add the end marker. data should end in
    CRLF (a CRLF is added otherwise)."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    out = []
    for line in data[:-2].split(b"\r\n"):
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out) + b"\r\n.\r\n"


def mail_rcpt(port, sender, to, helo="client.test", host="127.0.0.1"):
    """Greeting, EHLO, MAIL FROM:<sender>, RCPT TO:<to>, QUIT: the MAIL
    and RCPT replies."""
    c = Client(port, host)
    try:
        c.reply()
        c.cmd("EHLO " + helo)
        m = c.cmd("MAIL FROM:<%s>" % sender)
        r = c.cmd("RCPT TO:<%s>" % to)
        c.cmd("QUIT")
        return m, r
    finally:
        c.close()


def send_mail(port, sender, rcpts, data, host="127.0.0.1", helo="client.test"):
    """One transaction; returns the end-of-data Reply (or the first failing
    reply of MAIL/RCPT/DATA)."""
    c = Client(port, host)
    try:
        r = c.reply()
        if r.code != 220:
            return r
        r = c.cmd("EHLO " + helo)
        if r.code != 250:
            return r
        r = c.cmd("MAIL FROM:<%s>" % sender)
        if r.code != 250:
            return r
        for x in rcpts:
            r = c.cmd("RCPT TO:<%s>" % x)
            if r.code != 250:
                return r
        r = c.cmd("DATA")
        if r.code != 354:
            return r
        c.send(dotstuff(data))
        r = c.reply()
        try:
            c.cmd("QUIT")
        except (OSError, EOFError, ValueError):
            pass
        return r
    finally:
        c.close()


def queued_id(reply):
    m = re.search(r"queued as ([0-9A-F]{14})\b", reply.text)
    return m.group(1) if m else None


def send_numbered(port, n, lp, dom="example.net"):
    """n messages, one per session, from a@example.org to LPi@DOM, each
    with "X-Seq: i" (1..n); the queue IDs of those that got 250 (None for
    the others)."""
    ids = []
    for i in range(1, n + 1):
        r = send_mail(port, "a@example.org", ["%s%d@%s" % (lp, i, dom)],
                      b"Subject: %s %d\r\nX-Seq: %d\r\n\r\nmessage %d\r\n"
                      % (lp.encode(), i, i, i))
        ids.append(queued_id(r) if r.code == 250 else None)
    return ids


def seqs_in(contents):
    """Sorted X-Seq numbers of the messages whose bytes are given."""
    seqs = []
    for c in contents:
        m = re.search(rb"\r\nX-Seq: (\d+)\r\n", c)
        if m:
            seqs.append(int(m.group(1)))
    return sorted(seqs)


def split_received(eml):
    """(first Received header with its continuation lines, the rest)."""
    if not eml.startswith(b"Received:"):
        return None, eml
    end = 0
    while True:
        nl = eml.find(b"\n", end)
        if nl < 0:
            return eml, b""
        end = nl + 1
        if eml[end:end + 1] not in (b" ", b"\t"):
            return eml[:end], eml[end:]


def eml_files(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".eml"))


def wait_eml(d, n, secs=15):
    """Wait until d holds at least n messages; returns the file list."""
    end = time.time() + secs
    while True:
        fs = eml_files(d) if os.path.isdir(d) else []
        if len(fs) >= n or time.time() > end:
            return fs
        time.sleep(0.1)


def env(name):
    return os.environ[name]


def tap(cond, desc, *diag):
    """One TAP result for lib.sh's pytap (which numbers it)."""
    print(("ok - " if cond else "not ok - ") + desc, flush=True)
    if not cond:
        for d in diag:
            for line in str(d).splitlines()[:40]:
                print("# " + line, flush=True)
    return bool(cond)


def read_log():
    try:
        with open(env("LOG"), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def log_wait(regex, secs=15):
    """Wait for a maillog line matching regex; returns the match or None."""
    end = time.time() + secs
    while True:
        m = re.search(regex, read_log(), re.M)
        if m or time.time() > end:
            return m
        time.sleep(0.1)


def sink_msgs(d=None):
    """[(envelope text, content bytes)] of the messages stored in d."""
    d = d or env("SINKDIR")
    out = []
    for p in eml_files(d):
        with open(p[:-4] + ".env", encoding="utf-8", errors="replace") as f:
            e = f.read()
        with open(p, "rb") as f:
            out.append((e, f.read()))
    return out


def sink_find(pattern, d=None, secs=15):
    """Wait for a stored message whose envelope or content matches the
    bytes regex pattern; returns (envelope, content) or None."""
    end = time.time() + secs
    rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
    while True:
        for e, c in sink_msgs(d):
            if rx.search(e.encode()) or rx.search(c):
                return e, c
        if time.time() > end:
            return None
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(sink_main(sys.argv[1:]))
