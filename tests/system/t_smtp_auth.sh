#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_smtp_auth.sh - SMTP AUTH in the SMTP client (Postfix's smtp_sasl_*
# parameters), against fake servers (tests/system/sink.py with its --auth-*
# options, one per next hop, reached as x@NAME.example via transport_maps)
# and against a real one: a second Sluice ("B", smtpd_sasl_type = dovecot
# with a private Dovecot, dovecot_lib.sh, given CRAM-MD5 here) that lets
# 127.0.0.1 relay only after AUTH and relays to the main sink.
# Six runs of the Sluice under test ("A"), each with its own settings:
# 1. inline: table, smtp_sasl_security_options = noanonymous (plaintext
#    allowed): the exact bytes of AUTH PLAIN (initial response), AUTH LOGIN
#    (user, then password, in answer to the two 334s), AUTH CRAM-MD5 (the
#    RFC 2195 answer, checked by the sink and against Dovecot); the
#    client's preference CRAM-MD5, PLAIN, LOGIN among the server's; the old
#    "AUTH=" form; a password with ':'; a server without AUTH and a next
#    hop without a table entry: no AUTH, delivered; a wrong password (535):
#    deferred 4.7.8 with the server's text, retried, still queued, no MAIL;
#    454: deferred 4.7.0, then sent on retry; only unknown mechanisms:
#    deferred 4.7.0 "no compatible authentication mechanisms", QUIT;
#    lookup order: the host name before [host]:port (a name answered by
#    tests/system/ioshim.c); through B: CRAM-MD5 chosen and accepted by
#    Dovecot (sasl_method=CRAM-MD5 in B's log, ESMTPA in B's Received:),
#    a wrong password: deferred with B's 535; three messages in quick
#    succession to a server that wants AUTH: each connection (cached or
#    not) authenticated once, no 530;
# 2. texthash: table, default smtp_sasl_security_options (noplaintext),
#    smtp_sasl_tls_security_options = noanonymous, smtp_tls_security_level
#    = may: PLAIN over TLS (also when AUTH is listed only after STARTTLS),
#    PLAIN/LOGIN in clear refused ("no compatible"), CRAM-MD5 in clear;
# 3. static:alice:alice-secret, smtp_sasl_mechanism_filter = !cram-md5,
#    login, smtp_sasl_auth_soft_bounce = no: LOGIN through B; a 535 bounces
#    (5.7.8, the sender gets the notice); a 454 is still deferred; a server
#    with only filtered-out mechanisms: "no compatible";
# 4. all security defaults over TLS: PLAIN/LOGIN-only server refused;
# 5. nodictionary in clear, noactive over TLS, then 6. mutual_auth: a
#    server offering CRAM-MD5 PLAIN LOGIN is refused each time.
# No password, plain or base64, ever shows in either maillog.
. "$(dirname "$0")/lib.sh"
need_binaries
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
"$PYTHON3" -c 'import ssl' 2>/dev/null || skip_all "python3 has no ssl module"
plan 55
setup

HAVE_DOVE=1
for p in dovecot doveconf doveadm; do
    command -v "$p" >/dev/null 2>&1 ||
        PATH=$PATH:/usr/sbin:/sbin command -v "$p" >/dev/null 2>&1 || HAVE_DOVE=0
done
PATH=$PATH:/usr/sbin:/sbin
export PATH HAVE_DOVE
. "$(dirname "$0")/dovecot_lib.sh"

tls_selfsigned hop sink.test.example
TLS="--tls-cert $T/hop.crt --tls-key $T/hop.key"

