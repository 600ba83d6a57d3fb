#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_mailbox_command.sh - mailbox_command, as Postfix's local(8) uses it
# (procmail, dovecot-lda): a local mailbox's mail goes to the command's
# standard input instead of the Maildir:
#   - the command runs through /bin/sh with Postfix's environment (USER
#     the mailbox's user, RECIPIENT, EXTENSION...); "$EXTENSION" in the
#     value is the shell's (a raw parameter: not taken as a main.cf
#     parameter); the message comes with its From_ line and Delivered-To;
#     logged status=sent (delivered to command: CMD);
#   - aliases are expanded first: an alias of bob reaches bob's command;
#   - exit 75 (EX_TEMPFAIL) defers, with the command's output.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 4
setup

mkdir -p "$T/out"
cat >"$T/deliver.sh" <<EOF
#!/bin/sh
# a mailbox_command: stdin to $T/out/\$USER, the environment beside it
[ "\$USER" = fail ] && { echo "mailbox busy"; exit 75; }
cat >"$T/out/\$USER"
echo "USER=\$USER RECIPIENT=\$RECIPIENT EXTENSION=\$EXTENSION ARG=\$1" >"$T/out/\$USER.env"
EOF
chmod 755 "$T/deliver.sh"
write_conf "mailbox_command = $T/deliver.sh \"\$EXTENSION\"" \
    "recipient_delimiter = +" \
    "alias_maps = inline:{ team=bob@localhost }"
start_ok

pytap <<'PY'
import os, re
from sink import *

P = int(env("PORT"))
T = env("T")
out = os.path.join(T, "out")

r = send_mail(P, "s@example.org", ["bob+news@localhost"],
              b"Subject: to the command\r\n\r\nhello\r\n")
qid = queued_id(r)
l = log_wait(r"postfix/local\[\d+\]: %s: to=<bob\+news@localhost>, relay=local, "
             r".*status=sent \(delivered to command: %s \"\$EXTENSION\"\)"
             % (qid, re.escape(os.path.join(T, "deliver.sh"))), 10)
body = open(os.path.join(out, "bob"), "rb").read() if l else b""
envl = open(os.path.join(out, "bob.env")).read().strip() if l else ""
tap(l and body.startswith(b"From s@example.org ")
    and b"Delivered-To: bob+news@localhost" in body
    and b"Subject: to the command" in body
    and envl == "USER=bob RECIPIENT=bob+news@localhost EXTENSION=news ARG=news",
    "the mailbox's mail on the command's stdin (From_ line, Delivered-To), "
    "USER the mailbox's user, $EXTENSION from the shell", r, l, envl)

os.unlink(os.path.join(out, "bob"))
r = send_mail(P, "s@example.org", ["team@localhost"],
              b"Subject: via the alias\r\n\r\nhi team\r\n")
l = log_wait(r"%s: to=<[a-z]+@localhost>.*status=sent \(delivered to "
             r"command: " % queued_id(r), 10)
tap(l and b"Subject: via the alias" in open(os.path.join(out, "bob"), "rb").read(),
    "an alias of bob: expanded first, then bob's command", r)

r = send_mail(P, "s@example.org", ["fail@localhost"],
              b"Subject: busy\r\n\r\nx\r\n")
qid = queued_id(r)
tap(log_wait(r"%s: to=<fail@localhost>, .*status=deferred \(.*mailbox busy"
             % qid, 10),
    "exit 75: deferred, with the command's output", r)
PY
stop_sluiced
result
