#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_unsupported.sh - Postfix settings this Sluice does not act on yet are
# said, not hidden, and the TLS ones fail closed:
# - a setting of a parameter that is accepted but not implemented yet
#   (virtual_mailbox_maps, smtpd_delay_reject = no, alias_maps...) earns a warning
#   naming FILE:LINE, from `sluice check` (which still succeeds) and in the
#   log at start; a default value or none earns nothing;
# - smtp_tls_security_level or a smtp_tls_policy_maps entry that requires
#   TLS (encrypt), for a next hop that does not offer STARTTLS, defers the
#   mail with 4.7.4 ("TLS is required, but was not offered by host ..."),
#   never sends it in clear; "may" delivers in clear; a policy that is not
#   a level defers with 4.7.5 (the TLS client itself: t_smtp_tls.sh);
# - a service with -o smtpd_tls_security_level=encrypt but no certificate
#   (so TLS support is disabled, and the log says so) answers MAIL FROM
#   with 530 5.7.0 and STARTTLS with 454 4.7.0; the other service takes
#   mail as before. (STARTTLS that works: t_starttls.sh.)
. "$(dirname "$0")/lib.sh"
need_binaries
plan 28
setup

P2=$(free_port)
P3=$(free_port)
P4=$(free_port) # never listened on: its policy is not a level
PSUB=$(free_port)
export P2 P3 PSUB
mkdir -p "$T/sink2" "$T/sink3"
MASTER_EXTRA="127.0.0.1:$PSUB inet n - n - - smtpd -o smtpd_tls_security_level=encrypt -o smtpd_delay_reject=no"
write_conf "transport_maps = inline:{ tls.example=smtp:[127.0.0.1]:$P2, clear.example=smtp:[127.0.0.1]:$P3, bad.example=smtp:[127.0.0.1]:$P4 }" \
    "smtp_tls_security_level = may" \
    "smtp_tls_policy_maps = inline:{ [127.0.0.1]:$P2=encrypt match=nexthop, [127.0.0.1]:$P4=bogus }" \
    "virtual_mailbox_maps = hash:/etc/postfix/vmailbox" \
    "smtpd_recipient_restrictions = permit_mynetworks, permit_mx_backup, reject_unauth_destination" \
    "alias_maps = hash:/etc/aliases"

# --- warnings
out=$(sl check 2>&1)
rc=$?
is "sluice check succeeds with settings that are not implemented yet" "$rc" 0
like "  and names virtual_mailbox_maps with its file and line" "$out" \
    "sluice: warning: $CONF/main\.cf:[0-9]+: virtual_mailbox_maps = hash:/etc/postfix/vmailbox: not implemented in this Sluice yet; the setting has no effect"
like "  and a restriction not implemented (permit_mx_backup), skipped (the list works otherwise)" "$out" \
    "warning: smtpd_recipient_restrictions: permit_mx_backup: not implemented in this Sluice yet; skipped"
like "  and a master.cf -o setting, with the master.cf line" "$out" \
    "warning: $CONF/master\.cf:2: smtpd_delay_reject = no: not implemented"
unlike "  but not alias_maps set to its default" "$out" "[^_]alias_maps ="

start_sink "$P2" "$T/sink2"
start_sink "$P3" "$T/sink3"
start_ok
check "the log at start has the same warning" \
    log_wait 5 "warning: $CONF/main\.cf:[0-9]+: virtual_mailbox_maps = hash:/etc/postfix/vmailbox: not implemented in this Sluice yet"
check_not "and does not call the SMTP client's TLS settings unimplemented" \
    log_has "smtp_tls_(policy_maps|security_level).*(not implemented|no TLS client)"
check "and that service 127.0.0.1:$PSUB has encrypt but no TLS (no certificate)" \
    log_has "warning: service 127\.0\.0\.1:$PSUB: smtpd_tls_security_level = encrypt, but TLS support is disabled"

# --- the SMTP client: a policy that requires TLS defers, "may" delivers
pytap <<'PY'
from sink import *
port = int(env("PORT"))
ids = {}
for d in ("tls", "clear", "bad"):
    r = send_mail(port, "a@example.org", ["x@%s.example" % d],
                  b"Subject: %s\r\n\r\nbody\r\n" % d.encode())
    ids[d] = queued_id(r)
    open(os.path.join(env("T"), "id." + d), "w").write(ids[d] or "")
tap(all(ids.values()), "three messages queued", ids)
PY
TLS_ID=$(cat "$T/id.tls")
check "the next hop whose policy is encrypt offers no STARTTLS: deferred with 4.7.4" \
    log_wait 10 "$TLS_ID: to=<x@tls\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$P2, .*dsn=4\.7\.4, status=deferred \(TLS is required, but was not offered by host 127\.0\.0\.1\[127\.0\.0\.1\]\)"
