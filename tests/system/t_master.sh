#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_master.sh - the master process: children, `sluice status`, reload on
# SIGHUP and `sluice reload` (a new smtpd_banner on new connections),
# SIGTERM and `sluice stop` (exit 0, no children left), an IPv6
# listener on [::1].
. "$(dirname "$0")/lib.sh"
need_binaries
plan 20
setup

HAVE6=0
if "$PYTHON3" -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
    HAVE6=1
    PORT6=$(free_port)
    export PORT6
    MASTER_EXTRA="[::1]:$PORT6 inet n - n - - smtpd"
fi
banner_conf() {
    write_conf "inet_protocols = all" "mynetworks = 127.0.0.0/8 [::1]/128" "smtpd_banner = \$myhostname ESMTP $1"
}
banner() {
    py <<'PY'
from sink import *
c = Client(int(env("PORT")))
print(c.reply().text)
c.cmd("QUIT")
c.close()
PY
}
banner_is() {
    [ "$(banner 2>&1)" = "220 mx.test.example ESMTP $1" ]
}

banner_conf first-banner
start_sink
start_ok
check "sluice status exits 0 while running" sl status
FRONT=$(child_pid smtpd)
QMGR=$(child_pid qmgr)
like "the master has an smtpd and a qmgr child" "$FRONT $QMGR" '^[0-9]+ [0-9]+$'
is "banner from main.cf" "$(banner 2>&1)" "220 mx.test.example ESMTP first-banner"
check "the front logs under its own PID (not the master's)" \
    log_wait 10 "postfix/smtpd\[$FRONT\]: connect from"

banner_conf second-banner
kill -HUP "$MASTERPID"
check "SIGHUP: new connections get the new banner" wait_for 10 banner_is second-banner
result "the master survives the reload" "$(alive "$MASTERPID"; echo $?)"
banner_conf third-banner
check "sluice reload exits 0" sl reload
check "sluice reload: new connections get the new banner" wait_for 10 banner_is third-banner

# IPv6
if [ $HAVE6 = 1 ]; then
    pytap <<'PY'
from sink import *
r = send_mail(int(env("PORT6")), "a@example.org", ["v6@example.net"],
              b"Subject: over-ipv6\r\n\r\nhello\r\n", host="::1")
tap(r.code == 250, "[::1] listener accepts mail", r)
tap(sink_find(r"over-ipv6"), "  and it is delivered")
PY
    check "log: connect from unknown[::1]" log_has 'connect from unknown\[::1\]'
else
    ok "# SKIP ::1 not available"
    ok "# SKIP ::1 not available"
    ok "# SKIP ::1 not available"
fi

# SIGTERM
kids=$(children "$MASTERPID")
t0=$(now_ms)
kill -TERM "$MASTERPID"
wait_for 10 dead "$MASTERPID"
t1=$(now_ms)
wait "$MASTERPID"
is "SIGTERM: sluiced exits 0" "$?" 0
result "  within 5 s ($((t1 - t0)) ms)" "$([ $((t1 - t0)) -lt 5000 ]; echo $?)"
kids_gone() {
    local k
    for k in $kids; do alive "$k" && return 1; done
    return 0
}
check "  and no child process is left ($kids)" wait_for 2 kids_gone
stop_sluiced # whatever is left
check_not "sluice status exits non-zero when stopped" sl status
check_not "the port is closed" port_open 127.0.0.1 "$PORT"

# sluice stop
start_sluiced
kids=$(children "$MASTERPID")
check "sluice stop exits 0" sl stop
check "  and the master exits" wait_for 10 dead "$MASTERPID"
wait "$MASTERPID"
is "  with status 0" "$?" 0
