# SPDX-License-Identifier: GPL-2.0-or-later
"""peers.py - the servers of the peer benchmark (tests/bench/bench.py).

Owns every process the benchmark starts: smtp-sink, private Postfix
instances, clamd + clamav-milter, and sluiced. Each server set-up runs in
its own cgroup v1 cpuacct group, so that its CPU (children included) and
the RSS of all its processes can be read, and so that stopping it can
reach every process it forked. Everything listens on 127.0.0.1 on free
ports and lives under the benchmark's work directory. Every process is
stopped by PID; cleanup() runs from bench.py's finally/atexit.

Python 3.11 standard library only.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

NOFILE = 65536          # soft and hard RLIMIT_NOFILE of servers and clients
READY_SECS = 30         # a server that is not up by then has failed
CG_ROOT = "/sys/fs/cgroup/cpuacct"


class BenchError(Exception):
    """A failure with a message for the operator."""


def log(msg):
    print("bench: " + msg, flush=True)


# ------------------------------------------------------------- cleanup

_CLEANUPS = []
_CLEANUP_LOCK = threading.Lock()


def on_cleanup(fn):
    """Register fn to run at cleanup(); returns a handle for forget()."""
    with _CLEANUP_LOCK:
        _CLEANUPS.append(fn)
    return fn


def forget(fn):
    with _CLEANUP_LOCK:
        if fn in _CLEANUPS:
            _CLEANUPS.remove(fn)


def cleanup():
    """Run every registered cleanup, newest first; never raises."""
    while True:
        with _CLEANUP_LOCK:
            if not _CLEANUPS:
                return
            fn = _CLEANUPS.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning
            log("cleanup: %s" % e)


# ----------------------------------------------------------- processes

def free_port():
    """A loopback TCP port that is free now."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
        return st not in ("Z", "X")
    except (OSError, IndexError):
        return False


def wrap(argv, procs_file="/dev/null", nofile=NOFILE):
    """argv run by a shell that first moves itself into a cgroup (by
    writing its pid to procs_file) and raises RLIMIT_NOFILE, then execs
    argv: no preexec_fn, so it is safe with the driver's threads."""
    script = ('echo $$ >"$0" || exit 126; ulimit -n %d 2>/dev/null || '
              'ulimit -n "$(ulimit -H -n)"; exec "$@"' % nofile)
    return ["/bin/sh", "-c", script, procs_file] + list(argv)


def spawn(argv, log_path, group=None, stdout=None, env=None, cwd=None):
    """Start argv in its own session (Ctrl-C reaches only the driver),
    inside group; stderr (and stdout unless given) go to log_path."""
    lf = open(log_path, "ab")
    try:
        p = subprocess.Popen(
            wrap(argv, group.procs_file if group else "/dev/null"),
            stdin=subprocess.DEVNULL,
            stdout=stdout if stdout is not None else lf, stderr=lf,
            start_new_session=True, env=env, cwd=cwd)
    except OSError as e:
        raise BenchError("cannot start %s: %s" % (argv[0], e))
    finally:
        lf.close()
    return p


def stop_proc(p, secs=10):
    """SIGTERM a child (and its process group), SIGKILL after secs."""
    if p is None or p.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, secs), (signal.SIGKILL, 3)):
        try:
            if sig == signal.SIGTERM:
                p.send_signal(sig)  # the process stops its own children
            else:
                os.killpg(p.pid, sig)
        except OSError:
            pass
        try:
            p.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(secs, fn, step=0.1):
    end = time.monotonic() + secs
    while True:
        try:
            r = fn()
        except OSError:
            r = None
        if r:
            return r
        if time.monotonic() > end:
            return None
        time.sleep(step)


