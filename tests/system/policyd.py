#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""policyd.py - a scripted Postfix policy server for the system tests.

  policyd.py (--port N | --unix PATH) --log FILE [--pidfile F]

Speaks Postfix's policy delegation protocol (SMTPD_POLICY_README): reads
"name=value" lines up to an empty line, answers "action=...", an empty
line, and reads the next request on the same connection. Each request is
appended to the log as one JSON line: {"conn": N, "attrs": {...}} (N
counts connections from 1). The answer depends on the recipient's local
part (at DATA: on recipient_count):
  dunno*    DUNNO                      ok*      OK
  reject*   REJECT no thanks           defer*   DEFER_IF_PERMIT Greylisted, try later
  code*     550 5.7.2 over quota       prepend* PREPEND X-Policy: seen by policyd
  slow*     DUNNO, 0.5 s later         hang*    nothing, ever (the connection stays)
  close*    the connection is closed without an answer
  closeonce* closed the first time, DUNNO after
  garbage*  "this is not an attribute" and an empty line
  big*      an action of 9000 bytes
  at DATA with recipient_count=2: REJECT two is too many
  at END-OF-MESSAGE: a size over 2000: 552 5.2.2 Quota exceeded (size N);
    a sender beginning with "hold": HOLD quota review
  anything else: DUNNO
SIGTERM: exit.
"""
import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time

LOCK = threading.Lock()
STATE = {"conns": 0, "closeonce": 0}


def answer(attrs):
    if attrs.get("protocol_state") == "END-OF-MESSAGE":
        if int(attrs.get("size", "0")) > 2000:
            return "552 5.2.2 Quota exceeded (size %s)" % attrs["size"]
        if attrs.get("sender", "").startswith("hold"):
            return "HOLD quota review"
        return "DUNNO"
    if attrs.get("protocol_state") == "DATA":
        return "REJECT two is too many" if attrs.get("recipient_count") == "2" else "DUNNO"
    lp = attrs.get("recipient", "").split("@")[0]
    table = [
        ("dunno", "DUNNO"), ("ok", "OK"), ("reject", "REJECT no thanks"),
        ("defer", "DEFER_IF_PERMIT Greylisted, try later"),
        ("code", "550 5.7.2 over quota"),
        ("prepend", "PREPEND X-Policy: seen by policyd"),
    ]
    for k, v in table:
        if lp.startswith(k):
            return v
    return "DUNNO"


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        with LOCK:
            STATE["conns"] += 1
            conn = STATE["conns"]
        while True:
            attrs = {}
            while True:
                line = self.rfile.readline(65536)
                if not line:
                    return
                line = line.decode("utf-8", "replace").rstrip("\n")
                if line == "":
                    break
                k, _, v = line.partition("=")
                attrs[k] = v
            with LOCK:
                with open(ARGS.log, "a") as f:
                    f.write(json.dumps({"conn": conn, "attrs": attrs}) + "\n")
            lp = attrs.get("recipient", "").split("@")[0]
            if lp.startswith("closeonce"):
                with LOCK:
                    STATE["closeonce"] += 1
                    first = STATE["closeonce"] == 1
                if first:
                    return
                self.wfile.write(b"action=DUNNO\n\n")
                continue
            if lp.startswith("close"):
                return
            if lp.startswith("hang"):
                time.sleep(3600)
                return
            if lp.startswith("garbage"):
                self.wfile.write(b"this is not an attribute\n\n")
                continue
            if lp.startswith("big"):
                self.wfile.write(b"action=DUNNO " + b"x" * 9000 + b"\n\n")
                continue
            if lp.startswith("slow"):
                time.sleep(0.5)
            self.wfile.write(("action=%s\n\n" % answer(attrs)).encode())


class TCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Unix(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int)
    p.add_argument("--unix")
    p.add_argument("--log", required=True)
    p.add_argument("--pidfile")
    ARGS = p.parse_args()
    if ARGS.unix:
        try:
            os.unlink(ARGS.unix)
        except FileNotFoundError:
            pass
        srv = Unix(ARGS.unix, Handler)
    else:
        srv = TCP(("127.0.0.1", ARGS.port), Handler)
    if ARGS.pidfile:
        with open(ARGS.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