# --- one sink per next hop: hop NAME HOST [sink options...]
ROUTES=""
hop()
{
    local name=$1 host=$2 port
    shift 2
    port=$(free_port)
    eval "P_$name=$port"
    export "P_$name"
    mkdir -p "$T/s.$name"
    ROUTES="$ROUTES $name.example=smtp:[$host]:$port,"
    start_sink "$port" "$T/s.$name" "$@" ||
        diag "the sink for $name did not start: $(tail -n 3 "$T/sink.out")"
}
REQ="--auth-required"
# shellcheck disable=SC2086 # TLS is words
{
    # run 1
    hop plain 127.0.0.1 --auth-mechs PLAIN --auth-user pu:pp-secret1 $REQ
    hop login 127.0.0.1 --auth-mechs LOGIN --auth-user lu:lp-secret2 $REQ
    hop cram 127.0.0.1 --auth-mechs CRAM-MD5 --auth-user cu:cp-secret3 $REQ
    hop pref 127.0.0.1 --auth-mechs "LOGIN PLAIN CRAM-MD5" --auth-user ru:rp-secret4 $REQ
    hop pref2 127.0.0.1 --auth-mechs "LOGIN DIGEST-MD5 PLAIN" --auth-user su:sp-secret5 $REQ
    hop old 127.0.0.1 --auth-mechs "LOGIN PLAIN" --auth-old-only --auth-user ou:op-secret6 $REQ
    hop colon 127.0.0.1 --auth-mechs PLAIN --auth-user "ku:pa:ss:w0rd7" $REQ
    hop noauth 127.0.0.1
    hop noentry 127.0.0.1 --auth-mechs "PLAIN LOGIN" --auth-user eu:ep-secret8
    hop wrongpw 127.0.0.1 --auth-mechs PLAIN --auth-user wu:right-secret9 $REQ
    hop t454 127.0.0.1 --auth-mechs PLAIN --auth-user tu:tp-secret10 $REQ \
        --auth-reply "454 4.7.0 Temporary authentication failure: try later" --auth-reply-count 1
    hop nomech 127.0.0.1 --auth-mechs "ANONYMOUS DIGEST-MD5 GSSAPI" $REQ
    hop hostkey authhost.test --auth-mechs PLAIN --auth-user hu:hp-secret11 $REQ
    hop reuse 127.0.0.1 --auth-mechs PLAIN --auth-user gu:gp-secret18 $REQ
    # run 2
    hop tlsplain 127.0.0.1 $TLS --auth-mechs PLAIN --auth-user xu:xp-secret12 $REQ
    hop tlsonly 127.0.0.1 $TLS --auth-mechs "PLAIN LOGIN" --auth-tls-only --auth-user yu:yp-secret13 $REQ
    hop clearplain 127.0.0.1 --auth-mechs "PLAIN LOGIN" --auth-user zu:zp-secret14 $REQ
    hop clearcram 127.0.0.1 --auth-mechs "PLAIN LOGIN CRAM-MD5" --auth-user vu:vp-secret15 $REQ
    # run 3 (static:alice:alice-secret)
    hop hard 127.0.0.1 --auth-mechs LOGIN --auth-user alice:other-secret16 $REQ
    hop filtered 127.0.0.1 --auth-mechs "CRAM-MD5 PLAIN" --auth-user alice:alice-secret $REQ
    hop t454b 127.0.0.1 --auth-mechs LOGIN --auth-user alice:alice-secret $REQ \
        --auth-reply "454 4.7.0 Temporary authentication failure: not now"
    # run 4
    hop tlsdef 127.0.0.1 $TLS --auth-mechs "PLAIN LOGIN" --auth-user du:dp-secret17 $REQ
    # runs 5 and 6
    hop allclear 127.0.0.1 --auth-mechs "CRAM-MD5 PLAIN LOGIN" --auth-user alice:alice-secret $REQ
    hop alltls 127.0.0.1 $TLS --auth-mechs "CRAM-MD5 PLAIN LOGIN" --auth-user alice:alice-secret $REQ
}
start_sink

# --- B: a second Sluice with Dovecot behind it; 127.0.0.1 may relay only
# after AUTH; it relays to the main sink
B1=$(free_port) # alice's mail (CRAM-MD5, then LOGIN)
B2=$(free_port) # a wrong password in A's table
BDIR=$T/b
export B1 B2 BDIR
ROUTES="$ROUTES viab.example=smtp:[127.0.0.1]:$B1, badb.example=smtp:[127.0.0.1]:$B2,"
BSTART=1
if [ "$HAVE_DOVE" = 1 ] && dovecot_conf &&
    sed -i 's/^auth_mechanisms = plain login$/auth_mechanisms = plain login cram-md5/' "$DOVECONF" &&
    grep -q '^auth_mechanisms = plain login cram-md5$' "$DOVECONF" &&
    doveconf -c "$DOVECONF" -n >/dev/null 2>&1 && start_dovecot; then
    mkdir -p "$BDIR/conf"
    cat >"$BDIR/conf/main.cf" <<EOF
# sluice B: the AUTH server
queue_directory = $BDIR/spool
mail_spool_directory = $T/mail/
maillog_file = $BDIR/maillog
myhostname = b.test.example
mydestination = localhost
mynetworks = 192.0.2.0/24
relayhost = [127.0.0.1]:$SINKPORT
smtpd_peername_lookup = no
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
mail_owner = $(id -un)
clamav_database_directory = $top_srcdir/conf/clamav
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $DOVESOCK
EOF
    printf '127.0.0.1:%s inet n - n - - smtpd\n127.0.0.1:%s inet n - n - - smtpd\n' \
        "$B1" "$B2" >"$BDIR/conf/master.cf"
    "$SLUICED" -c "$BDIR/conf" >>"$T/sluiced.out" 2>&1 &
    BPID=$!
    _T_MASTERS="$_T_MASTERS $BPID"
    if wait_port 127.0.0.1 "$B2" 15 && alive "$BPID"; then
        BSTART=0
    else
        diag "sluice B did not start" "$(tail -n 15 "$T/sluiced.out")"
    fi
fi
export BSTART
if [ "$BSTART" = 0 ]; then
    ok "a second Sluice (B) with a private Dovecot ($(dovecot --version | cut -d' ' -f1), plain login cram-md5) listens on 127.0.0.1:$B1 and :$B2"
elif [ "$HAVE_DOVE" = 1 ]; then
    not_ok "a second Sluice (B) with a private Dovecot listens on 127.0.0.1:$B1 and :$B2"
