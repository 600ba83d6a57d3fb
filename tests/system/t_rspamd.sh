#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_rspamd.sh - a real rspamd (Debian rspamd) proxy worker in milter mode
# (milter = yes, self_scan = yes) on a free 127.0.0.1 port, started by
# the test in the foreground (-f; -i as rspamd refuses to run as root
# otherwise) with a small configuration in the test dir that includes
# Debian's stock rules from /etc/rspamd (CONFDIR) but no stock workers,
# no redis (modules that need it disable themselves) and milter_headers
# set to add X-Rspamd-Server, X-Spamd-Result and X-Spam-Status also for
# local mail. rspamd negotiates "no reply" for every stage but end of
# message; sluiced runs with smtpd_milters = inet:127.0.0.1:PORT.
# Checked: mail flows through it (250 within seconds, delivered with
# rspamd's headers added, CRLF-folded, the original headers and body
# unchanged), two transactions in one session do not hang, rspamd saw
# the client address, sender and queue id, and GTUBE is refused with
# rspamd's own reply (554 5.7.1 Gtube pattern) and logged.
. "$(dirname "$0")/lib.sh"
need_binaries
RSPAMD=$(command -v rspamd 2>/dev/null || echo /usr/bin/rspamd)
[ -x "$RSPAMD" ] || skip_all "rspamd not installed (Debian package rspamd)"
[ -r /etc/rspamd/common.conf ] || skip_all "no stock rspamd rules at /etc/rspamd"
plan 13
setup
RSPORT=$(free_port)
export RSPORT

# start_rspamd: configuration in $T/rspamd and rspamd in the foreground
# on 127.0.0.1:$RSPORT; sets RSPID; waits up to 60 s for the port (it
# compiles its rules first).
start_rspamd()
{
    local d=$T/rspamd
    mkdir -p "$d/local/local.d" "$d/db" "$d/run"
    cat >"$d/rspamd.conf" <<EOF
# written by t_rspamd.sh: Debian's rules, one proxy worker, no redis
.include "\$CONFDIR/common.conf"
options {
    pidfile = "$d/run/rspamd.pid";
    .include "\$CONFDIR/options.inc"
    dns { timeout = 0.5s; retransmits = 1; }
}
logging {
    type = "file";
    filename = "$d/rspamd.log";
    level = "info";
}
worker "rspamd_proxy" {
    bind_socket = "127.0.0.1:$RSPORT";
    milter = yes;
    self_scan = yes;
    timeout = 30s;
    count = 1;
    upstream "local" { default = yes; self_scan = yes; }
}
EOF
    cat >"$d/local/local.d/milter_headers.conf" <<EOF
use = ["x-rspamd-server", "x-spamd-result", "x-spam-status"];
skip_local = false;
skip_authenticated = false;
EOF
    "$RSPAMD" -f -i -c "$d/rspamd.conf" --var "CONFDIR=/etc/rspamd" \
        --var "LOCAL_CONFDIR=$d/local" --var "DBDIR=$d/db" \
        --var "RUNDIR=$d/run" --var "LOGDIR=$d" >>"$d/rspamd.out" 2>&1 &
    RSPID=$!
    _T_PIDS="$_T_PIDS $RSPID"
    wait_for 60 rspamd_ready
}

rspamd_ready()
{
    alive "$RSPID" || return 0 # died: stop waiting, the caller checks
    port_open 127.0.0.1 "$RSPORT"
}

if start_rspamd && alive "$RSPID"; then
    ok "rspamd (proxy worker, milter mode) listens on 127.0.0.1:$RSPORT"
else
    not_ok "rspamd (proxy worker, milter mode) listens on 127.0.0.1:$RSPORT"
    diag "$(tail -n 20 "$T/rspamd/rspamd.out" "$T/rspamd/rspamd.log" 2>/dev/null)"
fi
# its workers are stopped by PID too, should the main process not
# take them along
_T_PIDS="$_T_PIDS $(children "$RSPID")"

cat >"$T/rsmsg.py" <<'PY'
import email.utils


def crlf(s):
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message(mid, body=b"Hello Bob,\nlunch at noon?\n.leading dot\nAlice\n"):
    return crlf(b"From: Alice <a@example.org>\nTo: Bob <b@example.net>\n"
                b"Subject: lunch\nMessage-ID: <" + mid.encode() + b">\n"
                b"Date: " + email.utils.formatdate().encode() + b"\n"
                b"MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n" + body)


GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

start_sink
write_conf "clamav_enable = no" "smtpd_milters = inet:127.0.0.1:$RSPORT"
start_ok

