# SPDX-License-Identifier: GPL-2.0-or-later
# dovecot_lib.sh - a private Dovecot auth server for the SMTP AUTH system
# tests, sourced after lib.sh and setup. Gives need_dovecot (skip when the
# dovecot-core programs are missing), dovecot_conf (writes
# $T/dovecot.conf and its users), start_dovecot / stop_dovecot (by PID,
# the PID is also stopped by lib.sh's EXIT trap), dovecot_ready (a full
# auth handshake on the socket) and dovecot_auth_pid (the auth process).
#
# The instance lives in $T only: base_dir, state_dir, its log
# ($T/dovecot/dovecot.log), the client socket $DOVESOCK ($T/auth, mode
# 0666) and a TCP listener on 127.0.0.1:$DOVEPORT; no IMAP/POP/LMTP
# listeners (protocols =), no TLS. It never reads the system's
# dovecot.conf nor touches /run/dovecot. Every service runs as the user
# running the test (root or not), so Dovecot can read the files in $T.
# The anvil auth-penalty listener is off (mode 0): the penalty would make
# every AUTH from 127.0.0.1 wait up to 15 s after a few failures; with it
# off Dovecot logs one "net_connect_unix(anvil-auth-penalty) failed".
# auth_failure_delay = 0: a FAIL still waits for Dovecot's 0.5 s tick.
#
# Users (passdb passwd-file $DOVEUSERS, then checkpassword for slow* and
# temp*):
#   alice / alice-secret     {PLAIN}
#   bob   / bob crypt pass   {SHA512-CRYPT}, made by doveadm pw
#   temp*                    checkpassword exits 111: FAIL ... code=temp_fail
#   slow*                    checkpassword sleeps $DOVE_SLOW s (its inherited
#                            descriptors closed), then exits 111
# Dovecot auth settings for service (smtpd_sasl_service) "sluicecert":
# auth_ssl_require_client_cert = yes, so any AUTH with that service gets
# "FAIL <id> reason=Client didn't present valid SSL certificate".

DOVE_SLOW=${DOVE_SLOW:-6}

need_dovecot()
{
    local p
    for p in dovecot doveconf doveadm; do
        command -v "$p" >/dev/null 2>&1 ||
            PATH=$PATH:/usr/sbin:/sbin command -v "$p" >/dev/null 2>&1 ||
            skip_all "$p not installed (Debian package dovecot-core)"
    done
    PATH=$PATH:/usr/sbin:/sbin
    export PATH
}

# dovecot_conf: $T/dovecot.conf, the users file, the checkpassword
# script; sets DOVECONF DOVESOCK DOVEPORT DOVELOG DOVEUSERS. 1 (with a
# diagnostic) when doveconf refuses the file or doveadm pw fails.
dovecot_conf()
{
    local d=$T/dovecot me grp hash
    mkdir -p "$d"
    DOVECONF=$T/dovecot.conf
    DOVESOCK=$T/auth
    DOVEPORT=${DOVEPORT:-$(free_port)}
    DOVELOG=$d/dovecot.log
    DOVEUSERS=$d/users
    export DOVECONF DOVESOCK DOVEPORT DOVELOG DOVEUSERS
    me=$(id -un)
    grp=$(id -gn)
    cat >"$d/checkpw.sh" <<EOF
#!/bin/sh
# checkpassword for Dovecot: fd 3 holds "user NUL password NUL ..."
user=\$(tr '\\000' '\\n' <&3 | head -n 1)
case \$user in
slow*)
    # Dovecot forks this from its auth process: close the copies of its
    # client connections, or they would outlive a killed auth process
    exec "$PYTHON3" -c 'import os, sys, time
os.closerange(3, 65536)
time.sleep(float(sys.argv[1]))
os._exit(111)' "$DOVE_SLOW" ;;
temp*) exit 111 ;;
esac
exit 1
EOF
    chmod 755 "$d/checkpw.sh"
    cat >"$DOVECONF" <<EOF
