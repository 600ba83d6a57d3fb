#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_milter.sh - Sluice as the MTA side of the milter protocol, against
# tests/milter/tmilter (a libmilter milter configured per case; its log
# shows every callback with its arguments and macros). One sluiced with
# smtpd_milters = unix:$T/m1.sock; the milter behind the socket is
# restarted with other flags between cases (a session connects anew).
# Checked in what the client is told and what reaches the sink:
# - every reply (reject, tempfail, replycode incl. multi-line) at every
#   stage (connect helo mail rcpt data header eoh body eom unknown);
#   per-recipient rejects leave the other recipients delivered; accept,
#   discard, quarantine (hold queue, '!'), skip, progress; the
#   milter-reject/-discard/-hold log lines;
# - every modification: add header, insert header at 0 and at an index,
#   change header, delete header, replace body (also in several chunks),
#   add recipient (also with ESMTP args), delete recipient, change sender;
# - negotiation: SMFIP_NO* (that callback only is missing), SMFIP_NR_*
#   (nothing hangs), SMFIP_SKIP, SMFIP_HDR_LEADSPC, SMFIP_RCPT_REJ,
#   SMFIR_SETSYMLIST macros, the default connect macros, the queue ID in
#   macro i, one milter connection per session across transactions.
. "$(dirname "$0")/lib.sh"
need_binaries
: "${TMILTER:=$top_builddir/tests/milter/tmilter}"
[ -x "$TMILTER" ] || skip_all "no test milter at $TMILTER (make check builds it)"
export TMILTER
plan 104
. "$SYSDIR/milter_lib.sh"

start_sink
start_tmilter m1
write_conf "smtpd_milters = unix:$T/m1.sock"
start_ok

# ------------------------------------------ a milter that only watches
pytap <<'PY'
from tmh import *
milter([])
r = txn("basic", before=("XYZZY hello",))
qid = queued_id(r["eom"]) if "eom" in r else None
tap(qid, "through a milter that continues everywhere: 250 queued as ID", r)
d = delivered("basic")
tap(d and [x[1] for x in d[1]] == [b"From: <sender@example.org>", b"To: <rcpt@example.net>",
                                  b"Subject: basic", b"Message-ID: <basic@test>",
                                  b"X-Test: one", b"X-Test: two"]
    and d[2] == b"body line 1\r\nbody line 2\r\n",
    "delivered with the same header fields and body", d)
tap(mlog_wait(r"^close "), "after QUIT the milter connection is closed (close callback)",
    mlog())
seq = " ".join(s for s in stages() if s not in ("abort", "note", "unknown"))
tap(re.match(r"negotiate connect helo mail rcpt data (header )+eoh (body )+eom", seq)
    and "unknown" in stages(),
    "the milter saw negotiate connect helo mail rcpt data header... eoh body eom, "
    "and the unknown command", seq)
log = "\n".join(mlog())
conn = mlog_wait(r"^connect ")
c = conn.string if conn else ""
tap(re.search(r"family=inet addr=<127\.0\.0\.1> ", c)
    and re.search(r" j=<mx\.test\.example>", c)
    and re.search(r" \{daemon_name\}=<mx\.test\.example>", c)
    and re.search(r" \{daemon_addr\}=<127\.0\.0\.1>", c)
    and re.search(r" v=<Sluice [^>]+>", c)
    and re.search(r" _=<[^>]*\[127\.0\.0\.1\][^>]*>", c)
    and "{client_addr}" not in c,
    "connect: family inet, 127.0.0.1; default macros j, {daemon_name}, "
    "{daemon_addr}, v, _ (and not {client_addr})", c)
tap(re.search(r"^helo <client\.test> ", log, re.M),
    "helo: the EHLO name", log)
tap(re.search(r"^mail <<sender@example\.org>> .* \{mail_addr\}=<sender@example\.org>",
              log, re.M),
    "mail: the sender and {mail_addr}", log)
tap(re.search(r"^rcpt <<rcpt@example\.net>> .* \{rcpt_addr\}=<rcpt@example\.net>",
              log, re.M),
    "rcpt: the recipient and {rcpt_addr}", log)
