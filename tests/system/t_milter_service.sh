#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_milter_service.sh - filters per master.cf service, as in Postfix:
# main.cf's smtpd_milters apply to every service that does not say
# otherwise; a service's -o smtpd_milters= clears them (the submission
# idiom), -o smtpd_milters=OTHER replaces them, and -o milter_* settings
# (milter_default_action) apply to that service's milters only; the
# tmilter logs and the delivered bytes show which milters saw each
# session. -o clamav_enable=no on a service lets EICAR through there while
# the other services reject it, and -o clamav_enable=yes scans on that
# service alone when main.cf turns the scanner off; either way the
# database is loaded once. A bad -o smtpd_milters stops sluiced and sluice
# check with the master.cf line named; a service's -o of a main.cf-only
# scanner setting is warned about.
. "$(dirname "$0")/lib.sh"
need_binaries
: "${TMILTER:=$top_builddir/tests/milter/tmilter}"
[ -x "$TMILTER" ] || skip_all "no test milter at $TMILTER (make check builds it)"
export TMILTER
plan 34
. "$SYSDIR/milter_lib.sh"

P_NONE=$(free_port)
P_M2=$(free_port)
P_BOTH=$(free_port)
P_ACC=$(free_port)
P_TEMP=$(free_port)
export P_NONE P_M2 P_BOTH P_ACC P_TEMP

start_sink
start_tmilter m1 -a "X-M1:one"
start_tmilter m2 -a "X-M2:two"
# main.cf: m1, and a dead milter is tempfailed; the services say otherwise
MASTER_EXTRA="127.0.0.1:$P_NONE inet n - n - - smtpd
  -o smtpd_milters=
127.0.0.1:$P_M2 inet n - n - - smtpd -o smtpd_milters=unix:$T/m2.sock
127.0.0.1:$P_BOTH inet n - n - - smtpd
  -o smtpd_milters=unix:$T/m2.sock,unix:$T/m1.sock
127.0.0.1:$P_ACC inet n - n - - smtpd
  -o smtpd_milters=unix:$T/dead.sock -o milter_default_action=accept
127.0.0.1:$P_TEMP inet n - n - - smtpd -o smtpd_milters=unix:$T/dead.sock"
write_conf "smtpd_milters = unix:$T/m1.sock" "milter_default_action = tempfail"
start_ok
for p in $P_NONE $P_M2 $P_BOTH $P_ACC $P_TEMP; do
    wait_port 127.0.0.1 "$p"
done

pytap <<'PY'
from tmh import *
P = {k: int(env(k)) for k in ("PORT", "P_NONE", "P_M2", "P_BOTH", "P_ACC", "P_TEMP")}


def saw(name, tag):
    return any(l.startswith("header Subject=<%s>" % tag) for l in mlog(name))


def added(d):
    return [n for n, _ in d[1] if n.startswith("X-M")] if d else None


# main.cf's milter on the service that keeps it
r = txn("svc-main", port=P["PORT"])
d = delivered("svc-main")
time.sleep(0.3)
tap(r.get("eom") and r["eom"].code == 250 and added(d) == ["X-M1"],
    "a service without -o: main.cf's milter m1 adds its header", r, d and d[1])
tap(saw("m1", "svc-main") and not saw("m2", "svc-main"), "  m1 saw the message, m2 did not")

# -o smtpd_milters= : no milter at all
r = txn("svc-none", port=P["P_NONE"])
d = delivered("svc-none")
time.sleep(0.3)
tap(r.get("eom") and r["eom"].code == 250 and d is not None and added(d) == [],
    "-o smtpd_milters= : delivered without any milter's header", r, d and d[1])
tap(not saw("m1", "svc-none") and not saw("m2", "svc-none"),
    "  neither milter saw the message")

# -o smtpd_milters=OTHER : replaces main.cf's
r = txn("svc-m2", port=P["P_M2"])
d = delivered("svc-m2")
time.sleep(0.3)
tap(r.get("eom") and r["eom"].code == 250 and added(d) == ["X-M2"],
    "-o smtpd_milters=m2 : m2's header only", r, d and d[1])
tap(saw("m2", "svc-m2") and not saw("m1", "svc-m2"), "  m2 saw the message, m1 did not")

