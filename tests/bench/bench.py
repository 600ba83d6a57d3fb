#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""bench.py - Sluice against its peers in one run (make bench).

Runs the same SMTP load, on loopback, against six set-ups that all relay
to one Postfix smtp-sink:
  1 the generator straight at smtp-sink (the client/sink ceiling)
  2 a private Postfix instance, no filter
  3 Postfix + clamav-milter + clamd (synthetic database, cache off)
  4 Sluice with its in-process ClamAV (same database), queue fsync'ed
  5 Sluice, own scanner off, with the same clamav-milter + clamd as 3
  6 Sluice, no filter
and reports per load (10 KB at 10 and 100 sessions, 1 MB at 10) accepted
and delivered messages/s, server CPU per message (every process of the
set-up, children included, from a cgroup v1 cpuacct group), summed RSS,
Sluice's end-of-data latency, the scan-bound ceiling measured with
bench_scan, an idle-session RSS benchmark and callgrind counts, then
checks the issue's targets. The report goes to docs/PERFORMANCE.md
between <!-- bench:begin --> and <!-- bench:end --> (the rest of the
file is kept).

Run from the top of a built tree: python3 tests/bench/bench.py --help.
Python 3.11 standard library only. A benchmark: it fails (exit 1) only
when it cannot run at all; missed targets are reported, not failed.
"""

import argparse
import datetime
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # noqa: E402
from peers import BenchError, log  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = {"10k": "msg-10k.eml", "1m": "msg-1m.eml"}
FOREVER = 100000000     # smtp-source message count; it is stopped by time
MARK_BEGIN = "<!-- bench:begin -->"
MARK_END = "<!-- bench:end -->"
NCPU = os.cpu_count() or 1
SCAN_PAUSE_MS = 5  # bench_scan -g: a scan after a pause (paced loads)


# ----------------------------------------------------------- arguments

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="bench.py",
        description="Sluice against Postfix, Postfix + clamav-milter and "
        "smtp-sink in one run; writes docs/PERFORMANCE.md.")
    ap.add_argument("--workdir", default="./var/bench",
                    help="work directory, on disk (default ./var/bench)")
    ap.add_argument("--duration", type=float, default=None,
                    help="measured seconds per load (default 15)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before the window (default 3)")
    ap.add_argument("--reps", type=int, default=None,
                    help="repetitions (default 3)")
    ap.add_argument("--setups", default="1,2,3,4,5,6",
                    help="comma list of 1..6 (default all)")
    ap.add_argument("--loads", default="10k@10,10k@100,1m@10",
                    help="SHAPE@SESSIONS list, SHAPE 10k or 1m")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 rep of 4 s, 1 s warm-up")
    ap.add_argument("--no-paced", action="store_true",
                    help="skip the paced (open-load) runs of set-up 4")
    ap.add_argument("--no-idle", action="store_true",
                    help="skip the 10,000 idle sessions benchmark")
    ap.add_argument("--idle-sessions", type=int, default=10000,
                    help=argparse.SUPPRESS)
    ap.add_argument("--no-callgrind", action="store_true",
                    help="skip tests/bench/callgrind.sh")
    ap.add_argument("--sluice-param", action="append", default=[],
                    metavar="NAME=VALUE",
                    help="a main.cf setting for Sluice's set-ups (4-6), "
                    "repeatable, to compare settings")
    ap.add_argument("--out", default="docs/PERFORMANCE.md",
                    help="report file, - for standard output only")
    a = ap.parse_args(argv)
    q = a.quick
    a.duration = a.duration if a.duration is not None else (4 if q else 15)
    a.warmup = a.warmup if a.warmup is not None else (1 if q else 3)
    a.reps = a.reps if a.reps is not None else (1 if q else 3)
    if not 1 <= a.duration <= 3600 or not 0 <= a.warmup <= 600:
        ap.error("--duration must be 1..3600 s and --warmup 0..600 s")
    if not 1 <= a.reps <= 20:
        ap.error("--reps must be 1..20")
    for p in a.sluice_param:
        if "=" not in p or not p.partition("=")[0].strip():
            ap.error("--sluice-param: NAME=VALUE, not %r" % p)
    if not 1 <= a.idle_sessions <= 60000:
        ap.error("--idle-sessions must be 1..60000")
    try:
        a.setups = sorted({int(x) for x in a.setups.split(",") if x.strip()})
    except ValueError:
        ap.error("--setups: a comma list of numbers 1..6")
    if not a.setups or any(not 1 <= s <= 6 for s in a.setups):
        ap.error("--setups: a comma list of numbers 1..6")
    loads = []
    for x in a.loads.split(","):
        m = re.fullmatch(r"\s*(10k|1m)@(\d{1,5})\s*", x)
        if not m or not 1 <= int(m.group(2)) <= 10000:
            ap.error("--loads: bad load %r (want 10k@N or 1m@N, N 1..10000)"
                     % x)
        loads.append((m.group(1), int(m.group(2))))
    a.loads = loads
    return a


# -------------------------------------------------------------- context

class Ctx:
    pass


def run_cmd(argv, timeout, stdin=subprocess.DEVNULL, **kw):
    try:
        r = subprocess.run(argv, stdin=stdin,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, **kw)
        return r.returncode, r.stdout.decode("utf-8", "replace")
    except FileNotFoundError:
        return 127, "%s: not found" % argv[0]
    except subprocess.TimeoutExpired:
        return -1, "%s: timed out after %d s" % (argv[0], timeout)


def fs_type(path):
    """The type of the file system holding path, from /proc/mounts."""
    path = os.path.realpath(path)
    best, typ = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                v = line.split()
                mp = v[1].replace("\\040", " ")
                if (path == mp or path.startswith(mp.rstrip("/") + "/")) \
                        and len(mp) >= len(best):
                    best, typ = mp, v[2]
    except (OSError, IndexError):
        pass
    return typ


def prepare(args):
    ctx = Ctx()
    ctx.args = args
    ctx.paced = []
    ctx.beside = {}   # load name -> bench_scan figures beside setup 4's runs
    ctx.top = os.getcwd()
    ctx.workdir = os.path.abspath(args.workdir)
    os.makedirs(ctx.workdir, exist_ok=True)
    fst = fs_type(ctx.workdir)
    if fst in ("tmpfs", "ramfs"):
        raise BenchError("--workdir %s is on %s: Sluice's queue must be "
                         "fsync'ed to a disk; use a directory on disk" %
                         (ctx.workdir, fst))
    ctx.fs = fst
    ctx.rundir = os.path.join(ctx.workdir, "run")
    shutil.rmtree(ctx.rundir, ignore_errors=True)
    os.makedirs(ctx.rundir)
    ctx.results = os.path.join(ctx.workdir, "results")
    os.makedirs(ctx.results, exist_ok=True)
    ctx.sluiced = os.path.join(ctx.top, "sluiced")
    ctx.bench_scan = built("bench_scan")
    ctx.db = os.path.join(ctx.workdir, "db")
    ctx.msgs = os.path.join(ctx.workdir, "msgs")
    for exe in ("smtp-source", "smtp-sink", "postfix"):
        if not shutil.which(exe):
            raise BenchError("%s not found: install the Debian package "
                             "postfix (./quickstart bench does)" % exe)
    make_data(ctx)
    ctx.loadgen = find_loadgen()
    # the driver itself may hold many sockets (idle fallback)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in (peers.NOFILE, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want,
                                                                  hard)))
            break
        except (ValueError, OSError):
            continue
    return ctx


def make_data(ctx):
    """The database and messages, made once as scan-bench.sh makes them
    (same directory layout and .made stamp)."""
    sums = []
    for n in ("sigs-gen.py", "gen-msgs.py"):
        p = os.path.join(HERE, n)
        with open(p, "rb") as f:
            rc, out = run_cmd(["cksum"], 30, stdin=f)
        if rc != 0:
            raise BenchError("cksum %s failed: %s" % (p, out))
        sums.append(out.strip())
    stamp = os.path.join(ctx.workdir, ".made")
    want = "\n".join(sums)
    try:
        with open(stamp) as f:
            have = f.read().strip()
    except OSError:
        have = ""
    if have != want:
        log("making the synthetic database and messages in %s" %
            ctx.workdir)
        for d in (ctx.db, ctx.msgs):
            shutil.rmtree(d, ignore_errors=True)
        for gen, out in (("sigs-gen.py", ctx.db), ("gen-msgs.py", ctx.msgs)):
            rc, msg = run_cmd([sys.executable, os.path.join(HERE, gen), out],
                              600)
            if rc != 0:
                raise BenchError("%s failed:\n%s" % (gen, msg))
        with open(stamp, "w") as f:
            f.write(want + "\n")
    for n in SHAPES.values():
        if not os.path.isfile(os.path.join(ctx.msgs, n)):
            raise BenchError("%s missing in %s" % (n, ctx.msgs))


def built(name):
    """A benchmark binary: the build tree's (the current directory, for
    VPATH builds) before the source tree's."""
    p = os.path.join(os.getcwd(), "tests", "bench", name)
    return p if os.access(p, os.X_OK) else os.path.join(HERE, name)


