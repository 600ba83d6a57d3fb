#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_soft_bounce.sh - soft_bounce = yes, the safety net of a migration, as
# in Postfix: every 5xx reply of the SMTP server goes out as 4xx (the
# enhanced code and the log's reject line too); a recipient that a
# delivery would bounce (a 5xx from the next hop, an error: transport)
# stays queued, logged status=SOFTBOUNCE, and no non-delivery notice goes
# out; once soft_bounce is off again the next attempt bounces it.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 13
setup
P2=$(free_port)
export P2
mkdir -p "$T/sink2"
conf() {
    write_conf "mynetworks = 192.0.2.0/24" \
        "relay_domains = reject.example err.example" \
        "transport_maps = inline:{ reject.example=smtp:[127.0.0.1]:$P2, { err.example = error:5.1.2 no such domain here } }" \
        "$@"
}
conf "soft_bounce = yes"
start_sink
start_sink "$P2" "$T/sink2" --rcpt-match . --rcpt-reply "550 5.1.1 no such user"
start_ok

# --- the SMTP server
pytap <<'PY'
from sink import *
c = Client(int(env("PORT")))
c.reply()
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<a@example.org>")
r = c.cmd("RCPT TO:<x@other.example>")
tap(r.code == 454 and "4.7.1" in r.text and "Relay access denied" in r.text,
    "relay denied: 454 4.7.1 instead of 554 5.7.1", r)
r = c.cmd("FROB")
tap(400 <= r.code < 500 and " 4." in " " + r.text, "an unknown command: 4xx with a 4.x.x code", r)
c.cmd("QUIT")
c.close()
PY
check "the log's reject line says what was said: 454 4.7.1" \
    log_wait 5 "NOQUEUE: reject: RCPT from [^:]*: 454 4\.7\.1 <x@other\.example>: Relay access denied"

# --- deliveries that would bounce
pytap <<'PY'
from sink import *
port = int(env("PORT"))
ids = []
for rcpt in ("x@reject.example", "y@err.example"):
    r = send_mail(port, "sender@example.org", [rcpt], b"Subject: soft\r\n\r\nbody\r\n")
    ids.append(queued_id(r) or "")
open(os.path.join(env("T"), "ids"), "w").write(" ".join(ids))
tap(all(ids), "two messages queued (relay_domains)", ids)
PY
read -r ID1 ID2 <"$T/ids"
check "a 550 from the next hop: dsn=5.1.1, status=SOFTBOUNCE with its reply" \
    log_wait 10 "$ID1: to=<x@reject\.example>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:$P2, .*dsn=5\.1\.1, status=SOFTBOUNCE \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 no such user \(in reply to RCPT TO command\)\)"
check "an error: transport: dsn=5.1.2, status=SOFTBOUNCE" \
    log_wait 10 "$ID2: to=<y@err\.example>, relay=none, .*dsn=5\.1\.2, status=SOFTBOUNCE \(no such domain here\)"
out=$(sl queue list 2>&1)
like "both stay in the queue" "$out" "^$ID1"
like "  (the second too)" "$out" "^$ID2"
sleep 2
check_not "no non-delivery notice went to the sender" \
    grep -rqs "RCPT TO:<sender@example\.org>" "$SINKDIR"

# --- soft_bounce off again: the next attempt bounces
conf "soft_bounce = no"
check "sluice reload with soft_bounce = no" sl reload
sleep 1
sl queue flush >/dev/null 2>&1
check "the next attempt bounces the first: status=bounced" \
    log_wait 15 "$ID1: to=<x@reject\.example>, .*dsn=5\.1\.1, status=bounced"
check "and the sender gets its non-delivery notice" \
    wait_for 15 grep -rqs "RCPT TO:<sender@example\.org>" "$SINKDIR"
