#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_conf.sh - `sluice conf` / `sluice check` and how sluiced treats a bad
# configuration: unknown names, wrong types, $name expansion, cycles,
# bad master.cf lines, all reported as FILE:LINE: message.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 34
setup

# --- a valid configuration
write_conf "smtpd_timeout = 7s" \
    'smtpd_banner = $myhostname ${mydestination?dest-set} ${relay_domains:relay-empty} conf-test'
check "sluice check accepts a valid configuration" sl check

out=$(sl conf smtpd_timeout 2>&1)
is "sluice conf NAME prints name = value" "$out" "smtpd_timeout = 7s"

out=$(sl conf smtpd_timeout myhostname 2>&1)
is "sluice conf NAME NAME prints the selection in the order asked (as postconf)" \
    "$out" "$(printf 'smtpd_timeout = 7s\nmyhostname = mx.test.example')"

out=$(sl conf -d smtpd_timeout 2>&1)
like "sluice conf -d shows the default, not the main.cf value" "$out" \
    '^smtpd_timeout = [0-9]+[smhdw]?$'
unlike "sluice conf -d does not show the main.cf value" "$out" '= 7s$'

out=$(sl conf -n 2>&1)
like "sluice conf -n lists parameters set in main.cf" "$out" \
    '^myhostname = mx\.test\.example$'
names=$(printf '%s\n' "$out" | sed -n 's/^\([a-z0-9_]*\) = .*/\1/p' | sort | tr '\n' ' ')
expected=$(sed -n 's/^\([a-z0-9_]*\) = .*/\1/p' "$CONF/main.cf" | sort -u | tr '\n' ' ')
is "sluice conf -n lists exactly the names set in main.cf" "$names" "$expected"

out=$(sl conf 2>&1)
like "sluice conf (no names) includes defaults" "$out" '^message_size_limit = [0-9]+'
n=$(printf '%s\n' "$out" | grep -c ' = ')
result "sluice conf (no names) lists many parameters ($n)" "$([ "$n" -gt 30 ]; echo $?)"

out=$(sl conf no_such_parameter 2>&1)
rc=$?
result "sluice conf with an unknown name exits 1" "$([ $rc -eq 1 ]; echo $?)"
like "  and names the unknown parameter" "$out" 'no_such_parameter'

out=$(sl conf smtpd_banner 2>&1)
is "sluice conf shows the raw value with \$names, as postconf does" "$out" \
    'smtpd_banner = $myhostname ${mydestination?dest-set} ${relay_domains:relay-empty} conf-test'

# $name, ${name?text}, ${name:text} expansion, seen where it is used.
start_ok
out=$(py <<'PY'
import os
from sink import Client
c = Client(int(os.environ["PORT"]))
print(c.reply().text)
c.cmd("QUIT")
PY
)
is "expanded banner: \$myhostname \${name?text} \${name:text}" "$out" \
    "220 mx.test.example dest-set relay-empty conf-test"
stop_sluiced
is "SIGTERM: sluiced exits 0" "$STOP_RC" 0

# --- a typing error of a parameter's name
write_conf "smtpd_recipent_restrictions = reject"
line=$(grep -n '^smtpd_recipent_restrictions' "$CONF/main.cf" | cut -d: -f1)
out=$(sl check 2>&1)
rc=$?
result "sluice check: a misspelt parameter name -> exit 1" "$([ $rc -eq 1 ]; echo $?)"
like "  reported as main.cf:$line: unknown parameter \"smtpd_recipent_restrictions\" (did you mean ...)" "$out" \
    "main\.cf:$line: unknown parameter \"smtpd_recipent_restrictions\" \(did you mean \"smtpd_recipient_restrictions\"\?\)"
out=$(timeout 10 "$SLUICED" -c "$CONF" 2>&1)
rc=$?
result "sluiced refuses to start with it (exit $rc)" \
    "$([ $rc -ne 0 ] && [ $rc -ne 124 ]; echo $?)"
like "  and says why, with file and line" "$out" "main\.cf:$line:.*smtpd_recipent_restrictions"

# --- parameters of the operator's own, as Postfix allows
P_SUB=$(free_port)
MASTER_EXTRA="127.0.0.1:$P_SUB inet n - n - - smtpd -o smtpd_client_restrictions=\$mua_client_restrictions"
write_conf "bogus_parameter = 1" "mua_client_restrictions = check_client_access inline:{127.0.0.1=REJECT}"
line=$(grep -n '^bogus_parameter' "$CONF/main.cf" | cut -d: -f1)
out=$(sl check 2>&1)
rc=$?
is "sluice check: a user-defined parameter (bogus_parameter, mua_client_restrictions) is accepted" "$rc" 0
like "  one that nothing refers to is said: main.cf:$line: unused parameter: bogus_parameter=1" "$out" \
    "warning: .*main\.cf:$line: unused parameter: bogus_parameter=1"