else
    ok "# SKIP dovecot not installed (Debian package dovecot-core): no real AUTH server"
fi

# The helpers of the inline python below ("from au import *").
cat >"$T/au.py" <<'PY'
import base64, hashlib, hmac, subprocess
from sink import *

T = env("T")
PORT = int(env("PORT"))
ADDR = r"127\.0\.0\.1\[127\.0\.0\.1\]"
REAL = env("BSTART") == "0"
NOCOMPAT = (r"dsn=4\.7\.0, status=deferred \(SASL authentication failed: server %s "
            r"offered no compatible authentication mechanisms for this type of "
            r"connection security\)$")


def b64(x):
    return base64.b64encode(x.encode() if isinstance(x, str) else x).decode()


def port(n):
    return int(env("P_" + n))


def sdir(n):
    return env("SINKDIR") if n == "main" else os.path.join(T, "s." + n)


def qid(n):
    try:
        return open(os.path.join(T, "id." + n)).read().strip() or "NONE"
    except OSError:
        return "NONE"


def body(n):
    return open(os.path.join(T, "body." + n), "rb").read()


def msg(tag):
    return (b"From: <a@example.org>\r\nSubject: smtp auth %s\r\n"
            b"Message-ID: <auth-%s@example.org>\r\n\r\n"
            b".leading dot\r\n..two dots\r\nline for %s\r\n"
            % (tag.encode(), tag.encode(), tag.encode()))


def queue(names):
    """One message per next hop n (to x@n.example); the IDs of those not
    queued."""
    bad = []
    for n in names:
        data = msg(n)
        r = send_mail(PORT, "a@example.org", ["x@%s.example" % n], data)
        open(os.path.join(T, "id." + n), "w").write(queued_id(r) or "")
        open(os.path.join(T, "body." + n), "wb").write(data)
        if not queued_id(r):
            bad.append((n, r))
    return bad


def stored(n):
    """[{body: content after the first Received:, raw, auth, tls, num}] of
    the messages at n's sink."""
    out = []
    for p in eml_files(sdir(n)):
        x = {"raw": open(p, "rb").read(), "auth": None, "tls": None,
             "num": int(os.path.basename(p)[:-4])}
        x["body"] = split_received(x["raw"])[1]
        for k in ("auth", "tls"):
            if os.path.exists(p[:-4] + "." + k):
                x[k] = open(p[:-4] + "." + k).read().strip()
        out.append(x)
    return out


def one(n, secs=15):
    """n's message at its sink, exactly once (else None), and a text
    saying what is there."""
    wait_eml(sdir(n), 1, secs)
    time.sleep(0.2)
    got = [x for x in stored(n) if x["body"] == body(n)]
    why = "copies of the message: %d (of %d messages there: %s)" % (
        len(got), len(stored(n)), [(x["auth"], x["tls"], len(x["body"])) for x in stored(n)])
    return (got[0] if len(got) == 1 else None), why


def slog(n):
    """The sink's log: [(client port, text)]."""
    out = []
    try:
        for l in open(os.path.join(sdir(n), "sink.log"), errors="replace"):
            t, p, text = (l.rstrip("\n").split(" ", 2) + ["", ""])[:3]
            out.append((p, text))
    except OSError:
        pass
    return out


def conn_of(n, num):
    for p, text in slog(n):
        if text == "> 250 2.0.0 Ok: queued as SINK%04d" % num:
            return p
    return None


def cmds(n, conn=None):
    """The commands n's sink received (on one connection when given)."""
    return [text[2:] for p, text in slog(n)
            if text.startswith("< ") and (conn is None or p == conn)]


def events(n, what):
    """The sink's own lines starting with what (e.g. "auth ")."""
    return [text for p, text in slog(n) if text.startswith(what)]


def line_rx(n, rest, rcpt=None, relay=None):
    rcpt = rcpt or "x@%s.example" % n
    relay = relay or r"%s:%d" % (ADDR, port(n))
    return r"%s: to=<%s>, relay=%s, .*%s" % (qid(n), re.escape(rcpt), relay, rest)


def status(n, rest, secs=15, rcpt=None, relay=None):
    """Wait for the log line of n's message matching rest (after the
    relay=)."""
    return log_wait(line_rx(n, rest, rcpt, relay), secs)


def count(n, rest, rcpt=None, relay=None):
    return len(re.findall(line_rx(n, rest, rcpt, relay), read_log(), re.M))


def count_wait(n, rest, k, secs=15, relay=None):
    end = time.time() + secs
    while count(n, rest, relay=relay) < k and time.time() < end:
        time.sleep(0.2)
    return count(n, rest, relay=relay)


def sent(n, secs=15, relay=None):
    return status(n, r"dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as ", secs,
                  relay=relay)


def queued(n):
    ql = subprocess.run([env("SLUICE"), "-c", env("CONF"), "queue", "list"],
                        capture_output=True, text=True).stdout
    return bool(re.search(r"^%s[*!]?( |$)" % qid(n), ql, re.M))


