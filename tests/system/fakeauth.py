#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""fakeauth.py - a small fake Dovecot auth server for the system tests.

Speaks the server side of the Dovecot auth protocol v1 (what Postfix's and
Sluice's "smtpd_sasl_type = dovecot" talk to) on a unix socket and/or a
loopback TCP port:

  fakeauth.py [--unix PATH] [--port N [--host 127.0.0.1]] [--pidfile F]
              [--record FILE] [--user NAME:PASS ...]
              [--delay-user NAME:SECONDS ...] [--jitter SECONDS]
              [misbehaviour options]

On connect the server sends its handshake at once:
  VERSION 1 2, MECH PLAIN plaintext, MECH LOGIN plaintext,
  MECH ANONYMOUS anonymous, MECH CRAM-MD5 dictionary active, SPID, CUID,
  COOKIE, DONE   (fields separated by TAB, lines end in LF)
and expects, like Dovecot, "VERSION 1 x" then "CPID pid" from the client
before any AUTH. Then:
  AUTH id MECH [params...] [resp=B64]  -> OK id user=NAME
                                        | FAIL id [user=NAME] [reason=..] [temp]
                                        | CONT id B64
  CONT id B64                           -> the same answers
PLAIN (authzid NUL authcid NUL password; without resp= the server sends
"CONT id" with an empty challenge), LOGIN ("Username:" and "Password:"
challenges; an initial response is the user name), ANONYMOUS (OK
user=anonymous), CRAM-MD5 (HMAC-MD5 over "<random.time@fakeauth>").
Users: alice:secret plus those given with --user. A wrong password gets
"FAIL id user=NAME" (no reason=, like Dovecot) unless --fail-reason.
Like Dovecot, a protocol violation by the client (no VERSION/CPID first,
a duplicate pending id, CONT for an unknown id, an unknown command) closes
the connection; it is recorded as "#error ...".

Answers are sent from timers, so several requests pending on one
connection may be answered out of order: --jitter S adds a random delay
of up to S seconds to every answer, --delay-user NAME:S delays the final
answer for that user by S seconds.

Misbehaviour (one at a time is the intended use):
  --version N          VERSION N 2 instead of 1 2 (then the rest as usual)
  --garbage            junk lines instead of the handshake (then silence)
  --no-done            the handshake without DONE (it never completes)
  --long-line [handshake|auth]
                       a 100 KB line: in the handshake (default, a MECH
                       line between VERSION and DONE) or as the answer to
                       every AUTH (a FAIL with a 100 KB reason)
  --stall-auth         AUTH and CONT are read and never answered
  --close-on-auth      the connection is closed when an AUTH arrives
  --ok-no-user         success is "OK id" without user=
  --cont-bad           every AUTH is answered "CONT id" with data that is
                       not base64 and holds a CR ("not base64\\rX-Injected:
                       yes")
  --fail-temp          every AUTH gets "FAIL id temp reason=..." (the
                       reason of --fail-reason, else Dovecot's "Internal
                       error occurred. Refer to server log for more
                       information.")
  --fail-reason TEXT   the reason= of FAIL answers
  --slow-handshake S   wait S seconds after accepting before the handshake

--record FILE appends, per connection number N (1, 2, ...):
  "N\\t#connect", "N\\t#handshake-done EPOCH" (after DONE was sent),
  "N\\t#error TEXT", "N\\t#closed"
and every line received from the client, byte for byte as received (the
LF removed, anything else kept, a CR too): "N\\tLINE". Lines Dovecot's
protocol allows never start with '#'.
--pidfile F is written once the listeners are bound (tests wait for it).
Stderr gets a timestamped trace. Standard library only.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import os
import random
import signal
import socket
import sys
import threading
import time

MAX_IN = 1 << 20
LONG = 100 * 1024
MECHS = [("PLAIN", "plaintext"), ("LOGIN", "plaintext"),
         ("ANONYMOUS", "anonymous"), ("CRAM-MD5", "dictionary\tactive")]
TEMP_REASON = "Internal error occurred. Refer to server log for more information."


def trace(msg):
    sys.stderr.write("%.3f fakeauth[%d]: %s\n" % (time.time(), os.getpid(), msg))
    sys.stderr.flush()


def b64ok(s):
    """Decoded bytes of strict base64 s (str or bytes), or None."""
    if isinstance(s, str):
        try:
            s = s.encode("ascii")
        except UnicodeEncodeError:
            return None
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None


def b64(b):
    return base64.b64encode(b).decode("ascii")


class Recorder:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def put(self, conn, data):
        if not self.path:
            return
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with self.lock:
            with open(self.path, "ab") as f:
                f.write(b"%d\t" % conn + data + b"\n")


class Request:
    def __init__(self, rid, mech):
        self.id = rid
        self.mech = mech
        self.step = 0
        self.user = None
        self.challenge = None


class Conn:
    """One client connection: a reader thread; answers go out through
    send() under a lock, possibly from timer threads."""

    def __init__(self, srv, sock, num):
        self.srv = srv
        self.a = srv.args
        self.sock = sock
        self.num = num
        self.wlock = threading.Lock()
        self.closed = False
        self.version = False
        self.cpid = False
        self.pending = {}  # id -> Request
        self.plock = threading.Lock()

    # -------------------------------------------------------------- output

    def send(self, line):
        if isinstance(line, str):
            line = line.encode("utf-8", "surrogateescape")
        with self.wlock:
            if self.closed:
                return
            try:
                self.sock.sendall(line + b"\n")
            except OSError as e:
                trace("conn %d: send failed: %s" % (self.num, e))
                return
        shown = line if len(line) < 200 else line[:200] + b"...(%d bytes)" % len(line)
        trace("conn %d > %r" % (self.num, shown))

    def close(self, why=None):
        with self.wlock:
            if self.closed:
                return
            self.closed = True
            if why:
                self.srv.rec.put(self.num, "#error " + why)
                trace("conn %d: closing: %s" % (self.num, why))
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.sock.close()

    def later(self, secs, fn, *args):
        if secs <= 0:
            fn(*args)
            return
        t = threading.Timer(secs, fn, args)
        t.daemon = True
        t.start()

    def delay_for(self, user):
        d = random.uniform(0, self.a.jitter) if self.a.jitter > 0 else 0.0
        return d + self.srv.delays.get(user or "", 0.0)

    # ----------------------------------------------------------- handshake

    def handshake(self):
        a = self.a
        if a.slow_handshake > 0:
            time.sleep(a.slow_handshake)
        if a.garbage:
            self.send(b"HELLO this is not dovecot")
            self.send(b"\x00\xff\xfe garbage \x01\x02")
            self.send(b"220 mail.example ESMTP")
            return
        self.send("VERSION\t%d\t2" % a.version)
        if a.long_line == "handshake":
            self.send("MECH\t" + "X" * LONG + "\tplaintext")
        for name, flags in MECHS:
            self.send("MECH\t%s\t%s" % (name, flags))
        self.send("SPID\t%d" % os.getpid())
        self.send("CUID\t%d" % self.num)
        self.send("COOKIE\t%s" % self.srv.cookie)
        if a.no_done:
            return
        self.send("DONE")
        self.srv.rec.put(self.num, "#handshake-done %.3f" % time.time())

    # --------------------------------------------------------------- input

    def run(self):
        rec = self.srv.rec
        rec.put(self.num, "#connect")
        trace("conn %d: connect" % self.num)
        try:
            self.handshake()
        except OSError as e:
            trace("conn %d: handshake: %s" % (self.num, e))
        buf = b""
        while not self.closed:
            try:
                d = self.sock.recv(65536)
            except OSError:
                break
            if not d:
                break
            buf += d
            while b"\n" in buf and not self.closed:
                line, buf = buf.split(b"\n", 1)
                rec.put(self.num, line)
                trace("conn %d < %r" % (self.num, line[:300]))
                try:
                    self.line(line)
                except Exception as e:  # a bug here must not kill the server
                    trace("conn %d: exception %r" % (self.num, e))
                    self.close("exception %r" % e)
            if len(buf) > MAX_IN:
                self.close("input line over %d bytes" % MAX_IN)
        rec.put(self.num, "#closed")
        trace("conn %d: closed" % self.num)
        self.close()

    def line(self, raw):
        if self.a.garbage:
            return  # read and ignore until the client goes
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.close("line is not UTF-8")
            return
        f = text.split("\t")
        cmd = f[0]
        if not self.version:
            if cmd != "VERSION" or len(f) < 3 or f[1] != "1":
                self.close("expected VERSION\\t1\\tx first, got %r" % text[:80])
                return
            self.version = True
            return
        if not self.cpid:
            if cmd != "CPID" or len(f) != 2 or not f[1].isdigit():
                self.close("expected CPID\\tpid after VERSION, got %r" % text[:80])
                return
            self.cpid = True
            return
        if cmd == "AUTH":
            self.auth(f)
        elif cmd == "CONT":
            self.cont(f)
        else:
            self.close("unknown command %r" % text[:80])

    def auth(self, f):
        a = self.a
        if len(f) < 3 or not f[1].isdigit():
            self.close("bad AUTH line")
            return
        rid, mech = f[1], f[2]
        params = f[3:]
        resp = None
        for p in params:
            if p.startswith("resp="):
                resp = p[5:]
        with self.plock:
            if rid in self.pending:
                self.close("duplicate id %s" % rid)
                return
            req = Request(rid, mech)
            self.pending[rid] = req
        if a.close_on_auth:
            self.close("close-on-auth")
            return
        if a.stall_auth:
            return
        if a.long_line == "auth":
            self.answer(req, "FAIL\t%s\treason=%s" % (rid, "L" * LONG), 0)
            return
        if a.fail_temp:
            self.answer(req, "FAIL\t%s\ttemp\treason=%s"
                        % (rid, a.fail_reason or TEMP_REASON), self.delay_for(None))
            return
        if a.cont_bad:
            self.later(self.delay_for(None), self.send,
                       b"CONT\t" + rid.encode() + b"\tnot base64\rX-Injected: yes")
            return
        if mech not in [m for m, _ in MECHS]:
            self.answer(req, "FAIL\t%s\treason=Unsupported authentication mechanism" % rid, 0)
            return
        data = None
        if resp is not None:
            data = b64ok(resp)
            if data is None:
                self.answer(req, "FAIL\t%s\treason=Invalid base64 data in initial response" % rid, 0)
                return
        self.step(req, data)

    def cont(self, f):
        if len(f) != 3 or not f[1].isdigit():
            self.close("bad CONT line")
            return
        rid = f[1]
        with self.plock:
            req = self.pending.get(rid)
        if req is None:
            self.close("CONT for unknown id %s" % rid)
            return
        if self.a.stall_auth:
            return
        data = b64ok(f[2])
        if data is None:
            self.answer(req, "FAIL\t%s\treason=Invalid base64 data in continued response" % rid, 0)
            return
        self.step(req, data)

    # --------------------------------------------------------- mechanisms

    def challenge(self, req, data):
        self.later(self.delay_for(None), self.send, "CONT\t%s\t%s" % (req.id, b64(data)))

    def step(self, req, data):
        """data: decoded client response, None when there was none."""
        m = req.mech
        req.step += 1
        if m == "PLAIN":
            if data is None:
                if req.step == 1:
                    self.challenge(req, b"")
                    return
                data = b""
            parts = data.split(b"\0")
            if len(parts) != 3:
                self.fail(req, None, "Invalid input")
                return
            authz, user, pw = (p.decode("utf-8", "replace") for p in parts)
            if authz and authz != user:
                self.fail(req, user, None)
                return
            self.check(req, user, pw)
        elif m == "LOGIN":
            if req.user is None:
                if not data:
                    if req.step > 1:
                        self.fail(req, None, "Invalid input")
                        return
                    self.challenge(req, b"Username:")
                    return
                req.user = data.decode("utf-8", "replace")
                self.challenge(req, b"Password:")
                return
            self.check(req, req.user, (data or b"").decode("utf-8", "replace"))
        elif m == "ANONYMOUS":
            if data is None and req.step == 1:
                self.challenge(req, b"")
                return
            self.ok(req, "anonymous")
        elif m == "CRAM-MD5":
            if req.challenge is None:
                req.challenge = ("<%d.%d@fakeauth>" % (random.randrange(1 << 30),
                                                      int(time.time()))).encode()
                self.challenge(req, req.challenge)
                return
            try:
                user, digest = (data or b"").decode().rsplit(" ", 1)
            except ValueError:
                self.fail(req, None, "Invalid input")
                return
            pw = self.srv.users.get(user)
            want = (hmac.new(pw.encode(), req.challenge, hashlib.md5).hexdigest()
                    if pw is not None else None)
            if want is not None and hmac.compare_digest(want, digest.lower()):
                self.ok(req, user)
            else:
                self.fail(req, user, self.a.fail_reason)

    def check(self, req, user, pw):
        if self.srv.users.get(user) == pw:
            self.ok(req, user)
        else:
            self.fail(req, user, self.a.fail_reason)

    def ok(self, req, user):
        if self.a.ok_no_user:
            line = "OK\t%s" % req.id
        else:
            line = "OK\t%s\tuser=%s" % (req.id, user)
        self.answer(req, line, self.delay_for(user))

    def fail(self, req, user, reason):
        line = "FAIL\t%s" % req.id
        if user:
            line += "\tuser=%s" % user
        if reason:
            line += "\treason=%s" % reason
        self.answer(req, line, self.delay_for(user))

    def answer(self, req, line, secs):
        """A final answer: the request stops being pending when sent."""
        def go():
            with self.plock:
                self.pending.pop(req.id, None)
            self.send(line)
        self.later(secs, go)


class Server:
    def __init__(self, args):
        self.args = args
        self.rec = Recorder(args.record)
        self.cookie = "%032x" % random.getrandbits(128)
        self.users = {"alice": "secret"}
        for u in args.user:
            name, _, pw = u.partition(":")
            self.users[name] = pw
        self.delays = {}
        for d in args.delay_user:
            name, _, secs = d.rpartition(":")
            self.delays[name] = float(secs)
        self.num = 0
        self.nlock = threading.Lock()
        self.socks = []

    def listen(self):
        a = self.args
        if a.unix:
            try:
                os.unlink(a.unix)
            except FileNotFoundError:
                pass
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(a.unix)
            s.listen(128)
            self.socks.append(s)
        if a.port is not None:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((a.host, a.port))
            s.listen(128)
            self.socks.append(s)

    def accept_loop(self, ls):
        while True:
            try:
                s, _ = ls.accept()
            except OSError:
                return
            with self.nlock:
                self.num += 1
                n = self.num
            c = Conn(self, s, n)
            t = threading.Thread(target=c.run, daemon=True)
            t.start()


def main(argv):
    p = argparse.ArgumentParser(description="fake Dovecot auth server")
    p.add_argument("--unix", help="listen on this unix socket path")
    p.add_argument("--port", type=int, help="listen on HOST:PORT (TCP)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--pidfile")
    p.add_argument("--record", help="append every line received to FILE")
    p.add_argument("--user", action="append", default=[], metavar="NAME:PASS")
    p.add_argument("--delay-user", action="append", default=[],
                   metavar="NAME:SECONDS")
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--version", type=int, default=1,
                   help="major version announced (1)")
    p.add_argument("--garbage", action="store_true")
    p.add_argument("--no-done", action="store_true")
    p.add_argument("--long-line", nargs="?", const="handshake",
                   choices=("handshake", "auth"))
    p.add_argument("--stall-auth", action="store_true")
    p.add_argument("--close-on-auth", action="store_true")
    p.add_argument("--ok-no-user", action="store_true")
    p.add_argument("--cont-bad", action="store_true")
    p.add_argument("--fail-temp", action="store_true")
    p.add_argument("--fail-reason")
    p.add_argument("--slow-handshake", type=float, default=0.0,
                   metavar="SECONDS")
    a = p.parse_args(argv)
    if not a.unix and a.port is None:
        p.error("give --unix PATH and/or --port N")
    srv = Server(a)
    srv.listen()

    def bye(*_):
        if a.unix:
            try:
                os.unlink(a.unix)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGINT, bye)
    for ls in srv.socks:
        threading.Thread(target=srv.accept_loop, args=(ls,), daemon=True).start()
    if a.pidfile:
        tmp = a.pidfile + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % os.getpid())
        os.rename(tmp, a.pidfile)
    trace("listening: %s" % ", ".join(
        ([a.unix] if a.unix else []) + (["%s:%d" % (a.host, a.port)] if a.port is not None else [])))
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
