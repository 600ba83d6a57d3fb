#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_clamav_testfiles.sh - the samples of Debian's clamav-testfiles
# package (clam.exe packed, archived, embedded in documents...), each
# sent as a base64 attachment, are refused with 554 naming a signature
# this test writes.
#
# The samples carry ClamAV's own test signature, which only the official
# databases know, so the test writes its own into a temp database
# directory: Sluice.TestFile.ClamExe, a body signature (.ndb, any target)
# for 19 bytes of clam.exe's import table, ".DLL\0CLAMessageBoxA". Only a
# handful of the samples hold those bytes as they are (clam.exe, the cpio
# and cab archives, the OLE2 document, the PDF...); in all the others they
# appear only once libclamav has unpacked the sample: the UPX, FSG, MEW,
# Petite, PESpin, Upack, WWPack, yC, ASPack packers, NSIS and InstallShield
# installers, AutoIt scripts, zip (deflate, bzip2, deflate64, implode),
# 7z, arj, tar.gz, bzip2, SZDD, CHM, SIS, TNEF, BinHex, RTF, HTML, a
# PowerPoint file and mail with base64 and uuencoded parts. With this
# signature libclamav 1.4.6 (clamscan) finds every sample in the package,
# so none is left out.
#
# libclamav appends ".UNOFFICIAL" to the names of signatures from
# unsigned databases; the test accepts the name with or without it.
. "$(dirname "$0")/lib.sh"
need_binaries
TF=/usr/share/clamav-testfiles
[ -r "$TF/clam.exe" ] || skip_all "clamav-testfiles not installed ($TF)"
NSAMPLES=$(find "$TF" -maxdepth 1 -type f -name 'clam*' | wc -l)
plan $((NSAMPLES + 6))
setup
mkdir -p "$T/db"
# 2e444c4c00 434c414d657373616765426f7841 = ".DLL" NUL "CLAMessageBoxA"
SIG=2e444c4c00434c414d657373616765426f7841
echo "Sluice.TestFile.ClamExe:0:*:$SIG" >"$T/db/sluice-testfiles.ndb"
write_conf "clamav_database_directory = $T/db"
start_sink
start_ok
check "log: clamav: engine loaded" log_wait 20 'clamav: engine loaded'
check "clam.exe holds the signature's bytes" \
    grep -qaF "$(printf 'CLAMessageBoxA')" "$TF/clam.exe"
FRONT=$(child_pid smtpd)
export TF

pytap <<'PY'
import base64, os, random
from sink import *
port = int(env("PORT"))
tf = env("TF")


def attach(name, data):
    e = base64.b64encode(data)
    b64 = b"\r\n".join(e[i:i + 76] for i in range(0, len(e), 76)) + b"\r\n"
    return (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: sample %s\r\n"
            b"Message-ID: <tf-%s@t>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"=_b\"\r\n\r\n"
            b"--=_b\r\nContent-Type: text/plain\r\n\r\nA sample.\r\n"
            b"--=_b\r\nContent-Type: application/octet-stream; name=\"%s\"\r\n"
            b"Content-Disposition: attachment; filename=\"%s\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" % ((name.encode(),) * 4)
            + b64 + b"--=_b--\r\n")


rx = r"554 5\.7\.1 .*Infected: Sluice\.TestFile\.ClamExe(\.UNOFFICIAL)?$"
for f in sorted(os.listdir(tf)):
    p = os.path.join(tf, f)
    if not f.startswith("clam") or not os.path.isfile(p):
        continue
    data = open(p, "rb").read()
    r = send_mail(port, "tf@example.org", ["b@example.net"], attach(f, data))
    tap(re.match(rx, r.text), "%s (%d bytes): 554 ... Infected: Sluice.TestFile.ClamExe"
        % (f, len(data)), r)

# the signature is specific: a random attachment passes
rnd = random.Random(3)
r = send_mail(port, "tf@example.org", ["b@example.net"],
              attach("random.bin", bytes(rnd.getrandbits(8) for _ in range(50000))))
tap(r.code == 250 and sink_find(r"<tf-random\.bin@t>"),
    "a random attachment passes (250, delivered)", r)
time.sleep(0.5)
leaked = [c[:200] for e, c in sink_msgs() if re.search(rb"<tf-clam", c)]
tap(not leaked, "no sample reached the next hop", leaked[:3])
PY
is "the front process is the same one" "$(child_pid smtpd)" "$FRONT"