def mails(n):
    return [c for c in cmds(n) if c.upper().startswith("MAIL")]


def blog():
    try:
        return open(os.path.join(env("BDIR"), "maillog"), errors="replace").read()
    except OSError:
        return ""


def blog_wait(rx, secs=15):
    end = time.time() + secs
    while True:
        m = re.search(rx, blog(), re.M)
        if m or time.time() > end:
            return m
        time.sleep(0.1)


def skip(k, why):
    for i in range(k):
        print("ok - # SKIP " + why, flush=True)
PY
PYTHONPATH=$T:$PYTHONPATH
export PYTHONPATH

# --- run 1: inline: table, plaintext allowed
# shellcheck disable=SC2154 # the P_NAME ports are set by hop() (eval)
PW="{ [127.0.0.1]:$P_plain = pu:pp-secret1 }, { [127.0.0.1]:$P_login = lu:lp-secret2 },
 { [127.0.0.1]:$P_cram = cu:cp-secret3 }, { [127.0.0.1]:$P_pref = ru:rp-secret4 },
 { [127.0.0.1]:$P_pref2 = su:sp-secret5 }, { [127.0.0.1]:$P_old = ou:op-secret6 },
 { [127.0.0.1]:$P_colon = ku:pa:ss:w0rd7 }, { [127.0.0.1]:$P_noauth = nu:np-unused },
 { [127.0.0.1]:$P_wrongpw = wu:wrong-secret9 }, { [127.0.0.1]:$P_t454 = tu:tp-secret10 },
 { [127.0.0.1]:$P_nomech = mu:mp-unused }, { [127.0.0.1]:$P_reuse = gu:gp-secret18 },
 { authhost.test = hu:hp-secret11 }, { [authhost.test]:$P_hostkey = hu:not-this-one },
 { [127.0.0.1]:$B1 = alice:alice-secret }, { [127.0.0.1]:$B2 = alice:not-her-password }"
PW=$(printf '%s' "$PW" | tr '\n' ' ')
write_conf "transport_maps = inline:{${ROUTES%,} }" \
    "smtp_sasl_auth_enable = yes" \
    "smtp_sasl_password_maps = inline:{ $PW }" \
    "smtp_sasl_security_options = noanonymous" \
    "smtp_host_lookup = native"
out=$(sl check 2>&1)
rc=$?
if [ $rc -eq 0 ] && ! printf '%s\n' "$out" | grep -Eq 'smtp_sasl.*not implemented'; then
    ok "sluice check takes the smtp_sasl_* settings, none called not implemented"
else
    not_ok "sluice check takes the smtp_sasl_* settings, none called not implemented"
    diag "exit $rc" "$out"
fi
# authhost.test is 127.0.0.1 for sluiced (tests/system/ioshim.c: its
# getaddrinfo, hence smtp_host_lookup = native above; the shim
# also turns on -v: the debug lines must not show a password either)
HOSTS_OK=0
if ioshim_wrap "$T/hosts" "IOSHIM_HOSTS=authhost.test=127.0.0.1"; then
    HOSTS_OK=1
    SLUICED_WRAP=$T/hosts start_ok
else
    diag "tests/system/ioshim.c does not build: no test of the host name key"
    start_ok
fi
export HOSTS_OK

pytap <<'PY'
from au import *
names = "plain login cram pref pref2 old colon noauth noentry wrongpw t454 nomech".split()
if env("HOSTS_OK") == "1":
    names.append("hostkey")
if REAL:
    names += ["viab", "badb"]
bad = queue(names)
tap(not bad, "run 1: %d messages queued, one per next hop" % len(names), bad)
PY

pytap <<'PY'
from au import *
# PLAIN: the initial response, the exact bytes
s = sent("plain")
m, why = one("plain")
conn = m and conn_of("plain", m["num"])
c = cmds("plain", conn)
tap(s and m and m["auth"] == "PLAIN pu",
    "PLAIN: status=sent, the message at the sink once, byte for byte, on a connection authenticated as pu", why)
want = ["EHLO mx.test.example", "AUTH PLAIN " + b64("\0pu\0pp-secret1")]
tap(c[:2] == want and c[2:3] and c[2].startswith("MAIL FROM:<a@example.org>"),
    "  the client sent EHLO, AUTH PLAIN base64(NUL pu NUL pp-secret1) (initial response), then MAIL FROM", c[:4])

s = sent("login")
m, why = one("login")
c = cmds("login", m and conn_of("login", m["num"]))
tap(s and m and m["auth"] == "LOGIN lu", "LOGIN: status=sent, byte for byte, authenticated as lu", why)
tap(c[1:4] == ["AUTH LOGIN", b64("lu"), b64("lp-secret2")] and c[4:5] and c[4].startswith("MAIL FROM:"),
    "  the client sent AUTH LOGIN, base64(lu) to the first 334, base64(lp-secret2) to the second, then MAIL FROM", c[:5])