check_not "  and that next hop got no MAIL FROM in clear" \
    grep -q ' < MAIL' "$T/sink2/sink.log"
check "the next hop without a policy (smtp_tls_security_level = may) gets its mail in clear" \
    sink_wait 1 10 "$T/sink3"
like "the deferred message waits in the queue" "$(sl queue list 2>&1)" "^$TLS_ID"
check "a policy that is not a level: deferred, bad TLS security level, named" \
    log_wait 10 "$(cat "$T/id.bad"): to=<x@bad\.example>, relay=none, .*dsn=4\.7\.5, status=deferred \(bad TLS security level in smtp_tls_policy_maps: bogus\)"

# --- smtp_tls_security_level = encrypt: everything to SMTP next hops waits
write_conf "transport_maps = inline:{ tls.example=smtp:[127.0.0.1]:$P2, clear.example=smtp:[127.0.0.1]:$P3 }" \
    "smtp_tls_security_level = encrypt"
check "sluice reload with smtp_tls_security_level = encrypt" sl reload
qmgr_restarted() { [ "$(log_count 'qmgr\[[0-9]+\]: started, queue_directory=')" -ge 2 ]; }
check "  the queue manager starts again with it" wait_for 10 qmgr_restarted
check_not "  and says nothing of TLS being unavailable" log_has "TLS is not available"
out=$(py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["y@clear.example"],
              b"Subject: enc\r\n\r\nbody\r\n")
print(queued_id(r) or r.text)
PY
)
check "  a message to the clear next hop (no STARTTLS) is deferred with 4.7.4 too" \
    log_wait 10 "$out: to=<y@clear\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$P3, .*dsn=4\.7\.4, status=deferred \(TLS is required, but was not offered by host"
is "  and that next hop received nothing more" "$(sink_count "$T/sink3")" 1

# --- the SMTP server with smtpd_tls_security_level = encrypt
pytap <<'PY'
from sink import *
c = Client(int(env("PSUB")))
c.reply()
c.cmd("EHLO client.test")
r = c.cmd("MAIL FROM:<a@example.org>")
tap(r.code == 530 and "5.7.0 Must issue a STARTTLS command first" in r.text,
    "encrypt service: MAIL FROM gets 530 5.7.0 Must issue a STARTTLS command first", r)
r = c.cmd("STARTTLS")
tap(r.code == 454 and "4.7.0 TLS not available due to local problem" in r.text,
    "encrypt service: STARTTLS gets 454 4.7.0 TLS not available due to local problem", r)
c.cmd("QUIT")
c.close()
c = Client(int(env("PORT")))
c.reply()
c.cmd("EHLO client.test")
r = c.cmd("MAIL FROM:<a@example.org>")
tap(r.code == 250, "the other service still takes MAIL FROM", r)
c.cmd("QUIT")
c.close()
PY

# --- sluice check on the SMTP client's TLS settings: what would defer
# mail is said, the check still succeeds
mkdir -p "$T/c2"
printf '127.0.0.1:%s inet n - n - - smtpd\n' "$PORT" >"$T/c2/master.cf"
cat >"$T/c2/main.cf" <<EOC
queue_directory = $T/spool
mail_owner = $(id -un)
clamav_enable = no
smtp_tls_security_level = fingerprint
smtp_tls_policy_maps = inline:{ [127.0.0.1]:$P2=verify }
smtp_tls_CAfile = $T/no-such-ca.pem
smtp_tls_mandatory_protocols = >=TLSv1.9
EOC
out=$("$SLUICE" -c "$T/c2" check 2>&1)
rc=$?
is "sluice check with TLS client settings that defer mail: still succeeds" "$rc" 0
like "  says the level is not supported" "$out" \
    "warning: smtp_tls_security_level = fingerprint is not supported by this Sluice: mail to SMTP next hops is deferred \(4\.7\.5\)"
like "  and that the protocol list is bad, so required TLS defers" "$out" \
    "warning: smtp: TLS is not available: unknown TLS protocol \">=TLSv1\.9\""
sed -i 's/^smtp_tls_mandatory_protocols.*/smtp_tls_mandatory_protocols = >=TLSv1.2/; s/= fingerprint$/= bogus/' "$T/c2/main.cf"
out=$("$SLUICE" -c "$T/c2" check 2>&1)
like "  a level that is not one is named" "$out" \
    "warning: smtp_tls_security_level = bogus is not a TLS security level"
like "  and a CA file that does not load, with what it means" "$out" \
    "warning: cannot load the trusted CA certificates \($T/no-such-ca\.pem\): .*levels verify and secure will find no certificate trusted"
