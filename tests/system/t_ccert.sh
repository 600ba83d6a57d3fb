#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_ccert.sh - TLS client certificates, as Postfix's SMTP server uses them
# (clients: Python's ssl with load_cert_chain, through smtplib's STARTTLS;
# certificates made with openssl: a CA, a client it signed, a self-signed
# one):
#   - smtpd_tls_ask_ccert: "Trusted TLS connection established" for the
#     CA's client (smtpd_tls_CAfile), "Untrusted" for the self-signed one,
#     "Anonymous" without; the Received: header's (Client CN "...",
#     Issuer "..." (verified OK));
#   - permit_tls_clientcerts with relay_clientcerts (a certificate's
#     fingerprint, a public key's): those clients relay, others do not;
#     permit_tls_all_clientcerts: any trusted certificate relays;
#   - check_ccert_access: the fingerprint in a table, "554 5.7.1
#     <CN>: Client certificate rejected: TEXT";
#   - smtpd_tls_req_ccert (with encrypt): 421 4.7.1 ... Error: No client
#     certificate presented / Client certificate not trusted, and the
#     NOQUEUE: abort: line;
#   - a policy server (tests/system/policyd.py) gets ccert_subject,
#     ccert_issuer, ccert_fingerprint and ccert_pubkey_fingerprint.
. "$(dirname "$0")/lib.sh"
need_binaries
command -v openssl >/dev/null 2>&1 || skip_all "openssl not installed"
"$PYTHON3" -c 'import ssl' 2>/dev/null || skip_all "python3 has no ssl module"
plan 14
setup

cat >"$T/x509.cnf" <<'CNF'
[req]
distinguished_name = dn
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[client]
basicConstraints = critical, CA:FALSE
extendedKeyUsage = clientAuth
CNF
x509_self ca ca "Sluice Test CA" && x509_signed client client client.test 1 &&
    x509_self rogue client rogue.test && tls_selfsigned srv localhost ||
    diag "openssl failed: $(cat "$T/openssl.out")"
FP=$(openssl x509 -in "$T/client.crt" -noout -fingerprint -sha256 | cut -d= -f2)
PKFP=$(openssl x509 -in "$T/rogue.crt" -noout -pubkey |
    openssl pkey -pubin -outform der | openssl dgst -sha256 -c |
    sed 's/.*= //' | tr a-f A-F)
export FP PKFP
printf '%s\n' "$FP client.test" "$PKFP rogue.test by its key" >"$T/relay_ccerts"
printf '%s\n' "$FP REJECT certificate withdrawn" >"$T/ccert_access"

TLS="smtpd_tls_security_level=may smtpd_tls_cert_file=$T/srv.crt smtpd_tls_key_file=$T/srv.key"
ASK="smtpd_tls_ask_ccert=yes smtpd_tls_CAfile=$T/ca.crt smtpd_tls_loglevel=2 smtpd_tls_received_header=yes"
PP=$(free_port)
export PP
"$PYTHON3" "$top_srcdir/tests/system/policyd.py" --port "$PP" --log "$T/policy.log" \
    >>"$T/policyd.out" 2>&1 &
_T_PIDS="$_T_PIDS $!"
wait_port 127.0.0.1 "$PP" 10 || diag "policyd did not start: $(cat "$T/policyd.out")"
SVCS=""
# shellcheck disable=SC2086 # TLS and ASK are words
svc ask $TLS $ASK smtpd_relay_restrictions=permit_tls_clientcerts,reject_unauth_destination
# shellcheck disable=SC2086
svc all $TLS $ASK smtpd_relay_restrictions=permit_tls_all_clientcerts,reject_unauth_destination
# shellcheck disable=SC2086
svc acc $TLS $ASK "smtpd_recipient_restrictions=check_ccert_access,texthash:$T/ccert_access"
# shellcheck disable=SC2086
svc req $TLS $ASK smtpd_tls_security_level=encrypt smtpd_tls_req_ccert=yes
# shellcheck disable=SC2086
svc pol $TLS $ASK "smtpd_recipient_restrictions=check_policy_service,inet:127.0.0.1:$PP,permit_mynetworks,reject_unauth_destination"
# shellcheck disable=SC2086
svc baddg $TLS $ASK smtpd_tls_fingerprint_digest=nosuchdigest
MASTER_EXTRA=$SVCS
write_conf "relay_clientcerts = texthash:$T/relay_ccerts" "mynetworks = 192.0.2.0/24"
start_ok
start_sink || diag "the sink did not start"

pytap <<'PY'
import re, smtplib, ssl
from sink import *

T = env("T")
P = lambda n: int(env("P_" + n))

def ctx(who=None):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    if who:
        c.load_cert_chain("%s/%s.crt" % (T, who), "%s/%s.key" % (T, who))
    return c

def tls(port, who, rcpt="x@example.com", data=None):
    """STARTTLS with who's certificate (None: none), then MAIL and RCPT
    (and DATA): the replies as "CODE TEXT"."""
    out = []
    m = smtplib.SMTP("127.0.0.1", port, timeout=10)
    try:
        m.ehlo("client.test")
        m.starttls(context=ctx(who))
        code, text = m.ehlo("client.test")
        out.append("%d %s" % (code, text.decode().splitlines()[0]))
        if code != 250:
            return out
        out.append("%d %s" % m.mail("a@example.org"))
        code, text = m.rcpt(rcpt)
        out.append("%d %s" % (code, text.decode()))
        if data and code == 250:
            code, text = m.data(data)
            out.append("%d %s" % (code, text.decode()))
        m.quit()
    except smtplib.SMTPServerDisconnected as e:
        out.append("disconnected")
    return out