def find_loadgen():
    lg = built("loadgen")
    src = os.path.join(HERE, "loadgen.c")
    mark = os.path.join(HERE, "msgmark.c")
    if not os.access(lg, os.X_OK) and os.path.isfile(src):
        log("building tests/bench/loadgen")
        rc, out = run_cmd(["gcc", "-O2", "-D_GNU_SOURCE", "-I.", src] +
                          ([mark] if os.path.isfile(mark) else []) +
                          ["-lev", "-lpthread", "-lm", "-o", lg], 300)
        if rc != 0:
            log("cannot build loadgen (smtp-source stands in):\n" + out)
    if os.access(lg, os.X_OK):
        return lg
    log("tests/bench/loadgen not found: smtp-source stands in for it "
        "(identical messages, no latency figures)")
    return None


# ------------------------------------------------------------ measuring

def proc_cpu_s(pid):
    """utime+stime (+ children reaped) of a process, seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in v[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def sys_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Monitor(threading.Thread):
    """Snapshots (server CPU, sink count, generator count) at the start
    and the end of the measured window, and samples the summed RSS of
    the server's processes every 0.5 s (peak kept)."""

    def __init__(self, group, sink, gen, marks):
        super().__init__(daemon=True)
        self.group, self.sink, self.gen = group, sink, gen
        self.marks = list(marks)
        self.snaps = []
        self.peak_rss = 0.0
        self.peak_pss = 0.0
        self.t0 = time.monotonic()
        self.done = threading.Event()

    def snap(self):
        s = {"t": time.monotonic(), "sink": self.sink.count(),
             "gen": self.gen.count(), "cpu": None,
             "gen_cpu": proc_cpu_s(self.gen.pid),
             "sink_cpu": proc_cpu_s(self.sink.proc.pid),
             "busy_all": sys_busy_s()}
        if self.group is not None:
            s["cpu"] = self.group.cpu_s()
            s["scan_cpu"] = self.group.thread_cpu_s("clamscan")
            if s["cpu"] is None:  # no cgroup: /proc/stat minus clients
                s["busy"] = sys_busy_s()
                s["others"] = (proc_cpu_s(self.gen.pid) +
                               proc_cpu_s(self.sink.proc.pid) +
                               proc_cpu_s(os.getpid()))
        return s

    def run(self):
        pending = list(self.marks)
        while not self.done.is_set():
            now = time.monotonic() - self.t0
            while pending and now >= pending[0]:
                self.snaps.append(self.snap())
                pending.pop(0)
            if self.group is not None:
                rss, pss = self.group.mem_mb()
                self.peak_rss = max(self.peak_rss, rss)
                self.peak_pss = max(self.peak_pss, pss)
            nxt = 0.5
            if pending:
                nxt = min(nxt, max(0.0, pending[0] - (time.monotonic() -
                                                      self.t0)))
            self.done.wait(nxt)

    def stop(self):
        self.done.set()
        self.join(5)


class Gen:
    """One generator run in the background: smtp-source (stopped by
    time, its -c counter read as it goes) or loadgen (own timing)."""

    def __init__(self, ctx, kind, addr, sessions, msgfile, tag, extra=()):
        self.ctx, self.kind = ctx, kind
        self.total = ctx.args.warmup + ctx.args.duration
        self.out = os.path.join(ctx.results, tag + ".out")
        self._count = 0
        self.lines = []
        self.cpu = None
        self.rc = None
        if kind == "loadgen":
            argv = [ctx.loadgen, "-a", addr, "-c", str(sessions), "-t",
                    "%g" % self.total, "-w", "%g" % ctx.args.warmup,
                    "-m", msgfile, "-f", "bench@example.com",
                    "-r", "rcpt@example.net", "-q"]
            if sessions >= 100:  # one loop is slower than smtp-source there
                argv[1:1] = ["-T", "2"]
            argv[1:1] = list(extra)
        else:
            argv = ["smtp-source", "-c", "-s", str(sessions), "-m",
                    str(FOREVER), "-F", msgfile, "-f", "bench@example.com",
                    "-t", "rcpt@example.net", "-M", "client.bench", addr]
        self.argv = argv
        self.proc = peers.spawn(argv, self.out, stdout=subprocess.PIPE)
        self.pid = self.proc.pid
        self.t0 = time.monotonic()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        fd = self.proc.stdout.fileno()
        buf = b""
        while True:
            try:
                d = os.read(fd, 65536)
            except OSError:
                break
            if not d:
                break
            buf += d
            if self.kind == "smtp-source":
                parts = buf.split(b"\r")
                buf = parts[-1]
                for p in reversed(parts[:-1]):
                    if p.strip().isdigit():
                        self._count = int(p.strip())
                        break
                buf = buf[-64:]
            else:
                *full, buf = buf.split(b"\n")
                self.lines += [x.decode("utf-8", "replace") for x in full]
        if buf and self.kind == "loadgen":
            self.lines.append(buf.decode("utf-8", "replace"))
        if self.kind == "loadgen":
            try:
                with open(self.out, "a") as f:
                    f.write("".join(l + "\n" for l in self.lines))
            except OSError:
                pass

    def count(self):
        return self._count

    def finish(self):
        """Waits for the end (stops smtp-source at warmup+duration);
        returns the parsed result dict or raises BenchError."""
        if self.kind == "smtp-source":
            left = self.t0 + self.total + 0.1 - time.monotonic()
            if self._wait(left):
                raise BenchError("smtp-source exited early (status %s): %s"
                                 % (self.rc, peers.tail(self.out, 5)))
            self.proc.send_signal(signal.SIGTERM)
            self._wait(10) or self.proc.kill()
        elif not self._wait(self.total + 90):
            self.proc.kill()
            self._wait(5)
            raise BenchError("loadgen did not finish within %d s of its "
                             "end" % 90)
        self.reader.join(5)
        if self.kind == "smtp-source":
            return {"accepted_total": self._count}
        for line in reversed(self.lines):
            if line.startswith("summary:"):
                return parse_kv(line)
        raise BenchError("loadgen printed no summary line (status %s); "
                         "stderr %s:\n%s" % (self.rc, self.out,
                                             peers.tail(self.out, 8)))

    def _wait(self, secs):
        """True when the process exited within secs (rusage kept)."""
        end = time.monotonic() + max(0.0, secs)
        while True:
            try:
                pid, st, ru = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                return True
            if pid == self.pid:
                self.rc = os.waitstatus_to_exitcode(st)
                self.proc.returncode = self.rc
                self.cpu = ru.ru_utime + ru.ru_stime
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)


