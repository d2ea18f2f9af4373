#!/usr/bin/env python3
"""Claim, hibernate and restore benchmark on this machine, against baselines measured in the
same run on the same image and data. Prints one table.

  scripts/bench.py [--quick] [--claims N] [--big-claims N] [--parallel N]

Needs root and a build (scripts/build.sh or cmake --build build). Starts a real daemon through
the integration harness (tests/integration/bh.py), which removes its containers, mounts, bridge
and state dir at the end; the baseline's bundle and data sets live in one temp dir that is
removed too.

Claim latency is the REST round trip of POST /tenants/<t>/claim, which returns only once the
claim is Active (its instance healthy), over a kept-alive HTTP connection. Sources:
  existing   the tenant already holds a running instance
  pool       a warm instance from a pool (size >= parallel); measured with the pool full
  pool+data  a warm instance into which the tenant's snapshot is restored (1 MB / 100 MB)
  cold       a fresh boot (overlay, network attach, runc create/start, health probe)
  cold+data  a fresh boot with the tenant's snapshot restored before start
  density    (--rows density) the existing claim with 1 and then --density idle instances
             running (no disk, no network: busybox sleep), and the daemon's RSS at each
Hibernate/restore times are the daemon's own (log lines "saved ... in N ms" and "restored
... in N ms"): freeze, archive, store / fetch, verify, extract."""
import argparse
import contextlib
import ctypes
import fcntl
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
import bh  # noqa: E402
from bh import BUSYBOX_LAYOUT, Daemon  # noqa: E402

UID_BASE = 1000000000

WORKLOAD = """
apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: %(name)s
spec:
  version: "1"
  image:
    ref: localhost/busybox:latest
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: %(disk)d}
  network:
    access: unrestricted
    expose:
      - guest: 8080
  filesystem:
    overlayDirs: ["/workspace"]
  idle:
    timeoutSeconds: 3600
    action: hibernate
  health:
    intervalSeconds: 60
    httpGet: {path: /, port: 8080}
  entrypoint:
    cmd: sh
    args: ["-c", "mkdir -p /workspace && exec httpd -f -p 8080 -h /www"]
"""

# The density row's instances: as small as an instance gets (no disk, no network, no probe).
TINY = """
apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: tiny
spec:
  version: "1"
  image:
    ref: localhost/busybox:latest
  resources: {vcpus: 0.1, memoryMb: 16, diskGb: 0}
  network: {access: none}
  idle:
    timeoutSeconds: 3600
    action: hibernate
  entrypoint:
    cmd: sh
    args: ["-c", "exec sleep 2147483647"]
"""

# (label, small files, small file size, large files, large file size)
DATASETS = {"1MB": (100, 4096, 1, 600 * 1024), "100MB": (10000, 1024, 3, 30 << 20),
            "30k": (30000, 1024, 0, 0)}


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