tap(qid and re.search(r"^eom \| .* i=<%s>" % qid, log, re.M),
    "eom: macro i is the queue ID (%s)" % qid, log)
tap(re.search(r"^header Subject=<basic> ", log, re.M),
    "header: name and value, no leading space by default", log)
tap(re.search(r"^unknown <XYZZY hello> ", log, re.M) and r.get("XYZZY hello")
    and r["XYZZY hello"].code in (500, 502),
    "unknown command: 50x to the client, the milter sees it", r, log)

# one milter connection per SMTP session, reused across transactions
milter([])
c = Client(PORT)
c.reply()
c.cmd("EHLO client.test")
codes = []
for i in (1, 2):
    codes.append(c.cmd("MAIL FROM:<sender@example.org>").code)
    codes.append(c.cmd("RCPT TO:<rcpt@example.net>").code)
    codes.append(c.cmd("DATA").code)
    c.send(dotstuff(msg("reuse%d" % i)))
    codes.append(c.reply().code)
c.cmd("QUIT")
c.close()
time.sleep(0.3)  # callbacks after the last reply (no-reply stages)
ns = stages()
eoms = [l for l in mlog() if l.startswith("eom ")]
tap(codes == [250, 250, 354, 250] * 2 and ns.count("negotiate") == 1
    and ns.count("connect") == 1 and len(eoms) == 2
    and len(set(re.search(r"conn=(\d+)", l).group(1) for l in eoms)) == 1,
    "two transactions in one session: one milter connection, two eom", codes, mlog())
tap(delivered("reuse1") and delivered("reuse2"), "both delivered")
PY

# --------------------------------------------- every reply at every stage
pytap <<'PY'
from tmh import *
STEP = [("connect", "greet"), ("helo", "ehlo"), ("mail", "mail"), ("rcpt", "rcpt"),
        ("data", "data"), ("header", "eom"), ("eoh", "eom"), ("body", "eom"),
        ("eom", "eom"), ("unknown", "XYZZY hello")]
gone = []
for st, step in STEP:
    for kind in ("reject", "tempfail", "replycode"):
        tag = "%s-%s" % (st, kind)
        if kind == "replycode":
            milter(["-r", "%s:replycode:553:5.7.2:%s says no|second line" % (st, st)])
        else:
            milter(["-r", "%s:%s" % (st, kind)])
        r = txn(tag, before=("XYZZY hello",))
        rep = r["rcpt"][0] if step == "rcpt" and r["rcpt"] else r.get(step)
        if rep is None:
            tap(False, "%s at %s" % (kind, st), r)
            continue
        if st == "connect":
            ok = {"reject": rep.code == 554 and "5.7.1" in rep.text,
                  "tempfail": rep.code == 421 and " 4.7." in rep.text,
                  "replycode": rep.code in (553, 554) and "connect says no" in rep.text
                  and "second line" in rep.text}[kind]
            want = {"reject": "554 5.7.1 greeting", "tempfail": "421 4.7.x greeting",
                    "replycode": "the milter's text in the greeting"}[kind]
        else:
            ok = {"reject": rep.code == 550 and rep.lines == ["5.7.1 Command rejected"],
                  "tempfail": rep.code == 451 and
                  rep.lines == ["4.7.1 Service unavailable - try again later"],
                  "replycode": rep.code == 553 and
                  rep.lines == ["5.7.2 %s says no" % st, "5.7.2 second line"]}[kind]
            want = {"reject": "550 5.7.1 Command rejected",
                    "tempfail": "451 4.7.1 Service unavailable - try again later",
                    "replycode": "553-5.7.2 %s says no / 553 5.7.2 second line" % st}[kind]
        tap(ok, "%s at %s: the client gets %s (to %s)" % (kind, st, want, step), r)
        if st != "unknown":
            gone.append(tag)
        else:
            tap(r.get("eom") and r["eom"].code == 250,
                "%s at unknown: the transaction goes on" % kind, r)

