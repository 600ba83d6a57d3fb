# SPDX-License-Identifier: GPL-2.0-or-later
"""dkimcommon.py - DKIM helpers shared by the OpenDKIM system tests."""
import email.utils, os, re, dkim


def txt_record():
    """The TXT record opendkim-genkey wrote, its quoted parts joined."""
    with open(os.path.join(os.environ["T"], "dkim", "test.txt")) as f:
        return "".join(re.findall(r'"([^"]*)"', f.read())).encode()


def dnsfunc(name, timeout=5):
    if name in (b"test._domainkey.example.org.", "test._domainkey.example.org."):
        return txt_record()
    return None


def verify(msg):
    try:
        return dkim.verify(msg, dnsfunc=dnsfunc)
    except Exception as e:  # a malformed signature is a failed one
        print("# dkim.verify: %r" % e)
        return False


def crlf(s):
    return s.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def message(mid, sender=b"Alice <a@example.org>", body=b"Hello Bob,\n.leading dot\nbye\n"):
    date = email.utils.formatdate(localtime=False).encode()
    return crlf(b"From: " + sender + b"\nTo: Bob <b@example.net>\n"
                b"Subject: a signed message with a folded\n\tsubject line\n"
                b"Message-ID: <" + mid.encode() + b">\nDate: " + date +
                b"\nMIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n" + body)


def sig_tags(eml):
    """Tags of the first DKIM-Signature header of eml, or None."""
    m = re.search(rb"^DKIM-Signature:((?:[^\r\n]*\r\n[ \t])*[^\r\n]*)\r\n", eml, re.M | re.I)
    if not m:
        return None
    v = re.sub(rb"\s+", b"", m.group(1))
    return dict(t.split(b"=", 1) for t in v.split(b";") if b"=" in t)
