#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_sender_relay.sh - sender_dependent_relayhost_maps and
# smtp_sender_dependent_authentication, as a site with one smarthost per
# sender domain (or per ISP account) uses them:
#   - mail from a listed address goes to its own relay, mail from a listed
#     @domain to that domain's, mail from anyone else to relayhost;
#   - the address without its +extension is looked up too (with
#     recipient_delimiter = +), for the relay and for the account;
#   - the null sender is looked up as "<>" (empty_address_relayhost_maps_
#     lookup_key);
#   - transport_maps still decide first;
#   - with smtp_sender_dependent_authentication = yes, the relay is logged
#     in to with the sender's own account (smtp_sasl_password_maps by
#     address, then @domain) and with the next hop's for a sender that
#     has none; a connection made for one account is not reused for
#     another.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 8
setup

S2=$(free_port)
S3=$(free_port)
S4=$(free_port)
export S2 S3 S4
mkdir -p "$T/s2" "$T/s3" "$T/s4"
start_sink || diag "sink did not start"
start_sink "$S2" "$T/s2" --auth-mechs PLAIN --auth-user alice:a-secret \
    --auth-user hostacct:h-secret --auth-required || diag "sink 2 did not start"
start_sink "$S3" "$T/s3" || diag "sink 3 did not start"
start_sink "$S4" "$T/s4" || diag "sink 4 did not start"

write_conf "sender_dependent_relayhost_maps = inline:{ alice@one.example=[127.0.0.1]:$S2, @one.example=[127.0.0.1]:$S2, @two.example=[127.0.0.1]:$S3, <>=[127.0.0.1]:$S3 }" \
    "transport_maps = inline:{ tp.example=smtp:[127.0.0.1]:$S4 }" \
    "recipient_delimiter = +" \
    "smtp_sasl_auth_enable = yes" \
    "smtp_sasl_security_options = noanonymous" \
    "smtp_sender_dependent_authentication = yes" \
    "smtp_sasl_password_maps = inline:{ alice@one.example=alice:a-secret, [127.0.0.1]:$S2=hostacct:h-secret }"
start_ok

pytap <<'PY'
import os, re, time
from sink import *

P = int(env("PORT"))
T = env("T")

def send(sender, rcpt, subj):
    return send_mail(P, sender, [rcpt], ("Subject: %s\r\n\r\nbody\r\n" % subj).encode())

def where(subj, secs=10):
    """The sink (directory) that stored the message with this subject,
    and its .auth line."""
    end = time.time() + secs
    while time.time() < end:
        for d in ("sink", "s2", "s3", "s4"):
            for e, c in sink_msgs(os.path.join(T, d)):
                if ("Subject: %s\r\n" % subj).encode() in c:
                    auth = ""
                    for f in eml_files(os.path.join(T, d)):
                        if ("Subject: %s\r\n" % subj).encode() in open(f, "rb").read():
                            a = f[:-4] + ".auth"
                            if os.path.exists(a):
                                auth = open(a).read().strip()
                    return d, auth
        time.sleep(0.1)
    return None, ""

r1 = send("alice@one.example", "x@far.example", "m1")
r2 = send("bob@one.example", "x@far.example", "m2")
w1, w2 = where("m1"), where("m2")
tap(r1.code == 250 and w1 == ("s2", "PLAIN alice"),
    "from a listed address: its own relay, logged in with its own account",
    r1, w1)
tap(r2.code == 250 and w2 == ("s2", "PLAIN hostacct"),
    "from its domain (@one.example): the same relay, with the relay's own "
    "account (no connection made for alice is reused)", r2, w2)

r = send("alice+news@one.example", "x@far.example", "m3")
w = where("m3")
tap(r.code == 250 and w == ("s2", "PLAIN alice"),
    "an address with an +extension is looked up without it too", r, w)

r = send("carol@two.example", "x@far.example", "m4")
tap(r.code == 250 and where("m4")[0] == "s3",
    "from another listed domain: that domain's relay", r)

r = send("dave@other.example", "x@far.example", "m5")
tap(r.code == 250 and where("m5")[0] == "sink",
    "from anyone else: relayhost", r)

r = send("", "x@far.example", "m6")
tap(r.code == 250 and where("m6")[0] == "s3",
    "the null sender: looked up as <> (empty_address_relayhost_maps_lookup_key)", r)

r = send("alice@one.example", "y@tp.example", "m7")
tap(r.code == 250 and where("m7")[0] == "s4",
    "transport_maps decide before the sender's relay", r)
PY
stop_sluiced
result
