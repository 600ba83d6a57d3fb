#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_reload.sh - `sluice reload` cuts no session: a transaction open during
# the reload completes on the old front (old configuration), new
# connections get the new configuration at once, the old front exits when
# its last session ends; under a steady load with several reloads no
# transaction fails. Each running front makes queue IDs in a lane of its
# own (the IDs' last digit), and no ID is given twice.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 11
setup
write_conf "smtpd_banner = \$myhostname ESMTP old-banner"
start_ok
start_sink
OLDFRONT=$(child_pid smtpd)
export OLDFRONT

# one session mid-transaction across the reload
cat >"$T/session.py" <<'PY'
import sys
from sink import *
c = Client(int(env("PORT")), timeout=30)
print("greet", c.reply().text, flush=True)
c.cmd("EHLO client.test")
c.cmd("MAIL FROM:<a@example.org>")
c.cmd("RCPT TO:<across@example.net>")
print("ready", flush=True)
sys.stdin.readline()            # the reload happens here
r = c.cmd("DATA")
c.send(b"Subject: across the reload\r\n\r\nsent during a reload\r\n.\r\n")
r = c.reply()
print("eod", r.text, flush=True)
print("quit", c.cmd("QUIT").text, flush=True)
PY
# its stdin is ours (the heredoc above is only the program)
coproc PYSESS { cd "$SYSDIR" && "$PYTHON3" "$T/session.py"; }
read -r line <&"${PYSESS[0]}"
like "the old session greets with the old banner" "$line" "old-banner"
read -r line <&"${PYSESS[0]}"
sed -i 's/old-banner/new-banner/' "$CONF/main.cf"
sl reload >/dev/null
banner_new() {
    py <<'PY' | grep -q new-banner
from sink import *
c = Client(int(env("PORT")))
print(c.reply().text)
c.cmd("QUIT")
PY
}
check "new connections get the new banner while the old session is open" \
    wait_for 10 banner_new
result "the old front still runs while its session is open" \
    "$(alive "$OLDFRONT"; echo $?)"
# each running front makes queue IDs in its own lane (their last digit):
# the first front has lane 1, so the new one, started while the old one
# runs, takes 2
NEWID=$(py <<'PY'
from sink import *
r = send_mail(int(env("PORT")), "a@example.org", ["new@example.net"],
              b"Subject: new front\r\n\r\nsent to the new front\r\n")
print(queued_id(r) or r.text)
PY
)
like "a message through the new front gets an ID in lane 2" "$NEWID" '^[0-9A-F]{13}2$'
echo go >&"${PYSESS[1]}"
read -r eod <&"${PYSESS[0]}"
read -r quit <&"${PYSESS[0]}"
like "the open transaction completes: 250 queued, an ID in the old front's lane 1" \
    "$eod" '^eod 250 2\.0\.0 Ok: queued as [0-9A-F]{13}1$'
check "both are delivered" sink_wait 2 15
check "the old front exits after its last session" wait_for 10 dead "$OLDFRONT"

# steady load: 8 senders, 3 reloads, not one failure
py >"$T/load.out" 2>&1 <<'PY' &
import threading
from sink import *
port = int(env("PORT"))
stop = time.time() + 6
res = {"ok": 0, "bad": []}
lock = threading.Lock()
def worker(n):
    i = 0
    while time.time() < stop:
        i += 1
        try:
            r = send_mail(port, "a@example.org", ["load%d@example.net" % n],
                          b"Subject: load %d %d\r\n\r\nx\r\n" % (n, i))
            good = r.code == 250
        except Exception as e:
            r, good = repr(e), False
        with lock:
            if good:
                res["ok"] += 1
            else:
                res["bad"].append(str(r))
        time.sleep(0.05) # a steady load the sink can drain, not a flood
ts = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
for t in ts: t.start()
for t in ts: t.join()
print(res["ok"], len(res["bad"]), res["bad"][:3])
PY
LOADPID=$!
for i in 1 2 3; do
    sleep 1.5
    sl reload >/dev/null
done
wait $LOADPID
out=$(cat "$T/load.out")
like "under load, 3 reloads: every transaction got 250 (ok, failed, first failures)" \
    "$out" '^[1-9][0-9]* 0 \[\]$'
NSENT=$(echo "$out" | cut -d' ' -f1)
check "and all of them are delivered" sink_wait $((NSENT + 2)) 30
ids_distinct() {
    local all dup
    all=$(grep -Eo '[0-9A-F]{14}: client=' "$T/maillog" | wc -l)
    dup=$(grep -Eo '[0-9A-F]{14}: client=' "$T/maillog" | sort | uniq -d | wc -l)
    echo "$all transactions, $dup IDs given twice"
    [ "$all" -ge $((NSENT + 2)) ] && [ "$dup" -eq 0 ]
}
check "every queue ID in the log names one transaction, across fronts and lanes" ids_distinct
