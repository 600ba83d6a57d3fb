#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_client_names.sh - reject_unknown_client_hostname and
# reject_unknown_reverse_client_hostname with the client name lookups
# scripted (tests/system/ioshim.c: IOSHIM_PTR answers getnameinfo,
# IOSHIM_HOSTS getaddrinfo), clients on 127.0.0.1 and ::1:
#   a reverse name confirmed by the forward lookup passes both;
#   a reverse name whose forward lookup gives another address (forged):
#     450 4.7.25 Client host rejected: cannot find your hostname, [::1],
#     while the reverse check passes; the same from the front's name cache;
#   no reverse name: unknown_client_reject_code (550 here) 5.7.1 ...
#     cannot find your reverse hostname, and 5.7.25 for the other;
#   a lookup that fails for now: 450 whatever that code says;
#   the confirmed name in DNS (the scripted dnsd): permit_rhswl_client
#     lets it in for a recipient of ours, not for one elsewhere (where
#     reject_rhsbl_client refuses it); check_client_mx_access judges its
#     MX host: 554 5.7.1 <good.test[127.0.0.1]>: Client host rejected.
. "$(dirname "$0")/lib.sh"
need_binaries
"$PYTHON3" -c 'import socket; socket.create_server(("::1", 0), family=socket.AF_INET6)' \
    2>/dev/null || skip_all "no IPv6 loopback"
plan 13
setup

PU=$(free_port)
PR=$(free_port)
PU6=$(free_port)
PR6=$(free_port)
PW=$(free_port)
PM=$(free_port)
export PU PR PU6 PR6 PW PM
cat >"$T/zone" <<'EOF'
good.test.wl.test A 127.0.0.2
good.test.bl.test A 127.0.0.2
good.test MX 10 mx.good.test
mx.good.test A 127.0.0.1
EOF
start_dnsd "$T/zone" || diag "dnsd did not start: $(cat "$T/dnsd.out")"
MASTER_EXTRA="127.0.0.1:$PU inet n - n - - smtpd -o smtpd_client_restrictions=reject_unknown_client_hostname
[::1]:$PU6 inet n - n - - smtpd -o smtpd_client_restrictions=reject_unknown_client_hostname
127.0.0.1:$PR inet n - n - - smtpd -o smtpd_client_restrictions=reject_unknown_reverse_client_hostname
[::1]:$PR6 inet n - n - - smtpd -o smtpd_client_restrictions=reject_unknown_reverse_client_hostname
127.0.0.1:$PW inet n - n - - smtpd -o smtpd_recipient_restrictions=permit_rhswl_client,wl.test,reject_rhsbl_client,bl.test,permit_mynetworks,reject_unauth_destination
127.0.0.1:$PM inet n - n - - smtpd -o { smtpd_client_restrictions = check_client_mx_access inline:{ mx.good.test=REJECT } }"

phase() # CODE PTR HOSTS
{
    write_conf "smtpd_peername_lookup = yes" "unknown_client_reject_code = $1" \
        "mynetworks = 127.0.0.0/8 [::1]/128" \
        "inet_protocols = all" "sluice_dns_servers = 127.0.0.1:$DP"
    if ! ioshim_wrap "$T/wrap" "IOSHIM_PTR='$2'" "IOSHIM_HOSTS='$3'"; then
        echo "Bail out! no C compiler for the ioshim"
        exit 1
    fi
    SLUICED_WRAP=$T/wrap start_ok
}

rcpt_py='
import sys
from sink import *
host, port = sys.argv[1], int(sys.argv[2])
to = sys.argv[3] if len(sys.argv) > 3 else "x@example.com"
c = Client(port, host)
c.reply()
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<a@example.org>")
r = c.cmd("RCPT TO:<%s>" % to)
c.cmd("QUIT")
c.close()
print(r.text)
'
rcpt() { py "$@" <<<"$rcpt_py"; }

start_sink

# --- phase 1: 127.0.0.1 is good.test (confirmed); ::1 says forged.test,
# whose address is another
phase 450 "127.0.0.1=good.test;::1=forged.test" "good.test=127.0.0.1;forged.test=192.0.2.1"
is "a confirmed name (good.test for 127.0.0.1): reject_unknown_client_hostname passes" \
    "$(rcpt 127.0.0.1 "$PU")" "250 2.1.5 Ok"
check "  and the client is logged as good.test[127.0.0.1]" \
    log_wait 5 'connect from good\.test\[127\.0\.0\.1\]'
is "a forged name (forged.test for ::1, its address 192.0.2.1): 450 4.7.25 ... cannot find your hostname, [::1]" \
    "$(rcpt ::1 "$PU6")" "450 4.7.25 Client host rejected: cannot find your hostname, [::1]"
is "  again, from the front's name cache: the same reply" \
    "$(rcpt ::1 "$PU6")" "450 4.7.25 Client host rejected: cannot find your hostname, [::1]"
is "  reject_unknown_reverse_client_hostname: the reverse name exists, it passes" \
    "$(rcpt ::1 "$PR6")" "250 2.1.5 Ok"
is "permit_rhswl_client wl.test, good.test listed, a recipient of ours: accepted before reject_rhsbl_client" \
    "$(rcpt 127.0.0.1 "$PW" x@localhost)" "250 2.1.5 Ok"
is "  a recipient elsewhere: the allow list does not apply, reject_rhsbl_client bl.test refuses" \
    "$(rcpt 127.0.0.1 "$PW")" "554 5.7.1 Service unavailable; Client host [good.test] blocked using bl.test"
is "check_client_mx_access: good.test's MX host mx.good.test in the table: 554 5.7.1 <good.test[127.0.0.1]>: Client host rejected" \
    "$(rcpt 127.0.0.1 "$PM")" "554 5.7.1 <good.test[127.0.0.1]>: Client host rejected: Access denied"
stop_sluiced

# --- phase 2: 127.0.0.1 has no reverse name, ::1's lookup fails for now
phase 550 "127.0.0.1=!none;::1=!again" ""
is "no reverse name, unknown_client_reject_code = 550: 550 5.7.1 ... cannot find your reverse hostname, [127.0.0.1]" \
    "$(rcpt 127.0.0.1 "$PR")" "550 5.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.1]"
is "  and reject_unknown_client_hostname: 550 5.7.25 ... cannot find your hostname" \
    "$(rcpt 127.0.0.1 "$PU")" "550 5.7.25 Client host rejected: cannot find your hostname, [127.0.0.1]"
is "a lookup that fails for now (EAI_AGAIN): 450 4.7.1 ... reverse hostname, [::1], whatever the code" \
    "$(rcpt ::1 "$PR6")" "450 4.7.1 Client host rejected: cannot find your reverse hostname, [::1]"
stop_sluiced
