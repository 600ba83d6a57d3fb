# SPDX-License-Identifier: GPL-2.0-or-later
# dkim_lib.sh - shared by t_opendkim.sh and t_milter_dkim_footer.sh, sourced
# after lib.sh and plan: the temp dir and start_opendkim.
setup

# ----------------------------------------------------------- opendkim

# start_opendkim: key, configuration and opendkim in the foreground on
# $T/dkim/dkim.sock; sets DKIMPID; waits up to 20 s for the socket.
start_opendkim()
{
    local d=$T/dkim
    mkdir -p "$d"
    chmod 700 "$d"
    "$GENKEY" -D "$d" -d example.org -s test || return 1
    cat >"$d/opendkim.conf" <<EOF
Mode sv
Domain example.org
Selector test
KeyFile $d/test.private
Socket local:$d/dkim.sock
PidFile $d/opendkim.pid
Canonicalization simple/simple
Syslog no
UMask 007
RequireSafeKeys false
EOF
    "$OPENDKIM" -f -x "$d/opendkim.conf" >>"$d/opendkim.out" 2>&1 &
    DKIMPID=$!
    _T_PIDS="$_T_PIDS $DKIMPID"
    wait_for 20 test -S "$d/dkim.sock"
}

if start_opendkim && alive "$DKIMPID"; then
    ok "opendkim starts with a key made at run time on $T/dkim/dkim.sock"
else
    not_ok "opendkim starts with a key made at run time on $T/dkim/dkim.sock"
    diag "$(tail -n 20 "$T/dkim/opendkim.out" 2>/dev/null)"
fi

# DKIM helpers for the inline python below: verification with the key
# of $T/dkim/test.txt instead of DNS.
