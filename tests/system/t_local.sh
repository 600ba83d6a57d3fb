#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_local.sh - local delivery to Maildir (mail_spool_directory ends in
# "/"): one file in DIR/mail/USER/new/ per recipient, Return-Path and
# Delivered-To first, LF line endings, the log line relay=local.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 12
setup
write_conf
start_ok

pytap <<'PY'
import glob
from sink import *
port = int(env("PORT"))
mail = os.path.join(env("T"), "mail")
m1 = (b"From: a@example.org\r\nTo: user1@localhost\r\nSubject: local one\r\n"
      b"Message-ID: <local-1@example.org>\r\n\r\nhello user1\r\n.dot line\r\n")
r = send_mail(port, "a@example.org", ["user1@localhost"], m1)
tap(r.code == 250 and queued_id(r), "mail to user1@localhost queued", r)

def wait_files(user, n=1, secs=15):
    end = time.time() + secs
    while True:
        fs = sorted(glob.glob(os.path.join(mail, user, "new", "*")))
        if len(fs) >= n or time.time() > end:
            return fs
        time.sleep(0.1)

fs = wait_files("user1")
tap(len(fs) == 1, "one file in mail/user1/new/", fs)
data = open(fs[0], "rb").read() if fs else b""
lines = data.split(b"\n")
tap(lines[:2] == [b"Return-Path: <a@example.org>", b"Delivered-To: user1@localhost"],
    "starts with Return-Path: <a@example.org> and Delivered-To: user1@localhost", data[:300])
tap(b"\r" not in data, "LF line endings (no CR)", data[:300])
tap(data.endswith(m1.replace(b"\r\n", b"\n")), "ends with the message as sent (LF, unstuffed)", data)
tap(b"\nReceived: from client.test (unknown [127.0.0.1])\n\tby mx.test.example (Sluice) with ESMTP id "
    + queued_id(r).encode() in data, "has the Received header with the queue ID", data[:400])
tap(all(os.path.isdir(os.path.join(mail, "user1", d)) for d in ("cur", "new", "tmp")),
    "mail/user1 is a Maildir (cur new tmp)")

m2 = b"From: a@example.org\r\nSubject: local two\r\n\r\nfor two users\r\n"
r = send_mail(port, "a@example.org", ["user2@localhost", "user3@localhost"], m2)
f2, f3 = wait_files("user2"), wait_files("user3")
tap(len(f2) == 1 and len(f3) == 1, "two recipients: one file in each maildir", f2, f3)
d2 = open(f2[0], "rb").read() if f2 else b""
d3 = open(f3[0], "rb").read() if f3 else b""
tap(b"\nDelivered-To: user2@localhost\n" in b"\n" + d2 and b"\nDelivered-To: user3@localhost\n" in b"\n" + d3
    and d2.endswith(b"for two users\n") and d3.endswith(b"for two users\n"),
    "each copy has its own Delivered-To and the body", d2[:200], d3[:200])
m = log_wait(r"to=<user1@localhost>, relay=local, .*status=sent \(delivered to maildir\)")
tap(m, "log: to=<user1@localhost>, relay=local, ... status=sent (delivered to maildir)")
PY
check "queue is empty" wait_for 10 queue_empty