s = sent("cram")
m, why = one("cram")
conn = m and conn_of("cram", m["num"])
c = cmds("cram", conn)
tap(s and m and m["auth"] == "CRAM-MD5 cu",
    "CRAM-MD5: status=sent, byte for byte, authenticated as cu (the sink checked the HMAC)", why)
chal = [t[len("auth CRAM-MD5 challenge "):] for p, t in slog("cram")
        if p == conn and t.startswith("auth CRAM-MD5 challenge ")]
want = None
if chal:
    want = b64("cu " + hmac.new(b"cp-secret3", chal[0].encode(), hashlib.md5).hexdigest())
tap(c[1:2] == ["AUTH CRAM-MD5"] and want and c[2:3] == [want],
    "  AUTH CRAM-MD5 (no initial response), then base64(\"cu \" + lowercase hex HMAC-MD5(password, challenge))",
    c[:4], "challenge %s, expected %s" % (chal, want))
PY

pytap <<'PY'
from au import *
for n, offer, mech, user in (("pref", "LOGIN PLAIN CRAM-MD5", "CRAM-MD5", "ru"),
                             ("pref2", "LOGIN DIGEST-MD5 PLAIN", "PLAIN", "su")):
    s = sent(n)
    m, why = one(n)
    a = [c for c in cmds(n) if c.startswith("AUTH")]
    tap(s and m and m["auth"] == "%s %s" % (mech, user) and len(a) == 1 and a[0].startswith("AUTH " + mech),
        "server offers %s: the client uses %s (its own order: CRAM-MD5, PLAIN, LOGIN), once, status=sent"
        % (offer, mech), why, a)
s = sent("old")
m, why = one("old")
ehlo = [t for p, t in slog("old") if t.startswith("> 250-AUTH")]
tap(s and m and m["auth"] == "PLAIN ou" and ehlo and all(t.startswith("> 250-AUTH=") for t in ehlo),
    "EHLO lists only the old form 250-AUTH=LOGIN PLAIN: PLAIN used, status=sent", why, ehlo)
s = sent("colon")
m, why = one("colon")
a = [c for c in cmds("colon") if c.startswith("AUTH")]
tap(s and m and m["auth"] == "PLAIN ku" and a == ["AUTH PLAIN " + b64("\0ku\0pa:ss:w0rd7")],
    "table value ku:pa:ss:w0rd7: user ku, password pa:ss:w0rd7 (split at the first ':'), status=sent", why, a)
for n, what in (("noauth", "a server whose EHLO has no AUTH (table entry present)"),
                ("noentry", "no table entry for the next hop (the server offers AUTH PLAIN LOGIN)")):
    s = sent(n)
    m, why = one(n)
    a = [c for c in cmds(n) if c.upper().startswith("AUTH")]
    tap(s and m and m["auth"] is None and not a, "%s: no AUTH sent, status=sent, byte for byte" % what, why, a)
PY

pytap <<'PY'
from au import *
rx = (r"dsn=4\.7\.8, status=deferred \(SASL authentication failed; server %s said: "
      r"535 5\.7\.8 Error: authentication failed: authentication failure\)$" % ADDR)
tap(status("wrongpw", rx),
    "wrong password, 535 5.7.8: dsn=4.7.8, status=deferred (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8 Error: authentication failed: authentication failure)")
k = count_wait("wrongpw", rx, 2, 15)
tap(k >= 2 and queued("wrongpw") and not mails("wrongpw") and not stored("wrongpw")
    and events("wrongpw", "auth PLAIN failed user=wu"),
    "  retried (deferred %d times), still in the queue, the server never saw MAIL FROM" % k,
    "queued: %s, MAIL: %s" % (queued("wrongpw"), mails("wrongpw")))

tap(status("t454", r"dsn=4\.7\.0, status=deferred \(SASL authentication failed; server %s said: "
           r"454 4\.7\.0 Temporary authentication failure: try later\)$" % ADDR),
    "454 4.7.0 to AUTH: dsn=4.7.0, status=deferred (SASL authentication failed; server ... said: 454 4.7.0 Temporary authentication failure: try later)")
s = sent("t454")
m, why = one("t454")
tap(s and m and m["auth"] == "PLAIN tu" and not queued("t454"),
    "  the retry authenticates (235): status=sent, once, byte for byte, gone from the queue", why)

s = status("nomech", NOCOMPAT % ADDR)
tap(s, "server offers ANONYMOUS DIGEST-MD5 GSSAPI only: dsn=4.7.0, status=deferred (SASL authentication failed: server 127.0.0.1[127.0.0.1] offered no compatible authentication mechanisms for this type of connection security)")
c = cmds("nomech")
tap(c[:2] == ["EHLO mx.test.example", "QUIT"] and not [x for x in c if x.startswith(("AUTH", "MAIL"))]
    and queued("nomech"),
    "  the server saw EHLO then QUIT, neither AUTH nor MAIL; the message stays queued", c[:6])

if env("HOSTS_OK") != "1":
    skip(1, "tests/system/ioshim.c does not build")
    raise SystemExit
