"""Test harness: runs the real boilerhouse daemon against a private state dir and cleans up
everything it made (containers, mounts, bridge, processes, files), even when a test fails."""
import fcntl
import glob
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

BUILD = os.environ.get("BH_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("BH_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
BINARY = os.path.join(BUILD, "boilerhouse")
BUSYBOX_LAYOUT = os.path.join(BUILD, "images", "busybox")
BUSYBOX_REF = "localhost/busybox:latest"
# The real-world image scripts/build-debian-image.sh caches (Debian 12, curl, python3-requests,
# nodejs, dnsutils).
DEBIAN_LAYOUT = os.environ.get("BH_DEBIAN_IMAGE", "/var/cache/boilerhouse-test/debian-image")

# Each daemon's log (its stdout and stderr) is kept here after cleanup (scripts/test.sh
# empties it before a run); a failing test prints the tails of its daemons' logs.
LOG_KEEP_DIR = os.path.join(BUILD, "test-logs")

# What a sanitizer prints (ASan, LSan, UBSan, TSan); the -DBH_SANITIZE=ON pass of the suite
# runs with halt_on_error, so a daemon-side report also ends the daemon.
SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|UndefinedBehaviorSanitizer|"
                          r"WARNING: ThreadSanitizer|runtime error:")


def sanitizer_report(text, context=80):
    """The sanitizer report in text (from a little before its first line), or None."""
    m = SANITIZER_RE.search(text or "")
    if not m:
        return None
    lines = text[:m.start()].splitlines()[-3:] + text[m.start():].splitlines()
    return "\n".join(lines[:context + 3])


def assert_no_sanitizer_report(text, what):
    """Fails with the report if a process we started printed one (text: its output)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    report = sanitizer_report(text)
    if report:
        raise AssertionError("sanitizer report from %s:\n%s" % (what, report))


def run_checked(argv, what=None, **kw):
    """subprocess.run with captured output for our own binaries: fails on a sanitizer report
    in their output, and (check=True) on a non-zero exit with that output in the message."""
    check = kw.pop("check", False)
    kw.setdefault("capture_output", True)
    res = subprocess.run(argv, **kw)
    for out in (res.stdout, res.stderr):
        assert_no_sanitizer_report(out, what or " ".join(argv[:3]))
    if check and res.returncode != 0:
        raise AssertionError("%s exited %d:\n%s" % (" ".join(argv), res.returncode,
                                                     res.stderr))
    return res


# Daemons whose logs a failing test prints: those alive, and those cleaned up in the test.
_live_daemons = []
_cleaned_in_test = []


def _print_daemon_tails(test):
    if getattr(test, "_bh_tails_printed", False):
        return  # once per test, though it may both error and fail (in tearDown)
    test._bh_tails_printed = True
    for d in _live_daemons + _cleaned_in_test:
        print("\n---- %s: tail of daemon log %s ----\n%s" % (test, d.kept_log or d.log_path,
                                                           d.log(4000)), file=sys.stderr)


def _hook_results():
    """Wraps unittest's result so a failed or errored test prints its daemons' log tails."""
    r = unittest.TestResult
    start, fail, error = r.startTest, r.addFailure, r.addError

    def start_test(self, test):
        _cleaned_in_test.clear()
        start(self, test)

    def add_failure(self, test, err):
        _print_daemon_tails(test)
        fail(self, test, err)

    def add_error(self, test, err):
        _print_daemon_tails(test)
        error(self, test, err)

    r.startTest, r.addFailure, r.addError = start_test, add_failure, add_error


_hook_results()


# Under CI=true (.ci/run) every test must really run: a missing dependency is a failure there,
# a skip only on a developer's machine.
CI = os.environ.get("CI") == "true"


def require(ok, reason):
    """Use instead of skipTest/SkipTest when a test needs something the machine may lack:
    skips the test (or, from setUpClass, the class) locally, fails it under CI=true."""
    if ok:
        return
    if CI:
        raise AssertionError("CI=true: cannot run: " + reason)
    raise unittest.SkipTest(reason)


def _skip_is_failure(self, test, reason):
    try:
        raise AssertionError("CI=true: skipped tests fail: " + reason)
    except AssertionError:
        self.addFailure(test, sys.exc_info())


# Catches any skip not routed through require() (a decorator, a stray skipTest): under CI=true
# the unittest run reports it as a failure. Every test module imports bh, so this is in force.
if CI:
    unittest.TestResult.addSkip = _skip_is_failure
    unittest.TextTestResult.addSkip = _skip_is_failure


def wait_for(cond, timeout=60, what="condition", step=0.1):
    """Polls cond() until it returns something true, and returns that. The deadline only
    bounds a hang (generous, so a slow machine still passes); it is never what a test checks.
    Fails naming what was awaited and the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s (last: %r)"
                                 % (timeout, what, last))
        time.sleep(step)


