#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_milter_faults.sh - milters that fail, against tests/milter/tmilter:
# one that crashes mid-message (-x body), one that never answers (-w eom,
# content_timeout=2s), one that is not running (nobody listens on the
# socket); for each the default action: tempfail (per-milter form
# { unix:..., default_action=tempfail }) gives 4xx and nothing queued,
# accept delivers, reject gives 5xx, and the default (shutdown) gives 421
# and closes the connection; the log warns naming the milter. A milter
# down or timing out is not asked again per session (back-off: logged
# once, the next session does not wait for its timeout). Oversized and
# malformed packets (tmilter -g) fail the milter, never the front (its
# pid is unchanged).
. "$(dirname "$0")/lib.sh"
need_binaries
: "${TMILTER:=$top_builddir/tests/milter/tmilter}"
[ -x "$TMILTER" ] || skip_all "no test milter at $TMILTER (make check builds it)"
export TMILTER
plan 71
. "$SYSDIR/milter_lib.sh"

start_sink
M=unix:$T/m1.sock

# fault_case ACTION FAULT: restart sluiced and the milter for one case;
# 4 tests.
fault_case()
{
    local action=$1 fault=$2 spec
    [ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
    [ -n "${MPID:-}" ] && stop_pid "$MPID" 1
    MPID=""
    rm -f "$T/m1.sock" "$T/m1.log"
    case $fault in
    crash) start_tmilter m1 -x body ;;
    hang) start_tmilter m1 -w eom ;;
    down) ;;
    esac
    [ "$fault" != down ] && MPID=$(cat "$T/m1.pid")
    if [ "$action" = shutdown ]; then
        # the default milter_default_action, global timeout parameter
        write_conf "smtpd_milters = $M" "milter_content_timeout = 2s"
    else
        write_conf "smtpd_milters = { $M, default_action=$action, content_timeout=2s }"
    fi
    # the port probe of start_ok is a session: the milter may fail then
    MARK=$(stat -c %s "$T/maillog" 2>/dev/null || echo 0)
    start_ok
    pytap "$action" "$fault" "$MARK" <<'PY'
import sys
from tmh import *
action, fault = sys.argv[1], sys.argv[2]
tag = "%s-%s" % (action, fault)
mark = int(sys.argv[3])
t0 = time.time()
r = txn(tag)
el = time.time() - t0
steps = [r.get("greet"), r.get("ehlo"), r.get("mail")] + r["rcpt"] + [r.get("data"), r.get("eom")]
fail = next((x for x in steps if x is not None and x.code >= 400), None)
desc = "%s, milter %s:" % (action, {"crash": "crashes at body", "hang": "never answers at eom",
                                   "down": "not running"}[fault])
if action == "accept":
    tap(r.get("eom") and r["eom"].code == 250, desc + " 250 at end of data", r)
    tap(delivered(tag), desc + " delivered")
else:
    if action == "tempfail":
        want, wdesc = (lambda x: x.code in (421, 451) if fault == "down" else x.code == 451
                       and x.lines == ["4.7.1 Service unavailable - try again later"]), "451 4.7.1"
    elif action == "reject":
        want, wdesc = (lambda x: x.code in (550, 554) if fault == "down" else x.code == 550
                       and x.lines[0].startswith("5.7.1")), "550 5.7.1"
    else:
        want, wdesc = (lambda x: x.code == 421), "421 and the connection closed"
    where = r.get("eom") if fault != "down" else fail
    tap(where is not None and want(where) and (action != "shutdown" or "closed" in r),
        desc + " " + wdesc + (" (at end of data)" if fault != "down" else ""), r)
    time.sleep(1)
    ql = subprocess.run([env("SLUICE"), "-c", env("CONF"), "queue", "list"],
                        capture_output=True, text=True).stdout
    tap("Mail queue is empty" in ql and not delivered(tag, secs=0),
        desc + " nothing queued or delivered", ql)
