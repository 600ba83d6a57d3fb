#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_smtp_bind.sh - smtp_bind_address and smtp_bind_address6, as Postfix:
# outgoing SMTP connections are made from the given local address; one
# the kernel will not bind to earns a warning and the connection is made
# from the kernel's choice (no packet goes to that address: bind is
# local); a value that is not a numeric address stops sluice check and
# sluiced with FILE: message.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 12
setup
P6=$(free_port)
export P6
mkdir -p "$T/sink6"

# --- a value that is not a numeric address
write_conf "smtp_bind_address = 10.0.0.x"
out=$(sl check 2>&1)
rc=$?
is "sluice check: smtp_bind_address = 10.0.0.x -> exit 1" "$rc" 1
like "  with the reason" "$out" \
    "error: $CONF/main\.cf: smtp_bind_address: not a numeric IPv4 address: 10\.0\.0\.x"
out=$(timeout 10 "$SLUICED" -c "$CONF" 2>&1)
rc=$?
result "sluiced refuses to start with it (exit $rc)" \
    "$([ $rc -ne 0 ] && [ $rc -ne 124 ]; echo $?)"
write_conf "smtp_bind_address6 = 127.0.0.1"
like "sluice check: an IPv4 address in smtp_bind_address6 is refused" \
    "$(sl check 2>&1)" "smtp_bind_address6: not a numeric IPv6 address: 127\.0\.0\.1"

# send TAG RCPT: one message; prints its queue ID
send() {
    TAG=$1 RCPT=$2 py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", [env("RCPT")],
              b"Subject: %s\r\n\r\nbind test\r\n" % env("TAG").encode())
print(queued_id(r) or r.text)
PY
}

# --- 127.0.0.1: bound, delivered, no warning
write_conf "smtp_bind_address = 127.0.0.1" "smtp_bind_address6 = [2001:db8::1]" \
    "transport_maps = inline:{ six.example=smtp:[::1]:$P6 }"
start_sink
start_sink6 "$P6" "$T/sink6"
start_ok
id=$(send one x@example.net)
check "smtp_bind_address = 127.0.0.1: the message is delivered" \
    log_wait 10 "$id: to=<x@example\.net>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$SINKPORT, .*status=sent"
check_not "  without a bind warning" log_has "smtp: bind 127\.0\.0\.1"

# --- smtp_bind_address6 = 2001:db8::1 (not on this machine): a warning,
# delivered all the same
id=$(send six y@six.example)
check "smtp_bind_address6 = [2001:db8::1], not local: warning: smtp: bind [2001:db8::1]: Cannot assign requested address" \
    log_wait 10 "warning: smtp: bind \[2001:db8::1\]: Cannot assign requested address"
check "  and the message is delivered from the kernel's choice" \
    log_wait 10 "$id: to=<y@six\.example>, relay=::1\[::1\]:$P6, .*status=sent"

# --- smtp_bind_address = 192.0.2.1 (not on this machine)
write_conf "smtp_bind_address = 192.0.2.1"
check "sluice reload with smtp_bind_address = 192.0.2.1" sl reload
sleep 1
id=$(send two z@example.net)
check "smtp_bind_address = 192.0.2.1, not local: warning: smtp: bind 192.0.2.1: Cannot assign requested address" \
    log_wait 10 "warning: smtp: bind 192\.0\.2\.1: Cannot assign requested address"
check "  and the message is delivered" \
    log_wait 10 "$id: to=<z@example\.net>, .*status=sent"
