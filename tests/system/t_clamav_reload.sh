#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_clamav_reload.sh - signatures replaced under load: 20 sessions send
# EICAR, clean mail and a pattern the database does not know yet while a
# new .ndb with Sluice.Test.Pattern-2 is renamed into the database
# directory (clamav_reload_interval = 1s). Every transaction gets its
# right answer (no 4xx at all), mail sent after "clamav: reloaded" is
# judged by the new set; then a broken database: "reload failed" is
# logged and the old engine stays in service.
#
# libclamav appends ".UNOFFICIAL" to the names of signatures from
# unsigned databases; the tests accept NAME with or without it.
. "$(dirname "$0")/lib.sh"
need_binaries
SRCDB=$top_srcdir/conf/clamav/sluice-test.ndb
[ -r "$SRCDB" ] || skip_all "no signature set at $SRCDB"
plan 16
setup
mkdir -p "$T/db"
cp "$SRCDB" "$T/db/sluice-test.ndb"
write_conf "clamav_database_directory = $T/db" "clamav_reload_interval = 1s"
start_sink
start_ok
FRONT=$(child_pid smtpd)
check "log: clamav: engine loaded" log_wait 20 'clamav: engine loaded'
# the file's mtime must differ from the one the engine was loaded with
sleep 1.1

pytap <<'PY'
import os, random, threading
from sink import *

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PAT2 = b"SLUICE-TEST-PATTERN-2-5b7d"
port = int(env("PORT"))
db = os.path.join(env("T"), "db")
NTHREADS = 20


def vname(name):
    return re.escape(name) + r"(\.UNOFFICIAL)?"


def msg(kind, tid, n):
    body = {"eicar": b"here it is:\r\n" + EICAR + b"\r\n",
            "clean": b"nothing special, message %d of session %d\r\n" % (n, tid),
            "pat2": b"new pattern: " + PAT2 + b" end\r\n"}[kind]
    return (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: %s\r\n"
            b"Message-ID: <rl-%s-%d-%d@t>\r\n\r\n" % (kind.encode(), kind.encode(), tid, n)
            + body)


def txn(c, m):
    r = c.cmd("MAIL FROM:<load@example.org>")
    if r.code != 250:
        return r
    r = c.cmd("RCPT TO:<b@example.net>")
    if r.code != 250:
        return r
    r = c.cmd("DATA")
    if r.code != 354:
        return r
    c.send(dotstuff(m))
    return c.reply()


results = []          # (kind, start time, end time, reply or exception)
lock = threading.Lock()
stop = threading.Event()
kinds = ("eicar", "clean", "pat2")


def session(tid):
    n = 0
    c = None
    while not stop.is_set():
        try:
            if c is None:
                c = Client(port, timeout=20)
                if c.reply().code != 220 or c.cmd("EHLO load%d.test" % tid).code != 250:
                    raise ValueError("no greeting")
            kind = kinds[(tid + n) % 3]
            t0 = time.time()
            r = txn(c, msg(kind, tid, n))
            t1 = time.time()
        except Exception as ex:  # a failed session is a result too
            r, t0, t1, kind = ex, time.time(), time.time(), "session"
            c = None
        with lock:
            results.append((kind, t0, t1, r))
        n += 1
        if n % 5 == 0 and c is not None:   # new sessions now and then
            try:
                c.cmd("QUIT")
            except Exception:
                pass
            c.close()
            c = None
    if c is not None:
        c.close()


threads = [threading.Thread(target=session, args=(i,)) for i in range(NTHREADS)]
for th in threads:
    th.start()
time.sleep(1.5)

# the new set: the old one plus Sluice.Test.Pattern-2, renamed into place
old = open(os.path.join(db, "sluice-test.ndb"), "rb").read()
if not old.endswith(b"\n"):
    old += b"\n"
new = old + b"Sluice.Test.Pattern-2:0:*:" + PAT2.hex().encode() + b"\n"
tmp = os.path.join(env("T"), "new.ndb")
with open(tmp, "wb") as f:
    f.write(new)
t_swap = time.time()
os.rename(tmp, os.path.join(db, "sluice-test.ndb"))
m = log_wait(r"clamav: reloaded", 20)
t_seen = time.time()
tap(m, "log: clamav: reloaded (%.1f s after the new file)" % (t_seen - t_swap))
time.sleep(2.5)   # mail sent after the swap
stop.set()
for th in threads:
    th.join(60)

bad_sess = [r for k, a, b, r in results if k == "session"]
tap(not bad_sess, "no session failed (%d transactions)" % len(results), bad_sess[:5])
tmpf = [(k, r) for k, a, b, r in results
        if k != "session" and 400 <= r.code < 500]
tap(not tmpf, "no 4xx reply at all during the reload", tmpf[:5])
e = [r for k, a, b, r in results if k == "eicar"]
wrong = [r for r in e if not re.match(r"554 5\.7\.1 .*Infected: " + vname("Eicar-Signature") + "$", r.text)]
tap(e and not wrong, "EICAR: always 554 ... Infected: Eicar-Signature (%d)" % len(e), wrong[:5])
cl = [r for k, a, b, r in results if k == "clean"]
wrong = [r for r in cl if r.code != 250]
tap(cl and not wrong, "clean: always 250 (%d)" % len(cl), wrong[:5])
before = [r for k, a, b, r in results if k == "pat2" and b < t_swap]
wrong = [r for r in before if r.code != 250]
tap(before and not wrong, "pattern 2 before the new file: 250 (%d)" % len(before), wrong[:5])
after = [r for k, a, b, r in results if k == "pat2" and a > t_seen]
wrong = [r for r in after
         if not re.match(r"554 5\.7\.1 .*Infected: " + vname("Sluice.Test.Pattern-2") + "$", r.text)]
tap(after and not wrong,
    "pattern 2 sent after 'clamav: reloaded': 554 ... Infected: Sluice.Test.Pattern-2 (%d)"
    % len(after), wrong[:5])
between = [r for k, a, b, r in results if k == "pat2" and b >= t_swap and a <= t_seen]
wrong = [r for r in between if r.code not in (250, 554)]
tap(not wrong, "pattern 2 during the swap: 250 or 554 (%d)" % len(between), wrong[:5])
PY

check "the front process is the same one" test "$(child_pid smtpd)" = "$FRONT"

# --- a broken database: the old engine stays in service
printf 'this is not a signature database\n:::\n' >"$T/broken.ndb"
mv "$T/broken.ndb" "$T/db/sluice-test.ndb"
check "log: warning: clamav: reload failed: ..." \
    log_wait 20 'warning: clamav: reload failed: '
pytap <<'PY'
from sink import *
port = int(env("PORT"))
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PAT2 = b"SLUICE-TEST-PATTERN-2-5b7d"
h = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: after a failed reload\r\n\r\n"
for body, name in ((EICAR, "Eicar-Signature"), (PAT2, "Sluice.Test.Pattern-2")):
    r = send_mail(port, "old@example.org", ["b@example.net"], h + body + b"\r\n")
    tap(re.match(r"554 5\.7\.1 .*Infected: " + re.escape(name) + r"(\.UNOFFICIAL)?$", r.text),
        "after the failed reload the old engine still catches %s" % name, r)
r = send_mail(port, "old@example.org", ["b@example.net"], h + b"clean\r\n")
tap(r.code == 250, "and clean mail still gets 250", r)
PY
check "the failed reload does not stop the daemon" alive "$MASTERPID"