CGROUP2_HYBRID = "/sys/fs/cgroup/unified"


def _v2_controllers():
    try:
        with open(os.path.join(CGROUP2_HYBRID, "cgroup.controllers")) as f:
            return f.read().split()
    except OSError:
        return []


def _give_back_v1(name, mnt):
    """One round of returning controller `name`, bound to a v1 hierarchy at mnt, to cgroup2:
    its child cgroups removed and the hierarchy unmounted; once it has no children an unmount
    destroys it, which takes a second mount and unmount when the first saw dying ones."""
    if not os.path.ismount(mnt):
        subprocess.run(["mount", "-t", "cgroup", "-o", name, "cgroup", mnt], capture_output=True)
    for root, dirs, _ in os.walk(mnt, topdown=False):
        for d in dirs:
            try:
                os.rmdir(os.path.join(root, d))
            except OSError:
                pass  # still in use or dying: the next round
    subprocess.run(["umount", mnt], capture_output=True)


class crun_host:
    """While in it, crun can run containers on this host. crun refuses a hybrid host (v1
    controllers plus a cgroup2 hierarchy) whose cgroup2 side holds a controller ("cgroups in
    hybrid mode not supported, drop all controllers from cgroupv2"); this VM's cgroup2 holds
    hugetlb, which no v1 hierarchy uses. Each such controller is bound to a v1 hierarchy of
    its own for the duration, so the host is a plain v1 host, and given back to cgroup2 after
    (an operator would mount it at boot instead). Nothing is changed on a host without such
    controllers. Needs nothing else to create cgroups meanwhile (ctest RUN_SERIAL)."""

    def __enter__(self):
        self.bound = []
        if not os.path.ismount(CGROUP2_HYBRID):
            return self
        try:
            for name in _v2_controllers():
                mnt = os.path.join("/sys/fs/cgroup", name)
                if os.path.exists(mnt) and os.listdir(mnt):
                    raise AssertionError("%s is not empty: cannot bind %s there" % (mnt, name))
                os.makedirs(mnt, exist_ok=True)
                self.bound.append((name, mnt))
                run_checked(["mount", "-t", "cgroup", "-o", name, "cgroup", mnt],
                            "bind %s to a v1 hierarchy" % name, check=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for name, mnt in self.bound:
            deadline = time.monotonic() + 60
            while name not in _v2_controllers():
                if time.monotonic() > deadline:
                    raise AssertionError("controller %s did not return to cgroup2" % name)
                _give_back_v1(name, mnt)
                time.sleep(0.5)
            os.rmdir(mnt)


def path_without(program):
    """A PATH value under which `program` is not found but every other program of PATH is:
    directories holding it are replaced by a directory of links to their other entries."""
    shadow = tempfile.mkdtemp(prefix="bh-it-path-")
    dirs = []
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        if not os.path.exists(os.path.join(d, program)):
            dirs.append(d)
            continue
        for name in os.listdir(d):
            if name != program and not os.path.exists(os.path.join(shadow, name)):
                os.symlink(os.path.join(d, name), os.path.join(shadow, name))
        if shadow not in dirs:
            dirs.append(shadow)
    return ":".join(dirs), shadow


def busybox_with(tmp, name, files):
    """A copy of the busybox image layout at tmp/name with files added: {path in the rootfs:
    host file}. Built with umoci; returns the layout's path."""
    layout = os.path.join(tmp, name)
    shutil.copytree(BUSYBOX_LAYOUT, layout)
    bundle = os.path.join(tmp, name + "-bundle")
    subprocess.run(["umoci", "unpack", "--image", layout + ":latest", bundle], check=True,
                   capture_output=True)
    for dest, src in files.items():
        target = os.path.join(bundle, "rootfs", dest.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy(src, target)
    subprocess.run(["umoci", "repack", "--image", layout + ":latest", bundle], check=True,
                   capture_output=True)
    shutil.rmtree(bundle)
    return layout


# ctest runs the integration files in parallel (tests/CMakeLists.txt): whatever is machine-wide
# (bridge, veth and nft table names, subnets) is built from a slot number that one live process
# holds at a time, an flock on SLOT_DIR/<n> (released by the kernel if the process dies).
SLOT_DIR = "/tmp/bh-it-slots"
SLOTS = range(20, 220)  # n in 10.x.<n>.0/24 and in names: "bhitr219" fits IFNAMSIZ


def lock_slot(n):
    """An fd holding slot n, or None if another open file holds it (any process's)."""
    os.makedirs(SLOT_DIR, exist_ok=True)
    fd = os.open(os.path.join(SLOT_DIR, str(n)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def take_slot():
    """(n, fd): a slot no other live test holds; closing fd releases it."""
    start = os.getpid() % len(SLOTS)
    for i in range(len(SLOTS)):
        n = SLOTS[(start + i) % len(SLOTS)]
        fd = lock_slot(n)
        if fd is not None:
            return n, fd
    raise AssertionError("all %d network slots of %s are held" % (len(SLOTS), SLOT_DIR))


def first_line(stream, what, timeout=60):
    """The first line a child process writes to stream (a pipe), within a deadline: a child
    that hangs before saying anything fails the test instead of hanging it."""
    if not select.select([stream], [], [], timeout)[0]:
        raise AssertionError("%s said nothing in %d s" % (what, timeout))
    return stream.readline()


def net_slot(add_cleanup):
    """A slot number for a test's own names and subnets (a fake internet's veth and netns),
    held until add_cleanup's cleanups run (a test's addCleanup or a class's addClassCleanup)."""
    n, fd = take_slot()
    add_cleanup(os.close, fd)
    return n


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLOT_PORT_BASE = 20000  # + 4 per slot: 20080..20879, below the kernel's ephemeral range


def slot_port(n, k):
    """Port k (0..3) of slot n. A daemon keeps its ports across restarts (crash tests); a port
    from the ephemeral range could meanwhile become some parallel test's client port, and the
    restarted daemon could not listen. Below that range only the slot's holder uses it."""
    port = SLOT_PORT_BASE + 4 * n + k
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = (int(x) for x in f.read().split())
    if lo <= port <= hi:
        return free_port()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the daemon's listener
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()  # something outside the tests holds it
    return port


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def read_manifest(name):
    with open(os.path.join(SOURCE, "workloads", name)) as f:
        return f.read()


class DaemonTestCase(unittest.TestCase):
    """One daemon for the whole class, started with MANIFESTS (example workload file names)
    applied and Ready; cleaned up after the class, or at once if setting up fails."""

    MANIFESTS = ()
    MANIFEST_TEXTS = ()  # workload manifests given inline
    DAEMON_KW = {}  # Daemon() arguments

    @classmethod
    def setUpClass(cls):
        cls.d = Daemon(**cls.DAEMON_KW)
        try:
            cls.d.start()
            for text in [read_manifest(n) for n in cls.MANIFESTS] + list(cls.MANIFEST_TEXTS):
                cls.d.apply_workload(text)
        except Exception:
            cls.d.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()


class Daemon:
    """One daemon process with its own state dir, port, runtime root and bridge."""

    def __init__(self, api_key=None, plugin_dir=None, extra_env=None, restricted_config=None,
                 unrestricted_config=None, plugin_configs=None, log_level="debug",
                 listen_host="127.0.0.1", extra_args=()):
        self.state = tempfile.mkdtemp(prefix="bh-it-")
        self.api_key = api_key
        self.plugin_dir = plugin_dir or os.path.join(BUILD, "plugins")
        # A bridge, subnet and ports of our own, so parallel daemons and tests never meet.
        n, self.slot_fd = take_slot()
        self.port = slot_port(n, 0)
        self.kube_port = slot_port(n, 1)
        self.bridge = "bhit%d" % n
        self.rbridge = "bhitr%d" % n
        self.subnet = "10.231.%d.0/24" % n
        self.rsubnet = "10.232.%d.0/24" % n
        self.rgateway = "10.232.%d.1" % n
        # restricted_config adds keys of the restricted plugin (trust_bundle, hosts_file...).
        restricted = dict({"bridge": self.rbridge, "subnet": self.rsubnet},
                          **(restricted_config or {}))
        self.plugin_config = os.path.join(self.state, "plugins.json")
        with open(self.plugin_config, "w") as f:
            unrestricted = dict({"bridge": self.bridge, "subnet": self.subnet},
                                **(unrestricted_config or {}))
            # plugin_configs adds other plugins' sections, e.g. {"storage/s3": {...}}.
            json.dump(dict({"network/unrestricted": unrestricted,
                            "network/restricted": restricted}, **(plugin_configs or {})), f)
        self.extra_env = extra_env or {}
        self.log_level = log_level  # benchmarks use "info": a debug line per request costs
        self.binary = BINARY  # as at creation: a benchmark may point BINARY at another build
        self.listen_host = listen_host
        self.extra_args = list(extra_args)  # more `serve` flags
        self.proc = None
        self.log_path = os.path.join(self.state, "daemon.log")
        self.kept_log = None
        _live_daemons.append(self)
        try:
            self.import_image(BUSYBOX_LAYOUT, BUSYBOX_REF)
        except BaseException:
            self.cleanup()  # no caller holds this object yet: its state dir must not stay
            raise

    def import_image(self, layout, ref):
        run_checked([self.binary, "image", "import", layout, ref, "--state-dir", self.state],
                    check=True)

    # ---- process ----

    def start(self, timeout=20, expect_fail=False, ready=None):
        """Starts the daemon and waits until ready() (default: plain GET /api/v1/health on
        loopback answers 200) is true."""
        env = dict(os.environ, **self.extra_env)
        if self.api_key:
            env["BOILERHOUSE_API_KEY"] = self.api_key
        env.setdefault("BOILERHOUSE_CLAIM_TIMEOUT_SECONDS", "30")
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--state-dir", self.state,
             "--listen", "%s:%d" % (self.listen_host, self.port),
             "--kube-listen", "127.0.0.1:%d" % self.kube_port,
             "--plugin-dir", self.plugin_dir, "--plugin-config", self.plugin_config,
             "--log-level", self.log_level] + self.extra_args,
            stdout=log, stderr=log, env=env)
        log.close()
        if expect_fail:
            return self.proc.wait(timeout=timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited %d:\n%s" % (self.proc.returncode, self.log()))
            try:
                if ready() if ready else self.request("GET", "/api/v1/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("daemon did not answer in %ds:\n%s" % (timeout, self.log()))

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)  # an operator sends its queued writes first
            except subprocess.TimeoutExpired:
                self.kill9()

    def log(self, tail=6000):
        for path in (self.log_path, self.kept_log):
            try:
                with open(path, errors="replace") as f:
                    return f.read()[-tail:] if tail else f.read()
            except (OSError, TypeError):
                pass
        return ""

    def keep_log(self):
        """Moves the log out of the state dir (removed by cleanup); fails on a sanitizer
        report in it, printing the report, whatever the test's own assertions said."""
        text = self.log(tail=None)
        if os.path.exists(self.log_path):
            os.makedirs(LOG_KEEP_DIR, exist_ok=True)
            self.kept_log = os.path.join(LOG_KEEP_DIR, os.path.basename(self.state) + ".log")
            shutil.move(self.log_path, self.kept_log)
        assert_no_sanitizer_report(text, "the daemon (log %s)" % self.kept_log)

    # ---- API ----

    def request(self, method, path, body=None, raw=None, headers=None, timeout=60,
                token=None, anonymous=False):
        """With the admin key, or token instead, or no credential at all (anonymous)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if isinstance(data, str):
            data = data.encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method=method)
        bearer = None if anonymous else token or self.api_key
        if bearer:
            req.add_header("Authorization", "Bearer " + bearer)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def raw_exchange(self, method, path, body=b"", headers=None, auth=True):
        """Sends the path exactly as given (no client-side normalisation of '..'), with the
        API key when auth is set; returns the whole raw response."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
            head = "%s %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nConnection: close\r\n" % (
                method, path, len(body))
            for k, v in (headers or {}).items():
                head += "%s: %s\r\n" % (k, v)
            if self.api_key and auth:
                head += "Authorization: Bearer %s\r\n" % self.api_key
            s.sendall(head.encode() + b"\r\n" + body)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        return data

    def raw_request(self, method, path, body=b"", headers=None):
        """raw_exchange answering (status, JSON body or text)."""
        head, _, payload = self.raw_exchange(method, path, body, headers).partition(b"\r\n\r\n")
        status = int(head.split()[1])
        try:
            return status, json.loads(payload.decode())
        except ValueError:
            return status, payload.decode()

    def apply_workload(self, manifest_text, ready=True, timeout=60):
        status, body = self.request("POST", "/api/v1/workloads", raw=manifest_text)
        assert status == 201, (status, body)
        name = body["name"]
        if ready:
            self.wait_workload(name, "Ready", timeout)
        return name

    def wait_workload(self, name, phase, timeout=60):
        deadline = time.time() + timeout
        body = None
        while time.time() < deadline:
            status, body = self.request("GET", "/api/v1/workloads/" + name)
            if status == 200 and body["status"].get("phase") == phase:
                return body
            time.sleep(0.1)
        raise AssertionError("workload %s not %s: %r\n%s" % (name, phase, body, self.log()))

    def kubeconfig(self):
        """Writes the kubeconfig `boilerhouse kubeconfig` prints for this daemon; its path."""
        path = os.path.join(self.state, "kubeconfig")
        out = run_checked([BINARY, "kubeconfig", "--state-dir", self.state,
                           "--kube-listen", "127.0.0.1:%d" % self.kube_port], check=True)
        with open(path, "wb") as f:
            f.write(out.stdout)
        return path

    def put_secret(self, name, key, value, tenant=None, ok=(201,)):
        """Stores a secret (a tenant's when tenant is given); asserts the status is in ok."""
        body = {"name": name, "key": key, "value": value}
        if tenant:
            body["tenantId"] = tenant
        status, out = self.request("POST", "/api/v1/secrets", body)
        assert status in ok, (status, out)

    def claim(self, tenant, workload):
        return self.request("POST", "/api/v1/tenants/%s/claim" % tenant, {"workload": workload})

    def release(self, tenant, workload):
        return self.request("POST", "/api/v1/tenants/%s/release" % tenant, {"workload": workload})

    # ---- machine state ----

    def runtime_root(self):
        return os.path.join(self.state, "runtime")

    def oci_runtime(self):
        """The OCI runtime this daemon runs its containers with: the one it said at start
        ("runtime crun" in its log; the last start's), else the one the environment names
        (BOILERHOUSE_RUNTIME), else runc. Each runtime keeps its own state format under the
        root, so only that one can list or delete them."""
        said = re.findall(r"state \S+, runtime (runc|crun)\b", self.log(tail=0))
        if said:
            return said[-1]
        named = self.extra_env.get("BOILERHOUSE_RUNTIME") or os.environ.get("BOILERHOUSE_RUNTIME")
        if named in ("runc", "crun"):
            return named
        return "runc" if shutil.which("runc") else "crun"

    def containers(self):
        """IDs the OCI runtime holds under this daemon's root."""
        rt = self.oci_runtime()
        if shutil.which(rt) is None:
            return []
        out = subprocess.run([rt, "--root", self.runtime_root(), "list", "-q"],
                             capture_output=True, text=True)
        return [l for l in out.stdout.split() if l] if out.returncode == 0 else []

    def mounts(self):
        with open("/proc/mounts") as f:
            return [l.split()[1] for l in f if self.state in l.split()[1]]

    def loops(self):
        """Backing files under this daemon's state dir of the host's bound loop devices."""
        found = []
        for dev in glob.glob("/sys/block/loop*/loop/backing_file"):
            try:
                with open(dev) as f:
                    path = f.read().strip()
            except OSError:
                continue  # unbound between the listing and the read
            if path.startswith(self.state + "/"):
                found.append(path)
        return found

    def cleanup(self):
        self.stop()
        rt = self.oci_runtime()  # the log is read once, not once per container
        for cid in self.containers():
            subprocess.run([rt, "--root", self.runtime_root(), "delete", "-f", cid],
                           capture_output=True)
        for m in sorted(self.mounts(), reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        for br in (self.bridge, self.rbridge):
            subprocess.run(["ip", "link", "del", br], capture_output=True)
            for family in ("inet", "bridge"):
                subprocess.run(["nft", "delete", "table", family, "boilerhouse_" + br],
                               capture_output=True)
        if self in _live_daemons:
            _live_daemons.remove(self)
            _cleaned_in_test.append(self)
        try:
            self.keep_log()
        finally:
            shutil.rmtree(self.state, ignore_errors=True)
            if self.slot_fd is not None:
                os.close(self.slot_fd)  # after the bridges are gone: the next holder's names
                self.slot_fd = None