unlike "  one that master.cf's -o refers to is not" "$out" "unused parameter: mua_client"
start_sluiced
export P_SUB
r=$(py <<'PY'
from sink import *
c = Client(int(env("P_SUB")))
c.reply()
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<a@example.org>")
print(c.cmd("RCPT TO:<x@localhost>").text)
c.close()
PY
)
is "the service whose -o smtpd_client_restrictions=\$mua_client_restrictions uses it: refused" \
    "$r" "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied"
stop_sluiced
MASTER_EXTRA=""

# --- wrong type
write_conf "smtpd_timeout = abc"
line=$(grep -n '^smtpd_timeout = abc' "$CONF/main.cf" | cut -d: -f1)
out=$(sl check 2>&1)
rc=$?
result "sluice check: smtpd_timeout = abc -> exit 1" "$([ $rc -eq 1 ]; echo $?)"
like "  reported as main.cf:$line: ... smtpd_timeout" "$out" \
    "main\.cf:$line:.*smtpd_timeout"

# --- cycle
write_conf 'myhostname = $mydomain' 'mydomain = $myhostname'
out=$(timeout 5 "$SLUICE" -c "$CONF" check 2>&1)
rc=$?
result "sluice check: a \$name cycle ends (exit 1, not a timeout; got $rc)" \
    "$([ $rc -eq 1 ]; echo $?)"
like "  and names the parameters of the cycle" "$out" 'myhostname|mydomain'
out=$(timeout 5 "$SLUICED" -c "$CONF" 2>&1)
rc=$?
result "sluiced with a cycle exits non-zero, does not loop (got $rc)" \
    "$([ $rc -ne 0 ] && [ $rc -ne 124 ]; echo $?)"

# --- bad master.cf line
write_conf
printf '127.0.0.1:%s inet n - n - - smtpd\nthis line is not valid\n' "$PORT" \
    >"$CONF/master.cf"
out=$(sl check 2>&1)
rc=$?
result "sluice check: bad master.cf line -> exit 1" "$([ $rc -eq 1 ]; echo $?)"
like "  reported as master.cf:2:" "$out" 'master\.cf:2:'

# --- unknown -o override in master.cf
printf '127.0.0.1:%s inet n - n - - smtpd\n  -o bogus_override=1\n' "$PORT" \
    >"$CONF/master.cf"
out=$(sl check 2>&1)
like "sluice check: unknown -o parameter reported with master.cf:LINE" "$out" \
    'master\.cf:[12]:.*bogus_override'

# --- the main.cf that Debian's postfix package installs (its own files,
# with the TLS part), behind this test's settings: every line is a
# Postfix parameter, so it loads; what Sluice does not act on is said
if [ -r /usr/share/postfix/main.cf.debian ] && [ -r /usr/share/postfix/main.cf.tls ]; then
    write_conf
    {
        cat /usr/share/postfix/main.cf.debian /usr/share/postfix/main.cf.tls
        # the test's own settings win (the last definition wins)
        grep -v '^#' "$CONF/main.cf"
        echo 'smtpd_tls_cert_file ='
        echo 'smtpd_tls_key_file ='
        echo 'smtpd_tls_security_level ='
        echo 'smtp_tls_CApath ='
    } >"$T/debian.cf"
    mv "$T/debian.cf" "$CONF/main.cf"
    out=$(sl check 2>&1)
    rc=$?
    result "sluice check: Debian's main.cf.debian + main.cf.tls load (exit $rc)" \
        "$([ $rc -eq 0 ]; echo $?)"
    [ $rc -eq 0 ] || diag "$out"
    unlike "  no unknown parameter (data_directory, smtpd_tls_session_cache_database...)" \
        "$out" 'unknown parameter'
    unlike "  and no warning for its lines (each has its effect, or none to have in Sluice)" \
        "$out" 'main\.cf:([1-9]|[1-4][0-9]):'
else
    ok "# SKIP Debian's postfix package files are not installed"
    ok "# SKIP Debian's postfix package files are not installed"
    ok "# SKIP Debian's postfix package files are not installed"
fi
