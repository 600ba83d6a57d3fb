#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_aliases.sh - alias_maps in local delivery, as Postfix's local(8) and
# aliases(5) do it (the database made by Postfix's postalias):
#   - an alias to a local user: the user's Maildir, with X-Original-To:
#     and Delivered-To:, logged to=<user>, orig_to=<alias>;
#   - a list with local users and a remote address: each Maildir, and one
#     forwarded copy (Delivered-To: the alias on top, the same sender),
#     logged "forwarded as ID";
#   - an alias that names itself keeps a copy; a loop of two aliases ends
#     in a mailbox;
#   - "|command": the message (From_ line first) on its stdin, Postfix's
#     environment; exit 75 defers, exit 1 bounces with the output, a
#     command past command_time_limit is killed and bounced;
#   - "/file" (mbox, ">From " quoting) and "/dir/" (Maildir);
#   - ":include:" files, where commands are not allowed by default;
#   - a message that already has Delivered-To: the alias bounces with
#     5.4.6 mail forwarding loop.
. "$(dirname "$0")/lib.sh"
need_binaries
POSTALIAS=$(PATH=$PATH:/usr/sbin:/sbin command -v postalias) ||
    skip_all "postalias not installed (Debian package postfix)"
plan 12
setup

cat >"$T/pipe.sh" <<'S'
#!/bin/sh
FDS=$(ls /proc/self/fd | tr '\n' ' ')
export FDS
{ env | sort; echo ---; cat; } >"$1.tmp" && mv "$1.tmp" "$1"
S
printf '%s\n' "alice" "# a comment" "erin@remote.example" "|/bin/true" \
    >"$T/list"
printf '%s\n' "alice" "frank@remote.example" >"$T/list2"
cat >"$T/aliases" <<A
root: alice
postmaster: root
team: alice, bob, carol@remote.example
self: self, dave
pipe: "|/bin/sh $T/pipe.sh $T/pipe.out"
file: $T/file.mbox
mdir: $T/md/
inc: :include:$T/list2
incmd: :include:$T/list
loopa: loopb
loopb: loopa
tempfail: "|exit 75"
fail: "|echo oops; exit 1"
slow: "|sleep 30"
devnull: /dev/null
A
mkdir -p "$T/pf"
: >"$T/pf/main.cf"
"$POSTALIAS" -c "$T/pf" hash:"$T/aliases" 2>"$T/postalias.out" ||
    diag "postalias failed: $(cat "$T/postalias.out")"

write_conf "alias_maps = hash:$T/aliases" "command_time_limit = 2s" \
    "myorigin = localhost"
start_ok
start_sink || diag "the sink did not start"

pytap <<'PY'
import glob, os, re, time
from sink import *

P = int(env("PORT"))
T = env("T")

def maildir(d, pat, secs=15):
    end = time.time() + secs
    while time.time() < end:
        for f in glob.glob(os.path.join(d, "new", "*")):
            b = open(f, "rb").read()
            if re.search(pat, b):
                return b
        time.sleep(0.1)
    return None

def box(user, pat, secs=15):
    return maildir(os.path.join(T, "mail", user), pat, secs)

def send(to, body, extra=b""):
    return send_mail(P, "a@example.org", to if isinstance(to, list) else [to],
                     extra + b"Subject: t\r\n\r\n" + body + b"\r\n")

r = send("root@localhost", b"for root")
b = box("alice", rb"for root")
l = log_wait(r"to=<alice@localhost>, orig_to=<root@localhost>, relay=local, "
             r".*dsn=2\.0\.0, status=sent \(delivered to maildir\)", 10)
tap(r.code == 250 and b and b.startswith(
    b"Return-Path: <a@example.org>\nX-Original-To: root@localhost\n"
    b"Delivered-To: alice@localhost\n") and l,
    "root -> alice: alice's Maildir, X-Original-To: root, logged "
    "to=<alice@localhost>, orig_to=<root@localhost>", r, b)

r = send("team@localhost", b"for the team")
got = sink_find(rb"for the team", secs=15)
l = log_wait(r"to=<team@localhost>, relay=local, .*status=sent "
             r"\(forwarded as [0-9A-F]+\)", 10)
tap(r.code == 250 and box("alice", rb"for the team")
    and box("bob", rb"for the team") and got
    and "carol@remote.example" in got[0]
    and re.search(rb"^Delivered-To: team@localhost\r?\n", got[1]) and l,
    "team -> alice, bob and carol@remote.example: two Maildirs and a "
    "forwarded copy with Delivered-To: team@localhost, logged forwarded as "
    "ID", r, got)

r = send(["self@localhost", "loopa@localhost"], b"self and loop")
tap(r.code == 250 and box("self", rb"self and loop")
    and box("dave", rb"self and loop") and box("loopa", rb"self and loop"),
    "self: self, dave keeps a copy for self; loopa -> loopb -> loopa ends "
    "in loopa's Maildir", r)