m = log_wait(r"^.*: ([0-9A-F]{14}): milter-reject: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: "
             r"5\.7\.1 Command rejected; from=<sender@example\.org> "
             r"to=<rcpt@example\.net> proto=ESMTP helo=<client\.test>$", 5)
tap(m, "log: ID: milter-reject: END-OF-MESSAGE from unknown[127.0.0.1]: 5.7.1 "
    "Command rejected; from=<..> to=<..> proto=ESMTP helo=<client.test>")
tap(log_wait(r"(NOQUEUE|[0-9A-F]{14}): milter-reject: RCPT from unknown\[127\.0\.0\.1\]: "
             r"550 5\.7\.1 .*Command rejected; from=<sender@example\.org> "
             r"to=<rcpt@example\.net> proto=ESMTP helo=<client\.test>$", 5),
    "log: milter-reject: RCPT from unknown[127.0.0.1]: 550 5.7.1 ... Command rejected")

# per recipient: the others are still delivered
milter(["-r", "rcpt:reject", "-m", "bad"])
r = txn("rcpt-some", rcpts=("good1@example.net", "bad1@example.net", "good2@example.net"))
tap([x.code for x in r["rcpt"]] == [250, 550, 250] and r.get("eom") and r["eom"].code == 250,
    "rcpt reject for one recipient: 250 550 250, then 250 at end of data", r)
d = delivered("rcpt-some")
tap(d and rcpts_of(d[0]) == ["good1@example.net", "good2@example.net"],
    "the other recipients are delivered, not the rejected one", d and d[0])
milter(["-r", "rcpt:replycode:550:5.1.1:no such user here|ask again", "-m", "bad"])
r = txn("rcpt-ml", rcpts=("bad2@example.net", "good3@example.net"))
tap(r["rcpt"] and r["rcpt"][0].code == 550
    and r["rcpt"][0].lines == ["5.1.1 no such user here", "5.1.1 ask again"]
    and r["rcpt"][1].code == 250,
    "a multi-line milter reply reaches the client at RCPT, per recipient", r)
tap(delivered("rcpt-ml") and rcpts_of(delivered("rcpt-ml")[0]) == ["good3@example.net"],
    "and the other recipient is delivered")

# the end of the block: nothing rejected was delivered
milter([])
r = txn("marker1")
time.sleep(1)
tap(delivered("marker1") is not None and
    not any(delivered(t, secs=0) for t in gone),
    "no rejected or tempfailed message reached the sink",
    [t for t in gone if delivered(t, secs=0)])
PY

# ------------------------ accept, discard, quarantine, skip, progress
pytap <<'PY'
from tmh import *
milter(["-r", "connect:accept"])
r = txn("conn-accept")
time.sleep(0.3)  # callbacks after the last reply (no-reply stages)
tap(r.get("eom") and r["eom"].code == 250 and delivered("conn-accept")
    and not set(stages()) & {"helo", "mail", "rcpt", "data", "header", "eom"},
    "accept at connect: delivered, no more callbacks in the session", r, stages())

milter(["-r", "mail:accept"])
r = txn("mail-accept")
time.sleep(0.3)  # callbacks after the last reply (no-reply stages)
tap(r.get("eom") and r["eom"].code == 250 and delivered("mail-accept")
    and not set(stages()) & {"rcpt", "data", "header", "body", "eom"},
    "accept at mail: delivered, no more callbacks for the transaction", r, stages())

milter(["-r", "eom:accept", "-a", "X-Accepted:yes"])
r = txn("eom-accept")
d = delivered("eom-accept")
tap(r.get("eom") and r["eom"].code == 250 and d and d[1][-1][1] == b"X-Accepted: yes",
    "accept at eom: delivered with the milter's header", r, d)

disc = []
for st in ("mail", "rcpt", "body", "eom"):
    milter(["-r", "%s:discard" % st])
    r = txn("discard-" + st)
    disc.append("discard-" + st)
    tap(r.get("eom") and r["eom"].code == 250,
        "discard at %s: 250 to the client" % st, r)
m = log_wait(r"([0-9A-F]{14}): milter-discard: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: "
             r".*; from=<sender@example\.org> to=<rcpt@example\.net> proto=ESMTP "
             r"helo=<client\.test>$", 5)
