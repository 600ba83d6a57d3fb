#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_maps.sh - sluice map build / map query (postmap, postmap -q) and
# sluice aliases / newaliases (postalias for alias_database):
#   - a table built by sluice is read by Postfix's own postmap -q, and the
#     other way round: the files are the same Berkeley DB format;
#   - continuation lines, comments, lower-cased keys, a bad line and a
#     duplicate key are said with FILE, line N, as postmap says them;
#   - map query exits 0 with the value, 1 when no key is found;
#   - newaliases (sluice invoked under that name, MAIL_CONFIG naming the
#     configuration) builds alias_database, and the running daemon is
#     reloaded: a new alias works at once.
. "$(dirname "$0")/lib.sh"
need_binaries
POSTMAP=$(PATH=$PATH:/usr/sbin:/sbin command -v postmap) ||
    skip_all "postmap not installed (Debian package postfix)"
POSTALIAS=$(PATH=$PATH:/usr/sbin:/sbin command -v postalias) ||
    skip_all "postalias not installed (Debian package postfix)"
plan 10
setup
mkdir -p "$T/pf"
: >"$T/pf/main.cf"

cat >"$T/virtual" <<'V'
# a comment
Info@Virt.Example   alice@example.org,
    bob@example.org
sales@virt.example  carol@example.org
badline
sales@virt.example  second@example.org
V
out=$(sl map build "hash:$T/virtual" 2>&1)
rc=$?
is "sluice map build hash:FILE succeeds" "$rc" 0
printf '%s\n' "$out" | grep -qx "sluice: warning: $T/virtual, line 5: expected format: key whitespace value" &&
    printf '%s\n' "$out" | grep -qx "sluice: warning: $T/virtual, line 6: duplicate entry: \"sales@virt.example\""
result "  and says the bad line and the duplicate with their line numbers" $?
got=$("$POSTMAP" -c "$T/pf" -q info@virt.example "hash:$T/virtual" 2>&1)
is "Postfix's postmap -q reads it: the continued value, the key lower-cased" \
    "$got" "alice@example.org, bob@example.org"
got=$(sl map query "hash:$T/virtual" sales@virt.example)
is "sluice map query: the first of the duplicates" "$got" "carol@example.org"
sl map query "hash:$T/virtual" nobody@virt.example >/dev/null 2>&1
is "  exit 1 for a key that is not there" "$?" 1

printf '%s\n' "relay.example OK" >"$T/relay"
"$POSTMAP" -c "$T/pf" "hash:$T/relay"
got=$(sl map query "hash:$T/relay" RELAY.example)
is "a table made by postmap: sluice map query reads it" "$got" "OK"

cat >"$T/aliases" <<'A'
# aliases
postmaster: root
root: alice,
  bob
A
ln -s "$SLUICE" "$T/newaliases"
write_conf "alias_maps = hash:$T/aliases" "alias_database = hash:$T/aliases" \
    "myorigin = localhost"
out=$(MAIL_CONFIG=$CONF "$T/newaliases" 2>&1)
rc=$?
got=$("$POSTALIAS" -c "$T/pf" -q root "hash:$T/aliases" 2>&1)
is "newaliases (MAIL_CONFIG) builds alias_database; postalias -q reads it" \
    "$rc:$got" "0:alice, bob"

start_ok
printf '%s\n' "helpdesk: carol" >>"$T/aliases"
out=$(sl aliases 2>&1)
rc=$?
like "sluice aliases with the daemon running: built, and the daemon reloads" \
    "$rc:$out" "^0:sluice: refreshing the Sluice mail system"
check "  the reload is logged" log_wait 10 "reload -- version .*, configuration "
pytap <<'PY'
import glob, os, time
from sink import *
P = int(env("PORT"))
r = send_mail(P, "a@example.org", ["helpdesk@localhost"],
              b"Subject: t\r\n\r\nfor the helpdesk\r\n")
ok = False
for _ in range(150):
    for f in glob.glob(os.path.join(env("T"), "mail", "carol", "new", "*")):
        ok = ok or b"for the helpdesk" in open(f, "rb").read()
    if ok:
        break
    time.sleep(0.1)
tap(r.code == 250 and ok,
    "  and the new alias works at once (helpdesk -> carol's Maildir)", r)
PY
stop_sluiced
