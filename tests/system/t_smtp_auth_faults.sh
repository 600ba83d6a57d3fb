#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_smtp_auth_faults.sh - SMTP client AUTH (smtp_sasl_*) against servers
# that misbehave, at the bounds, and with bad configurations.
# - configuration: smtp_sasl_auth_enable = yes without
#   smtp_sasl_password_maps, an unknown word in smtp_sasl_security_options
#   or smtp_sasl_tls_security_options, a texthash: table that does not
#   exist: `sluice check` exits 1 and names the culprit, sluiced does not
#   start; smtp_sasl_type = cyrus is accepted without a word;
# - fake servers (tests/system/sink.py --auth-*), one per next hop: a 334
#   beyond the mechanism's steps for PLAIN, LOGIN and CRAM-MD5 (an endless
#   334 loop: deferred 4.3.0 "authentication protocol loop"), a CRAM-MD5
#   challenge that is not base64 or empty (4.7.0 "cannot authenticate"), a
#   challenge line of exactly 4096 bytes (works), of 4100 bytes and of
#   1 MB (4.5.0 "reply line too long"), a 334 of 100 lines (read, then a
#   loop) and of 101 (4.5.0 "reply has too many lines"), no answer to AUTH
#   (4.4.2 after smtp_helo_timeout = 3s), the connection closed at AUTH
#   (4.4.2 lost connection), a reply that is not SMTP (4.5.0 malformed),
#   534 5.7.9 (deferred 4.7.9); every such message stays queued, is
#   retried, and the server never sees MAIL FROM; no password in the log;
# - smtp_sasl_auth_enable = no (the default) with a table: no AUTH;
# - as root with mail_owner = nobody: a table of mode 0600 owned by root
#   is read (before the queue manager drops root), and read again after
#   sluice reload (a corrected password is used for the deferred message).
. "$(dirname "$0")/lib.sh"
need_binaries
plan 48
setup

# --- configuration errors (no daemon)
# refuses DESC ERE: sluice check exits 1 and its output matches ERE;
# sluiced exits non-zero (not killed by timeout) and says the same (4)
refuses()
{
    local desc=$1 rx=$2 out rc
    out=$(sl check 2>&1)
    rc=$?
    if [ $rc -eq 1 ] && printf '%s\n' "$out" | grep -Eq -- "$rx"; then
        ok "sluice check: $desc -> exit 1, names it"
    else
        not_ok "sluice check: $desc -> exit 1, names it"
        diag "exit $rc, want a line matching: $rx" "$out"
    fi
    out=$(timeout 10 "$SLUICED" -c "$CONF" 2>&1)
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 124 ] && printf '%s\n' "$out" | grep -Eq -- "$rx" &&
        ! port_open 127.0.0.1 "$PORT" 2>/dev/null; then
        ok "  sluiced refuses to start (exit $rc) and says why"
    else
        not_ok "  sluiced refuses to start and says why"
        diag "exit $rc, want a line matching: $rx" "$out"
    fi
}
write_conf "smtp_sasl_auth_enable = yes"
refuses "smtp_sasl_auth_enable = yes without smtp_sasl_password_maps" "smtp_sasl_password_maps"
write_conf "smtp_sasl_auth_enable = yes" "smtp_sasl_password_maps = static:u:p" \
    "smtp_sasl_security_options = noplaintext, bogusword"
refuses "smtp_sasl_security_options = noplaintext, bogusword" \
    "smtp_sasl_security_options.*bogusword|bogusword.*smtp_sasl_security_options"
write_conf "smtp_sasl_auth_enable = yes" "smtp_sasl_password_maps = static:u:p" \
    "smtp_sasl_tls_security_options = noanonymous, tlsbogus"
refuses "smtp_sasl_tls_security_options = noanonymous, tlsbogus" \
    "smtp_sasl_tls_security_options.*tlsbogus|tlsbogus.*smtp_sasl_tls_security_options"
write_conf "smtp_sasl_auth_enable = yes" "smtp_sasl_password_maps = texthash:$T/nonexistent"
refuses "smtp_sasl_password_maps = texthash:\$T/nonexistent" \
    "smtp_sasl_password_maps.*$T/nonexistent"