class Client:
    """One kept-alive HTTP connection (one per thread)."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def req(self, method, path, body=None):
        data = json.dumps(body) if body is not None else None
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data,
                                  headers={"Content-Type": "application/json"})
                r = self.conn.getresponse()
                text = r.read()
                return r.status, json.loads(text) if text else None
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                if attempt:
                    raise

    def claim(self, tenant, wl):
        t0 = time.perf_counter()
        status, body = self.req("POST", "/api/v1/tenants/%s/claim" % tenant, {"workload": wl})
        ms = (time.perf_counter() - t0) * 1000
        if status not in (200, 201) or body.get("phase") != "Active":
            raise RuntimeError("claim %s/%s: %s %r" % (tenant, wl, status, body))
        return ms, body

    def release(self, tenant, wl, force=False):
        path = "/api/v1/tenants/%s/release%s" % (tenant, "/force" if force else "")
        status, body = self.req("POST", path, {"workload": wl})
        if status != 200:
            raise RuntimeError("release %s/%s: %s %r" % (tenant, wl, status, body))


# ---- data sets -----------------------------------------------------------------------------

def make_dataset(dst, spec):
    small, small_size, large, large_size = spec
    os.makedirs(dst)
    with open("/dev/urandom", "rb") as rnd:
        for i in range(small):
            d = os.path.join(dst, "d%03d" % (i // 100))
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "f%03d" % (i % 100)), "wb") as f:
                f.write(rnd.read(small_size))
        for i in range(large):
            with open(os.path.join(dst, "large%d.bin" % i), "wb") as f:
                left = large_size
                while left:
                    chunk = rnd.read(min(left, 1 << 20))
                    f.write(chunk)
                    left -= len(chunk)
    subprocess.run(["chown", "-R", "%d:%d" % (UID_BASE, UID_BASE), dst], check=True)


def dataset_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
    return total


def drop_caches():
    subprocess.run(["sync"])


def bench_tar(work, label, src, n):
    """tar czf / tar xzf of the same data, as the issue asks (gzip at its default level)."""
    arch = os.path.join(work, "%s.tgz" % label)
    out = os.path.join(work, "%s-out" % label)
    create, extract = [], []
    for _ in range(n):
        drop_caches()
        t0 = time.perf_counter()
        subprocess.run(["tar", "-C", src, "-czf", arch, "."], check=True)
        create.append((time.perf_counter() - t0) * 1000)
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        drop_caches()
        t0 = time.perf_counter()
        subprocess.run(["tar", "-C", out, "-xzf", arch], check=True)
        extract.append((time.perf_counter() - t0) * 1000)
    shutil.rmtree(out, ignore_errors=True)
    os.unlink(arch)
    return create, extract


# ---- bare runc -----------------------------------------------------------------------------

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def probe_in_netns(pid, port, deadline_s=10):
    """One HTTP probe of 127.0.0.1:port inside pid's network namespace, retried until it answers
    (what the daemon's health check does): brings lo up if the runtime left it down, as the
    daemon's network setup does. Runs on a thread of its own (setns moves only that thread)."""
    out = {}

    def run():
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/%d/ns/net" % pid) as ns:
            if libc.setns(ns.fileno(), CLONE_NEWNET) != 0:
                out["err"] = "setns: errno %d" % ctypes.get_errno()
                return
        s = socket.socket()
        ifr = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))
        s.close()
        end = time.time() + deadline_s
        while time.time() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    if c.recv(64).startswith(b"HTTP/"):
                        out["ok"] = True
                        return
            except OSError:
                time.sleep(0.001)
        out["err"] = "no answer on port %d" % port
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if not out.get("ok"):
        raise RuntimeError("probe of pid %d: %s" % (pid, out.get("err")))