tap(m, "log: ID: milter-discard: END-OF-MESSAGE from unknown[127.0.0.1]: ...")

for how, args in (("-r eom:quarantine", ["-r", "eom:quarantine:held by tmilter"]),
                  ("-q at eom", ["-q", "held by tmilter"])):
    milter(args)
    r = txn("hold-" + how[1])
    qid = queued_id(r["eom"]) if r.get("eom") else None
    ql = subprocess.run([env("SLUICE"), "-c", env("CONF"), "queue", "list"],
                        capture_output=True, text=True).stdout
    tap(qid and r["eom"].code == 250 and re.search("^" + qid + "!", ql, re.M),
        "quarantine (%s): 250, and queue list shows ID! (hold queue)" % how, r, ql)
    tap(log_wait(qid + r": milter-hold: END-OF-MESSAGE from unknown\[127\.0\.0\.1\]: "
                 r"held by tmilter; from=<sender@example\.org> to=<rcpt@example\.net> "
                 r"proto=ESMTP helo=<client\.test>$", 5) if qid else False,
        "log: ID: milter-hold: END-OF-MESSAGE from ...: held by tmilter; from=<..> ...")

big = b"".join(b"%06d the quick brown fox jumps over the lazy dog\r\n" % i
               for i in range(6000))
milter([])
r = txn("chunks", data=msg("chunks", body=big))
mlog_wait(r"^eom ")
lens = [int(m.group(1)) for m in (re.match(r"^body len=(\d+) ", l) for l in mlog()) if m]
tap(len(lens) >= 5 and max(lens) <= 65535 and sum(lens) == len(big),
    "a %d byte body goes in chunks of at most 65535 bytes" % len(big), lens)

milter(["-n", "skip", "-r", "body:skip"])
r = txn("skip", data=msg("skip", body=big))
mlog_wait(r"^eom ")
d = delivered("skip")
tap(r.get("eom") and r["eom"].code == 250 and stages().count("body") == 1
    and d and d[2] == big,
    "SMFIP_SKIP: skip after the first body chunk; eom still comes; body intact",
    r, stages().count("body"))

milter(["-P", "3"])
r = txn("progress")
tap(r.get("eom") and r["eom"].code == 250 and delivered("progress"),
    "progress replies at eom, then continue: delivered", r)
time.sleep(1)
tap(not any(delivered(t, secs=0) for t in disc), "nothing discarded was delivered")
PY

# ------------------------------------------------------- modifications
pytap <<'PY'
from tmh import *
BODY = b"body line 1\r\nbody line 2\r\n"


def orig(tag):
    return [b"From: <sender@example.org>", b"To: <rcpt@example.net>",
            b"Subject: " + tag.encode(), b"Message-ID: <" + tag.encode() + b"@test>",
            b"X-Test: one", b"X-Test: two"]


def run(tag, args, **kw):
    milter(args)
    r = txn(tag, **kw)
    d = delivered(tag) if r.get("eom") and r["eom"].code == 250 else None
    return r, d


r, d = run("m-add", ["-a", "X-Added:added by milter", "-a", "X-Added2:second"])
tap(d and [x[1] for x in d[1]] == orig("m-add") + [b"X-Added: added by milter",
                                                 b"X-Added2: second"] and d[2] == BODY,
    "add header: appended after the others, in order, body unchanged", r, d)

r, d = run("m-ins0", ["-i", "0:X-First:first"])
tap(d and [x[1] for x in d[1]] == [b"X-First: first"] + orig("m-ins0"),
    "insert header at 0: the first header field", r, d)

r, d = run("m-ins2", ["-i", "2:X-Ins:at two"])
seen = [m.group(1) for m in (re.match(r"^header ([^=]+)=", l) for l in mlog()) if m]
want = seen[:2] + ["X-Ins"] + seen[2:]
want = [n for n in want if n != "Received"]
tap(d and [x[0] for x in d[1]] == want and (b"X-Ins: at two" in [x[1] for x in d[1]]),
    "insert header at index 2 (of the fields the milter saw): in place", want, d)