# ------------------------------------------------------ mail flows
pytap <<'PY'
from sink import *
from rsmsg import *
port = int(env("PORT"))
msg = message("rs-1@test.example")
t0 = time.time()
r = send_mail(port, "a@example.org", ["b@example.net"], msg)
dt = time.time() - t0
qid = queued_id(r)
tap(r.code == 250 and qid and dt < 10,
    "mail through rspamd: 250 queued (%.2f s, no stage waits for a reply "
    "rspamd does not send)" % dt, r)
m = sink_find(re.escape("<rs-1@test.example>"), secs=30)
eml = m[1] if m else b""
rcv, rest = split_received(eml)
h, _, b = rest.partition(b"\r\n\r\n")
tap(re.search(rb"^X-Spamd-Result: default: False \[-?[0-9.]+ / [0-9.]+\];\r\n\t", h + b"\r\n", re.M)
    and re.search(rb"^X-Spam-Status: No, score=-?[0-9.]+\r\n", h + b"\r\n", re.M)
    and re.search(rb"^X-Rspamd-Server: ", h, re.M),
    "delivered with rspamd's X-Spamd-Result (folded), X-Spam-Status: No and X-Rspamd-Server",
    h)
tap(b"\n" not in eml.replace(b"\r\n", b"") and b"\r" not in eml.replace(b"\r\n", b""),
    "  CRLF line ends only (rspamd folds its headers with LF)")
oh, _, ob = msg.partition(b"\r\n\r\n")
kept = re.sub(rb"^X-(Spamd-Result|Spam-Status|Rspamd-Server): [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*",
              b"", h + b"\r\n", flags=re.M)
tap(m and kept == oh + b"\r\n" and b == ob,
    "  the original headers and body unchanged", kept, b[:300])
tap(qid and log_wait(qid + r": to=<b@example\.net>, .*status=sent", 15),
    "log: ID: to=<b@example.net> ... status=sent")
# rspamd logs one line per task with the queue id it got (macro i), the
# client address and the sender.
rx = re.compile(r"rspamd_task_write_log: .*qid: <" + str(qid) +
                r">, ip: 127\.0\.0\.1, from: <a@example\.org>")
end = time.time() + 5
while True:
    with open(os.path.join(env("T"), "rspamd", "rspamd.log"), errors="replace") as f:
        seen = rx.search(f.read())
    if seen or time.time() > end:
        break
    time.sleep(0.1)
tap(qid and seen, "rspamd logged the task with the queue id, client address and sender")
PY

# ------------------------------- two transactions in one session, GTUBE
pytap <<'PY'
from sink import *
from rsmsg import *
port = int(env("PORT"))
c = Client(port, timeout=20)
codes = [c.reply().code, c.cmd("EHLO client.test").code]
t0 = time.time()
for n in (1, 2):
    codes.append(c.cmd("MAIL FROM:<a@example.org>").code)
    codes.append(c.cmd("RCPT TO:<b@example.net>").code)
    codes.append(c.cmd("DATA").code)
    c.send(dotstuff(message("rs-sess-%d@test.example" % n)))
    codes.append(c.reply().code)
codes.append(c.cmd("QUIT").code)
c.close()
dt = time.time() - t0
tap(codes == [220, 250] + [250, 250, 354, 250] * 2 + [221] and dt < 15,
    "two transactions in one session through rspamd: both 250 (%.2f s)" % dt, codes)
got = [sink_find(re.escape("<rs-sess-%d@test.example>" % n), secs=30) for n in (1, 2)]
tap(all(g and re.search(rb"^X-Spamd-Result: ", g[1], re.M) for g in got),
    "  both delivered with X-Spamd-Result")

r = send_mail(port, "a@example.org", ["b@example.net"],
              message("rs-gtube@test.example", body=b"Buy now\n" + GTUBE + b"\n"))
tap(r.code == 554 and r.text == "554 5.7.1 Gtube pattern" and not queued_id(r),
    "GTUBE: rspamd's reply 554 5.7.1 Gtube pattern", r)
tap(log_wait(r"([0-9A-F]{14}|NOQUEUE): milter-reject: END-OF-MESSAGE from "
             r"unknown\[127\.0\.0\.1\]: 5\.7\.1 Gtube pattern; from=<a@example\.org> "
             r"to=<b@example\.net> proto=ESMTP helo=<client\.test>$"),
    "log: ID: milter-reject: END-OF-MESSAGE from unknown[127.0.0.1]: 5.7.1 Gtube pattern; ...")
time.sleep(1)
tap(not sink_find(re.escape("<rs-gtube@test.example>"), secs=0), "  the GTUBE message is not delivered")
PY
stop_sluiced