# written by tests/system/dovecot_lib.sh
protocols =
base_dir = $d/run
state_dir = $d/state
instance_name = sluice-test
log_path = $DOVELOG
info_log_path = $DOVELOG
ssl = no
default_internal_user = $me
default_internal_group = $grp
default_login_user = $me
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_failure_delay = 0
auth_verbose = yes
passdb {
  driver = passwd-file
  args = $DOVEUSERS
}
passdb {
  driver = checkpassword
  args = $d/checkpw.sh
  username_filter = slow* temp*
}
userdb {
  driver = static
  args = uid=$(id -u) gid=$(id -g) home=$d/home
}
protocol sluicecert {
  auth_ssl_require_client_cert = yes
}
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service auth-worker {
  user = \$default_internal_user
}
service auth {
  unix_listener $DOVESOCK {
    mode = 0666
  }
  inet_listener {
    address = 127.0.0.1
    port = $DOVEPORT
  }
}
EOF
    if ! doveconf -c "$DOVECONF" -n >"$d/doveconf.out" 2>&1; then
        diag "doveconf refuses $DOVECONF:" "$(cat "$d/doveconf.out")"
        return 1
    fi
    if ! hash=$(doveadm -c "$DOVECONF" pw -s SHA512-CRYPT -p 'bob crypt pass' 2>"$d/doveadm.out") ||
        [ "${hash#\{SHA512-CRYPT\}}" = "$hash" ]; then
        diag "doveadm pw failed:" "$hash" "$(cat "$d/doveadm.out")"
        return 1
    fi
    printf '%s\n' "alice:{PLAIN}alice-secret" "bob:$hash" >"$DOVEUSERS"
    return 0
}

# dovecot_ready: Dovecot answers the auth handshake on $DOVESOCK and on
# 127.0.0.1:$DOVEPORT (VERSION 1, MECH..., DONE).
dovecot_ready()
{
    "$PYTHON3" - "$DOVESOCK" "$DOVEPORT" <<'PY'
import socket, sys
for addr in (sys.argv[1], ("127.0.0.1", int(sys.argv[2]))):
    fam = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
    s = socket.socket(fam)
    s.settimeout(2)
    s.connect(addr)
    s.sendall(b"VERSION\t1\t2\nCPID\t%d\n" % 1)
    buf = b""
    while b"\nDONE\n" not in buf:
        d = s.recv(4096)
        if not d:
            sys.exit(1)
        buf += d
    s.close()
    if not buf.startswith(b"VERSION\t1\t") or b"\nMECH\tPLAIN" not in buf:
        sys.exit(1)
PY
}

# start_dovecot: dovecot -F in the background (DOVEPID, also stopped at
# exit), then wait for dovecot_ready; 1 with a diagnostic if it did not
# come up.
start_dovecot()
{
    dovecot -F -c "$DOVECONF" >>"$T/dovecot/dovecot.out" 2>&1 &
    DOVEPID=$!
    _T_PIDS="$_T_PIDS $DOVEPID"
    if wait_for 15 dovecot_ready && alive "$DOVEPID"; then
        return 0
    fi
    diag "dovecot did not come up" "$(tail -n 15 "$T/dovecot/dovecot.out" "$DOVELOG" 2>/dev/null)"
    return 1
}

# stop_dovecot: SIGTERM to the master, up to 10 s, then its children
# (the auth process outlives the master for seconds and goes on answering
# the connections it has), and wait until nothing answers on the socket
# or the port.
stop_dovecot()
{
    local kids p
    kids=$(children "${DOVEPID:-0}")
    stop_pid "${DOVEPID:-}" 10
    for p in $kids; do
        stop_pid "$p" 5
    done
    wait_for 5 dovecot_gone
}

dovecot_gone()
{
    ! port_open 127.0.0.1 "$DOVEPORT" &&
        ! "$PYTHON3" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(1)
s.connect(sys.argv[1])' "$DOVESOCK" 2>/dev/null
}

# dovecot_auth_pid: the master's "auth" child (dovecot/auth).
dovecot_auth_pid()
{
    pgrep -P "$DOVEPID" -x auth 2>/dev/null | head -n 1
}

dovecot_log_has()
{
    grep -Eq -- "$1" "$DOVELOG" 2>/dev/null
}
