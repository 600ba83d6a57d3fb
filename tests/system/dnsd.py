#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""dnsd.py - a small fake DNS server for the system tests.

Serves the records of a zone file over UDP and TCP, answering every
query itself (authoritative-style, AA=1 and RA=1), so it can be the only
upstream (forwarder) of libunbound:

  dnsd.py --port N --zone FILE [--host 127.0.0.1] [--host ::1]
          [--pidfile F] [--log FILE]

--host is repeatable (default 127.0.0.1); each address gets a UDP and a
TCP socket on port N. The TCP listener is bound before the pid file is
written, so a test may wait for readiness by connecting to it. TCP uses
the 2-byte length framing, several queries per connection; at most 64
connections (more are closed at once), each closed after 10 s idle (while
no delayed answer is pending). Queries over 4096 bytes are ignored (a TCP
connection announcing one is closed). SIGTERM: clean exit.

--log FILE (appended, one flushed line per query): "PROTO QTYPE QNAME",
e.g. "udp MX example.test" or "tcp A mx.example.test": PROTO udp or tcp,
QTYPE a mnemonic (A NS CNAME SOA PTR MX TXT AAAA SRV DS RRSIG DNSKEY TLSA
SVCB HTTPS ANY CAA) or the number, QNAME lower-cased without trailing dot
("." for the root). A query is logged when it arrives, whatever its fate
(DROP and DELAY included); malformed queries are not logged.

Zone file: re-read whenever its size, mtime or inode changes (checked at
each query), so a test may rewrite it while the server runs (write a
temporary file and rename it over the zone to avoid a half-written read).
Blank lines and lines starting with '#' are ignored. A bad line prints
"ZONE:LINE: reason" to stderr and is ignored. Each line:

  NAME TYPE [TTL=n] DATA...