# a chain of two, in the service's order (m2 first, m1 after it sees m2's header)
r = txn("svc-both", port=P["P_BOTH"])
d = delivered("svc-both")
time.sleep(0.3)
tap(r.get("eom") and r["eom"].code == 250 and added(d) == ["X-M2", "X-M1"],
    "-o smtpd_milters=m2,m1 : both headers, in the service's order", r, d and d[1])
tap(any(l.startswith("header X-M2=<two>") for l in mlog("m1")),
    "  m1, placed after m2 by this service, saw m2's header")

# milter_* per service: the same dead milter, accept here, tempfail there
r = txn("svc-acc", port=P["P_ACC"])
d = delivered("svc-acc")
tap(r.get("eom") and r["eom"].code == 250 and d is not None,
    "a dead milter with -o milter_default_action=accept: delivered", r)
r = txn("svc-temp", port=P["P_TEMP"])
codes = [x.code for k, x in r.items() if k in ("greet", "ehlo", "mail", "data", "eom")]
tap(any(400 <= c < 500 for c in codes) and r.get("eom") is None,
    "the same dead milter with main.cf's milter_default_action = tempfail: 4xx", r)
tap(sink_find(rb"Subject: svc-temp\r\n", secs=1) is None, "  and nothing delivered")

# sessions of every service again, at once: each still gets its own chain
import threading
res = {}


def one(k, tag):
    res[tag] = txn(tag, port=P[k])


th = [threading.Thread(target=one, args=(k, "mix-%s-%d" % (k, i)))
      for i in range(4) for k in ("PORT", "P_NONE", "P_M2", "P_BOTH")]
for t in th:
    t.start()
for t in th:
    t.join()
want = {"PORT": ["X-M1"], "P_NONE": [], "P_M2": ["X-M2"], "P_BOTH": ["X-M2", "X-M1"]}
bad = []
for i in range(4):
    for k, w in want.items():
        tag = "mix-%s-%d" % (k, i)
        d = delivered(tag)
        if added(d) != w:
            bad.append((tag, added(d), res[tag].get("eom")))
tap(not bad, "16 concurrent sessions over 4 services: each message has its service's milters", bad)
PY

# one front: each chain's milters and the scanner are set up once
is "the ClamAV database was loaded once for every service's chain" \
    "$(log_count 'clamav: engine loaded')" 1
stop_sluiced "$MASTERPID"

# ---- clamav_enable per service ----
P_NOSCAN=$(free_port)
export P_NOSCAN
MASTER_EXTRA="127.0.0.1:$P_NOSCAN inet n - n - - smtpd -o clamav_enable=no"
write_conf
MARK=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
start_ok
wait_port 127.0.0.1 "$P_NOSCAN"
pytap "$MARK" <<'PY'
import sys
from tmh import *
mark = int(sys.argv[1])
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
log_wait_from(mark, r"clamav: engine loaded", 30)
r = txn("eicar-scan", port=int(env("PORT")), data=msg("eicar-scan", body=EICAR + b"\r\n"))
tap(r.get("eom") and r["eom"].code == 554 and "Eicar" in r["eom"].text,
    "main.cf's scanner on the first service: EICAR gets 554", r)
r = txn("eicar-noscan", port=int(env("P_NOSCAN")),
        data=msg("eicar-noscan", body=EICAR + b"\r\n"))
d = delivered("eicar-noscan")
tap(r.get("eom") and r["eom"].code == 250 and d is not None and EICAR in d[2],
    "-o clamav_enable=no: EICAR is delivered on that service, byte for byte", r)
qid = queued_id(r["eom"]) if r.get("eom") else None
tap(qid and not re.search(re.escape(qid) + r": (clamav|filter=clamav)", read_log()[mark:]),
    "  and the scanner was not asked about it (no clamav line for %s)" % qid)
PY
stop_sluiced "$MASTERPID"