def parse_kv(line):
    out = {}
    for tok in line.split()[1:]:
        k, _, v = tok.partition("=")
        try:
            out[k] = float(v) if "." in v or v.isdigit() else v
        except ValueError:
            out[k] = v
    return out


def measure(ctx, srv, kind, load, rep, extra=()):
    """One repetition: returns a dict of figures (or raises)."""
    a = ctx.args
    shape, sessions = load
    msgfile = os.path.join(ctx.msgs, SHAPES[shape])
    tag = "%s@%d-s%s-%s-r%s" % (shape, sessions, srv.key, kind, rep)
    group = None if isinstance(srv, peers.Ceiling) else srv.group
    sink0 = ctx.sink.count()
    gen = Gen(ctx, kind, srv.addr(), sessions, msgfile, tag, extra)
    mon = Monitor(group, ctx.sink, gen, (a.warmup, a.warmup + a.duration))
    mon.t0 = gen.t0
    mon.start()
    try:
        res = gen.finish()
    finally:
        mon.stop()
    if len(mon.snaps) < 2:
        raise BenchError("the run ended before its window was measured")
    s1, s2 = mon.snaps[0], mon.snaps[1]
    win = s2["t"] - s1["t"]
    r = {"gen": kind, "client_cpu_s": gen.cpu}
    if kind == "loadgen":
        r["rate"] = res.get("rate", 0.0)
        r["accepted_total"] = int(res.get("accepted", 0))
        r["p50"] = res.get("p50_ms")
        r["p99"] = res.get("p99_ms")
        r["d50"] = res.get("data_p50_ms")
        r["d99"] = res.get("data_p99_ms")
        r["errors"] = int(res.get("errors", 0) + res.get("connect_errors", 0)
                          + res.get("tempfail", 0) + res.get("rejected", 0))
        r["unique"] = res.get("unique") in (1.0, "1")
        win_acc = r["rate"] * a.duration
    else:
        win_acc = s2["gen"] - s1["gen"]
        r["rate"] = win_acc / win if win > 0 else 0.0
        r["accepted_total"] = res["accepted_total"]
        r["p50"] = r["p99"] = r["d50"] = r["d99"] = None
        r["errors"] = 0
        r["unique"] = False
    r["delivered_rate"] = (s2["sink"] - s1["sink"]) / win if win > 0 else 0
    # The rest of the machine in the same window: the generator's CPU per
    # message accepted, the sink's per message it received, and how busy
    # the cores were (all processes), so that a row bound by its clients
    # shows it in the run's own figures.
    dsink = s2["sink"] - s1["sink"]
    r["gen_ms"] = ((s2["gen_cpu"] - s1["gen_cpu"]) * 1e3 / win_acc
                   if win_acc > 0 else None)
    r["sink_ms"] = ((s2["sink_cpu"] - s1["sink_cpu"]) * 1e3 / dsink
                    if dsink > 0 else None)
    r["busy_pct"] = ((s2["busy_all"] - s1["busy_all"]) * 100 / (win * NCPU)
                     if win > 0 else None)
    r["cpu_ms"] = None
    if group is not None and win_acc > 0:
        if s1["cpu"] is not None and s2["cpu"] is not None:
            r["cpu_ms"] = (s2["cpu"] - s1["cpu"]) * 1e3 / win_acc
        elif "busy" in s1:
            r["cpu_ms"] = ((s2["busy"] - s1["busy"]) - (s2["others"] -
                                                        s1["others"])) \
                * 1e3 / win_acc
    # Sluice's scan threads (named "clamscan") do nothing but libclamav
    # scans: their CPU is the scan as it ran in the server, so the rest
    # of the set-up's CPU is Sluice's own path
    r["scan_cpu_ms"] = None
    if group is not None and win_acc > 0 and "scan_cpu" in s1:
        sc = (s2["scan_cpu"] - s1["scan_cpu"]) * 1e3 / win_acc
        r["scan_cpu_ms"] = sc if sc > 0 else None
    r["rss_mb"] = mon.peak_rss if group is not None else None
    r["pss_mb"] = mon.peak_pss if group is not None else None
    # drain: the queue empties and the sink count stops rising. loadgen
    # counts only its window, so for it the check is "queue empty and
    # delivered >= accepted in the window"; smtp-source's counter is a
    # total, so for it delivered must equal accepted.
    limit = 60 + (60 if shape == "1m" else 0)
    end = time.monotonic() + limit
    if kind == "smtp-source":
        ctx.sink.wait_stable(quiet=3.0, limit=limit,
                             target=sink0 + r["accepted_total"])
    while srv.queue_left() and time.monotonic() < end:
        time.sleep(0.25)
    if srv.queue_left():
        got = ctx.sink.count()
    else:
        got = ctx.sink.wait_stable(quiet=1.0, limit=10)
    r["queue_left"] = srv.queue_left()
    r["delivered_total"] = got - sink0
    r["window_accepted"] = int(round(win_acc))
    # smtp-source counts a message once its dot is written; the ones in
    # flight when it is stopped (at most one per session) never get a
    # 250 and are not delivered.
    r["inflight"] = 0
    if kind == "smtp-source" and 0 < r["accepted_total"] - \
            r["delivered_total"] <= sessions:
        r["inflight"] = r["accepted_total"] - r["delivered_total"]
    return r


# --------------------------------------------------------- set-up runs

def make_server(ctx, key, tag):
    if key == 1:
        s = peers.Ceiling(ctx, tag)
    elif key == 2:
        s = peers.Postfix(ctx, tag)
    elif key == 3:
        s = peers.Postfix(ctx, tag, milter=True)
    elif key == 4:
        s = peers.Sluice(ctx, tag, clamav=True)
    elif key == 5:
        s = peers.Sluice(ctx, tag, clamav=False, milter=True)
    else:
        s = peers.Sluice(ctx, tag, clamav=False)
    s.key = key
    return s


def generators(ctx, key):
    """The generators of a set-up: smtp-source where identical messages
    do no harm (1, 2, 6; loadgen beside it for comparison), loadgen for
    the scanning set-ups."""
    if ctx.loadgen is None:
        return ["smtp-source"]
    if key in (1, 2, 6):
        return ["smtp-source", "loadgen"]
    return ["loadgen"]


def gen_label(ctx, key, kind):
    if kind == "smtp-source" and key in (3, 4, 5):
        return "smtp-source (stand-in: no loadgen; identical messages)"
    return kind