def smtp_banner(port, timeout=2.0):
    """True when 127.0.0.1:port answers with a 220 greeting."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout) as s:
            s.settimeout(timeout)
            data = s.recv(512)
            try:
                s.sendall(b"QUIT\r\n")
            except OSError:
                pass
            return data.startswith(b"220")
    except OSError:
        return False


def tcp_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), 1.0):
            return True
    except OSError:
        return False


def tail(path, n=15):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 8192))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join("    " + l for l in lines[-n:])
    except OSError as e:
        return "    (%s)" % e


# -------------------------------------------------------------- cgroups

def _read_int(path):
    with open(path) as f:
        return int(f.read().split()[0])


def vmrss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def count_files(top, subdirs):
    """Regular files under top/subdir for each subdir (queue files)."""
    n = 0
    for d in subdirs:
        for _, _, files in os.walk(os.path.join(top, d)):
            n += len(files)
    return n


def _all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _ppid(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


class Group:
    """The processes of one server set-up: a cpuacct cgroup when the
    kernel has cgroup v1 cpuacct (CPU of all processes, children and
    exited ones included), else the descendants of registered root
    pids (CPU then comes from /proc/stat, see bench.py)."""

    seq = 0

    def __init__(self, name):
        Group.seq += 1
        self.name = "sluice-bench.%d.%d.%s" % (os.getpid(), Group.seq, name)
        self.path = os.path.join(CG_ROOT, self.name)
        self.roots = []
        self.cg = False
        try:
            os.mkdir(self.path)
            self.cg = True
        except OSError:
            self.path = None
        self.procs_file = (os.path.join(self.path, "cgroup.procs")
                           if self.cg else "/dev/null")
        self._h = on_cleanup(self.remove)

    def pids(self):
        if self.cg:
            try:
                with open(self.procs_file) as f:
                    return [int(x) for x in f.read().split()]
            except OSError:
                return []
        # Fallback: the registered roots and all their descendants.
        kids = {}
        for p in _all_pids():
            kids.setdefault(_ppid(p), []).append(p)
        out, todo = [], [r for r in self.roots if alive(r)]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(kids.get(p, []))
        return out

    def cpu_s(self):
        """CPU seconds of the group so far, or None without cgroups."""
        if not self.cg:
            return None
        try:
            return _read_int(os.path.join(self.path, "cpuacct.usage")) / 1e9
        except (OSError, ValueError):
            return None

    def rss_mb(self):
        return sum(vmrss_kb(p) for p in self.pids()) / 1024.0

    def thread_cpu_s(self, comm):
        """utime+stime of the group's threads named comm (their
        /proc/PID/task/TID/comm), seconds: Sluice's scan threads are
        "clamscan", so this is the CPU libclamav spent scanning."""
        tck = os.sysconf("SC_CLK_TCK")
        tot = 0
        for p in self.pids():
            try:
                tids = os.listdir("/proc/%d/task" % p)
            except OSError:
                continue
            for t in tids:
                base = "/proc/%d/task/%s/" % (p, t)
                try:
                    with open(base + "comm") as f:
                        if f.read().strip() != comm:
                            continue
                    with open(base + "stat") as f:
                        v = f.read().rsplit(")", 1)[1].split()
                    tot += int(v[11]) + int(v[12])
                except (OSError, IndexError, ValueError):
                    continue
        return tot / tck

    def mem_mb(self):
        """(summed VmRSS, summed Pss) of the group's processes, MB."""
        rss = pss = 0
        for p in self.pids():
            rss += vmrss_kb(p)
            pss += pss_kb(p)
        return rss / 1024.0, pss / 1024.0

    def kill(self, secs=5):
        """SIGTERM every process of the group, SIGKILL what is left."""
        for sig, wait in ((signal.SIGTERM, secs), (signal.SIGKILL, 3)):
            pids = self.pids()
            if not pids:
                return
            for p in pids:
                try:
                    os.kill(p, sig)
                except OSError:
                    pass
            if wait_for(wait, lambda: not self.pids()):
                return

    def remove(self):
        self.kill()
        forget(self._h)
        if self.cg and self.path:
            for _ in range(20):
                try:
                    os.rmdir(self.path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            self.path = None
            self.cg = False


# ----------------------------------------------------------------- sink

class Sink:
    """Postfix's smtp-sink on a free port; counts the messages it
    received from its -c running counter (mesg=N)."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.port = None
        self.proc = None
        self._count = 0
        self._lock = threading.Lock()
        self.log = os.path.join(workdir, "smtp-sink.log")

    def start(self):
        exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
        if not os.access(exe, os.X_OK):
            raise BenchError("smtp-sink not found (Debian package postfix)")
        self.port = free_port()
        self.proc = spawn([exe, "-c", "-u", "root", "-m", "4096",
                           "127.0.0.1:%d" % self.port, "1024"],
                          self.log, stdout=subprocess.PIPE)
        on_cleanup(self.stop)
        threading.Thread(target=self._reader, daemon=True).start()
        if not wait_for(READY_SECS, lambda: smtp_banner(self.port)):
            raise BenchError("smtp-sink did not come up on 127.0.0.1:%d; "
                             "its log %s:\n%s" % (self.port, self.log,
                                                  tail(self.log)))

    def _reader(self):
        fd = self.proc.stdout.fileno()
        rest = b""
        pat = re.compile(rb"mesg=(\d+)")
        while True:
            try:
                d = os.read(fd, 65536)
            except OSError:
                return
            if not d:
                return
            rest = (rest + d)[-256:]
            m = None
            for m in pat.finditer(rest):
                pass
            if m:
                with self._lock:
                    self._count = int(m.group(1))

    def count(self):
        with self._lock:
            return self._count

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_stable(self, quiet=2.0, limit=120.0, target=None):
        """Wait until the count reached target (when given) or stops
        rising for quiet seconds, at most limit; returns the count."""
        end = time.monotonic() + limit
        last, since = self.count(), time.monotonic()
        while time.monotonic() < end:
            time.sleep(0.25)
            c = self.count()
            if target is not None and c >= target:
                # a little longer: late duplicates would show here
                time.sleep(0.25)
                return self.count()
            if c != last:
                last, since = c, time.monotonic()
            elif time.monotonic() - since >= quiet and target is None:
                return c
            elif time.monotonic() - since >= max(quiet, 10.0):
                return c  # target never reached: stuck for 10 s
        return self.count()

    def stop(self):
        stop_proc(self.proc, 3)


# -------------------------------------------------------------- servers

class Server:
    """One server set-up of one benchmark load; start() raises
    BenchError with the failing part and its log."""

    label = "?"
    generator = "loadgen"

    def __init__(self, ctx, tag):
        self.ctx = ctx
        self.dir = os.path.join(ctx.rundir, tag)
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.group = Group(tag)
        self.port = None
        self.procs = []

    def addr(self):
        return "127.0.0.1:%d" % self.port

    def settings(self):
        """Lines describing the set-up for the report."""
        return []

    def queue_left(self):
        """Messages still in the server's queue (0 without a queue)."""
        return 0

    def stop(self):
        for p in reversed(self.procs):
            stop_proc(p)
        self.group.remove()


class Ceiling(Server):
    """Setup 1: no server; the generator talks to smtp-sink directly."""

    label = "1 ceiling: generator -> smtp-sink"

    def __init__(self, ctx, tag):
        super().__init__(ctx, tag)
        self.port = ctx.sink.port

    def start(self):
        pass


class Clamd:
    """clamd + clamav-milter, in the foreground, with Debian's settings
    from /etc/clamav plus what a private instance needs."""

    def __init__(self, srv):
        self.srv = srv
        self.dir = os.path.join(srv.dir, "clamav")
        os.makedirs(self.dir, exist_ok=True)
        self.sock = os.path.join(self.dir, "clamd.sock")
        self.mport = free_port()
        self.clamd_conf = os.path.join(self.dir, "clamd.conf")
        self.milter_conf = os.path.join(self.dir, "clamav-milter.conf")
        self.clamd_set = {
            "LocalSocket": self.sock,
            "DatabaseDirectory": srv.ctx.db,
            "Foreground": "yes",
            "DisableCache": "yes",
            "LogFile": os.path.join(self.dir, "clamd.log"),
            "LogTime": "yes",
            "PidFile": os.path.join(self.dir, "clamd.pid"),
        }
        self.clamd_drop = {"LocalSocketGroup", "LocalSocketMode", "User",
                           "LogSyslog", "LogRotate", "TCPSocket", "TCPAddr",
                           "LogFileMaxSize"}
        self.milter_set = {
            "MilterSocket": "inet:%d@127.0.0.1" % self.mport,
            "ClamdSocket": "unix:" + self.sock,
            "Foreground": "yes",
            "PidFile": os.path.join(self.dir, "clamav-milter.pid"),
            "LogFile": os.path.join(self.dir, "clamav-milter.log"),
            "OnInfected": "Reject",
        }
        self.milter_drop = {"MilterSocketGroup", "MilterSocketMode", "User",
                            "LogSyslog", "LogRotate", "LogFileMaxSize"}

    @staticmethod
    def _conf(base, setv, drop, out):
        lines = []
        try:
            with open(base) as f:
                for line in f:
                    k = line.split(None, 1)[0] if line.strip() else ""
                    if k and not k.startswith("#") and (k in setv or
                                                        k in drop):
                        continue
                    lines.append(line.rstrip("\n"))
        except OSError:
            lines.append("# %s not readable: ClamAV defaults" % base)
        lines.append("# sluice bench: private instance")
        lines += ["%s %s" % kv for kv in setv.items()]
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")

    def settings(self):
        return (["clamd: /etc/clamav/clamd.conf (Debian) with " +
                 ", ".join("%s %s" % kv for kv in self.clamd_set.items()) +
                 "; without " + ", ".join(sorted(self.clamd_drop))],
                ["clamav-milter: /etc/clamav/clamav-milter.conf (Debian) "
                 "with " + ", ".join("%s %s" % kv for kv in
                                     self.milter_set.items()) +
                 "; without " + ", ".join(sorted(self.milter_drop))])

    def start(self):
        srv = self.srv
        clamd = shutil.which("clamd") or "/usr/sbin/clamd"
        cmil = shutil.which("clamav-milter") or "/usr/sbin/clamav-milter"
        for exe, pkg in ((clamd, "clamav-daemon"), (cmil, "clamav-milter")):
            if not os.access(exe, os.X_OK):
                raise BenchError("%s not found (Debian package %s)" %
                                 (exe, pkg))
        self._conf("/etc/clamav/clamd.conf", self.clamd_set, self.clamd_drop,
                   self.clamd_conf)
        self._conf("/etc/clamav/clamav-milter.conf", self.milter_set,
                   self.milter_drop, self.milter_conf)
        out = os.path.join(self.dir, "clamd.out")
        p = spawn([clamd, "--foreground", "--config-file=" +
                   self.clamd_conf], out, srv.group)
        srv.procs.append(p)
        srv.group.roots.append(p.pid)
        if not wait_for(60, lambda: p.poll() is None and self._ping()):
            raise BenchError("clamd did not come up on %s within 60 s; its "
                             "logs %s, %s:\n%s" % (self.sock, out,
                                                   self.clamd_set["LogFile"],
                                                   tail(out) + "\n" + tail(
                                                       self.clamd_set[
                                                           "LogFile"])))
        mout = os.path.join(self.dir, "clamav-milter.out")
        p = spawn([cmil, "--config-file=" + self.milter_conf], mout,
                  srv.group)
        srv.procs.append(p)
        srv.group.roots.append(p.pid)
        if not wait_for(READY_SECS, lambda: p.poll() is None and
                        tcp_open(self.mport)):
            raise BenchError(
                "clamav-milter did not come up on 127.0.0.1:%d; its logs "
                "%s, %s:\n%s" % (self.mport, mout,
                                 self.milter_set["LogFile"], tail(mout) +
                                 "\n" + tail(self.milter_set["LogFile"])))

    def _ping(self):
        if not os.path.exists(self.sock):
            return False
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        try:
            s.connect(self.sock)
            s.sendall(b"zPING\0")
            return s.recv(16).startswith(b"PONG")
        except OSError:
            return False
        finally:
            s.close()


class Postfix(Server):
    """Setups 2 and 3: a private Postfix instance (own config, queue and
    data directories) relaying everything to the sink, optionally with
    clamav-milter + clamd."""

    generator = "smtp-source"

    def __init__(self, ctx, tag, milter=False):
        super().__init__(ctx, tag)
        self.milter = Clamd(self) if milter else None
        if milter:
            self.label = "3 Postfix + clamav-milter + clamd"
            self.generator = "loadgen"
        else:
            self.label = "2 Postfix, no filter"
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.port = free_port()
        self.main = [
            ("compatibility_level", "3.6"),
            ("queue_directory", self.queue),
            ("data_directory", self.data),
            ("maillog_file", self.maillog),
            ("maillog_file_prefixes", ctx.workdir),
            ("myhostname", "bench.localdomain"),
            ("mydestination", ""),
            ("inet_interfaces", "127.0.0.1"),
            ("inet_protocols", "ipv4"),
            ("mynetworks", "127.0.0.0/8"),
            ("relayhost", "[127.0.0.1]:%d" % ctx.sink.port),
            ("smtp_tls_security_level", "none"),
            ("smtpd_tls_security_level", "none"),
            ("alias_maps", ""),
            ("alias_database", ""),
        ]
        if self.milter:
            self.main.append(("smtpd_milters",
                              "inet:127.0.0.1:%d" % self.milter.mport))
        self.service = ("127.0.0.1:%d inet n - y - - smtpd" % self.port)

    def settings(self):
        s = ["Postfix main.cf (everything else Debian's defaults): " +
             "; ".join("%s = %s" % kv for kv in self.main),
             "Postfix master.cf: Debian's /etc/postfix/master.cf with its "
             "`smtp inet` service replaced by `%s`; /etc files copied into "
             "the chroot as Debian's configure-instance.sh does" %
             self.service.replace(str(self.port), "PORT")]
        if self.milter:
            a, b = self.milter.settings()
            s += a + b
        return s

    def queue_left(self):
        return count_files(self.queue, ("maildrop", "incoming", "active",
                                        "deferred", "hold", "corrupt"))

    def _postfix(self, *args, timeout=60, group=None):
        """Run postfix -c CONF ARGS; returns (rc, output). Its messages
        go to a tty only, so it runs under script(1)."""
        cmd = "postfix -c %s %s" % (self.conf, " ".join(args))
        argv = ["script", "-qec", cmd, "/dev/null"]
        if group is not None:
            argv = wrap(argv, group.procs_file)
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=timeout)
            return r.returncode, r.stdout.decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            return -1, "timed out after %d s" % timeout

    def start(self):
        if not shutil.which("postfix"):
            raise BenchError("postfix not found (Debian package postfix)")
        if self.milter:
            self.milter.start()
        os.makedirs(self.conf)
        os.makedirs(self.queue)
        os.makedirs(self.data)
        try:
            shutil.chown(self.data, "postfix")
        except (LookupError, OSError) as e:
            raise BenchError("cannot chown %s to postfix: %s (is the "
                             "postfix user there?)" % (self.data, e))
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write("# sluice bench: private Postfix instance\n")
            for k, v in self.main:
                f.write("%s = %s\n" % (k, v))
        master = []
        try:
            with open("/etc/postfix/master.cf") as f:
                master = f.read().splitlines()
        except OSError as e:
            raise BenchError("cannot read /etc/postfix/master.cf: %s" % e)
        out = []
        for line in master:
            if re.match(r"^smtp\s+inet\s", line):
                line = "#" + line
            out.append(line)
        out.append(self.service)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write("\n".join(out) + "\n")
        # the chroot's /etc, as Debian's configure-instance.sh makes it
        etc = os.path.join(self.queue, "etc")
        os.makedirs(etc)
        for n in ("localtime", "services", "resolv.conf", "hosts",
                  "host.conf", "nsswitch.conf"):
            if os.path.isfile("/etc/" + n):
                shutil.copy("/etc/" + n, os.path.join(etc, n))
        rc, msg = self._postfix("check")
        if rc != 0:
            raise BenchError("postfix check failed for %s:\n%s" %
                             (self.conf, msg))
        rc, msg = self._postfix("start", group=self.group)
        if rc != 0:
            raise BenchError("postfix start failed (%s):\n%s\nmaillog %s:\n%s"
                             % (self.conf, msg.strip(), self.maillog,
                                tail(self.maillog)))
        on_cleanup(self._stop_postfix)
        pidf = os.path.join(self.queue, "pid", "master.pid")
        pid = wait_for(10, lambda: _read_int(pidf))
        if pid:
            self.group.roots.append(pid)
        if not wait_for(READY_SECS, lambda: smtp_banner(self.port)):
            raise BenchError("Postfix did not answer on %s within %d s; "
                             "maillog %s:\n%s" % (self.addr(), READY_SECS,
                                                  self.maillog,
                                                  tail(self.maillog)))

    def _stop_postfix(self):
        forget(self._stop_postfix)
        if os.path.exists(os.path.join(self.queue, "pid", "master.pid")):
            self._postfix("stop", timeout=30)

    def stop(self):
        self._stop_postfix()
        super().stop()