# main.cf off, one service on: the scanner exists for that service only
P_SCAN=$(free_port)
export P_SCAN
MASTER_EXTRA="127.0.0.1:$P_SCAN inet n - n - - smtpd -o clamav_enable=yes"
write_conf "clamav_enable = no"
MARK=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
start_ok
wait_port 127.0.0.1 "$P_SCAN"
pytap "$MARK" <<'PY'
import sys
from tmh import *
mark = int(sys.argv[1])
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
tap(log_wait_from(mark, r"clamav: engine loaded", 30),
    "main.cf clamav_enable = no, one service -o clamav_enable=yes: the database is loaded")
r = txn("eicar-on", port=int(env("P_SCAN")), data=msg("eicar-on", body=EICAR + b"\r\n"))
tap(r.get("eom") and r["eom"].code == 554, "  EICAR gets 554 on that service", r)
r = txn("eicar-off", port=int(env("PORT")), data=msg("eicar-off", body=EICAR + b"\r\n"))
tap(r.get("eom") and r["eom"].code == 250 and delivered("eicar-off") is not None,
    "  and is delivered on main.cf's service, which does not scan", r)
r = txn("clean-on", port=int(env("P_SCAN")))
tap(r.get("eom") and r["eom"].code == 250 and delivered("clean-on") is not None
    and log_wait_from(mark, re.escape(queued_id(r["eom"]) or "x") + r": clamav: clean"),
    "  clean mail on the scanning service is scanned and delivered", r)
PY
stop_sluiced "$MASTERPID"

# ---- bad settings ----
MASTER_EXTRA="127.0.0.1:$P_NONE inet n - n - - smtpd
  -o smtpd_milters=bogus:/nowhere"
write_conf
out=$(sl check 2>&1)
rc=$?
is "sluice check fails on a service's bad -o smtpd_milters" "$rc" 1
like "  naming the master.cf line and the service" "$out" \
    "sluice: error: $CONF/master\.cf:2: service 127\.0\.0\.1:$P_NONE: smtpd_milters: "
MARK=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
"$SLUICED" -c "$CONF" >>"$T/sluiced.out" 2>&1 &
BADPID=$!
_T_MASTERS="$_T_MASTERS $BADPID"
wait_for 10 dead "$BADPID"
check "sluiced refuses to start with it" dead "$BADPID"
like "  and says why, with the line" "$(tail -c +$((MARK + 1)) "$LOG"; cat "$T/sluiced.out")" \
    "$CONF/master\.cf:2: service 127\.0\.0\.1:$P_NONE: smtpd_milters: "
check_not "  nothing listens on the main port" port_open 127.0.0.1 "$PORT"

# main.cf's bad list is named as main.cf's, not as the services'
MASTER_EXTRA="127.0.0.1:$P_NONE inet n - n - - smtpd -o smtpd_milters="
write_conf "smtpd_milters = bogus:/nowhere"
out=$(sl check 2>&1)
like "a bad main.cf smtpd_milters is main.cf's error" "$out" \
    "sluice: error: $CONF/main\.cf: smtpd_milters: "

# per-service milter_* settings are checked too
MASTER_EXTRA="127.0.0.1:$P_NONE inet n - n - - smtpd
  -o smtpd_milters=unix:$T/m1.sock -o milter_default_action=maybe"
write_conf
out=$(sl check 2>&1)
like "a service's bad -o milter_default_action is named with its line" "$out" \
    "sluice: error: $CONF/master\.cf:2: service 127\.0\.0\.1:$P_NONE: .*milter_default_action"

# the scanner's other settings are main.cf's: a service's -o is warned
MASTER_EXTRA="127.0.0.1:$P_NONE inet n - n - - smtpd
  -o clamav_virus_action=discard -o clamav_enable=no -o smtpd_milters="
write_conf
out=$(sl check 2>&1)
like "sluice check warns of a service's -o clamav_virus_action" "$out" \
    "sluice: warning: $CONF/master\.cf:2: clamav_virus_action = discard: not implemented per service in this Sluice yet; main\.cf's value applies to every service"
unlike "  and not of its -o clamav_enable or -o smtpd_milters" "$out" \
    "(clamav_enable|smtpd_milters) =.*not implemented"
MARK=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
start_ok
like "  sluiced logs the same warning at start" "$(tail -c +$((MARK + 1)) "$LOG")" \
    "warning: $CONF/master\.cf:2: clamav_virus_action = discard: not implemented per service"
stop_sluiced "$MASTERPID"