def run_loads(ctx):
    """Per load, every set-up's server is started, then the repetitions
    go round the set-ups (rep 1 of each, then rep 2 of each, ...), so the
    runs a ratio compares are minutes apart at most, not a whole block of
    repetitions: this VM's neighbours drift over minutes."""
    a = ctx.args
    rows = {}   # (load, key, kind) -> {"runs": [...], "fail": str}
    labels = {}
    settings = {}
    for load in a.loads:
        lname = "%s@%d" % load
        servers = {}
        try:
            for key in a.setups:
                tag = "%s-s%d" % (lname.replace("@", "-"), key)
                srv = make_server(ctx, key, tag)
                labels[key] = srv.label
                settings[key] = srv.settings()
                log("[%s] setup %s: starting" % (lname, srv.label))
                try:
                    srv.start()
                except BenchError as e:
                    log("[%s] setup %d FAILED to start: %s" % (lname, key, e))
                    for k in generators(ctx, key):
                        rows[(lname, key, k)] = {"runs": [], "fail": str(e)}
                    srv.stop()
                    continue
                servers[key] = srv
            for rep in range(1, a.reps + 1):
                for key, srv in servers.items():
                    for kind in generators(ctx, key):
                        row = rows.setdefault((lname, key, kind),
                                              {"runs": [], "fail": None})
                        if row["fail"]:
                            continue
                        if not ctx.sink.alive():
                            raise BenchError(
                                "smtp-sink died; its log %s:\n%s"
                                % (ctx.sink.log, peers.tail(ctx.sink.log)))
                        if key == 4 and kind == generators(ctx, 4)[0]:
                            scan_beside(ctx, load, rep)
                        try:
                            r = measure(ctx, srv, kind, load, rep)
                        except BenchError as e:
                            log("[%s] setup %d %s rep %d failed: %s" %
                                (lname, key, kind, rep, e))
                            row["fail"] = str(e)
                            continue
                        row["runs"].append(r)
                        log("[%s] setup %d %-11s rep %d/%d: %s" %
                            (lname, key, kind, rep, a.reps, brief(r)))
            if (4 in servers and lname == "10k@10" and ctx.loadgen
                    and not ctx.args.no_paced):
                paced(ctx, servers[4], load, rows.get((lname, 4, "loadgen")))
        finally:
            for srv in servers.values():
                srv.stop()
    return rows, labels, settings


def paced(ctx, srv, load, row):
    """Open load below saturation (loadgen -R): the same sessions start
    transactions at a quarter and at half of the closed-loop rate, so
    end-of-data latency shows the path, not the queue in front of the
    scan threads (closed-loop sessions keep every thread busy, and by
    Little's law wait sessions / rate)."""
    rates = [r["rate"] for r in (row or {}).get("runs", []) if r["rate"]]
    if not rates:
        return
    top = statistics.median(rates)
    for frac in (0.25, 0.5):
        want = max(1, int(top * frac))
        try:
            r = measure(ctx, srv, "loadgen", load, "R%d" % want,
                        extra=["-R", str(want)])
        except BenchError as e:
            log("[paced] %d msg/s failed: %s" % (want, e))
            continue
        ctx.paced.append({"frac": frac, "want": want, "rate": r["rate"],
                          "p50": r["p50"], "p99": r["p99"],
                          "cpu_ms": r["cpu_ms"],
                          "scan_cpu_ms": r["scan_cpu_ms"]})
        log("[paced] setup 4 at %d msg/s (%.0f%% of %.0f): %s" %
            (want, frac * 100, top, brief(r)))


def brief(r):
    s = "%.1f msg/s accepted, %.1f delivered/s" % (r["rate"],
                                                   r["delivered_rate"])
    if r["cpu_ms"] is not None:
        s += ", CPU %.3f ms/msg" % r["cpu_ms"]
    if r["rss_mb"]:
        s += ", RSS %.0f MB (PSS %.0f)" % (r["rss_mb"], r["pss_mb"])
    if r["p50"] is not None:
        s += ", p50/p99 %.2f/%.2f ms" % (r["p50"], r["p99"])
    if r.get("d50") is not None:
        s += " (DATA to 354 p50/p99 %.2f/%.2f ms)" % (r["d50"], r["d99"])
    s += ", delivered %d of %d%s" % (
        r["delivered_total"], r["accepted_total"],
        "" if r["gen"] == "smtp-source" else " in the window")
    if r["inflight"]:
        s += " (%d in flight at the stop)" % r["inflight"]
    if r["queue_left"]:
        s += ", %d LEFT IN THE QUEUE" % r["queue_left"]
    if r["errors"]:
        s += ", %d errors" % r["errors"]
    return s


# ----------------------------------------------------- scan, idle, cg

def bench_scan_run(ctx, shape, n, name, extra=()):
    """One bench_scan run (1 thread, clean cache off) on a message shape:
    its summary figures, or None (logged)."""
    rc, msg = run_cmd([ctx.bench_scan, "-d", ctx.db, "-m",
                       os.path.join(ctx.msgs, SHAPES[shape]), "-C", "-t",
                       "1", "-n", str(n)] + list(extra), 900)
    with open(os.path.join(ctx.results, "%s.txt" % name), "w") as f:
        f.write(msg)
    line = [l for l in msg.splitlines() if l.startswith("summary:")]
    if rc != 0 or not line:
        log("bench_scan failed on %s:\n%s" % (shape, msg[-1500:]))
        return None
    return parse_kv(line[-1])


def scan_beside(ctx, load, rep):
    """The 10 KB or 1 MB scan measured again right before a repetition of
    setup 4 (its server idle), so that the ceiling it is held against
    comes from the same minutes: this host's speed drifts by 20-40%
    within a run."""
    if not os.access(ctx.bench_scan, os.X_OK):
        return
    shape, sessions = load
    n = {"10k": 300, "1m": 10} if ctx.args.quick else {"10k": 1000,
                                                       "1m": 30}
    kv = bench_scan_run(ctx, shape, n[shape],
                        "scan-%s@%d-r%d" % (shape, sessions, rep))
    if kv and kv.get("cpu_ms"):
        ctx.beside.setdefault("%s@%d" % load, []).append(
            {"cpu_ms": kv["cpu_ms"], "p50": kv.get("p50_ms")})
        log("[%s@%d] bench_scan beside rep %d: %.3f ms CPU/scan" %
            (shape, sessions, rep, kv["cpu_ms"]))


def ceiling_for(ctx, scan, lname):
    """(CPU ms per scan, ceiling msg/s, where from) for a load's target
    rows: bench_scan beside its runs when measured, else at the start."""
    v = [b["cpu_ms"] for b in ctx.beside.get(lname, [])]
    if v:
        cpu = statistics.median(v)
        src = ("bench_scan beside its runs %.3f ms" % cpu if len(v) == 1
               else "bench_scan beside its runs %.3f ms (%.3f-%.3f)" %
               (cpu, min(v), max(v)))
    else:
        cpu = scan.get(lname.split("@")[0], {}).get("cpu_ms")
        src = "bench_scan at the start %.3f ms" % (cpu or 0)
    if not cpu:
        return None, None, None
    return cpu, NCPU * 1e3 / cpu, src