def bench_bare_runc(work, n):
    """runc run -d of the same image and command as the bench workload; and the same followed
    by one successful HTTP probe inside the container (the floor of a cold claim)."""
    bundle = os.path.join(work, "bundle")
    subprocess.run(["umoci", "unpack", "--image", BUSYBOX_LAYOUT + ":latest", bundle],
                   check=True, capture_output=True)
    cfg = os.path.join(bundle, "config.json")
    with open(cfg) as f:
        c = json.load(f)
    c["process"]["terminal"] = False
    c["process"]["args"] = ["httpd", "-f", "-p", "8080", "-h", "/www"]
    with open(cfg, "w") as f:
        json.dump(c, f)
    root = os.path.join(work, "runc-root")
    pidfile = os.path.join(work, "runc.pid")
    run, delete, probed = [], [], []
    try:
        for i in range(n):
            cid = "bh-bench-%d-%d" % (os.getpid(), i)
            t0 = time.perf_counter()
            # Detached: the container keeps its stdio, so give it /dev/null, not a pipe.
            subprocess.run(["runc", "--root", root, "run", "-d", "--pid-file", pidfile,
                            "--bundle", bundle, cid],
                           check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            run.append((time.perf_counter() - t0) * 1000)
            with open(pidfile) as f:
                probe_in_netns(int(f.read()), 8080)
            probed.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            subprocess.run(["runc", "--root", root, "delete", "-f", cid], check=True,
                           capture_output=True)
            delete.append((time.perf_counter() - t0) * 1000)
    finally:
        out = subprocess.run(["runc", "--root", root, "list", "-q"], capture_output=True,
                             text=True)
        for cid in out.stdout.split():
            subprocess.run(["runc", "--root", root, "delete", "-f", cid], capture_output=True)
    return run, delete, probed


# ---- the daemon ----------------------------------------------------------------------------

class Bench:
    def __init__(self, d, args):
        self.d = d
        self.args = args
        self.c = Client(d.port)
        self.rows = []
        self.log_pos = 0

    def apply(self, name, disk=1):
        self.d.apply_workload(WORKLOAD % {"name": name, "disk": disk})

    def pool(self, name, wl, size):
        status, out = self.c.req("POST", "/api/v1/pools", {
            "name": name, "spec": {"workloadRef": wl, "size": size, "maxFillConcurrency": 2}})
        assert status == 201, out

    def wait_pool_full(self, name, size, timeout=300):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.c.req("GET", "/api/v1/pools/" + name)[1].get("status", {})
            if st.get("ready") == size and not st.get("warming"):
                return
            time.sleep(0.02)
        raise RuntimeError("pool %s not full: %r" % (name, st))

    def log_times(self, *patterns):
        """Per pattern, its group 1 values in daemon log lines written since the last call."""
        with open(self.d.log_path) as f:
            f.seek(self.log_pos)
            text = f.read()
            self.log_pos = f.tell()
        return [[float(m) for m in re.findall(p, text)] for p in patterns]

    def skip_log(self):
        self.log_times()

    def seed(self, tenant, wl, src):
        """Gives tenant a snapshot holding a copy of src as /workspace."""
        _, body = self.c.claim(tenant, wl)
        ws = os.path.join(self.d.state, "instances", body["instanceId"], "rootfs", "workspace")
        subprocess.run(["cp", "-a", src + "/.", ws], check=True)
        self.c.release(tenant, wl)

    def seq(self, n, fn, between=None):
        out = []
        for i in range(n):
            if between:
                between(i)
            out.append(fn(i))
        return out

    def par(self, n, rounds, fn, between=None):
        """rounds x n concurrent calls of fn(i); returns every call's ms."""
        out = []
        for r in range(rounds):
            if between:
                between(r)
            res = [None] * n
            errs = []

            def run(i):
                try:
                    res[i] = fn(r * n + i, Client(self.d.port))
                except Exception as e:  # noqa: BLE001 - reported below
                    errs.append(e)
            ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            if errs:
                raise errs[0]
            out.extend(res)
        return out


# ---- request rates (wrk) -------------------------------------------------------------------

def wrk(port, path, conns, seconds, body=None):
    """wrk against one route: {"rps", "p50", "p99", "non2xx"} (latencies in ms)."""
    script = None
    cmd = ["wrk", "-t", "2", "-c", str(conns), "-d", "%ds" % seconds, "--latency"]
    if body is not None:
        fd, script = tempfile.mkstemp(suffix=".lua")
        with os.fdopen(fd, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = %s\n'
                    'wrk.headers["Content-Type"] = "application/json"\n' % json.dumps(
                        json.dumps(body)))
        cmd += ["-s", script]
    try:
        out = subprocess.run(cmd + ["http://127.0.0.1:%d%s" % (port, path)], check=True,
                             capture_output=True, text=True).stdout
    finally:
        if script:
            os.unlink(script)

    def ms(label):
        m = re.search(r"^\s*%s%%\s+([\d.]+)(us|ms|s)\s*$" % label, out, re.M)
        return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)] if m else -1
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": ms("50"), "p99": ms("99"), "non2xx": int(m.group(1)) if m else 0}