s = sent("hostkey", relay=r"authhost\.test\[127\.0\.0\.1\]:%d" % port("hostkey"))
m, why = one("hostkey")
tap(s and m and m["auth"] == "PLAIN hu" and events("hostkey", "auth PLAIN ok user=hu"),
    "next hop [authhost.test]:PORT with entries for authhost.test and for [authhost.test]:PORT: the host name's wins, status=sent (relay=authhost.test[127.0.0.1]:PORT)",
    why, events("hostkey", "auth "))
PY

# --- the connection cache: three messages 0.3 s apart to one next hop
# whose server wants AUTH before MAIL
pytap <<'PY'
from au import *
ids = []
for i in range(3):
    if i:
        time.sleep(0.3)
    r = send_mail(PORT, "a@example.org", ["r%d@reuse.example" % i], msg("reuse%d" % i))
    ids.append(queued_id(r))
wait_eml(sdir("reuse"), 3, 15)
time.sleep(0.3)
got = stored("reuse")
conns = sorted(set(conn_of("reuse", x["num"]) for x in got))
auths = {c: [x for x in cmds("reuse", c) if x.startswith("AUTH")] for c in conns}
mails_ = {c: [x for x in cmds("reuse", c) if x.startswith("MAIL")] for c in conns}
tap(all(ids) and len(got) == 3 and all(x["auth"] == "PLAIN gu" for x in got)
    and all(len(a) == 1 for a in auths.values())
    and not [t for p, t in slog("reuse") if t.startswith("> 530")],
    "three messages in quick succession to a next hop that wants AUTH: all sent, on %d connection(s), each authenticated once (%s MAIL per connection), no 530"
    % (len(conns), "/".join(str(len(mails_[c])) for c in conns)), ids, auths, mails_)
PY

# --- through B (Dovecot): CRAM-MD5 for real
pytap <<'PY'
from au import *
if not REAL:
    skip(6, "no real AUTH server")
    raise SystemExit
c = Client(int(env("B1")))
c.reply()
e = c.cmd("EHLO client.test")
c.cmd("QUIT")
c.close()
a = [l for l in e.lines if l.upper().startswith("AUTH ")]
tap(a and "CRAM-MD5" in a[0].split() and "PLAIN" in a[0].split(),
    "B's EHLO lists %s (Dovecot with cram-md5)" % (a[0] if a else "no AUTH"), e)
s = status("viab", r"dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as ([0-9A-F]{14})\)",
           relay=r"%s:%s" % (ADDR, env("B1")))
bid = s.group(1) if s else "NONE"
tap(s, "A to B: status=sent (250 2.0.0 Ok: queued as BID)")
tap(blog_wait(r"%s: client=unknown\[127\.0\.0\.1\], sasl_method=CRAM-MD5, sasl_username=alice$" % bid),
    "  B's log: BID: client=unknown[127.0.0.1], sasl_method=CRAM-MD5, sasl_username=alice (Dovecot checked the HMAC)",
    blog()[-1500:])
f = sink_find(r"Message-ID: <auth-viab@example\.org>")
rb, rest = split_received(f[1]) if f else (None, None)
ra, rest2 = split_received(rest) if rest else (None, None)
tap(rb and re.match(rb"Received: from mx\.test\.example \(unknown \[127\.0\.0\.1\]\)\r\n"
                    rb"\tby b\.test\.example \(Sluice\) with ESMTPA id " + bid.encode() + rb"\r\n", rb)
    and ra and b"by mx.test.example (Sluice)" in ra and rest2 == body("viab"),
    "  the sink gets it from B: B's Received: says with ESMTPA, then A's, then the message byte for byte",
    rb, ra)
rx = (r"dsn=4\.7\.8, status=deferred \(SASL authentication failed; server %s said: "
      r"535 5\.7\.8 Error: authentication failed: [^)]+\)$" % ADDR)
s = status("badb", rx, relay=r"%s:%s" % (ADDR, env("B2")))
tap(s and blog_wait(r"warning: unknown\[127\.0\.0\.1\]: SASL CRAM-MD5 authentication failed"),
    "wrong password to B: dsn=4.7.8, status=deferred (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8 Error: authentication failed: ...); B logs the failed CRAM-MD5",
    s and s.group(0), blog()[-800:])
k = count_wait("badb", rx, 2, 15, relay=r"%s:%s" % (ADDR, env("B2")))
tap(k >= 2 and queued("badb"), "  retried (%d times), still in A's queue" % k)
PY

# --- run 2: texthash:, noplaintext in clear, noanonymous over TLS
sl queue delete ALL >/dev/null 2>&1
wait_for 10 queue_empty
stop_sluiced
# shellcheck disable=SC2154 # the P_NAME ports are set by hop() (eval)
cat >"$T/sasl_passwd" <<EOF
# next hop    user:password
[127.0.0.1]:$P_tlsplain xu:xp-secret12
[127.0.0.1]:$P_tlsonly yu:yp-secret13
[127.0.0.1]:$P_clearplain zu:zp-secret14
[127.0.0.1]:$P_clearcram vu:vp-secret15
EOF
write_conf "transport_maps = inline:{${ROUTES%,} }" \
    "smtp_sasl_auth_enable = yes" \
    "smtp_sasl_password_maps = texthash:$T/sasl_passwd" \
    "smtp_sasl_tls_security_options = noanonymous" \
    "smtp_tls_security_level = may"
