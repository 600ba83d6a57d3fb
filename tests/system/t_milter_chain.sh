#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
# t_milter_chain.sh - two milters in a chain (smtpd_milters = m1, m2),
# the ordering rule: a milter that only reads, placed before one that
# adds headers and replaces the body, gets the original message; placed
# after such a milter, it sees the added header and the new body (its
# tmilter log shows them); the delivered message carries both milters'
# changes, applied in list order; two readers both get the content.
. "$(dirname "$0")/lib.sh"
need_binaries
: "${TMILTER:=$top_builddir/tests/milter/tmilter}"
[ -x "$TMILTER" ] || skip_all "no test milter at $TMILTER (make check builds it)"
export TMILTER
plan 11
. "$SYSDIR/milter_lib.sh"

start_sink
start_tmilter m1
start_tmilter m2
write_conf "smtpd_milters = unix:$T/m1.sock, unix:$T/m2.sock"
start_ok

pytap <<'PY'
from tmh import *
ORIG = b"body line 1\r\nbody line 2\r\n"


def seen(name):
    """(header fields as NAME=<value>, body bytes) in NAME's log."""
    h = [l.split(" | ")[0][len("header "):] for l in mlog(name) if l.startswith("header ")]
    b = b""
    for l in mlog(name):
        m = re.match(r"^body len=\d+ <(.*)> \| ", l)
        if m:
            b += m.group(1).replace("\\r", "\r").replace("\\n", "\n").encode()
    return h, b


# a reader before a modifier: the original
milter([], "m1")
milter(["-a", "X-Second:two", "-b", "new body\\n"], "m2")
r = txn("chain-a")
d = delivered("chain-a")
time.sleep(0.3)
h1, b1 = seen("m1")
tap("header X-Second=<two>" not in h1 and "Subject=<chain-a>" in h1 and b1 == ORIG,
    "a reader before a header-adding, body-replacing milter sees the original", h1, b1)
h2, b2 = seen("m2")
tap("Subject=<chain-a>" in h2 and b2 == ORIG, "the modifier sees the original too", h2, b2)
tap(d and d[1][-1][1] == b"X-Second: two" and d[2] == b"new body\r\n",
    "delivered with the second milter's header and body", r, d)

# a reader after a modifier: the modified message
milter(["-a", "X-First:one", "-f", "-- \\nfooter one\\n"], "m1")
milter([], "m2")
r = txn("chain-b")
d = delivered("chain-b")
time.sleep(0.3)
h1, b1 = seen("m1")
h2, b2 = seen("m2")
tap(b1 == ORIG and "X-First=<one>" not in h1, "the modifier (first) sees the original", h1, b1)
tap("X-First=<one>" in h2 and h2.index("X-First=<one>") == len(h2) - 1,
    "a reader after a header-adding milter sees the added header (last)", h2)
tap(b2 == ORIG + b"-- \r\nfooter one\r\n",
    "a reader after a body-changing milter sees the new body", b2)
tap(d and d[1][-1][1] == b"X-First: one" and d[2] == ORIG + b"-- \r\nfooter one\r\n",
    "delivered as the first milter made it", r, d)

# both modify: changes in list order, the second works on the first's result
milter(["-a", "X-A:1", "-b", "body one\\n"], "m1")
milter(["-a", "X-B:2", "-f", "footer two\\n", "-c", "X-A:1:changed by two"], "m2")
r = txn("chain-c")
d = delivered("chain-c")
time.sleep(0.3)
h2, b2 = seen("m2")
tap("X-A=<1>" in h2 and b2 == b"body one\r\n",
    "the second modifier sees the first one's header and body", h2, b2)
tap(d and [x[1] for x in d[1]][-2:] == [b"X-A: changed by two", b"X-B: 2"]
    and d[2] == b"body one\r\nfooter two\r\n",
    "delivered: X-A (changed by the second), X-B, and the first's body with the "
    "second's footer", r, d)

# two readers: both get the content
milter([], "m1")
milter([], "m2")
r = txn("chain-d")
d = delivered("chain-d")
time.sleep(0.3)
h1, b1 = seen("m1")
h2, b2 = seen("m2")
tap(d and h1 == h2 and "Subject=<chain-d>" in h1 and b1 == b2 == ORIG
    and [x[1] for x in d[1]][2] == b"Subject: chain-d",
    "two readers: both see the same message, delivered unchanged", h1, h2, b1, b2)
PY
