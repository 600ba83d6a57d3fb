#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_install.sh - make install DESTDIR=... puts the binaries, the default
# configuration and the man pages in place, and the installed default
# configuration is valid.
. "$(dirname "$0")/lib.sh"
need_binaries
plan 6
setup
STAGE=$T/stage
# MAKEFLAGS from an outer make check would leak -j and jobserver fds in
out=$(env -u MAKEFLAGS -u MFLAGS make -s -C "$top_builddir" install \
    DESTDIR="$STAGE" prefix=/usr sysconfdir=/etc 2>&1)
result "make install DESTDIR=... succeeds" $?
[ -n "$out" ] && diag "$out"
check "binaries: /usr/bin/sluiced and /usr/bin/sluice" \
    test -x "$STAGE/usr/bin/sluiced" -a -x "$STAGE/usr/bin/sluice"
check "default configuration: /etc/sluice/main.cf and master.cf" \
    test -f "$STAGE/etc/sluice/main.cf" -a -f "$STAGE/etc/sluice/master.cf"
check "man pages: sluiced(8), sluice(1), sluice(5)" \
    test -f "$STAGE/usr/share/man/man8/sluiced.8" \
    -a -f "$STAGE/usr/share/man/man1/sluice.1" \
    -a -f "$STAGE/usr/share/man/man5/sluice.5"
# the default database directory (/var/lib/clamav) may hold no database
# here: sluice check must say so, and be happy once there is one
out=$("$STAGE/usr/bin/sluice" -c "$STAGE/etc/sluice" check 2>&1)
rc=$?
if [ -e /var/lib/clamav/main.cvd ] || [ -e /var/lib/clamav/main.cld ]; then
    is "the installed configuration passes sluice check" "$rc:$out" "0:"
else
    echo "clamav_database_directory = $top_srcdir/conf/clamav" \
        >>"$STAGE/etc/sluice/main.cf"
    out2=$("$STAGE/usr/bin/sluice" -c "$STAGE/etc/sluice" check 2>&1)
    rc2=$?
    if [ $rc -eq 1 ] && printf '%s\n' "$out" |
        grep -Eq '^sluice: error: clamav: .*/var/lib/clamav' && [ $rc2 -eq 0 ]; then
        ok "sluice check: no database in /var/lib/clamav is an error; with one the installed configuration passes"
    else
        not_ok "sluice check: no database in /var/lib/clamav is an error; with one the installed configuration passes"
        diag "without: rc=$rc $out" "with: rc=$rc2 $out2"
    fi
fi
like "the installed sluice knows its configuration directory" \
    "$("$STAGE/usr/bin/sluice" -c "$STAGE/etc/sluice" conf config_directory)" \
    "^config_directory = $STAGE/etc/sluice\$"