write_conf "smtp_sasl_auth_enable = yes" "smtp_sasl_password_maps = static:u:p" \
    "smtp_sasl_type = cyrus"
out=$(sl check 2>&1)
rc=$?
if [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -q 'smtp_sasl'; then
    ok "sluice check: smtp_sasl_type = cyrus (Postfix's default) is accepted without a word"
else
    not_ok "sluice check: smtp_sasl_type = cyrus (Postfix's default) is accepted without a word"
    diag "exit $rc" "$out"
fi

# --- misbehaving servers: hop NAME [sink options...]
ROUTES=""
PW=""
hop()
{
    local name=$1 port
    shift
    port=$(free_port)
    eval "P_$name=$port"
    export "P_$name"
    mkdir -p "$T/s.$name"
    ROUTES="$ROUTES $name.example=smtp:[127.0.0.1]:$port,"
    PW="$PW { [127.0.0.1]:$port = fu:fp-secret-$name },"
    start_sink "$port" "$T/s.$name" --auth-user "fu:fp-secret-$name" --auth-required "$@" ||
        diag "the sink for $name did not start: $(tail -n 3 "$T/sink.out")"
}
hop ploop --auth-mechs PLAIN --auth-misbehave loop
hop lloop --auth-mechs LOGIN --auth-misbehave loop
hop cloop --auth-mechs CRAM-MD5 --auth-misbehave loop
hop badchal --auth-mechs CRAM-MD5 --auth-misbehave badchallenge
hop emptychal --auth-mechs CRAM-MD5 --auth-misbehave emptychallenge
hop bigchal --auth-mechs CRAM-MD5 --auth-challenge-size 4096
hop longchal --auth-mechs CRAM-MD5 --auth-challenge-size 4100
hop hugechal --auth-mechs CRAM-MD5 --auth-challenge-size 1048580
hop lines100 --auth-mechs PLAIN --auth-misbehave loop --auth-334-lines 100
hop lines101 --auth-mechs CRAM-MD5 --auth-334-lines 101
hop stall --auth-mechs PLAIN --auth-misbehave stall
hop close --auth-mechs PLAIN --auth-misbehave close
hop garbage --auth-mechs PLAIN --auth-misbehave garbage
hop r534 --auth-mechs PLAIN --auth-reply "534 5.7.9 Authentication mechanism is too weak"
# run 2 (smtp_sasl_auth_enable = no): offers AUTH, does not require it
port=$(free_port)
P_off=$port
export P_off
mkdir -p "$T/s.off"
ROUTES="$ROUTES off.example=smtp:[127.0.0.1]:$port,"
PW="$PW { [127.0.0.1]:$port = fu:fp-secret-off },"
start_sink "$port" "$T/s.off" --auth-mechs "PLAIN LOGIN CRAM-MD5" --auth-user fu:fp-secret-off
# run 3 (as root, mail_owner = nobody): a table only root may read
port=$(free_port)
P_root=$port
export P_root
mkdir -p "$T/s.root"
ROUTES="$ROUTES root.example=smtp:[127.0.0.1]:$port,"
start_sink "$port" "$T/s.root" --auth-mechs PLAIN --auth-user ru:root-only-secret --auth-required
DEFERRED="ploop lloop cloop badchal emptychal longchal hugechal lines100 lines101 stall close garbage r534"
export DEFERRED
start_sink

write_conf "transport_maps = inline:{${ROUTES%,} }" \
    "smtp_sasl_auth_enable = yes" \
    "smtp_sasl_password_maps = inline:{${PW%,} }" \
    "smtp_sasl_security_options = noanonymous" \
    "smtp_helo_timeout = 3s"
start_ok

cat >"$T/af.py" <<'PY'
import base64, subprocess
from sink import *

T = env("T")
PORT = int(env("PORT"))
ADDR = r"127\.0\.0\.1\[127\.0\.0\.1\]"


def b64(x):
    return base64.b64encode(x.encode() if isinstance(x, str) else x).decode()


def port(n):
    return int(env("P_" + n))


def sdir(n):
    return os.path.join(T, "s." + n)


def qid(n):
    try:
        return open(os.path.join(T, "id." + n)).read().strip() or "NONE"
    except OSError:
        return "NONE"


def msg(tag):
    return (b"Subject: auth fault %s\r\nMessage-ID: <authf-%s@example.org>\r\n\r\n"
            b".leading dot\r\nline for %s\r\n" % (tag.encode(), tag.encode(), tag.encode()))


def queue(names):
    bad = []
    for n in names:
        data = msg(n)
        r = send_mail(PORT, "a@example.org", ["x@%s.example" % n], data)
        open(os.path.join(T, "id." + n), "w").write(queued_id(r) or "")
        open(os.path.join(T, "body." + n), "wb").write(data)
        if not queued_id(r):
            bad.append((n, r))
    return bad


def slog(n):
    """The sink's log: [(time, client port, text)]."""
    out = []
    try:
        for l in open(os.path.join(sdir(n), "sink.log"), errors="replace"):
            t, p, text = (l.rstrip("\n").split(" ", 2) + ["", ""])[:3]
            out.append((float(t), p, text))
    except (OSError, ValueError):
        pass
    return out


def cmds(n):
    return [text[2:] for t, p, text in slog(n) if text.startswith("< ")]


def events(n, what):
    return [text for t, p, text in slog(n) if text.startswith(what)]


def line_rx(n, rest):
    return r"%s: to=<x@%s\.example>, relay=%s:%d, .*%s" % (qid(n), n, ADDR, port(n), rest)


def status(n, rest, secs=15):
    return log_wait(line_rx(n, rest), secs)


def count(n, rest):
    return len(re.findall(line_rx(n, rest), read_log(), re.M))


def queue_list():
    return subprocess.run([env("SLUICE"), "-c", env("CONF"), "queue", "list"],
                          capture_output=True, text=True).stdout


def queued(n, ql=None):
    return bool(re.search(r"^%s[*!]?( |$)" % qid(n), ql or queue_list(), re.M))
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

pytap <<'PY'
from af import *
names = env("DEFERRED").split() + ["bigchal"]
bad = queue(names)
tap(not bad, "%d messages queued, one per misbehaving next hop" % len(names), bad)
PY

pytap <<'PY'
from af import *
LOOP = r"dsn=4\.3\.0, status=deferred \(SASL authentication failed; authentication protocol loop with server %s\)$" % ADDR
for n, what in (("ploop", "PLAIN: a 334 after the initial response"),
                ("lloop", "LOGIN: a third 334"),
                ("cloop", "CRAM-MD5: a second 334")):
    tap(status(n, LOOP),
        "%s, and 334 to every line after it: dsn=4.3.0, status=deferred (SASL authentication failed; authentication protocol loop with server 127.0.0.1[127.0.0.1])" % what)
ends = [(n, events(n, "auth ")) for n in ("ploop", "lloop", "cloop")]
c = cmds("lloop")
i = c.index("AUTH LOGIN") if "AUTH LOGIN" in c else -1
tap(all(any(re.match(r"auth \S+ (loop ended after [12] extra 334|aborted)", e) for e in ev) for n, ev in ends)
    and i >= 0 and c[i + 1:i + 3] == [b64("fu"), b64("fp-secret-lloop")],
    "  the client answers no extra 334 (at most \"*\" or QUIT after it); LOGIN had sent the user and the password",
    ends, c[:8])
CANNOT = r"dsn=4\.7\.0, status=deferred \(SASL authentication failed; cannot authenticate to server %s: [^)]+\)$" % ADDR
tap(status("badchal", CANNOT),
    "CRAM-MD5 challenge \"334 not base64!!\": dsn=4.7.0, status=deferred (SASL authentication failed; cannot authenticate to server 127.0.0.1[127.0.0.1]: ...)")
tap(status("emptychal", CANNOT),
    "CRAM-MD5 challenge \"334 \" (empty): dsn=4.7.0, status=deferred (SASL authentication failed; cannot authenticate to server 127.0.0.1[127.0.0.1]: ...)")
tap(not [x for x in cmds("badchal") + cmds("emptychal") if re.match(r"^[A-Za-z0-9+/]{20,}=*$", x)],
    "  and no CRAM-MD5 answer was sent to either", cmds("badchal")[-4:], cmds("emptychal")[-4:])
PY

pytap <<'PY'
from af import *
s = status("bigchal", r"dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as SINK0001\)")
ev = events("bigchal", "auth CRAM-MD5 ")
big = [x for t, p, x in slog("bigchal") if x.startswith("> 334 ")]
tap(s and "auth CRAM-MD5 ok user=fu" in ev and big and len(big[0]) - 2 == 4096,
    "CRAM-MD5 challenge line of exactly 4096 bytes (a 3069-byte challenge): authenticated, status=sent",
    [e[:80] for e in ev], [len(b) - 2 for b in big])
LONG = r"dsn=4\.5\.0, status=deferred \(protocol error with %s: reply line too long while performing the SASL authentication handshake\)$" % ADDR
tap(status("longchal", LONG),
    "a 4100-byte challenge line: dsn=4.5.0, status=deferred (protocol error with 127.0.0.1[127.0.0.1]: reply line too long while performing the SASL authentication handshake)")
tap(status("hugechal", LONG), "a 1 MB challenge line: the same")
tap(status("lines100", r"dsn=4\.3\.0, status=deferred \(SASL authentication failed; authentication protocol loop with server %s\)$" % ADDR),
    "a 334 of 100 lines after PLAIN's initial response: read whole (100 lines is the limit), then deferred 4.3.0 authentication protocol loop")
tap(status("lines101", r"dsn=4\.5\.0, status=deferred \(protocol error with %s: reply has too many lines while performing the SASL authentication handshake\)$" % ADDR),
    "a CRAM-MD5 challenge of 101 lines: dsn=4.5.0, status=deferred (protocol error with 127.0.0.1[127.0.0.1]: reply has too many lines while performing the SASL authentication handshake)")
PY

pytap <<'PY'
from af import *
s = status("stall", r"dsn=4\.4\.2, status=deferred \(conversation with %s timed out while performing the SASL authentication handshake\)$" % ADDR, 20)
# the server notes the close after the client has logged its deferral
end = time.time() + 5
while True:
    L = slog("stall")
    t0 = [t for t, p, x in L if x == "auth stall"]
    t1 = [t for t, p, x in L if x == "auth stall ended: client closed"]
    if t1 or time.time() > end:
        break
    time.sleep(0.1)
dt = t1[0] - t0[0] if t0 and t1 else -1
tap(s and 2.5 <= dt <= 8,
    "no answer to AUTH: after smtp_helo_timeout = 3s (%.1f s) dsn=4.4.2, status=deferred (conversation with 127.0.0.1[127.0.0.1] timed out while performing the SASL authentication handshake)" % dt,
    L[-4:])
tap(status("close", r"dsn=4\.4\.2, status=deferred \(lost connection with %s while performing the SASL authentication handshake\)$" % ADDR),
    "connection closed at AUTH: dsn=4.4.2, status=deferred (lost connection with 127.0.0.1[127.0.0.1] while performing the SASL authentication handshake)")
tap(status("garbage", r"dsn=4\.5\.0, status=deferred \(protocol error with %s: malformed reply while performing the SASL authentication handshake\)$" % ADDR),
    "AUTH answered \"this is no reply\": dsn=4.5.0, status=deferred (protocol error with 127.0.0.1[127.0.0.1]: malformed reply while performing the SASL authentication handshake)")
tap(status("r534", r"dsn=4\.7\.9, status=deferred \(SASL authentication failed; server %s said: 534 5\.7\.9 Authentication mechanism is too weak\)$" % ADDR),
    "534 5.7.9 to AUTH (smtp_sasl_auth_soft_bounce = yes): dsn=4.7.9, status=deferred (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 534 5.7.9 Authentication mechanism is too weak)")
PY

# every deferred one: retried, still queued, never MAIL FROM (one check each)
pytap <<'PY'
from af import *
names = env("DEFERRED").split()
end = time.time() + 25
while time.time() < end and min(count(n, r"status=deferred") for n in names) < 2:
    time.sleep(0.3)
ql = queue_list()
for n in names:
    k = count(n, r"status=deferred")
    m = [c for c in cmds(n) if c.upper().startswith("MAIL")]
    tap(k >= 2 and queued(n, ql) and not m and not eml_files(sdir(n))
        and count(n, r"status=(sent|bounced)") == 0,
        "%s: deferred again on retry (%d times), still queued, the server never saw MAIL FROM" % (n, k),
        "queued: %s, MAIL: %s" % (queued(n, ql), m[:2]))
PY
pytap <<'PY'
from af import *
logs = read_log()
found = [n for n in env("DEFERRED").split() + ["bigchal"]
         if "fp-secret-" + n in logs or b64("fp-secret-" + n) in logs
         or b64("\0fu\0fp-secret-" + n) in logs]
tap(not found, "no password (as is, base64, or in a PLAIN response) in the maillog", found)
PY
check "sluiced is still running" alive "$MASTERPID"

# --- run 2: smtp_sasl_auth_enable = no (the default), the table still set
sl queue delete ALL >/dev/null 2>&1
wait_for 10 queue_empty
stop_sluiced
write_conf "transport_maps = inline:{${ROUTES%,} }" \
    "smtp_sasl_password_maps = inline:{${PW%,} }" \
    "smtp_sasl_security_options ="
start_ok
pytap <<'PY'
from af import *
bad = queue(["off"])
s = status("off", r"dsn=2\.0\.0, status=sent")
tap(not bad and s and not [c for c in cmds("off") if c.upper().startswith("AUTH")]
    and len(eml_files(sdir("off"))) == 1,
    "smtp_sasl_auth_enable = no, a table entry, a server offering PLAIN LOGIN CRAM-MD5: no AUTH, status=sent",
    bad, cmds("off")[:6])
PY

# --- run 3: the table is read before the queue manager drops root
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    sl queue delete ALL >/dev/null 2>&1
    wait_for 10 queue_empty
    stop_sluiced
    chmod 755 "$T" # for nobody: the queue directory is in $T
    printf '[127.0.0.1]:%s ru:not-the-secret\n' "$P_root" >"$T/root_passwd"
    chmod 600 "$T/root_passwd"
    write_conf "transport_maps = inline:{${ROUTES%,} }" \
        "mail_owner = nobody" \
        "smtp_sasl_auth_enable = yes" \
        "smtp_sasl_password_maps = texthash:$T/root_passwd" \
        "smtp_sasl_security_options = noanonymous"
    start_ok
    QMGR=$(child_pid qmgr)
    export QMGR
    pytap <<'PY'
from af import *
import pwd
bad = queue(["root"])
st = os.stat(os.path.join(T, "root_passwd"))
try:
    who = pwd.getpwuid(os.stat("/proc/%s" % env("QMGR")).st_uid).pw_name
except (OSError, KeyError):
    who = "?"
s = status("root", r"dsn=4\.7\.8, status=deferred \(SASL authentication failed; server %s said: 535 " % ADDR)
tap(not bad and who == "nobody" and st.st_uid == 0 and (st.st_mode & 0o077) == 0 and s
    and events("root", "auth PLAIN failed user=ru"),
    "mail_owner = nobody (the queue manager runs as %s), a texthash: table of mode 0600 owned by root: read (AUTH as its user ru; its password is wrong: deferred 4.7.8)" % who,
    bad, "mode %o uid %d" % (st.st_mode & 0o777, st.st_uid), events("root", "auth "))
PY
    printf '[127.0.0.1]:%s ru:root-only-secret\n' "$P_root" >"$T/root_passwd"
    check "the table corrected, sluice reload" sl reload
    pytap <<'PY'
from af import *
s = status("root", r"dsn=2\.0\.0, status=sent", 20)
tap(s and events("root", "auth PLAIN ok user=ru") and len(eml_files(sdir("root"))) == 1,
    "  after the reload the new password is used (read as root again): the deferred message is sent on retry",
    events("root", "auth "))
PY
else
    ok "# SKIP not root (or no user nobody): no root-only table test"
    ok "# SKIP not root (or no user nobody): no root-only table test"
    ok "# SKIP not root (or no user nobody): no root-only table test"
    ok "# SKIP not root (or no user nobody): no root-only table test"
fi