# --- ask_ccert, relay_clientcerts
s = tls(P("ask"), "client", data=b"Subject: ccert\r\n\r\nfrom a certified client\r\n")
l = log_wait(r"Trusted TLS connection established from unknown\[127\.0\.0\.1\]: TLSv1\.[23]", 5)
c = log_wait(r"unknown\[127\.0\.0\.1\]: subject_CN=client\.test, issuer=Sluice Test CA, cert fingerprint=" + re.escape(env("FP")), 5)
tap(s[2] == "250 2.1.5 Ok" and l and c,
    "a client certificate from smtpd_tls_CAfile's CA, its fingerprint in "
    "relay_clientcerts: \"Trusted TLS connection established\", its "
    "subject, issuer and fingerprint logged (loglevel 2), and it may relay "
    "(permit_tls_clientcerts)", s)
got = sink_find(r"from a certified client", secs=15)
tap(got and b'(Client CN "client.test", Issuer "Sluice Test CA" (verified OK))' in got[1],
    "  the relayed message's Received: says (Client CN \"client.test\", "
    "Issuer \"Sluice Test CA\" (verified OK))", got and got[1][:600])

s = tls(P("ask"), None)
l = log_wait(r"Anonymous TLS connection established from unknown\[127\.0\.0\.1\]", 5)
tap(s[2] == "554 5.7.1 <x@example.com>: Relay access denied" and l,
    "no certificate: \"Anonymous TLS connection established\", no relaying", s)

s = tls(P("ask"), "rogue")
l = log_wait(r"Untrusted TLS connection established from unknown\[127\.0\.0\.1\]", 5)
tap(s[2] == "250 2.1.5 Ok" and l,
    "a self-signed certificate whose public key fingerprint is in "
    "relay_clientcerts: \"Untrusted TLS connection established\", and it may "
    "relay", s)

# --- permit_tls_all_clientcerts
s1 = tls(P("all"), "client")
s2 = tls(P("all"), "rogue")
tap(s1[2] == "250 2.1.5 Ok" and s2[2] == "554 5.7.1 <x@example.com>: Relay "
    "access denied",
    "permit_tls_all_clientcerts: the CA's client relays, the self-signed "
    "one does not", s1, s2)

# --- check_ccert_access
s = tls(P("acc"), "client", "x@localhost")
tap(s[2] == "554 5.7.1 <client.test>: Client certificate rejected: "
    "certificate withdrawn",
    "check_ccert_access, the certificate's fingerprint in the table: 554 "
    "5.7.1 <client.test>: Client certificate rejected: certificate withdrawn",
    s)
s = tls(P("acc"), "rogue", "x@localhost")
tap(s[2] == "250 2.1.5 Ok", "  another certificate: accepted", s)

# --- req_ccert
s = tls(P("req"), None)
l = log_wait(r"NOQUEUE: abort: TLS from unknown\[127\.0\.0\.1\]: No client "
             r"certificate presented", 5)
tap(s and s[0] == "421 4.7.1 mx.test.example Error: No client certificate "
    "presented" and l,
    "smtpd_tls_req_ccert with encrypt, no certificate: EHLO after STARTTLS "
    "gets 421 4.7.1 ... Error: No client certificate presented, and the "
    "NOQUEUE: abort: line", s)
s = tls(P("req"), "rogue")
tap(s and s[0] == "421 4.7.1 mx.test.example Error: Client certificate not "
    "trusted", "  a self-signed one: 421 4.7.1 ... Client certificate not "
    "trusted", s)
s = tls(P("req"), "client", "x@localhost")
tap(s[2:] == ["250 2.1.5 Ok"], "  the CA's client: served", s)

# --- a digest OpenSSL does not know: said at start, no fingerprints
w = log_wait(r"warning: service 127\.0\.0\.1:%d: smtpd_tls_fingerprint_digest: "
             r"unknown digest \"nosuchdigest\": client certificates have no "
             r"fingerprint" % P("baddg"), 5)
s = tls(P("baddg"), "client", "x@localhost")
tap(w and s[2] == "250 2.1.5 Ok",
    "smtpd_tls_fingerprint_digest = nosuchdigest: a start-up warning naming "
    "the service; the service still works", s)

# --- the policy server's attributes
import json
s = tls(P("pol"), "client", "dunno@localhost")
reqs = [json.loads(l)["attrs"] for l in open(T + "/policy.log")]
a = reqs[-1] if reqs else {}
tap(s[2] == "250 2.1.5 Ok" and a.get("ccert_subject") == "client.test"
    and a.get("ccert_issuer") == "Sluice Test CA"
    and a.get("ccert_fingerprint") == env("FP")
    and len(a.get("ccert_pubkey_fingerprint", "")) == 95,
    "check_policy_service: the request has ccert_subject, ccert_issuer, "
    "ccert_fingerprint and ccert_pubkey_fingerprint (SHA-256, AB:CD:...)",
    s, a)
PY
check "sluiced is still running" alive "$MASTERPID"