def scan_ceiling(ctx):
    """bench_scan on the 10 KB and 1 MB shapes, 1 thread, cache off."""
    out = {}
    if not os.access(ctx.bench_scan, os.X_OK):
        log("%s not found: no scan-bound ceiling (make "
            "tests/bench/bench_scan)" % ctx.bench_scan)
        return out
    rc, msg = run_cmd([ctx.bench_scan, "-d", ctx.db, "-m",
                       os.path.join(ctx.msgs, "eicar.eml"), "-n", "1", "-t",
                       "1", "-E"], 300)
    if rc != 0:
        raise BenchError("the synthetic database does not detect eicar.eml "
                         "(bench_scan -E):\n" + msg[-2000:])
    q = ctx.args.quick
    counts = {"10k": 1000 if q else 3000, "1m": 40 if q else 150}
    shapes = sorted({l[0] for l in ctx.args.loads})
    for shape in shapes:
        log("scan ceiling: bench_scan on %s (%d scans, 1 thread, cache off)"
            % (SHAPES[shape], counts[shape]))
        kv = bench_scan_run(ctx, shape, counts[shape], "scan-%s" % shape)
        if kv is None:
            continue
        cpu = kv.get("cpu_ms") or 0
        out[shape] = {"cpu_ms": cpu, "p50": kv.get("p50_ms"),
                      "p99": kv.get("p99_ms"),
                      "ceiling": NCPU * 1e3 / cpu if cpu else None}
        log("scan ceiling %s: %.3f ms CPU/scan, p50 %.3f ms -> %.0f msg/s "
            "on %d cores" % (shape, cpu, kv.get("p50_ms", 0),
                             out[shape]["ceiling"] or 0, NCPU))
    if "10k" in out:
        # The same scans, each after a pause, as a scan thread of a server
        # that is not saturated does them (the paced loads): the engine's
        # tries are no longer in the caches.
        n = 200 if q else 600
        log("scan after a %d ms pause: bench_scan on %s (%d scans)"
            % (SCAN_PAUSE_MS, SHAPES["10k"], n))
        kv = bench_scan_run(ctx, "10k", n, "scan-10k-pause",
                            ["-g", str(SCAN_PAUSE_MS)])
        if kv is not None:
            out["10k"]["paused"] = {"cpu_ms": kv.get("cpu_ms"),
                                    "p50": kv.get("p50_ms")}
            log("scan 10k after a pause: %.3f ms CPU/scan, p50 %.3f ms"
                % (kv.get("cpu_ms", 0), kv.get("p50_ms", 0)))
    return out


def idle_python(port, n, ready, hold, stop):
    """Fallback when loadgen is missing: n sessions that send EHLO and
    stay idle; calls ready(established, failed) then holds."""
    sel = selectors.DefaultSelector()
    conns = {}
    failed = 0
    for _ in range(n):
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            failed += 1
            s.close()
            continue
        s.setblocking(False)
        conns[s] = [0, b""]
        sel.register(s, selectors.EVENT_READ)
    end = time.monotonic() + 120
    done = 0
    while done + failed < n and time.monotonic() < end:
        for key, _ in sel.select(1.0):
            s = key.fileobj
            st = conns[s]
            try:
                d = s.recv(4096)
            except OSError:
                d = b""
            if not d:
                sel.unregister(s)
                s.close()
                del conns[s]
                failed += 1
                continue
            st[1] += d
            if st[0] == 0 and re.search(rb"^220 .*\r\n", st[1], re.M):
                st[0], st[1] = 1, b""
                s.sendall(b"EHLO idle.bench\r\n")
            elif st[0] == 1 and re.search(rb"^250 .*\r\n", st[1], re.M):
                st[0] = 2
                sel.unregister(s)
                done += 1
    ready(done, n - done)
    stop.wait(hold)
    for s in conns:
        s.close()
    sel.close()


def idle_bench(ctx):
    n = ctx.args.idle_sessions
    hold = 10
    srv = make_server(ctx, 4, "idle")
    res = {"sessions": n}
    log("idle: Sluice (setup 4 configuration) with %d idle sessions" % n)
    try:
        srv.start()
        time.sleep(1.0)
        res["before_mb"] = statistics.median(
            [srv.group.rss_mb() for _ in range(3) if not time.sleep(0.3)])
        got = {}
        ev = threading.Event()
        stop = threading.Event()

        def ready(est, fail):
            got["est"], got["fail"] = est, fail
            ev.set()
        if ctx.loadgen:
            out = os.path.join(ctx.results, "idle-loadgen.out")
            p = peers.spawn([ctx.loadgen, "-a", srv.addr(), "-I", str(n),
                             "-t", str(hold), "-q"], out,
                            stdout=subprocess.PIPE)
            res["client"] = "loadgen -I %d -t %d" % (n, hold)

            def rd():
                for line in p.stdout:
                    m = re.match(rb"idle-ready established=(\d+) "
                                 rb"failed=(\d+)", line)
                    if m:
                        ready(int(m.group(1)), int(m.group(2)))
            threading.Thread(target=rd, daemon=True).start()
        else:
            p = None
            res["client"] = "bench.py's own idle client (no loadgen)"
            threading.Thread(target=idle_python, args=(srv.port, n, ready,
                                                       hold + 5, stop),
                             daemon=True).start()
        if not ev.wait(180):
            raise BenchError("the %d idle sessions were not up within 180 s"
                             % n)
        res["established"], res["failed"] = got["est"], got["fail"]
        peak = 0.0
        for _ in range(6):
            time.sleep(0.5)
            peak = max(peak, srv.group.rss_mb())
        res["held_mb"] = peak
        stop.set()
        if p is not None:
            try:
                p.wait(hold + 30)
            except subprocess.TimeoutExpired:
                peers.stop_proc(p, 3)
        est = max(1, res["established"])
        res["growth_mb"] = res["held_mb"] - res["before_mb"]
        res["per_session_kb"] = res["growth_mb"] * 1024 / est
        log("idle: RSS %.1f MB before, %.1f MB with %d sessions held (%d "
            "failed): +%.1f MB, %.1f KB/session" %
            (res["before_mb"], res["held_mb"], res["established"],
             res["failed"], res["growth_mb"], res["per_session_kb"]))
    except BenchError as e:
        log("idle benchmark failed: %s" % e)
        res["fail"] = str(e)
    finally:
        srv.stop()
    return res


def callgrind(ctx):
    script = os.path.join(HERE, "callgrind.sh")
    if not os.path.isfile(script):
        log("tests/bench/callgrind.sh not found: no callgrind counts")
        return {"fail": "tests/bench/callgrind.sh not found"}
    log("callgrind: sh tests/bench/callgrind.sh")
    # the bench's database and unique messages, so the scan figure is real
    env = dict(os.environ, BENCH_DIR=ctx.workdir, BENCH_DB=ctx.db,
               CG_LOADGEN=ctx.loadgen)
    rc, out = run_cmd(["sh", script], 1200, env=env)
    with open(os.path.join(ctx.results, "callgrind.txt"), "w") as f:
        f.write(out)
    line = [l for l in out.splitlines() if l.startswith("callgrind:")]
    if rc != 0 or not line:
        log("callgrind.sh failed (status %d):\n%s" % (rc, out[-1500:]))
        return {"fail": "callgrind.sh exit %d (output in %s)" %
                (rc, os.path.join(ctx.results, "callgrind.txt"))}
    kv = parse_kv(line[-1])
    log("callgrind: " + line[-1].split(":", 1)[1].strip())
    return kv


# --------------------------------------------------------------- report

def machine(ctx):
    m = {}
    m["cpus"] = NCPU
    m["cpu"] = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
        m["ram"] = "%.1f GB" % (kb / 1048576)
    except (OSError, ValueError, IndexError):
        m["ram"] = "?"
    m["kernel"] = platform.release()
    try:
        with open("/etc/debian_version") as f:
            m["debian"] = f.read().strip()
    except OSError:
        m["debian"] = "?"
    m["fs"] = "%s (%s)" % (ctx.fs, ctx.workdir)
    rc, out = run_cmd(["postconf", "-d", "-h", "mail_version"], 20)
    m["postfix"] = out.strip() if rc == 0 else "?"
    rc, out = run_cmd([shutil.which("clamd") or "/usr/sbin/clamd",
                       "--version"], 20)
    m["clamav"] = out.strip() if rc == 0 else "?"
    rc, out = run_cmd(["git", "-C", ctx.top, "describe", "--always",
                       "--dirty"], 20)
    m["sluice"] = out.strip() if rc == 0 else "?"
    cflags = "?"
    try:
        with open(os.path.join(ctx.top, "Makefile")) as f:
            for line in f:
                if line.startswith("CFLAGS ="):
                    cflags = line.split("=", 1)[1].strip()
                    break
    except OSError:
        pass
    m["cflags"] = cflags
    m["cgroup"] = os.path.isdir(peers.CG_ROOT)
    return m