start_ok
pytap <<'PY'
from au import *
names = "tlsplain tlsonly clearplain clearcram".split()
bad = queue(names)
tap(not bad, "run 2 (texthash:): %d messages queued" % len(names), bad)
s = sent("tlsplain")
m, why = one("tlsplain")
tap(s and m and m["auth"] == "PLAIN xu" and m["tls"],
    "over TLS with smtp_sasl_tls_security_options = noanonymous: PLAIN used, status=sent, byte for byte", why)
c = cmds("tlsplain", m and conn_of("tlsplain", m["num"]))
tap(c[:4] == ["EHLO mx.test.example", "STARTTLS", "EHLO mx.test.example", "AUTH PLAIN " + b64("\0xu\0xp-secret12")],
    "  EHLO, STARTTLS, EHLO again, then AUTH PLAIN (over TLS)", c[:5])
s = sent("tlsonly")
m, why = one("tlsonly")
tap(s and m and m["auth"] == "PLAIN yu" and m["tls"],
    "AUTH listed only in the EHLO after STARTTLS: PLAIN over TLS, status=sent", why)
s = status("clearplain", NOCOMPAT % ADDR)
tap(s and not [c for c in cmds("clearplain") if c.startswith(("AUTH", "MAIL"))],
    "in clear, default smtp_sasl_security_options (noplaintext), server offers PLAIN LOGIN: deferred 4.7.0 no compatible authentication mechanisms; no AUTH, no MAIL",
    cmds("clearplain")[:6])
s = sent("clearcram")
m, why = one("clearcram")
tap(s and m and m["auth"] == "CRAM-MD5 vu" and not m["tls"],
    "in clear, noplaintext, server offers PLAIN LOGIN CRAM-MD5: CRAM-MD5 used, status=sent", why)
PY

# --- run 3: static:, mechanism filter, no soft bounce
sl queue delete ALL >/dev/null 2>&1
wait_for 10 queue_empty
stop_sluiced
write_conf "transport_maps = inline:{${ROUTES%,} }" \
    "smtp_sasl_auth_enable = yes" \
    "smtp_sasl_password_maps = static:alice:alice-secret" \
    "smtp_sasl_security_options =" \
    "smtp_sasl_mechanism_filter = !cram-md5, login" \
    "smtp_sasl_auth_soft_bounce = no"
start_ok
pytap <<'PY'
from au import *
names = "hard filtered t454b".split() + (["viab2"] if REAL else [])
bad = []
for n in names:
    data = msg(n)
    r = send_mail(PORT, "a@example.org", ["x@%s.example" % ("viab" if n == "viab2" else n)], data)
    open(os.path.join(T, "id." + n), "w").write(queued_id(r) or "")
    open(os.path.join(T, "body." + n), "wb").write(data)
    if not queued_id(r):
        bad.append((n, r))
tap(not bad, "run 3 (static:): %d messages queued" % len(names), bad)
rx = (r"dsn=5\.7\.8, status=bounced \(SASL authentication failed; server %s said: "
      r"535 5\.7\.8 Error: authentication failed: authentication failure\)$" % ADDR)
s = status("hard", rx)
tap(s, "smtp_sasl_auth_soft_bounce = no, 535 5.7.8: dsn=5.7.8, status=bounced (SASL authentication failed; server 127.0.0.1[127.0.0.1] said: 535 5.7.8 ...)")
n = sink_find(r"x@hard\.example", secs=15)
tap(n and n[0].startswith("MAIL FROM:<>\nRCPT TO:<a@example.org>\n") and not queued("hard") and not mails("hard") and events("hard", "auth LOGIN failed user=alice"),
    "  the sender gets a non-delivery notice (through a server without AUTH), the message left the queue, the server never saw MAIL FROM",
    n and n[0], queued("hard"), mails("hard"))
tap(status("filtered", NOCOMPAT % ADDR) and not [c for c in cmds("filtered") if c.startswith("AUTH")],
    "smtp_sasl_mechanism_filter = !cram-md5, login and a server offering CRAM-MD5 PLAIN: deferred 4.7.0 no compatible authentication mechanisms (not bounced)",
    cmds("filtered")[:5])
tap(status("t454b", r"dsn=4\.7\.0, status=deferred \(SASL authentication failed; server %s said: "
           r"454 4\.7\.0 Temporary authentication failure: not now\)$" % ADDR) and queued("t454b"),
    "smtp_sasl_auth_soft_bounce = no, 454 4.7.0: still deferred (dsn=4.7.0), still queued")