class use_build:
    """Within it, daemons run the build in dir build (None: this one): a baseline measured with
    the same rows in the same run, e.g. main's build."""

    def __init__(self, build):
        self.build, self.saved = build, bh.BINARY

    def __enter__(self):
        if self.build:
            bh.BINARY = os.path.join(self.build, "boilerhouse")
        return {"plugin_dir": os.path.join(self.build, "plugins")} if self.build else {}

    def __exit__(self, *exc):
        bh.BINARY = self.saved


def run_rates(args, build=None):
    """run_rates_on a daemon of this build, or of the build in dir build. The request rate
    limit (per credential, default 200/s) is raised out of the way but still checked on every
    request: one wrk client is one credential, and its 429s would be measured instead."""
    with use_build(build) as kw:
        return run_rates_on(args, Daemon(log_level="info", extra_env={
            "BOILERHOUSE_RATE_LIMIT": "1000000"}, **kw))


def run_rates_on(args, d):
    """Request rates on one daemon: health (the listener's ceiling), an existing claim, and a
    list of 1,000 claims. The 1,000 claims are real claim objects made through REST, of a
    workload whose image is absent: the workload is in Error, so each claim ends in Error at
    once (no boot) -- listing costs the same per object whatever its phase."""
    res = {}
    try:
        d.start()
        b = Bench(d, args)
        b.apply("cold")
        _, first = b.c.claim("holder", "cold")
        secs = args.wrk_seconds
        res["health"] = {c: wrk(d.port, "/api/v1/health", c, secs) for c in (50,)}
        res["existing claim"] = {
            c: wrk(d.port, "/api/v1/tenants/holder/claim", c, secs, {"workload": "cold"})
            for c in (20, 50)}
        # The claim must have held through the load: the same instance, still Active.
        _, after = b.c.claim("holder", "cold")
        assert after["instanceId"] == first["instanceId"], (first, after)
        b.c.release("holder", "cold", force=True)
        d.apply_workload((WORKLOAD % {"name": "noimage", "disk": 0}).replace(
            "localhost/busybox:latest", "localhost/absent:latest"), ready=False)
        d.wait_workload("noimage", "Error")
        for i in range(args.list_claims):
            status, body = b.c.req("POST", "/api/v1/tenants/l%04d/claim" % i,
                                   {"workload": "noimage"})
            assert status in (500, 503), (status, body)
        status, body = b.c.req("GET", "/api/v1/tenants")
        assert status == 200 and len(body) >= args.list_claims, (status, len(body))
        res["list %d claims" % args.list_claims] = {
            c: wrk(d.port, "/api/v1/tenants", c, secs) for c in (50,)}
        return res
    except Exception:
        sys.stderr.write(d.log()[-4000:])
        raise
    finally:
        d.cleanup()


def print_rates(rates):
    print("| %-30s | %5s | %9s | %8s | %8s | %6s |" % ("request rate (wrk, 2 threads)", "conns",
                                                       "req/s", "p50 ms", "p99 ms", "non-2xx"))
    print("|%s|-------|-----------|----------|----------|--------|" % ("-" * 32))
    for name, by_conns in rates.items():
        for c, r in by_conns.items():
            print("| %-30s | %5d | %9.0f | %8.2f | %8.2f | %6d |" % (
                name, c, r["rps"], r["p50"], r["p99"], r["non2xx"]))
    print()


def bench_existing(b, res, n, p, rounds):
    """existing: the tenant claims what it already holds."""
    b.c.claim("holder", "cold")
    res["existing"] = b.seq(n, lambda i: b.c.claim("holder", "cold")[0])
    res["existing x%d" % p] = b.par(p, rounds, lambda i, c: c.claim("holder", "cold")[0])
    b.c.release("holder", "cold", force=True)


def bench_cold(b, res, n, p, rounds):
    def cold(i, c=b.c, tag="c"):
        ms, _ = c.claim("%s%d" % (tag, i), "cold")
        return ms
    res["cold"] = b.seq(n, cold)
    for i in range(n):
        b.c.release("c%d" % i, "cold", force=True)
    res["cold, diskGb 0 (no disk)"] = b.seq(
        n, lambda i: b.c.claim("nd%d" % i, "nodisk")[0])
    for i in range(n):
        b.c.release("nd%d" % i, "nodisk", force=True)
    res["cold x%d" % p] = b.par(p, rounds, lambda i, c: cold(i, c, "pc"))
    for i in range(rounds * p):
        b.c.release("pc%d" % i, "cold", force=True)