def med(vals):
    v = [x for x in vals if x is not None]
    if not v:
        return None
    return statistics.median(v), min(v), max(v)


def fmt_mm(t, p=1):
    if t is None:
        return "-"
    m, lo, hi = t
    if lo == hi:
        return "%.*f" % (p, m)
    return "%.*f (%.*f-%.*f)" % (p, m, p, lo, p, hi)


def fmt1(t, p=1):
    return "-" if t is None else "%.*f" % (p, t[0])


def summarize(rows):
    out = {}
    for k, row in rows.items():
        runs = row["runs"]
        s = {"fail": row["fail"], "n": len(runs)}
        for f in ("rate", "delivered_rate", "cpu_ms", "scan_cpu_ms",
                  "rss_mb", "pss_mb", "p50", "p99", "d50", "d99",
                  "gen_ms", "sink_ms", "busy_pct"):
            s[f] = med([r.get(f) for r in runs])
        s["acc_total"] = sum(r["accepted_total"] for r in runs)
        s["dlv_total"] = sum(r["delivered_total"] for r in runs)
        s["errors"] = sum(r["errors"] for r in runs)
        s["queue_left"] = sum(r["queue_left"] for r in runs)
        s["inflight"] = sum(r["inflight"] for r in runs)
        s["exact"] = all(r["gen"] == "smtp-source" for r in runs)
        out[k] = s
    return out


def checks(ctx, S, scan, idle):
    """The issue's targets: (what, measured, target, PASS/MISS/n.a.)."""
    out = []

    def rate(lname, key, kind):
        s = S.get((lname, key, kind))
        return s["rate"][0] if s and s["rate"] else None

    lg = "loadgen" if ctx.loadgen else "smtp-source"

    def ratio(lname, a, b, kind, want, what):
        x, y = rate(lname, a, kind), rate(lname, b, kind)
        if x is None or y is None or y <= 0:
            out.append((what, "n.a. (setup missing or failed)",
                        ">= %gx" % want, "n.a."))
            return
        r = x / y
        out.append((what, "%.2fx (%.1f / %.1f msg/s)" % (r, x, y),
                    ">= %gx" % want, "PASS" if r >= want else
                    "MISS by %.0f%%" % ((1 - r / want) * 100)))

    loads = ["%s@%d" % l for l in ctx.args.loads]
    for ln, want in (("10k@10", 4), ("10k@100", 1.8)):
        if ln in loads:
            ratio(ln, 4, 3, lg, want, "scan: Sluice (4) / Postfix + "
                  "clamav-milter (3), %s" % ln)
    for ln in loads:
        x = rate(ln, 4, lg)
        _, c, src = ceiling_for(ctx, scan, ln)
        if x is None or not c:
            out.append(("Sluice (4) vs scan-bound ceiling, %s" % ln, "n.a.",
                        ">= 90%", "n.a."))
            continue
        p = x / c * 100
        out.append(("Sluice (4) vs scan-bound ceiling, %s" % ln,
                    "%.0f%% (%.1f of %.0f msg/s; %s)" % (p, x, c, src),
                    ">= 90%",
                    "PASS" if p >= 90 else "MISS by %.0f points" % (90 - p)))
    for ln in loads:
        # The same ceiling with the CPU the generator and the sink took
        # per message in set-up 4's own window taken out of the cores:
        # what is left for the server on this machine.
        x = rate(ln, 4, lg)
        s = S.get((ln, 4, lg))
        sc, _, _ = ceiling_for(ctx, scan, ln)
        if x is None or not sc or not s or not s["gen_ms"] or \
                not s["sink_ms"]:
            continue
        g, k = s["gen_ms"][0], s["sink_ms"][0]
        c = NCPU * 1e3 / (sc + g + k)
        p = x / c * 100
        out.append(("Sluice (4) vs the ceiling left by its clients, %s: "
                    "cores / (bench_scan + generator + sink CPU per "
                    "message)" % ln,
                    "%.0f%% (%.1f of %.0f msg/s; %.3f + %.3f + %.3f ms)"
                    % (p, x, c, sc, g, k), ">= 90% (info)",
                    "PASS" if p >= 90 else "MISS by %.0f points" % (90 - p)))
    for ln in loads:
        shape = ln.split("@")[0]
        s = S.get((ln, 4, lg))
        sc, _, _ = ceiling_for(ctx, scan, ln)
        if s and s["cpu_ms"] and sc:
            own = s["cpu_ms"][0] - sc
            what = ("Sluice's own CPU/msg, scan excluded (4 - bench_scan), "
                    "%s" % ln)
            meas = "%.3f ms (%.3f - %.3f)" % (own, s["cpu_ms"][0], sc)
            if shape != "10k":  # the scan dwarfs it: noise, not a figure
                out.append((what, meas, "(info: the target is for 10 KB)",
                            "n.a."))
            else:
                out.append((what, meas, "<= 0.3 ms", "PASS" if own <= 0.3
                            else "MISS by %.3f ms" % (own - 0.3)))
        if s and s["cpu_ms"] and s.get("scan_cpu_ms") and shape == "10k":
            own = s["cpu_ms"][0] - s["scan_cpu_ms"][0]
            out.append(("Sluice's own CPU/msg, scan excluded (4 minus its "
                        "scan threads' CPU), %s" % ln,
                        "%.3f ms (%.3f - %.3f)" % (own, s["cpu_ms"][0],
                                                   s["scan_cpu_ms"][0]),
                        "<= 0.3 ms", "PASS" if own <= 0.3
                        else "MISS by %.3f ms" % (own - 0.3)))
        s6 = S.get((ln, 6, "smtp-source"))
        if s6 and s6["cpu_ms"] and shape == "10k":
            v = s6["cpu_ms"][0]
            out.append(("Sluice without filter (6) CPU/msg, %s" % ln,
                        "%.3f ms" % v, "<= 0.3 ms (info)",
                        "PASS" if v <= 0.3 else "MISS by %.3f ms" % (v - .3)))
    for ln in loads:
        ratio(ln, 6, 2, "smtp-source", 3, "MTA core: Sluice (6) / Postfix "
              "(2), %s" % ln)
        # The target against the machine: smtp-source straight into
        # smtp-sink (1) is the most any server between them can pass.
        c1, p2 = rate(ln, 1, "smtp-source"), rate(ln, 2, "smtp-source")
        if c1 and p2:
            out.append(("MTA core, %s: 3x Postfix (2) against the "
                        "generator -> sink ceiling (1)" % ln,
                        "%.1f against %.1f msg/s" % (3 * p2, c1),
                        "below the ceiling (info)",
                        "reachable" if 3 * p2 < c1 else
                        "above the ceiling by %.0f%%" %
                        ((3 * p2 / c1 - 1) * 100)))
    for ln in loads:
        ratio(ln, 5, 3, lg, 2, "same clamav-milter: Sluice (5) / Postfix "
              "(3), %s" % ln)
    s = S.get(("10k@10", 4, lg))
    sc = scan.get("10k", {}).get("p50")
    b = [x["p50"] for x in ctx.beside.get("10k@10", []) if x["p50"]]
    when = "at the start"
    if b:   # the scan of the same minutes, as for the ceiling
        sc, when = statistics.median(b), "beside its runs"
    if s and s["p99"] and sc:
        lim = 3 * sc
        v = s["p99"][0]
        out.append(("end-of-data p99, Sluice (4), 10k@10",
                    "%.2f ms (scan p50 %.3f ms, %s)" % (v, sc, when),
                    "<= %.2f ms (3x scan p50)" % lim,
                    "PASS" if v <= lim else "MISS by %.0f%%" %
                    ((v / lim - 1) * 100)))
    else:
        out.append(("end-of-data p99, Sluice (4), 10k@10", "n.a.",
                    "<= 3x scan p50", "n.a."))
    for p in ctx.paced:
        if p["p99"] is not None and sc:
            out.append(("end-of-data p99, Sluice (4), 10k@10 paced at %d "
                        "msg/s (%.0f%% of its maximum)" % (p["want"],
                                                            p["frac"] * 100),
                        "%.2f ms (p50 %.2f ms)" % (p["p99"], p["p50"]),
                        "<= %.2f ms (info)" % (3 * sc),
                        "PASS" if p["p99"] <= 3 * sc else "MISS by %.0f%%" %
                        ((p["p99"] / (3 * sc) - 1) * 100)))
    pz = scan.get("10k", {}).get("paused", {}).get("p50")
    for p in ctx.paced:
        # Paced, a scan thread waits between messages: the scan it then
        # runs is the one bench_scan -g measures.
        if p["p99"] is not None and pz:
            out.append(("end-of-data p99, Sluice (4), 10k@10 paced at %d "
                        "msg/s, against the scan after a %d ms pause" % (
                            p["want"], SCAN_PAUSE_MS),
                        "%.2f ms (scan p50 after a pause %.3f ms)" % (
                            p["p99"], pz),
                        "<= %.2f ms (info)" % (3 * pz),
                        "PASS" if p["p99"] <= 3 * pz else "MISS by %.0f%%" %
                        ((p["p99"] / (3 * pz) - 1) * 100)))
    if idle and "growth_mb" in idle:
        g = idle["growth_mb"]
        out.append(("%d idle sessions: RSS growth" % idle["sessions"],
                    "%.1f MB (%d established)" % (g, idle["established"]),
                    "< 200 MB", "PASS" if g < 200 and idle["established"] ==
                    idle["sessions"] else "MISS"))
    elif idle:
        out.append(("idle sessions", "failed", "< 200 MB", "n.a."))
    return out