if REAL:
    s = status("viab2", r"dsn=2\.0\.0, status=sent \(250 2\.0\.0 Ok: queued as ([0-9A-F]{14})\)",
               rcpt="x@viab.example", relay=r"%s:%s" % (ADDR, env("B1")))
    bid = s.group(1) if s else "NONE"
    tap(s and blog_wait(r"%s: client=unknown\[127\.0\.0\.1\], sasl_method=LOGIN, sasl_username=alice$" % bid),
        "through B (PLAIN LOGIN CRAM-MD5 offered), filter !cram-md5, login: LOGIN, B logs sasl_method=LOGIN, sasl_username=alice (static: table)",
        s and s.group(0), blog()[-800:])
    f = sink_find(r"Message-ID: <auth-viab2@example\.org>")
    rb, rest = split_received(f[1]) if f else (None, None)
    tap(rb and b"by b.test.example (Sluice) with ESMTPA id " + bid.encode() in rb
        and split_received(rest)[1] == body("viab2"),
        "  the sink gets it from B (with ESMTPA), byte for byte", rb)
else:
    skip(2, "no real AUTH server")
PY

# --- run 4: the security defaults, over TLS
sl queue delete ALL >/dev/null 2>&1
wait_for 10 queue_empty
stop_sluiced
# shellcheck disable=SC2154 # the P_NAME ports are set by hop() (eval)
write_conf "transport_maps = inline:{${ROUTES%,} }" \
    "smtp_sasl_auth_enable = yes" \
    "smtp_sasl_password_maps = inline:{ { [127.0.0.1]:$P_tlsdef = du:dp-secret17 } }" \
    "smtp_tls_security_level = may"
start_ok
pytap <<'PY'
from au import *
bad = queue(["tlsdef"])
s = status("tlsdef", NOCOMPAT % ADDR)
tls = [t for p, t in slog("tlsdef") if t.startswith("tls TLSv")]
tap(not bad and s and tls and not [c for c in cmds("tlsdef") if c.startswith(("AUTH", "MAIL"))],
    "security defaults (smtp_sasl_tls_security_options = $smtp_sasl_security_options = noplaintext, noanonymous), over TLS, server offers PLAIN LOGIN: deferred 4.7.0 no compatible authentication mechanisms",
    bad, tls, cmds("tlsdef")[:6])
PY

# --- runs 5 and 6: the other security options rule out all three
for run in 5 6; do
    sl queue delete ALL >/dev/null 2>&1
    wait_for 10 queue_empty
    stop_sluiced
    if [ $run = 5 ]; then
        OPTS=("smtp_sasl_security_options = nodictionary" "smtp_sasl_tls_security_options = noactive")
    else
        OPTS=("smtp_sasl_security_options = mutual_auth" "smtp_sasl_tls_security_options = mutual_auth, noanonymous")
    fi
    write_conf "transport_maps = inline:{${ROUTES%,} }" \
        "smtp_sasl_auth_enable = yes" \
        "smtp_sasl_password_maps = static:alice:alice-secret" \
        "smtp_tls_security_level = may" "${OPTS[@]}"
    start_ok
    RUN=$run OPT1=${OPTS[0]} OPT2=${OPTS[1]} pytap <<'PY'
from au import *
run = env("RUN")
for n in ("allclear", "alltls"):
    data = msg(n + run)
    r = send_mail(PORT, "a@example.org", ["x@%s.example" % n], data)
    open(os.path.join(T, "id." + n), "w").write(queued_id(r) or "")
for n, opt, over in (("allclear", env("OPT1"), "in clear"), ("alltls", env("OPT2"), "over TLS")):
    s = status(n, NOCOMPAT % ADDR)
    tls = [t for p, t in slog(n) if t.startswith("tls TLSv")]
    tap(s and (tls if n == "alltls" else not tls) and not [c for c in cmds(n) if c.startswith(("AUTH", "MAIL"))],
        "%s, %s, server offers CRAM-MD5 PLAIN LOGIN: deferred 4.7.0 no compatible authentication mechanisms" % (opt, over),
        tls, cmds(n)[-6:])
PY
done

# --- no password in any log
pytap <<'PY'
from au import *
import glob
pws = {"pu": "pp-secret1", "lu": "lp-secret2", "cu": "cp-secret3", "ru": "rp-secret4",
       "su": "sp-secret5", "ou": "op-secret6", "ku": "pa:ss:w0rd7", "wu": "wrong-secret9",
       "tu": "tp-secret10", "hu": "hp-secret11", "xu": "xp-secret12", "yu": "yp-secret13",
       "zu": "zp-secret14", "vu": "vp-secret15", "du": "dp-secret17", "gu": "gp-secret18",
       "alice": "alice-secret", "alice2": "not-her-password"}
logs = read_log() + blog()
found = []
for u, p in pws.items():
    for form in (p, b64(p), b64("\0%s\0%s" % (u, p)), b64("\0alice\0%s" % p)):
        if form in logs:
            found.append(form)
tap(not found, "no password (as is, base64, or in a PLAIN response) in A's or B's maillog", found)
PY
check "sluiced is still running" alive "$MASTERPID"
