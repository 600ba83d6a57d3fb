#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_lmtp_dovecot.sh - LMTP delivery to a real Dovecot (dovecot-lmtpd), the
# way a Postfix site hands its mail to Dovecot:
#   - local_transport = lmtp:unix:PATH: alice@localhost lands in her
#     Maildir, logged status=sent with Dovecot's "Saved" reply;
#   - transport_maps lmtp:[127.0.0.1]:PORT (Dovecot's inet listener) for
#     another domain: delivered to the same user (auth_username_format
#     %Ln);
#   - a user Dovecot does not know: bounced with Dovecot's 550 5.1.1
#     "(in reply to RCPT TO command)";
#   - reject_unverified_recipient against Dovecot: the probe asks it
#     (LHLO, MAIL, RCPT, QUIT) and the unknown user is refused in the SMTP
#     dialogue, 550 5.1.1 ... undeliverable address: host ... said: 550
#     5.1.1 ... User doesn't exist; a known one gets 250.
# The Dovecot instance lives in $T only (its own base_dir, no system
# configuration); mail is written as the test's user, or as nobody when
# the test runs as root (Dovecot refuses to deliver as uid 0).
. "$(dirname "$0")/lib.sh"
need_binaries
PATH=$PATH:/usr/sbin:/sbin
command -v dovecot >/dev/null 2>&1 ||
    skip_all "dovecot not installed (Debian package dovecot-core)"
[ -x /usr/lib/dovecot/lmtp ] ||
    skip_all "Dovecot's LMTP server not installed (Debian package dovecot-lmtpd)"
plan 6
setup

D=$T/dovecot
mkdir -p "$D/mail" "$D/run"
LMTPPORT=$(free_port)
export D LMTPPORT
if [ "$(id -u)" = 0 ]; then
    MUID=$(id -u nobody) MGID=$(id -g nobody)
else
    MUID=$(id -u) MGID=$(id -g)
fi
chown "$MUID:$MGID" "$D/mail"
chmod 711 "$T" "$D" # the mail user (nobody) walks down to its Maildir
printf 'alice:{PLAIN}x:%s:%s::%s/mail/alice\n' "$MUID" "$MGID" "$D" >"$D/users"
cat >"$D/dovecot.conf" <<EOF
# written by tests/system/t_lmtp_dovecot.sh
protocols = lmtp
base_dir = $D/run
state_dir = $D/state
instance_name = sluice-lmtp-test
log_path = $D/dovecot.log
info_log_path = $D/dovecot.log
ssl = no
default_internal_user = $(id -un)
default_internal_group = $(id -gn)
default_login_user = $(id -un)
first_valid_uid = 1
mail_location = maildir:~/Maildir
auth_username_format = %Ln
passdb {
  driver = passwd-file
  args = $D/users
}
userdb {
  driver = passwd-file
  args = $D/users
}
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service lmtp {
  unix_listener $D/lmtp {
    mode = 0666
  }
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTPPORT
  }
}
EOF
dovecot -F -c "$D/dovecot.conf" >>"$D/dovecot.out" 2>&1 &
DOVEPID=$!
_T_PIDS="$_T_PIDS $DOVEPID"
wait_for 15 test -S "$D/lmtp" && wait_port 127.0.0.1 "$LMTPPORT" 10 ||
    diag "dovecot did not start: $(tail -n 20 "$D/dovecot.out" "$D/dovecot.log" 2>/dev/null)"

SVCS=""
svc vrfy smtpd_recipient_restrictions=reject_unverified_recipient \
    unverified_recipient_reject_code=550
MASTER_EXTRA=$SVCS
write_conf "local_transport = lmtp:unix:$D/lmtp" \
    "transport_maps = inline:{ mail.example=lmtp:[127.0.0.1]:$LMTPPORT }" \
    "relay_domains = mail.example" \
    "address_verify_poll_delay = 1s"
start_ok

pytap <<'PY'
import glob, os, re, time
from sink import *

P = int(env("PORT"))
D = env("D")

def maildir_has(subject, secs=10):
    end = time.time() + secs
    while time.time() < end:
        for f in glob.glob(os.path.join(D, "mail", "alice", "Maildir", "new", "*")):
            if ("Subject: %s\r\n" % subject).encode() in open(f, "rb").read() \
               or ("Subject: %s\n" % subject).encode() in open(f, "rb").read():
                return True
        time.sleep(0.1)
    return False

r = send_mail(P, "s@example.org", ["alice@localhost"],
              b"Subject: to dovecot\r\n\r\nhello alice\r\n")
qid = queued_id(r)
l = log_wait(r"postfix/lmtp\[\d+\]: %s: to=<alice@localhost>, relay=mx\.test\.example\[%s/lmtp\], "
             r".*status=sent \(250 2\.0\.0 <alice@localhost> \S+ Saved\)" % (qid, re.escape(D)), 15)
tap(l and maildir_has("to dovecot"),
    "local_transport = lmtp:unix:PATH: in alice's Maildir, logged with "
    "Dovecot's Saved reply", r, l)

r = send_mail(P, "s@example.org", ["alice@mail.example"],
              b"Subject: over tcp\r\n\r\nhello again\r\n")
qid = queued_id(r)
l = log_wait(r"%s: to=<alice@mail\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%s, "
             r".*status=sent" % (qid, env("LMTPPORT")), 15)
tap(l and maildir_has("over tcp"),
    "lmtp:[127.0.0.1]:PORT: Dovecot's inet listener", r)

r = send_mail(P, "s@example.org", ["ghost@localhost"],
              b"Subject: nobody\r\n\r\nx\r\n")
qid = queued_id(r)
l = log_wait(r"%s: to=<ghost@localhost>, .*dsn=5\.1\.1, status=bounced \(host "
             r"mx\.test\.example\[.*\] said: 550 5\.1\.1 <ghost@localhost> User "
             r"doesn't exist: ghost@localhost \(in reply to RCPT TO command\)\)" % qid, 15)
tap(l, "a user Dovecot does not know: bounced with its 550 5.1.1 at RCPT", r)

m, rr = mail_rcpt(int(env("P_vrfy")), "s@example.org", "ghost@localhost")
tap(rr.code == 550 and re.match(
    r"5\.1\.1 <ghost@localhost>: Recipient address rejected: undeliverable "
    r"address: host mx\.test\.example\[.*/lmtp\] said: 550 5\.1\.1 "
    r"<ghost@localhost> User doesn't exist: ghost@localhost \(in reply to "
    r"RCPT TO command\)$", rr.lines[0]),
    "reject_unverified_recipient asks Dovecot: the unknown user is refused "
    "at RCPT", rr)
m, rr = mail_rcpt(int(env("P_vrfy")), "s@example.org", "alice@localhost")
tap(rr.code == 250, "  and alice is accepted", rr)
PY
stop_sluiced
result