def bench_pool(b, res, n, p, rounds):
    """pool: measured with the pool full (its refill boots not running meanwhile)."""
    b.pool("pool", "pooled", p)

    def pooled(i, c=b.c, tag="p"):
        ms, body = c.claim("%s%d" % (tag, i), "pooled")
        assert body["source"] == "pool", body
        c.release("%s%d" % (tag, i), "pooled", force=True)
        return ms
    res["pool"] = b.seq(n, pooled, lambda i: b.wait_pool_full("pool", p))
    b.wait_pool_full("pool", p)
    res["pool x%d" % p] = b.par(p, rounds, lambda i, c: c.claim("pp%d" % i, "pooled")[0],
                                lambda r: b.wait_pool_full("pool", p))
    for i in range(rounds * p):
        b.c.release("pp%d" % i, "pooled", force=True)


def daemon_rss_mb(d):
    with open("/proc/%d/status" % d.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS for the daemon")


def bench_density(b, res, n, p, count):
    """count idle instances running: the daemon's RSS, and the existing claim's latency beside
    the same claim with only its own instance running (same daemon, just before)."""
    b.d.apply_workload(TINY)
    b.c.claim("dholder", "tiny")
    res["existing, 1 running"] = b.seq(n, lambda i: b.c.claim("dholder", "tiny")[0])
    rss = {"1 running": daemon_rss_mb(b.d)}
    rounds = -(-count // p)
    b.par(p, rounds, lambda i, c: c.claim("d%d" % i, "tiny")[0])
    res["existing, %d running" % (rounds * p + 1)] = b.seq(
        n, lambda i: b.c.claim("dholder", "tiny")[0])
    rss["%d running" % (rounds * p + 1)] = daemon_rss_mb(b.d)
    res["_rss"] = rss
    for i in range(rounds * p):
        b.c.release("d%d" % i, "tiny", force=True)
    b.c.release("dholder", "tiny", force=True)


def run_daemon(args, datasets, build=None, more_env=None):
    """All daemon-side measurements. Returns {row name: [ms...]} and hibernate/restore data.
    The boot bound (admission control) is raised to the parallel claims measured: the rows time
    claims, not refusals. more_env: settings of this daemon (the before rows' --before-env)."""
    env = {"BOILERHOUSE_MAX_BOOTS": str(max(4, args.parallel))}
    env.update(more_env or {})
    if args.runtime:
        env["BOILERHOUSE_RUNTIME"] = args.runtime
    with use_build(build) as kw:
        d = Daemon(extra_env=env, **kw)
    res = {}
    try:
        d.start()
        b = Bench(d, args)
        for wl in ("cold", "pooled", "datacold", "datapool"):
            b.apply(wl)
        b.apply("nodisk", disk=0)  # the same without an instance disk: what the disk costs
        n, p, big = args.claims, args.parallel, args.big_claims
        rounds = max(1, -(-n // p))
        # Warm-up: the first boot pays for page cache and first-use paths.
        b.c.claim("warmup", "cold")
        b.c.release("warmup", "cold", force=True)

        def want(row):
            return not args.rows or row in args.rows.split(",")

        if want("existing"):
            bench_existing(b, res, n, p, rounds)
        if want("cold"):
            bench_cold(b, res, n, p, rounds)
        if want("pool"):
            bench_pool(b, res, n, p, rounds)
        if want("density"):
            bench_density(b, res, n, p, args.density)
        # data: seed snapshots, then claim+release (restore, hibernate) in a loop.
        hib, rest = {}, {}
        res["_hibernate"], res["_restore"] = hib, rest
        if not datasets:  # --claims-only or --rows
            return res
        b.pool("dpool", "datapool", p)
        for label, src in datasets.items():
            count = n if label == "1MB" else big
            for wl, tag in (("datacold", "cold+data"), ("datapool", "pool+data")):
                tenant = "t%s%s" % (wl, label)
                b.seed(tenant, wl, src)
                b.skip_log()

                def cycle(i, wl=wl, tenant=tenant):
                    if wl == "datapool":
                        b.wait_pool_full("dpool", p)
                    ms, body = b.c.claim(tenant, wl)
                    # An image snapshot (diskGb > 0) is a disk a boot mounts: never a pool's.
                    assert body["source"] in ("pool+data", "cold+data"), body
                    b.c.release(tenant, wl)
                    return ms
                res["%s %s" % (tag, label)] = b.seq(count, cycle)
                h, r = b.log_times(r"saved \d+ bytes \(\d+ files\) in (\d+) ms",
                                   r"restored (?:disk image )?\S+ (?:from the \w+ tier )?"
                                   r"in (\d+) ms")
                hib.setdefault(label, []).extend(h)
                rest.setdefault(label, []).extend(r)
        # parallel data claims: p tenants with 1 MB each.
        for wl, tag in (("datacold", "cold+data"), ("datapool", "pool+data")):
            for i in range(p):
                b.seed("par%s%d" % (wl, i), wl, datasets["1MB"])
            b.wait_pool_full("dpool", p)

            def pclaim(i, c, wl=wl):
                ms, body = c.claim("par%s%d" % (wl, i % p), wl)
                return ms

            def between(r, wl=wl):
                if r:
                    for i in range(p):
                        b.c.release("par%s%d" % (wl, i), wl)
                b.wait_pool_full("dpool", p)
            res["%s 1MB x%d" % (tag, p)] = b.par(p, rounds, pclaim, between)
            for i in range(p):
                b.c.release("par%s%d" % (wl, i), wl)
        res["_hibernate"], res["_restore"] = hib, rest
        return res
    except Exception:
        sys.stderr.write(d.log()[-4000:])
        raise
    finally:
        d.cleanup()


def fmt_row(name, values):
    return "| %-30s | %4d | %8.1f | %8.1f | %8.1f |" % (
        name, len(values), pct(values, 50), pct(values, 95), pct(values, 99))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small counts (about 2 minutes)")
    ap.add_argument("--claims", type=int, default=100)
    ap.add_argument("--big-claims", type=int, default=20, help="claims with the 100 MB overlay")
    ap.add_argument("--parallel", type=int, default=20)
    ap.add_argument("--baseline-runs", type=int, default=100)
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--list-claims", type=int, default=1000)
    ap.add_argument("--rates-only", action="store_true", help="only the wrk request rates")
    ap.add_argument("--before-build", metavar="DIR",
                    help="also measure the request rates on the build in DIR (e.g. main's)")
    ap.add_argument("--rows", metavar="ROW,...",
                    help="only these claim rows (existing, cold, pool, density), on this build and on "
                         "--before-build's; no request rates, no data sets")
    ap.add_argument("--density", type=int, default=200,
                    help="idle instances of the density row (--rows density)")
    ap.add_argument("--runtime", choices=("runc", "crun"),
                    help="the daemons' OCI runtime (default: the daemon's own detection, crun "
                         "where it runs, else runc); the baselines stay runc. crun: cgroup2's "
                         "controllers are bound to v1 hierarchies for the daemon rows on a "
                         "hybrid host (bh.crun_host)")
    ap.add_argument("--before-env", metavar="NAME=VALUE", action="append", default=[],
                    help="a setting of the before daemon (repeatable), on --before-build's "
                         "build or this one: e.g. BOILERHOUSE_WORKERS=2 for rows with fewer "
                         "reconciler threads beside rows with the default")
    ap.add_argument("--claims-only", action="store_true",
                    help="claim latency and request rates, without the data sets")
    args = ap.parse_args()
    if args.quick:
        args.claims, args.big_claims, args.parallel, args.baseline_runs = 20, 3, 10, 20
    if args.rows:
        args.claims_only = True
    if (args.rates_only or args.claims_only) and not args.rows:
        rates = {}
        if args.before_build:
            for k, v in run_rates(args, args.before_build).items():
                rates["before: " + k] = v
        rates.update(run_rates(args))
        print_rates(rates)
    if args.rates_only:
        return
    work = tempfile.mkdtemp(prefix="bh-bench-")
    try:
        datasets = {}
        for label, spec in DATASETS.items() if not args.claims_only else ():
            datasets[label] = os.path.join(work, label)
            make_dataset(datasets[label], spec)
        sizes = {k: dataset_bytes(v) for k, v in datasets.items()}
        bare_run, bare_del, bare_probe = bench_bare_runc(work, args.baseline_runs)
        tars = {k: bench_tar(work, k, v, 20 if k == "1MB" else 5) for k, v in datasets.items()}
        res = {}
        # crun refuses this kind of hybrid-cgroup host as it is (see bh.crun_host).
        with bh.crun_host() if args.runtime == "crun" else contextlib.nullcontext():
            before_env = dict(kv.split("=", 1) for kv in args.before_env)
            if (args.before_build or before_env) and args.claims_only:
                for k, v in run_daemon(args, datasets, args.before_build, before_env).items():
                    res[k if k.startswith("_") and k != "_rss" else "before: " + k] = v
            res.update(run_daemon(args, datasets))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("| %-30s | %4s | %8s | %8s | %8s |" % ("claim latency (ms)", "n", "p50", "p95", "p99"))
    print("|%s|------|----------|----------|----------|" % ("-" * 32))
    for k, v in res.items():
        if not k.startswith("_") and not k.endswith("_rss"):
            print(fmt_row(k, v))
    for k, rss in res.items():
        if k.endswith("_rss"):
            for what, mb in rss.items():
                print("| %-30s | %4s | %8.1f |          |          |" % (
                    "%sdaemon RSS MB, %s" % (k[:-4], what), "", mb))
    print(fmt_row("baseline: runc run -d", bare_run))
    print(fmt_row("baseline: runc run -d + probe", bare_probe))
    print(fmt_row("baseline: runc delete -f", bare_del))
    print()
    print("| %-30s | %4s | %8s | %8s | %8s |" % ("overlay save/restore", "n", "p50 ms", "MB",
                                                 "MB/s"))
    print("|%s|------|----------|----------|----------|" % ("-" * 32))
    mbps = {}
    for label in sizes:
        mb = sizes[label] / 1e6
        for name, vals in (("hibernate", res["_hibernate"][label]),
                           ("restore", res["_restore"][label]),
                           ("baseline: tar czf", tars[label][0]),
                           ("baseline: tar xzf", tars[label][1])):
            if not vals:
                continue
            p50 = pct(vals, 50)
            mbps[(name, label)] = mb / (p50 / 1000) if p50 else float("inf")
            print("| %-30s | %4d | %8.1f | %8.1f | %8.1f |" % (
                "%s %s" % (name, label), len(vals), p50, mb, mbps[(name, label)]))
    print()
    for pre in ("before: ", ""):
        cold = res.get(pre + "cold")
        if not cold:
            continue
        print("%scold claim p50 / bare runc run p50 = %.2f" % (
            pre, statistics.median(cold) / statistics.median(bare_run)))
        print("%scold claim p50 / (runc run -d + probe) p50 = %.2f" % (
            pre, statistics.median(cold) / statistics.median(bare_probe)))
        cold_par = [k for k in res if k.startswith(pre + "cold x")]
        if cold_par:
            print("%s p50 / cold claim p50 = %.2f" % (cold_par[0], statistics.median(
                res[cold_par[0]]) / statistics.median(cold)))
    for label in sizes:
        if ("restore", label) in mbps:
            print("restore MB/s / tar xzf MB/s (%s) = %.2f" % (
                label, mbps[("restore", label)] / mbps[("baseline: tar xzf", label)]))


if __name__ == "__main__":
    main()