NAME: a domain name, case-insensitive, trailing dot optional ("." is the
root). TTL defaults to 0 (nothing is cached). TYPE and DATA:
  A 127.0.0.1
  AAAA ::1
  MX PREF HOST          HOST "." is the root: the RFC 7505 null MX
  CNAME TARGET          a query of another type for NAME gets the CNAME,
                        then (if TARGET is in the zone, without any of the
                        special lines below) TARGET's records of the asked
                        type, following CNAME chains (16 steps at most)
  TXT "text"            one string (\\" and \\\\ escape, UTF-8), split
                        into 255-byte character-strings; unquoted: the
                        rest of the line
  PTR TARGET
  NS TARGET
  BADRDATA TYPE [HEX]   a record of TYPE (mnemonic or number) whose rdata
                        is exactly the hex bytes (spaces allowed; none:
                        empty rdata), e.g. "bad.test BADRDATA MX
                        000a03666f6f" (an MX name without its final zero)
  SERVFAIL              any query for NAME: rcode SERVFAIL (2), no records
  REFUSED               any query for NAME: rcode REFUSED (5), no records
  DROP                  queries for NAME are read and never answered
  DELAY SECONDS         answers for NAME are sent SECONDS later (other
                        queries are answered meanwhile)
  TRUNCATE              over UDP, answers for NAME have TC=1 and no
                        records (the client retries over TCP, where the
                        normal answer is given)
Several lines with the same NAME and TYPE give several records, in file
order. The special lines combine: DROP wins; DELAY delays whatever
answer is given; TRUNCATE (UDP only) comes before SERVFAIL/REFUSED.

Answers (QR=1, ID, question and RD echoed, RA=1):
  - NAME has records of the asked type (ANY: all its records, in file
    order): NOERROR, AA=1, the records in the answer section;
  - NAME has a CNAME (and no record of the asked type): as said above;
    the final name decides NODATA / NXDOMAIN as below (the CNAMEs stay in
    the answer section);
  - NAME is in the zone (or is an empty non-terminal: an ancestor of a
    name in the zone) without records of that type: NOERROR, no answer
    (NODATA) and, in the authority section, an SOA for the parent of NAME
    ("ns.invalid. hostmaster.invalid. 1 3600 600 86400 0", TTL 0);
  - NAME is not in the zone: NXDOMAIN (3), with the same kind of SOA.
An opcode other than QUERY gets NOTIMP (4); a class other than IN or ANY
gets REFUSED. A query with an EDNS0 OPT record gets an OPT record back
(UDP payload 1232, no options). Names are written uncompressed. A UDP
answer larger than 512 bytes (no EDNS) or than the client's EDNS size is
sent with TC=1 and no records. Malformed queries (too short, bad name,
truncated records, QDCOUNT not 1, a response) are dropped silently.

Standard library only.
"""

import argparse
import heapq
import os
import selectors
import signal
import socket
import struct
import sys
import time

MAX_QUERY = 4096        # bigger queries are ignored
MAX_CONNS = 64          # TCP connections at once
IDLE_SECS = 10.0        # a TCP connection idle this long is closed
MAX_OUTBUF = 1 << 20    # a TCP client that reads nothing is dropped
EDNS_SIZE = 1232        # our advertised UDP payload size
MAX_CHAIN = 16          # CNAME steps followed
MAX_DELAY = 3600.0

NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5

TYPES = {
    "A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
    "AAAA": 28, "SRV": 33, "OPT": 41, "DS": 43, "RRSIG": 46, "DNSKEY": 48,
    "TLSA": 52, "SVCB": 64, "HTTPS": 65, "ANY": 255, "CAA": 257,
}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
T_CNAME, T_OPT, T_ANY = TYPES["CNAME"], TYPES["OPT"], TYPES["ANY"]
C_IN, C_ANY = 1, 255


class ZoneError(Exception):
    pass


# ----------------------------------------------------------------- names
#
# A name is kept as its "key": lower-case presentation form without the
# trailing dot, "" for the root.


def name_key(text):
    """Key of a zone file name; ZoneError if it is not a usable name."""
    if text in (".", ""):
        return ""
    if text.endswith("."):
        text = text[:-1]
    labels = text.split(".")
    size = 1
    for label in labels:
        if not label:
            raise ZoneError("empty label in name %r" % text)
        if len(label) > 63:
            raise ZoneError("label longer than 63 bytes in name %r" % text)
        if any(not 0x21 <= ord(c) <= 0x7e or c == "\\" for c in label):
            raise ZoneError("unsupported character in name %r" % text)
        size += len(label) + 1
    if size > 255:
        raise ZoneError("name longer than 255 bytes: %r" % text)
    return text.lower()


def key_wire(key):
    """Uncompressed wire form of a key."""
    if not key:
        return b"\0"
    return b"".join(bytes([len(l)]) + l.encode("ascii")
                    for l in key.split(".")) + b"\0"


def labels_key(labels):
    """Key of wire labels (bytes): ASCII lower-cased, odd bytes as \\DDD."""
    out = []
    for label in labels:
        out.append("".join(
            chr(b) if 0x21 <= b <= 0x7e and b not in b".\\" else "\\%03d" % b
            for b in label.lower()))
    return ".".join(out)


def parent(key):
    return key.partition(".")[2]


def type_code(text):
    t = text.upper()
    if t in TYPES:
        return TYPES[t]
    if t.startswith("TYPE"):
        t = t[4:]
    if t.isdigit() and 0 < int(t) < 65536:
        return int(t)
    raise ZoneError("unknown record type %r" % text)


def type_name(code):
    return TYPE_NAMES.get(code, str(code))


def rr(owner_wire, rtype, ttl, rdata):
    return owner_wire + struct.pack("!HHIH", rtype, C_IN, ttl,
                                    len(rdata)) + rdata


SOA_RDATA = (key_wire("ns.invalid") + key_wire("hostmaster.invalid")
             + struct.pack("!5I", 1, 3600, 600, 86400, 0))


def soa_for(key):
    """The negative answers' SOA record: owner the parent of key."""
    return rr(key_wire(parent(key)), TYPES["SOA"], 0, SOA_RDATA)


# ------------------------------------------------------------------ zone


class Record:
    __slots__ = ("type", "ttl", "rdata", "target")

    def __init__(self, rtype, ttl, rdata, target=None):
        self.type = rtype
        self.ttl = ttl
        self.rdata = rdata
        self.target = target    # key of a CNAME's target (not BADRDATA's)


class Entry:
    """Everything the zone file says about one name."""

    def __init__(self):
        self.records = []       # in file order
        self.rcode = None       # SERVFAIL / REFUSED line
        self.drop = False
        self.delay = 0.0
        self.truncate = False

    def special(self):
        return (self.rcode is not None or self.drop or self.delay
                or self.truncate)


def parse_txt(rest):
    if not rest:
        raise ZoneError("TXT needs a text")
    if not rest.startswith('"'):
        return rest.encode("utf-8")
    out = []
    i = 1
    while i < len(rest):
        c = rest[i]
        if c == "\\" and i + 1 < len(rest):
            out.append(rest[i + 1])
            i += 2
            continue
        if c == '"':
            if rest[i + 1:].strip():
                raise ZoneError("text after the closing quote")
            return "".join(out).encode("utf-8")
        out.append(c)
        i += 1
    raise ZoneError("missing closing quote")


def txt_rdata(text):
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [b""]
    return b"".join(bytes([len(c)]) + c for c in chunks)


def parse_line(line):
    """(key, TYPE, ttl, data) of a zone line; ZoneError if bad."""
    parts = line.split(None, 2)
    if len(parts) < 2:
        raise ZoneError("expected NAME TYPE [TTL=n] DATA")
    key = name_key(parts[0])
    kind = parts[1].upper()
    rest = parts[2].strip() if len(parts) > 2 else ""
    ttl = 0
    if rest[:4].upper() == "TTL=":
        tok, rest = (rest.split(None, 1) + [""])[:2]
        try:
            ttl = int(tok[4:])
        except ValueError:
            ttl = -1
        if not 0 <= ttl < 2 ** 31:
            raise ZoneError("bad TTL %r" % tok)
    return key, kind, ttl, rest


def add_line(entry, kind, ttl, rest):
    """Apply one parsed zone line to the name's entry."""
    args = rest.split()

    def want(n, usage):
        if len(args) != n:
            raise ZoneError("usage: NAME %s" % usage)

    if kind in ("A", "AAAA"):
        want(1, kind + " ADDRESS")
        fam = socket.AF_INET if kind == "A" else socket.AF_INET6
        try:
            rdata = socket.inet_pton(fam, args[0])
        except (OSError, ValueError):
            raise ZoneError("bad %s address %r" % (kind, args[0]))
        entry.records.append(Record(TYPES[kind], ttl, rdata))
    elif kind == "MX":
        want(2, "MX PREF HOST")
        if not args[0].isdigit() or int(args[0]) > 65535:
            raise ZoneError("bad MX preference %r" % args[0])
        rdata = struct.pack("!H", int(args[0])) + key_wire(name_key(args[1]))
        entry.records.append(Record(TYPES["MX"], ttl, rdata))
    elif kind in ("CNAME", "PTR", "NS"):
        want(1, kind + " TARGET")
        target = name_key(args[0])
        entry.records.append(Record(TYPES[kind], ttl, key_wire(target),
                                    target if kind == "CNAME" else None))
    elif kind == "TXT":
        entry.records.append(Record(TYPES["TXT"], ttl,
                                    txt_rdata(parse_txt(rest))))
    elif kind == "BADRDATA":
        if not args:
            raise ZoneError("usage: NAME BADRDATA TYPE [HEX]")
        rtype = type_code(args[0])
        try:
            rdata = bytes.fromhex("".join(args[1:]))
        except ValueError:
            raise ZoneError("bad hex rdata")
        if len(rdata) > 65535:
            raise ZoneError("rdata too long")
        entry.records.append(Record(rtype, ttl, rdata))
    elif kind in ("SERVFAIL", "REFUSED"):
        want(0, kind)
        entry.rcode = SERVFAIL if kind == "SERVFAIL" else REFUSED
    elif kind == "DROP":
        want(0, kind)
        entry.drop = True
    elif kind == "TRUNCATE":
        want(0, kind)
        entry.truncate = True
    elif kind == "DELAY":
        want(1, "DELAY SECONDS")
        try:
            secs = float(args[0])
        except ValueError:
            secs = -1.0
        if not 0 <= secs <= MAX_DELAY:
            raise ZoneError("bad DELAY %r" % args[0])
        entry.delay = secs
    else:
        raise ZoneError("unknown type %r" % kind)


class Zone:
    def __init__(self, path):
        self.path = path
        self.stamp = None
        self.entries = {}       # key -> Entry
        self.ents = set()       # empty non-terminals: ancestors of entries

    def refresh(self):
        """Re-read the file if it changed since the last read."""
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError as e:
            stamp = str(e)
        if stamp == self.stamp:
            return
        self.stamp = stamp      # taken before reading: a rewrite under
        self.load()             # way is seen again at the next query

    def load(self):
        entries = {}
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            print("%s: cannot read: %s" % (self.path, e.strerror),
                  file=sys.stderr, flush=True)
            lines = []
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                key, kind, ttl, rest = parse_line(line)
                entry = entries.get(key) or Entry()
                add_line(entry, kind, ttl, rest)
                entries[key] = entry
            except ZoneError as e:
                print("%s:%d: %s" % (self.path, n, e), file=sys.stderr,
                      flush=True)
        self.entries = entries
        self.ents = set()
        for key in entries:
            while key:
                key = parent(key)
                self.ents.add(key)


# ---------------------------------------------------------------- queries


class Query:
    """A parsed query; parse() gives None for a malformed one."""

    @classmethod
    def parse(cls, data):
        if len(data) < 12:
            return None
        qid, flags, qd, an, ns, ar = struct.unpack("!6H", data[:12])
        if flags & 0x8000 or qd != 1:
            return None
        labels, pos = read_qname(data, 12)
        if labels is None or pos + 4 > len(data):
            return None
        q = cls()
        q.id, q.flags = qid, flags
        q.opcode = (flags >> 11) & 0xF
        q.qtype, q.qclass = struct.unpack("!HH", data[pos:pos + 4])
        q.question = data[12:pos + 4]
        q.qname_wire = data[12:pos]
        q.key = labels_key(labels)
        q.edns = None           # the client's UDP payload size, if EDNS
        pos += 4
        for i in range(an + ns + ar):
            pos = skip_name(data, pos)
            if pos is None or pos + 10 > len(data):
                return None
            rtype, rclass, _, rdlen = struct.unpack("!HHIH",
                                                    data[pos:pos + 10])
            pos += 10 + rdlen
            if pos > len(data):
                return None
            if i >= an + ns and rtype == T_OPT:
                q.edns = rclass
        return q


def read_qname(data, pos):
    """(labels, end) of the uncompressed name at pos; (None, 0) if bad."""
    labels = []
    size = 1
    while pos < len(data):
        n = data[pos]
        pos += 1
        if n == 0:
            return labels, pos
        if n > 63:
            break               # a pointer or reserved label type
        size += n + 1
        if size > 255 or pos + n > len(data):
            break
        labels.append(data[pos:pos + n])
        pos += n
    return None, 0


def skip_name(data, pos):
    """End of a possibly compressed name at pos; None if bad."""
    while pos < len(data):
        n = data[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2 if pos + 2 <= len(data) else None
        if n > 63:
            return None
        pos += 1 + n
    return None


def build(q, rcode, answer=(), authority=(), tc=False, aa=True):
    flags = (0x8000 | q.opcode << 11 | (0x0400 if aa else 0)
             | (0x0200 if tc else 0) | (q.flags & 0x0100) | 0x0080 | rcode)
    extra = []
    if q.edns is not None:
        extra.append(b"\0" + struct.pack("!HHIH", T_OPT, EDNS_SIZE, 0, 0))
    head = struct.pack("!6H", q.id, flags, 1, len(answer), len(authority),
                       len(extra))
    return head + q.question + b"".join(answer) + b"".join(authority) \
        + b"".join(extra)


def resolve(zone, q):
    """(rcode, answer, authority) for a QUERY of class IN or ANY."""
    answer = []
    key, owner = q.key, q.qname_wire
    seen = set()
    while True:
        entry = zone.entries.get(key)
        if entry is None:
            if key in zone.ents:
                return NOERROR, answer, [soa_for(key)]
            return NXDOMAIN, answer, [soa_for(key)]
        if key != q.key and entry.special():
            return NOERROR, answer, []   # the client asks for it itself
        recs = [r for r in entry.records
                if q.qtype == T_ANY or r.type == q.qtype]
        if recs:
            answer += [rr(owner, r.type, r.ttl, r.rdata) for r in recs]
            return NOERROR, answer, []
        cname = next((r for r in entry.records if r.target is not None),
                     None)
        if cname is None:
            return NOERROR, answer, [soa_for(key)]
        answer.append(rr(owner, cname.type, cname.ttl, cname.rdata))
        seen.add(key)
        key = cname.target
        if key in seen or len(seen) >= MAX_CHAIN:
            return NOERROR, answer, []
        owner = key_wire(key)


def respond(zone, q, proto):
    """(response, delay), or None to leave the query unanswered."""
    if q.opcode != 0:
        return build(q, NOTIMP, aa=False), 0.0
    if q.qclass not in (C_IN, C_ANY):
        return build(q, REFUSED, aa=False), 0.0
    zone.refresh()
    delay = 0.0
    entry = zone.entries.get(q.key)
    if entry is not None:
        if entry.drop:
            return None
        delay = entry.delay
        if entry.truncate and proto == "udp":
            return build(q, NOERROR, tc=True), delay
        if entry.rcode is not None:
            return build(q, entry.rcode, aa=False), delay
    rcode, answer, authority = resolve(zone, q)
    resp = build(q, rcode, answer, authority)
    if proto == "udp":
        limit = 512 if q.edns is None else min(max(q.edns, 512), 65000)
    else:
        limit = 65535
    if len(resp) > limit:
        resp = build(q, rcode, tc=True)
    return resp, delay


# ---------------------------------------------------------------- server


class TcpConn:
    def __init__(self, server, sock):
        self.server = server
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.eof = False        # the client shut its side
        self.closed = False
        self.pending = 0        # delayed answers not sent yet
        self.last = time.monotonic()
        self.events = 0
        self.update()

    def update(self):
        """Set the selector interest; close when nothing is left to do."""
        if self.closed:
            return
        if self.eof and not self.outbuf and not self.pending:
            self.close()
            return
        events = (0 if self.eof else selectors.EVENT_READ) \
            | (selectors.EVENT_WRITE if self.outbuf else 0)
        sel = self.server.sel
        if events != self.events:
            if not self.events:
                sel.register(self.sock, events, self.ready)
            elif not events:
                sel.unregister(self.sock)
            else:
                sel.modify(self.sock, events, self.ready)
            self.events = events

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.events:
            self.server.sel.unregister(self.sock)
            self.events = 0
        self.sock.close()
        self.server.conns.discard(self)

    def ready(self, sock, mask):
        if mask & selectors.EVENT_WRITE:
            self.flush()
        if mask & selectors.EVENT_READ and not self.closed:
            self.read()
        self.update()

    def read(self):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        if not data:
            self.eof = True
            return
        self.last = time.monotonic()
        self.inbuf += data
        while len(self.inbuf) >= 2 and not self.closed:
            n = struct.unpack("!H", self.inbuf[:2])[0]
            if n > MAX_QUERY:
                self.close()
                return
            if len(self.inbuf) < 2 + n:
                break
            msg = bytes(self.inbuf[2:2 + n])
            del self.inbuf[:2 + n]
            self.server.query(msg, "tcp", self)

    def send(self, resp):
        if self.closed:
            return
        self.outbuf += struct.pack("!H", len(resp)) + resp
        if len(self.outbuf) > MAX_OUTBUF:
            self.close()
            return
        self.flush()
        self.update()

    def flush(self):
        try:
            n = self.sock.send(self.outbuf)
        except BlockingIOError:
            return
        except OSError:
            self.close()
            return
        del self.outbuf[:n]
        self.last = time.monotonic()

    def delayed_send(self, resp):
        self.pending -= 1
        self.send(resp)
        self.update()


class Server:
    def __init__(self, args):
        self.zone = Zone(args.zone)
        self.zone.refresh()
        self.sel = selectors.DefaultSelector()
        self.conns = set()
        self.timers = []        # heap of (when, seq, function, argument)
        self.seq = 0
        self.socks = []
        self.logf = None
        if args.log:
            self.logf = open(args.log, "a", buffering=1, encoding="utf-8")
        for host in args.host or ["127.0.0.1"]:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                s = socket.socket(fam, kind)
                self.socks.append(s)
                if fam == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, args.port))
                s.setblocking(False)
                if kind == socket.SOCK_STREAM:
                    s.listen(64)
                    self.sel.register(s, selectors.EVENT_READ, self.accept)
                else:
                    self.sel.register(s, selectors.EVENT_READ, self.udp_read)

    def log(self, text):
        if self.logf:
            self.logf.write(text + "\n")

    def later(self, delay, fn, arg):
        self.seq += 1
        heapq.heappush(self.timers, (time.monotonic() + delay, self.seq, fn,
                                     arg))

    def query(self, data, proto, reply_to):
        """Handle one query; reply_to is a TcpConn or (udp socket, addr)."""
        q = Query.parse(data)
        if q is None:
            return
        self.log("%s %s %s" % (proto, type_name(q.qtype), q.key or "."))
        r = respond(self.zone, q, proto)
        if r is None:
            return
        resp, delay = r
        if proto == "tcp":
            if delay > 0:
                reply_to.pending += 1
                self.later(delay, reply_to.delayed_send, resp)
            else:
                reply_to.send(resp)
        elif delay > 0:
            self.later(delay, self.udp_send, (reply_to, resp))
        else:
            self.udp_send((reply_to, resp))

    def udp_send(self, arg):
        (sock, addr), resp = arg
        try:
            sock.sendto(resp, addr)
        except OSError:
            pass

    def udp_read(self, sock, mask):
        for _ in range(64):     # drain, but let the rest run too
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:     # e.g. ICMP errors reported on the socket
                continue
            if len(data) <= MAX_QUERY:
                self.query(data, "udp", (sock, addr))

    def accept(self, sock, mask):
        while True:
            try:
                c, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(self.conns) >= MAX_CONNS:
                c.close()
                continue
            c.setblocking(False)
            self.conns.add(TcpConn(self, c))

    def run(self):
        while True:
            now = time.monotonic()
            while self.timers and self.timers[0][0] <= now:
                _, _, fn, arg = heapq.heappop(self.timers)
                fn(arg)
            for c in list(self.conns):
                if not c.pending and now - c.last > IDLE_SECS:
                    c.close()
            timeout = 1.0
            if self.timers:
                timeout = min(timeout, max(0.0, self.timers[0][0] - now))
            for key, mask in self.sel.select(timeout):
                key.data(key.fileobj, mask)

    def close(self):
        for c in list(self.conns):
            c.close()
        for s in self.socks:
            s.close()
        self.sel.close()
        if self.logf:
            self.logf.close()


def main(argv):
    p = argparse.ArgumentParser(description="fake DNS server for tests")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--zone", required=True, help="zone file (see --help)")
    p.add_argument("--host", action="append",
                   help="address to serve on (repeatable; default "
                        "127.0.0.1)")
    p.add_argument("--pidfile")
    p.add_argument("--log", help='append "PROTO QTYPE QNAME" per query')
    a = p.parse_args(argv)
    if not os.path.isfile(a.zone):
        p.error("no zone file %s" % a.zone)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv = Server(a)
    if a.pidfile:
        with open(a.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    try:
        srv.run()
    finally:
        srv.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