tap(log_wait_from(mark, r"warning: milter " + re.escape("unix:" + T + "/m1.sock") + r"\b.*"),
    desc + " the log warns, naming the milter", read_log()[mark:][-1500:])
if fault == "hang":
    print("# hang case took %.1f s" % el)
PY
}

for action in tempfail accept reject shutdown; do
    for fault in crash hang down; do
        fault_case $action $fault
    done
done

# ---------------- malformed and oversized packets: failed, no crash
for g in eom:huge eom:badcode eom:badreply negotiate:zero connect:text; do
    [ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
    [ -n "${MPID:-}" ] && stop_pid "$MPID" 1
    rm -f "$T/m1.sock"
    start_tmilter m1 -g "$g"
    MPID=$(cat "$T/m1.pid")
    write_conf "smtpd_milters = { $M, default_action=tempfail, command_timeout=3s, content_timeout=3s }"
    start_ok
    FRONT=$(child_pid smtpd)
    pytap "$g" <<'PY'
import sys
from tmh import *
g = sys.argv[1]
r = txn("garbage-" + g.replace(":", "-"))
steps = [r.get("greet"), r.get("ehlo"), r.get("mail")] + r["rcpt"] + [r.get("data"), r.get("eom")]
fail = next((x for x in steps if x is not None and x.code >= 400), None)
tap(fail is not None and fail.code in (421, 451) and not (r.get("eom") and r["eom"].code == 250),
    "garbage from the milter (%s): failed milter, default action tempfail (4xx)" % g, r)
PY
    is "  ... the front process is still the same (pid $FRONT)" "$(child_pid smtpd)" "$FRONT"
done

# ------------------- back-off: a milter down is not asked per session
[ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
[ -n "${MPID:-}" ] && stop_pid "$MPID" 1
rm -f "$T/m1.sock"
start_tmilter m1 -w negotiate
write_conf "smtpd_milters = { $M, default_action=accept, connect_timeout=2s, command_timeout=2s }"
MARK=$(stat -c %s "$T/maillog" 2>/dev/null || echo 0)
start_ok
pytap "$MARK" <<'PY'
import sys
from tmh import *
mark = int(sys.argv[1])
t = []
for i in (1, 2):
    t0 = time.time()
    r = txn("backoff%d" % i)
    t.append(time.time() - t0)
    tap(r.get("eom") and r["eom"].code == 250 and delivered("backoff%d" % i),
        "milter hangs at negotiation, default_action=accept: session %d delivered" % i, r)
tap(t[1] < 1.0, "the second session does not wait for the milter (%.2f s; first %.2f s)"
    % (t[1], t[0]))
n = len(re.findall(r"warning: milter " + re.escape("unix:" + T + "/m1.sock"), read_log()[mark:]))
tap(n == 1, "the warning is logged once (%d)" % n, read_log()[mark:][-1500:])
PY

[ -n "${MASTERPID:-}" ] && stop_sluiced "$MASTERPID"
write_conf "smtpd_milters = { unix:$T/nobody.sock, default_action=accept, connect_timeout=5s }"
MARK=$(stat -c %s "$T/maillog" 2>/dev/null || echo 0)
start_ok
pytap "$MARK" <<'PY'
import sys
from tmh import *
mark = int(sys.argv[1])
t = []
for i in (1, 2):
    t0 = time.time()
    r = txn("down%d" % i)
    t.append(time.time() - t0)
ok = all(delivered("down%d" % i) for i in (1, 2))
tap(ok and t[1] < 1.0, "a milter nobody listens for, default_action=accept: both delivered, "
    "the second session in %.2f s" % t[1], t)
n = len(re.findall(r"warning: milter " + re.escape("unix:" + T + "/nobody.sock"), read_log()[mark:]))
tap(n == 1, "the warning is logged once (%d)" % n, read_log()[-1500:])
PY