r = send("pipe@localhost", b"From the pipe\r\nline two")
out = None
for _ in range(100):
    if os.path.exists(os.path.join(T, "pipe.out")):
        out = open(os.path.join(T, "pipe.out"), "rb").read()
        break
    time.sleep(0.1)
envs, _, body = (out or b"").partition(b"---\n")
tap(r.code == 250 and out and b"RECIPIENT=pipe@localhost\n" in envs
    and b"SENDER=a@example.org\n" in envs and b"LOCAL=pipe\n" in envs
    and b"FDS=0 1 2 3 \n" in envs
    and re.match(rb"From a@example\.org  \w\w\w \w\w\w [ \d]\d "
                 rb"\d\d:\d\d:\d\d \d{4}\nReturn-Path: <a@example\.org>\n"
                 rb"Delivered-To: pipe@localhost\n", body)
    and body.endswith(b"\nFrom the pipe\nline two\n")
    and log_wait(r"to=<pipe@localhost>, relay=local, .*status=sent "
                 r"\(delivered to command: /bin/sh .*pipe\.sh", 5),
    "|command: the message with a From_ line on stdin, RECIPIENT, SENDER, "
    "LOCAL in its environment, no descriptor of the queue manager's open, "
    "logged delivered to command", r, out)

r = send(["tempfail@localhost"], b"temp")
l1 = log_wait(r"to=<tempfail@localhost>, relay=local, .*dsn=4\.3\.0, "
              r"status=deferred \(temporary failure\)", 10)
r2 = send(["fail@localhost"], b"fails")
l2 = log_wait(r"to=<fail@localhost>, relay=local, .*dsn=5\.3\.0, "
              r"status=bounced \(Command died with status 1: \"echo oops; "
              r"exit 1\"\. Command output: oops\)", 10)
tap(r.code == 250 and r2.code == 250 and l1 and l2,
    "exit 75 defers (4.3.0 temporary failure); exit 1 bounces with the "
    "command and its output, as Postfix says it", r, r2)

r = send(["slow@localhost"], b"slow")
l = log_wait(r"to=<slow@localhost>, relay=local, .*dsn=5\.3\.0, "
             r"status=bounced \(Command time limit exceeded: \"sleep 30\"\)",
             15)
tap(r.code == 250 and l,
    "a command past command_time_limit (2s) is killed and bounced", r)

r = send(["file@localhost"], b"From here on\r\nto the file")
mb = None
for _ in range(100):
    p = os.path.join(T, "file.mbox")
    if os.path.exists(p) and os.path.getsize(p) > 0:
        mb = open(p, "rb").read()
        break
    time.sleep(0.1)
tap(r.code == 250 and mb and mb.startswith(b"From a@example.org  ")
    and b"\nDelivered-To: file@localhost\n" in mb
    and mb.endswith(b"\n>From here on\nto the file\n\n"),
    "/file: mbox form (From_ line, >From quoting, a blank line after)", r,
    mb)

r = send(["mdir@localhost"], b"to a maildir")
r2 = send(["devnull@localhost"], b"discard me")
l = log_wait(r"to=<devnull@localhost>, relay=local, .*dsn=2\.0\.0, "
             r"status=sent \(delivered to file: /dev/null\)", 10)
tap(r.code == 250 and maildir(os.path.join(T, "md"), rb"to a maildir")
    and r2.code == 250 and l,
    "/dir/: a Maildir; /dev/null: discarded, logged as sent", r, r2)

r = send(["inc@localhost"], b"included")
got = sink_find(rb"included", secs=15)
tap(r.code == 250 and box("alice", rb"included") and got
    and "frank@remote.example" in got[0],
    ":include: file: its addresses, local and remote", r, got)

r = send(["incmd@localhost"], b"no commands")
l = log_wait(r"to=<incmd@localhost>, relay=local, .*dsn=5\.7\.1, "
             r"status=bounced \(mail to command is restricted\)", 10)
tap(r.code == 250 and l and not box("alice", rb"no commands", secs=1),
    "a command in an :include: file (allow_mail_to_commands = alias, "
    "forward): bounced 5.7.1 mail to command is restricted, nothing "
    "delivered", r)

r = send(["root@localhost"], b"looping",
         extra=b"Delivered-To: root@localhost\r\n")
l = log_wait(r"to=<root@localhost>, relay=local, .*dsn=5\.4\.6, "
             r"status=bounced \(mail forwarding loop for root@localhost\)",
             10)
tap(r.code == 250 and l and not box("alice", rb"looping", secs=1),
    "a message with Delivered-To: root@localhost for root: 5.4.6 mail "
    "forwarding loop", r)
PY
stop_sluiced