def md_table(head, rows):
    t = ["| " + " | ".join(head) + " |",
         "|" + "|".join("---" for _ in head) + "|"]
    t += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(t)


def render(ctx, M, S, labels, settings, scan, idle, cg, chk, started, secs):
    a = ctx.args
    L = []
    L.append("## Peer benchmark (generated by tests/bench/bench.py)")
    L.append("")
    L.append("Run %s, %.0f s; `python3 tests/bench/bench.py%s`." %
             (started.strftime("%Y-%m-%d %H:%M UTC"), secs,
              " " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""))
    L.append("")
    L.append("Machine: %d CPUs (%s), %s RAM, kernel %s, Debian %s; work "
             "directory on %s. Postfix %s, %s. Sluice %s, CFLAGS `%s`." %
             (M["cpus"], M["cpu"], M["ram"], M["kernel"], M["debian"],
              M["fs"], M["postfix"], M["clamav"], M["sluice"], M["cflags"]))
    L.append("")
    L.append("Method: every load runs %g s of warm-up then a %g s window, "
             "%d repetition(s): median (min-max). The servers of a load "
             "are all started first and the repetitions go round them (rep "
             "1 of every set-up, then rep 2, ...), so the runs a ratio "
             "compares are minutes apart, not a block of repetitions. "
             "Accepted/s counts 250 "
             "replies in the window (loadgen's rate; for smtp-source its "
             "running counter), delivered/s the sink's counter over the "
             "same window. CPU/msg is the CPU of every process of the "
             "set-up (children included) %s over the window / messages "
             "accepted in it; RSS is the peak of the summed VmRSS of those "
             "processes, sampled every 0.5 s (shared pages counted in each "
             "process; PSS, which shares them out, beside it). For set-up 4 "
             "the CPU of Sluice's scan threads (named clamscan; they run "
             "nothing but libclamav scans) is also read per thread from "
             "/proc over the same window: the set-up's CPU minus it is "
             "Sluice's own path with the scan as it really ran excluded "
             "(bench_scan's single-thread figure is lower: no other "
             "thread shares the cores). Latency p50/p99 is end of data (the dot) to the "
             "250, from loadgen; beside it, in brackets, DATA to its 354 (the "
             "wait before the message is sent, where Sluice's DATA admission "
             "holds sessions beyond sluice_data_concurrency_limit). After each run the driver waits until the "
             "server's queue is empty and the sink stops counting: for "
             "smtp-source, whose counter is a total, delivered must equal "
             "accepted; loadgen counts only its window, so for it delivered "
             "(all of the run) must be at least the window's accepted. "
             "Setups 1, 2 and 6 also run under "
             "loadgen for comparison; ratios use the same generator on "
             "both sides." % (a.warmup, a.duration, a.reps,
                              "from a cgroup v1 cpuacct group" if M["cgroup"]
                              else "from /proc/stat minus the generator, "
                              "the sink and the driver (no cgroup v1 "
                              "cpuacct on this machine)"))
    if not ctx.loadgen:
        L.append("")
        L.append("**loadgen was missing: smtp-source stood in for it, so "
                 "setups 3-5 saw identical messages (scanner caches may "
                 "hit) and no latency figures exist.**")
    L.append("")
    if scan:
        L.append("Scan-bound ceiling (bench_scan -C -t 1, in-process "
                 "libclamav, the same database and messages, clean cache "
                 "off): " + "; ".join(
                     "%s: %.3f ms CPU/scan, p50 %.3f ms -> %.0f msg/s on %d "
                     "cores" % (k, v["cpu_ms"], v["p50"] or 0,
                                v["ceiling"] or 0, NCPU)
                     for k, v in sorted(scan.items())) + ".")
        pz = scan.get("10k", {}).get("paused")
        if pz and pz.get("cpu_ms"):
            L.append("")
            L.append("The same 10 KB scans, each after a %d ms pause "
                     "(bench_scan -g %d: what a scan thread of a server "
                     "that is not saturated does): %.3f ms CPU/scan, p50 "
                     "%.3f ms, %.1fx the back-to-back figure; between two "
                     "scans the engine's tries leave the CPU's caches." % (
                         SCAN_PAUSE_MS, SCAN_PAUSE_MS, pz["cpu_ms"],
                         pz["p50"] or 0,
                         pz["cpu_ms"] / scan["10k"]["cpu_ms"]
                         if scan["10k"]["cpu_ms"] else 0))
        L.append("")
    if ctx.beside:
        L.append("The scan measured again right before each repetition of "
                 "set-up 4 (bench_scan -C -t 1, its server idle; the "
                 "target rows use the median, so the ceiling and the load "
                 "come from the same minutes): " + "; ".join(
                     "%s: %s ms CPU/scan, p50 %s ms -> %.0f msg/s" % (
                         ln, fmt_mm(med([b["cpu_ms"] for b in v]), 3),
                         fmt_mm(med([b["p50"] for b in v]), 3),
                         NCPU * 1e3 / statistics.median(
                             [b["cpu_ms"] for b in v]))
                     for ln, v in ctx.beside.items()) + ".")
        L.append("")
    for load in a.loads:
        ln = "%s@%d" % load
        L.append("### %s messages, %d sessions" % (
            "10 KB" if load[0] == "10k" else "1 MB", load[1]))
        L.append("")
        rows = []
        base = {}
        for key in a.setups:
            for kind in generators(ctx, key):
                s = S.get((ln, key, kind))
                if s is None:
                    continue
                lab = labels.get(key, str(key))
                g = gen_label(ctx, key, kind)
                if s["fail"] and not s["n"]:
                    rows.append([lab, g, "failed: " + s["fail"].splitlines(
                    )[0][:120], "", "", "", "", "", ""])
                    continue
                if key == 2:
                    base[kind] = s["rate"][0] if s["rate"] else None
                rat = "-"
                if base.get(kind) and s["rate"] and key != 2:
                    rat = "%.2fx" % (s["rate"][0] / base[kind])
                lat = "-" if s["p50"] is None else "%s / %s" % (
                    fmt1(s["p50"], 2), fmt1(s["p99"], 2))
                if s["d50"] is not None:
                    lat += " (DATA to 354: %s / %s)" % (fmt1(s["d50"], 2),
                                                        fmt1(s["d99"], 2))
                tot = "%d / %d%s" % (s["dlv_total"], s["acc_total"],
                                     "" if s["exact"] else " (window)")
                if s["queue_left"]:
                    tot += " (%d left in the queue)" % s["queue_left"]
                if s["inflight"]:
                    tot += " (%d in flight at the stop)" % s["inflight"]
                if s["errors"]:
                    tot += " (%d errors)" % s["errors"]
                if s["fail"]:
                    tot += " (a rep failed)"
                rows.append([lab, g, fmt_mm(s["rate"]),
                             fmt_mm(s["delivered_rate"]),
                             fmt_mm(s["cpu_ms"], 3),
                             "-" if s["rss_mb"] is None else "%s / %s" % (
                                 fmt1(s["rss_mb"], 0), fmt1(s["pss_mb"], 0)),
                             lat, rat, tot])
        L.append(md_table(["setup", "generator", "accepted/s",
                           "delivered/s", "CPU ms/msg", "RSS / PSS MB",
                           "p50 / p99 ms", "vs Postfix (2)",
                           "delivered / accepted"], rows))
        L.append("")
        rows = []
        for key in a.setups:
            for kind in generators(ctx, key):
                s = S.get((ln, key, kind))
                if s is None or not s["n"]:
                    continue
                rows.append([labels.get(key, str(key)),
                             gen_label(ctx, key, kind),
                             "-" if key == 1 else fmt_mm(s["cpu_ms"], 3),
                             fmt_mm(s["gen_ms"], 3), fmt_mm(s["sink_ms"], 3),
                             fmt_mm(s["busy_pct"], 0)])
        if rows:
            L.append("Where the machine's CPU went in the same windows: the "
                     "server's per message accepted (as above), the "
                     "generator's per message accepted, smtp-sink's per "
                     "message it received (/proc/PID/stat), and how busy "
                     "the %d cores were, every process counted "
                     "(/proc/stat):" % NCPU)
            L.append("")
            L.append(md_table(["setup", "generator", "server ms/msg",
                               "generator ms/msg", "sink ms/msg",
                               "machine busy %"], rows))
            L.append("")
    L.append("### Targets")
    L.append("")
    L.append(md_table(["check", "measured", "target", "result"], chk))
    L.append("")
    if idle:
        L.append("### Idle sessions")
        L.append("")
        if "growth_mb" in idle:
            L.append("Sluice (setup 4 configuration, ClamAV engine loaded), "
                     "%s: RSS of all its processes %.1f MB before, %.1f MB "
                     "with %d sessions held after EHLO (%d failed): +%.1f "
                     "MB, %.1f KB per session." %
                     (idle["client"], idle["before_mb"], idle["held_mb"],
                      idle["established"], idle["failed"],
                      idle["growth_mb"], idle["per_session_kb"]))
        else:
            L.append("Failed: %s" % idle.get("fail", "?").splitlines()[0])
        L.append("")
    L.append("### Callgrind")
    L.append("")
    if cg and "fail" not in cg:
        L.append("tests/bench/callgrind.sh, instructions per message on "
                 "Sluice's own path (scan excluded): smtpd %s, qmgr %s; "
                 "inside libclamav %s (%s messages)." % (
                     fmt_int(cg.get("front_ir_per_msg")),
                     fmt_int(cg.get("qmgr_ir_per_msg")),
                     fmt_int(cg.get("scan_ir_per_msg")),
                     fmt_int(cg.get("msgs"))))
    else:
        L.append("Not run: %s." % (cg.get("fail") if cg else "--no-callgrind"))
    L.append("")
    L.append("### Settings")
    L.append("")
    L.append("smtp-sink: `smtp-sink -c -u root -m 4096 127.0.0.1:PORT 1024`. "
             "smtp-source: `smtp-source -c -s SESSIONS -m N -F MSGFILE -f "
             "bench@example.com -t rcpt@example.net -M client.bench`, "
             "stopped after warm-up + window. loadgen: `loadgen -a ADDR -c "
             "SESSIONS -t T -w W -m MSGFILE -q` (every message unique).")
    L.append("")
    for key in a.setups:
        if key in settings and settings[key]:
            L.append("- %s:" % labels[key])
            for s in settings[key]:
                L.append("  - " + s.replace(ctx.workdir, "WORKDIR"))
    L.append("")
    L.append("Servers run as root (Sluice with mail_owner = root, clamd and "
             "clamav-milter without User) in WORKDIR = the work directory; "
             "ports are free loopback ports.")
    return "\n".join(L) + "\n"