class Sluice(Server):
    """Setups 4-6: sluiced relaying to the sink, its queue on disk."""

    def __init__(self, ctx, tag, clamav=True, milter=False):
        super().__init__(ctx, tag)
        self.clamav = clamav
        self.milter = Clamd(self) if milter else None
        if clamav:
            self.label = "4 Sluice, in-process ClamAV"
        elif milter:
            self.label = "5 Sluice + clamav-milter + clamd"
        else:
            self.label = "6 Sluice, no filter"
            self.generator = "smtp-source"
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.maillog = os.path.join(self.dir, "maillog")
        self.port = free_port()
        self.main = [
            ("myhostname", "bench.localdomain"),
            ("mydestination", ""),
            ("mynetworks", "127.0.0.0/8"),
            ("inet_interfaces", "127.0.0.1"),
            ("inet_protocols", "ipv4"),
            ("queue_directory", self.queue),
            ("maillog_file", self.maillog),
            ("relayhost", "[127.0.0.1]:%d" % ctx.sink.port),
            ("mail_owner", "root"),
            ("clamav_enable", "yes" if clamav else "no"),
        ]
        if clamav:
            # the peer's clamd runs with DisableCache yes: the same here
            self.main += [("clamav_database_directory", ctx.db),
                          ("clamav_header", "X-Virus-Scanned"),
                          ("clamav_disable_cache", "yes")]
        if self.milter:
            self.main.append(("smtpd_milters",
                              "inet:127.0.0.1:%d" % self.milter.mport))
        for p in getattr(ctx.args, "sluice_param", []):
            k, _, v = p.partition("=")
            self.main.append((k.strip(), v.strip()))
        self.service = "127.0.0.1:%d inet n - n - - smtpd" % self.port

    def settings(self):
        s = ["Sluice main.cf (everything else Sluice's defaults): " +
             "; ".join("%s = %s" % kv for kv in self.main),
             "Sluice master.cf: `%s`" % self.service.replace(str(self.port),
                                                             "PORT")]
        if self.milter:
            a, b = self.milter.settings()
            s += a + b
        return s

    def queue_left(self):
        return count_files(self.queue, ("incoming", "active", "deferred",
                                        "hold", "corrupt"))

    def start(self):
        exe = self.ctx.sluiced
        if not os.access(exe, os.X_OK):
            raise BenchError("%s not found: build the tree first (make)" %
                             exe)
        if self.milter:
            self.milter.start()
        os.makedirs(self.conf)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write("# sluice bench\n")
            for k, v in self.main:
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(self.service + "\n")
        out = os.path.join(self.dir, "sluiced.out")
        p = spawn([exe, "-c", self.conf], out, self.group)
        self.procs.append(p)
        self.group.roots.append(p.pid)

        def up():
            if p.poll() is not None:
                raise BenchError("sluiced exited with status %s" %
                                 p.returncode)
            if not smtp_banner(self.port):
                return False
            if not self.clamav:
                return True
            try:
                with open(self.maillog, errors="replace") as f:
                    return "clamav: engine loaded" in f.read()
            except OSError:
                return False
        try:
            ok = wait_for(READY_SECS, up)
        except BenchError as e:
            ok, why = False, str(e)
        else:
            why = "not ready within %d s" % READY_SECS
        if not ok:
            raise BenchError("sluiced on %s: %s; its logs %s, %s:\n%s" %
                             (self.addr(), why, out, self.maillog,
                              tail(out) + "\n" + tail(self.maillog)))
