#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_sendmail.sh - the sendmail command (the sluice binary invoked as
# "sendmail", MAIL_CONFIG naming the configuration), as scripts and cron
# use Postfix's:
#   - recipients on the command line, -f, -F: delivered with From:, Date:,
#     Message-Id: and a Received: line added, a bare name @myorigin;
#   - -t: To:, Cc:, Bcc: give the recipients, Bcc: is removed; a remote
#     recipient is relayed;
#   - a line "." ends the message, unless -i; with -i it is delivered;
#   - the message goes through the filters: EICAR is refused, exit 69,
#     with the reply on stderr;
#   - a recipient refused (550) is said, exit 67, the others get it;
#   - -bp lists the queue (mailq);
#   - with the daemon stopped: exit 75, "is sluiced running?";
#   - bad input: a message over message_size_limit (65), no recipient or
#     an unknown option (64), each with its reason.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 9
setup
ln -s "$SLUICE" "$T/sendmail"
SM=$T/sendmail
export SM
write_conf "myorigin = localhost" "message_size_limit = 100000" \
    "local_recipient_maps = inline:{ alice=x, bob=x, carol=x, dave=x, root=x }"
start_ok
start_sink || diag "the sink did not start"
export MAIL_CONFIG=$CONF

pytap <<'PY'
import glob, os, re, subprocess, time
from sink import *

T = env("T")
SM = env("SM")

def sm(args, data):
    p = subprocess.run([SM] + args, input=data, capture_output=True,
                       timeout=60)
    return p.returncode, p.stderr.decode(errors="replace")

def box(user, pat, secs=15):
    end = time.time() + secs
    while time.time() < end:
        for f in glob.glob(os.path.join(T, "mail", user, "new", "*")):
            b = open(f, "rb").read()
            if re.search(pat, b):
                return b
        time.sleep(0.1)
    return None

rc, err = sm(["-f", "cron@example.org", "-F", "Cron Daemon", "alice"],
             b"Subject: nightly\n\nall is well\n")
b = box("alice", rb"all is well")
tap(rc == 0 and b and b"\nFrom: \"Cron Daemon\" <cron@example.org>\n" in b
    and re.search(rb"\nReceived: by mx\.test\.example \(Sluice, from userid "
                  rb"\d+\);\n\t", b)
    and re.search(rb"\nDate: \w\w\w, ", b) and b"\nMessage-Id: <" in b
    and b"Return-Path: <cron@example.org>" in b,
    "sendmail -f -F alice: delivered to alice@localhost with From:, Date:, "
    "Message-Id: and Received: added", rc, err, b)

rc, err = sm(["-t"], b"To: Bob <bob@localhost>, carol\nCc: x@remote.example"
             b"\nBcc: dave@localhost\nSubject: t\n\nextracted\n")
got = sink_find(rb"extracted", secs=15)
b = box("bob", rb"extracted")
tap(rc == 0 and b and box("carol", rb"extracted")
    and box("dave", rb"extracted") and got
    and "x@remote.example" in got[0] and b"Bcc:" not in b
    and b"Bcc:" not in got[1],
    "-t: To:, Cc: and Bcc: recipients (local and relayed), Bcc: removed", rc,
    err, got)

rc, err = sm(["root"], b"Subject: dots\n\nbefore\n.\nafter\n")
b = box("root", rb"before", secs=10)
rc2, err2 = sm(["-i", "root"], b"Subject: dots2\n\none\n.\ntwo\n")
b2 = box("root", rb"one", secs=10)
tap(rc == 0 and b and b"after" not in b and rc2 == 0 and b2
    and b2.endswith(b"\none\n.\ntwo\n"),
    "a line '.' ends the message; with -i it is part of it", rc, err, rc2,
    err2)

EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE"
         b"!$H+H*")
rc, err = sm(["alice"], b"Subject: virus\n\n" + EICAR + b"\n")
tap(rc == 69 and re.search(r"refused the message: 554 5\.7\.1 .*Infected",
                           err),
    "EICAR through sendmail: refused by the scanner, exit 69, the reply on "
    "stderr", rc, err)

rc, err = sm(["nosuch", "bob"], b"Subject: partly\n\npartly\n")
tap(rc == 67 and "sendmail: nosuch@localhost: 550 5.1.1" in err
    and box("bob", rb"partly"),
    "an unknown recipient: said on stderr, exit 67; bob gets the message", rc,
    err)

p = subprocess.run([SM, "-bp"], capture_output=True, timeout=30)
tap(p.returncode == 0 and (b"Mail queue is empty" in p.stdout
                           or b"Requests" in p.stdout),
    "sendmail -bp lists the queue", p)
PY
stop_sluiced
out=$(printf 'Subject: x\n\nx\n' | "$SM" alice 2>&1)
rc=$?
like "with sluiced stopped: exit 75 and why" "$rc:$out" \
    "^75:sendmail: fatal: cannot connect to the Sluice SMTP service at 127\.0\.0\.1 port [0-9]+: .*is sluiced running\?"
o1=$(head -c 300000 /dev/zero | tr '\0' 'x' | "$SM" alice 2>&1)
r1=$?
o2=$(printf 'Subject: x\n\nx\n' | "$SM" 2>&1)
r2=$?
o3=$(printf 'x\n' | "$SM" -Z alice 2>&1)
r3=$?
[ "$r1:$o1" = "65:sendmail: fatal: message is larger than message_size_limit (100000 bytes)" ] &&
    [ "$r2:$o2" = "64:sendmail: fatal: no recipients specified" ] &&
    [ "$r3:$o3" = "64:sendmail: fatal: unknown option: -Z" ]
result "bad input: too big (65), no recipient and an unknown option (64), each said" $?