def fmt_int(v):
    try:
        return "{:,}".format(int(v))
    except (TypeError, ValueError):
        return "?"


def write_report(path, text):
    block = MARK_BEGIN + "\n" + text + MARK_END + "\n"
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = None
    if old is None:
        new = ("# Performance\n\n" + block + "\n## Optimisations\n\n"
               "(maintained by hand: each optimisation and its measured "
               "gain)\n")
    elif MARK_BEGIN in old and MARK_END in old:
        i = old.index(MARK_BEGIN)
        j = old.index(MARK_END, i) + len(MARK_END)
        if old[j:j + 1] == "\n":
            j += 1
        new = old[:i] + block + old[j:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(new)
    os.replace(tmp, path)


# ----------------------------------------------------------------- main

def main(argv):
    args = parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    import atexit
    atexit.register(peers.cleanup)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    try:
        ctx = prepare(args)
        n = sum(len(generators(ctx, k)) for k in args.setups) * \
            len(args.loads) * args.reps
        log("%d runs of %g+%g s; work directory %s (%s)" %
            (n, args.warmup, args.duration, ctx.workdir, ctx.fs))
        M = machine(ctx)  # before the runs: the version that was built
        scan = scan_ceiling(ctx)
        ctx.sink = peers.Sink(ctx.workdir)
        ctx.sink.start()
        log("smtp-sink on 127.0.0.1:%d" % ctx.sink.port)
        rows, labels, settings = run_loads(ctx)
        idle = None if args.no_idle else idle_bench(ctx)
        ctx.sink.stop()
        cg = None if (args.no_callgrind) else callgrind(ctx)
        S = summarize(rows)
        chk = checks(ctx, S, scan, idle)
        text = render(ctx, M, S, labels, settings, scan, idle, cg or {},
                      chk, started, time.monotonic() - t0)
    except BenchError as e:
        log("error: %s" % e)
        return 1
    except KeyboardInterrupt:
        log("interrupted; stopping everything")
        return 130
    finally:
        peers.cleanup()
    print()
    print(text)
    if args.out != "-":
        try:
            write_report(args.out, text)
        except OSError as e:
            log("cannot write %s: %s" % (args.out, e))
            return 1
        log("report written to %s (between %s and %s)" %
            (args.out, MARK_BEGIN, MARK_END))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