r, d = run("m-chg", ["-c", "X-Test:2:changed"])
tap(d and [x[1] for x in d[1]] == orig("m-chg")[:5] + [b"X-Test: changed"],
    "change header X-Test index 2: the second one changed in place", r, d)

r, d = run("m-del", ["-c", "X-Test:1:"])
tap(d and [x[1] for x in d[1]] == orig("m-del")[:4] + [b"X-Test: two"],
    "change header with an empty value: the first X-Test deleted", r, d)

# a header name no message may carry (a blank in it): the message is
# refused for now with the reason in the log, and nothing is delivered
mark = log_mark()
r, d = run("m-badname", ["-a", "Bad Name:x"])
tap(r.get("eom") and r["eom"].code == 451 and r["eom"].lines[0].startswith("4.3.0")
    and log_wait_from(mark, r"queue file rewrite failed: Invalid argument")
    and delivered("m-badname", secs=1) is None,
    "a header name with a blank from the milter: 451 4.3.0, logged, not delivered",
    r, d)

r, d = run("m-body", ["-b", "replaced body\\nsecond line\\n"])
tap(d and d[2] == b"replaced body\r\nsecond line\r\n" and
    [x[1] for x in d[1]] == orig("m-body"),
    "replace body: the new body, headers unchanged", r, d)

big = b"".join(b"%06d lorem ipsum dolor sit amet consectetur\r\n" % i for i in range(5000))
r, d = run("m-footer", ["-f", "-- \\nfooter line\\n"], data=msg("m-footer", body=big))
tap(d and d[2] == big + b"-- \r\nfooter line\r\n",
    "replace body in several chunks (%d bytes + footer)" % len(big), r, d and len(d[2]))

r, d = run("m-addrcpt", ["-R", "added@example.net"])
tap(d and rcpts_of(d[0]) == ["added@example.net", "rcpt@example.net"],
    "add recipient: delivered to both", r, d and d[0])

r, d = run("m-addrcpt-par", ["-R", "<added2@example.net> NOTIFY=NEVER ORCPT=rfc822;orig@example.net"])
tap(d and rcpts_of(d[0]) == ["added2@example.net", "rcpt@example.net"],
    "add recipient with ESMTP args: delivered to both", r, d and d[0])

r, d = run("m-delrcpt", ["-D", "<rcpt2@example.net>"],
           rcpts=("rcpt1@example.net", "rcpt2@example.net"))
tap(d and rcpts_of(d[0]) == ["rcpt1@example.net"],
    "delete recipient: only the other one delivered", r, d and d[0])

r, d = run("m-chgfrom", ["-S", "<changed@example.org>"])
tap(d and sender_of(d[0]) == "changed@example.org",
    "change sender: MAIL FROM:<changed@example.org> at the sink", r, d and d[0])

r, d = run("m-chgfrom-par", ["-S", "<changed2@example.org> SIZE=2000"])
tap(d and sender_of(d[0]) == "changed2@example.org",
    "change sender with ESMTP args", r, d and d[0])

milter(["-a", "X-All:1", "-i", "0:X-Top:0", "-c", "Subject:1:all changed",
        "-b", "all new\\n", "-R", "<more@example.net>", "-S", "<all@example.org>"])
r = txn("m-all")
d = delivered("all changed")
tap(d and [x[1] for x in d[1]] == [b"X-Top: 0", b"From: <sender@example.org>",
                                  b"To: <rcpt@example.net>", b"Subject: all changed",
                                  b"Message-ID: <m-all@test>", b"X-Test: one",
                                  b"X-Test: two", b"X-All: 1"]
    and d[2] == b"all new\r\n" and sender_of(d[0]) == "all@example.org"
    and rcpts_of(d[0]) == ["more@example.net", "rcpt@example.net"],
    "all modifications at once: headers, body and envelope as the milter said", r, d)
PY

# ---------------------------------------------------------- negotiation
pytap <<'PY'
from tmh import *
ALL = ["connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom", "unknown"]
for flag, st in (("noconnect", "connect"), ("nohelo", "helo"), ("nomail", "mail"),
                 ("norcpt", "rcpt"), ("nodata", "data"), ("nohdrs", "header"),
                 ("noeoh", "eoh"), ("nobody", "body"), ("nounknown", "unknown")):
    milter(["-n", flag])
    tag = "neg-" + flag
    r = txn(tag, before=("XYZZY hello",))
    time.sleep(0.3)  # callbacks after the last reply (no-reply stages)
    got = set(stages())
    tap(st not in got and all(s in got for s in ALL if s != st) and delivered(tag),
        "SMFIP_%s: no %s callback, all the others, delivered" % (flag[2:].upper(), st),
        r, stages())

t0 = time.time()
milter(["-n", "nr_all", "-a", "X-NR:yes"])
r = txn("nr-all", rcpts=("rcpt@example.net", "rcpt2@example.net"), before=("XYZZY hello",))
el = time.time() - t0
d = delivered("nr-all")
tap(r.get("eom") and r["eom"].code == 250 and el < 5 and d
    and d[1][-1][1] == b"X-NR: yes",
    "SMFIP_NR_* on every stage but eom (as rspamd): no hang (%.1f s), "
    "delivered with the milter's header" % el, r)
time.sleep(0.3)  # callbacks after the last reply (no-reply stages)
tap(all(s in stages() for s in ALL), "  ... and the milter got every stage", stages())
milter(["-n", "nr_all", "-r", "eom:reject"])
r = txn("nr-rej")
tap(r.get("eom") and r["eom"].code == 550, "SMFIP_NR_*: the eom reply still counts (550)", r)

milter(["-n", "hdr_leadspc", "-a", "X-Lead: lead"])
r = txn("leadspc")
d = delivered("leadspc")
tap(mlog_wait(r"^header Subject=< leadspc> "),
    "SMFIP_HDR_LEADSPC: the milter sees the value with its leading space", mlog())
tap(d and d[1][-1][1] == b"X-Lead: lead",
    "SMFIP_HDR_LEADSPC: a header added with its own space is not given another", d)

milter(["-M", "connect:{client_addr} {client_port} j", "-M", "helo:{client_name}",
        "-M", "eom:i {mail_addr}"])
r = txn("symlist")
qid = queued_id(r["eom"]) if r.get("eom") else None
c = mlog_wait(r"^connect ")
c = c.string if c else ""
tap(re.search(r" \{client_addr\}=<127\.0\.0\.1>", c) and
    re.search(r" \{client_port\}=<\d+>", c) and re.search(r" j=<mx\.test\.example>", c),
    "SMFIR_SETSYMLIST: connect gets {client_addr} {client_port} j as asked", c)
tap(mlog_wait(r"^helo .* \{client_name\}=<[^>]+>"),
    "SMFIR_SETSYMLIST: helo gets {client_name}", mlog())
tap(qid and mlog_wait(r"^eom .* i=<%s>.*\{mail_addr\}=<sender@example\.org>" % qid),
    "SMFIR_SETSYMLIST: eom gets i = the queue ID and {mail_addr}", qid, mlog())
PY

# ---------- SMFIP_RCPT_REJ: recipients Sluice rejects (relay denied)
stop_sluiced
start_tmilter m1
write_conf "smtpd_milters = unix:$T/m1.sock" "mynetworks = 10.0.0.0/8"
start_ok
pytap <<'PY'
from tmh import *
for flags, want in (([], False), (["-n", "rcpt_rej"], True)):
    milter(flags)
    r = txn("rrej", rcpts=("outside@example.net", "user1@localhost"))
    time.sleep(0.3)  # callbacks after the last reply (no-reply stages)
    log = "\n".join(mlog())
    seen = re.search(r"^rcpt <<outside@example\.net>>", log, re.M) is not None
    tap([x.code for x in r["rcpt"]][:1] == [454] and
        re.search(r"^rcpt <<user1@localhost>>", log, re.M) and seen == want,
        "%s: the milter %s the recipient Sluice rejected (relay denied)" %
        ("SMFIP_RCPT_REJ" if want else "without SMFIP_RCPT_REJ",
         "also sees" if want else "does not see"), r, log)
PY
