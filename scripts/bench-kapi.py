#!/usr/bin/env python3
"""Kubernetes-compatible API benchmark: kubectl against local mode, beside the REST API, in one
run against one real daemon (tests/integration/bh.py: its own state dir, ports and cleanup).

  scripts/bench-kapi.py [--runs N] [--claims N] [--events N] [--watchers N] [--table]
                       [--watch-only] [--client c|processes|threads] [--interval-ms MS]

1. `kubectl apply -f workloads/` (the whole process, the three workloads created each time)
   beside its REST equivalent, one `curl -X POST --data-binary @file` process per file.
2. With --claims claims stored (default 1,000; their workload has no image, so they settle in
   Error and no container runs): `kubectl get bhc` (whole process) beside `curl
   /api/v1/tenants` (the REST listing of every claim); the list request as the server timed it
   (the daemon's debug log: "kapi GET ... (N ms)"), and both doors' JSON lists timed by a
   client on a kept-alive connection.
3. Watch fan-out: W watchers (default 50) of one claim, each receiving --events events (label
   changes by merge patch, default 1,000); delivery latency per event and watcher, from just
   before the write was sent, and from its acknowledgement. Baseline in the same run: one
   watcher. The watchers are one build/tests/bench_kapi_watch process (C: one thread, epoll,
   OpenSSL; it stamps each event with CLOCK_MONOTONIC when its bytes are read, and this script
   stamps the writes with the same clock). --client processes makes each watcher a Python
   process of its own, as before round 4 of docs/benchmarks.md (50 interpreters on 2 CPUs: the
   client's wake-ups and TLS in Python are most of what it measures); --client threads makes
   them threads of this one, where the GIL's queueing shows in the tail. --table adds the
   same with Table watches (`kubectl get bhc -w`'s Accept: as=Table), each event a one-row
   Table.

With --runs R for the watch (--watch-only), the fan-out is measured R times in the one daemon
and the rows pool every run's deliveries (each run's p99 is printed too). The writes go back
to back (each sent when the one before is answered: about 1,000 a second, 50,000 deliveries a
second with 50 watchers, which a loaded 2-CPU machine does not keep up with, so the tail is a
queue); --interval-ms paces them to measure delivery below that rate.

Needs root (the daemon's bridge) and kubectl on PATH."""
import argparse
import http.client
import json
import multiprocessing
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
from bh import BINARY, BUILD, SOURCE, Daemon  # noqa: E402

GROUP = "/apis/boilerhouse.dev/v1alpha1/namespaces/boilerhouse"
WATCH_CLIENT = os.path.join(BUILD, "tests", "bench_kapi_watch")
NOIMAGE = """{"apiVersion": "boilerhouse.dev/v1alpha1", "kind": "BoilerhouseWorkload",
 "metadata": {"name": "benchwl"},
 "spec": {"version": "1", "image": {"ref": "localhost/absent:1"},
          "resources": {"vcpus": 0.5, "memoryMb": 64, "diskGb": 1}}}"""


def pct(values, p):
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1)))))]


def row(name, values):
    if not values:
        return "| %-50s | %6d | %9s | %9s | %9s |" % (name, 0, "-", "-", "-")
    return "| %-50s | %6d | %9.1f | %9.1f | %9.1f |" % (name, len(values), pct(values, 50),
                                                        pct(values, 95), pct(values, 99))


HEADER = ("| %-50s | %6s | %9s | %9s | %9s |\n|%s|%s|%s|%s|%s|" %
          ("ms", "n", "p50", "p95", "p99", "-" * 52, "-" * 8, "-" * 11, "-" * 11, "-" * 11))


class Kapi:
    """HTTPS to the daemon's Kubernetes-compatible API, trusting its CA."""

    def __init__(self, d):
        self.port = d.kube_port
        self.cafile = os.path.join(d.state, "kapi", "ca.crt")
        self.ctx = ssl.create_default_context(cafile=self.cafile)

    def conn(self):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=120)

    def call(self, conn, method, path, body=None, ctype="application/json"):
        conn.request(method, path, body=body, headers={"Content-Type": ctype})
        r = conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, path, r.status, data[:300]))
        return json.loads(data) if data else None


def timed(argv, env=None):
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise RuntimeError("%s: %s%s" % (" ".join(argv), r.stdout, r.stderr))
    return ms, r.stdout


def bench_apply(d, env, runs):
    files = sorted(os.path.join(SOURCE, "workloads", f) for f in os.listdir(
        os.path.join(SOURCE, "workloads")) if f.endswith(".yaml"))
    names = [re.search(r"^  name: (\S+)", open(f).read(), re.M).group(1) for f in files]
    kube, rest = [], []
    base = "http://127.0.0.1:%d/api/v1/workloads" % d.port
    for _ in range(runs):
        for n in names:
            d.request("DELETE", "/api/v1/workloads/" + n)
        ms, out = timed(["kubectl", "apply", "-f", os.path.join(SOURCE, "workloads")], env)
        assert out.count("created") == len(files), out
        kube.append(ms)
        for n in names:
            d.request("DELETE", "/api/v1/workloads/" + n)
        t0 = time.perf_counter()
        for f in files:
            timed(["curl", "-sSf", "-X", "POST", "--data-binary", "@" + f, base])
        rest.append((time.perf_counter() - t0) * 1000)
    return kube, rest, len(files)


def make_claims(d, kapi, n):
    d.request("POST", "/api/v1/workloads", raw=NOIMAGE)
    conns = [kapi.conn() for _ in range(4)]

    def worker(k):
        for i in range(k, n, len(conns)):
            body = json.dumps({"apiVersion": "boilerhouse.dev/v1alpha1",
                               "kind": "BoilerhouseClaim",
                               "metadata": {"name": "claim-t%d-benchwl" % i},
                               "spec": {"tenantId": "t%d" % i, "workloadRef": "benchwl"}})
            kapi.call(conns[k], "POST", GROUP + "/boilerhouseclaims", body)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(conns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = time.time() + 300
    c = kapi.conn()
    while time.time() < deadline:  # settled: every claim has a phase
        items = kapi.call(c, "GET", GROUP + "/boilerhouseclaims")["items"]
        if len(items) == n and all(i.get("status", {}).get("phase") for i in items):
            return
        time.sleep(0.5)
    raise RuntimeError("claims did not settle")


def server_list_ms(d, since):
    with open(d.log_path) as f:
        f.seek(since)
        text = f.read()
    pat = r'module=kapi msg="GET /apis/boilerhouse.dev/v1alpha1/namespaces/boilerhouse/' \
          r'boilerhouseclaims -> 200 \((\d+) ms\)"'
    return [float(m) for m in re.findall(pat, text)]


TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1"


def bench_list(d, kapi, env, runs, n):
    kube, rest = [], []
    for _ in range(runs):
        ms, out = timed(["kubectl", "get", "bhc"], env)
        assert len(out.splitlines()) == n + 1, len(out.splitlines())
        kube.append(ms)
        ms, out = timed(["curl", "-sSf", "http://127.0.0.1:%d/api/v1/tenants" % d.port])
        assert len(json.loads(out)) == n
        rest.append(ms)
    c, h = kapi.conn(), http.client.HTTPConnection("127.0.0.1", d.port, timeout=120)
    client = {"kapi": [], "table": [], "rest": []}
    server = {}
    for kind, accept in (("kapi", "application/json"), ("table", TABLE)):
        since = os.path.getsize(d.log_path)
        for _ in range(runs):
            t0 = time.perf_counter()
            c.request("GET", GROUP + "/boilerhouseclaims", headers={"Accept": accept})
            doc = json.loads(c.getresponse().read())
            client[kind].append((time.perf_counter() - t0) * 1000)
            assert len(doc.get("items", doc.get("rows", []))) == n
        time.sleep(0.2)  # the log line follows the answer
        server[kind] = server_list_ms(d, since)
    for _ in range(runs):
        t0 = time.perf_counter()
        h.request("GET", "/api/v1/tenants")
        assert len(json.loads(h.getresponse().read())) == n
        client["rest"].append((time.perf_counter() - t0) * 1000)
    return kube, rest, server, client


def mono():
    """CLOCK_MONOTONIC in seconds: the clock the watchers (Python or bench_kapi_watch) stamp."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def watch_path(rv):
    return (GROUP + "/boilerhouseclaims?watch=true&resourceVersion=%s&fieldSelector="
            "metadata.name%%3Dclaim-t0-benchwl" % rv)


def watcher(kapi, rv, n, got, ready, results=None, table=False):
    c = kapi.conn()
    c.request("GET", watch_path(rv), headers={"Accept": TABLE} if table else {})
    r = c.getresponse()
    ready.release()
    seen = 0
    while seen < n:
        line = r.readline()
        if not line:
            break
        t = mono()
        m = re.search(rb'"seq":"(\d+)"', line)
        if m:
            got.append((int(m.group(1)), t))
            seen += 1
    c.close()
    if results is not None:
        results.put(got)


def start_watchers(kapi, rv, n, count, procs, table):
    """count watchers, each its own process (procs) or thread; returns a function that waits
    for them and gives their [(seq, arrival)] lists."""
    mp = multiprocessing.get_context("fork")  # the children inherit the TLS context
    ready = (mp if procs else threading).Semaphore(0)
    if procs:
        q = mp.Queue()
        ps = [mp.Process(target=watcher, args=(kapi, rv, n, [], ready, q, table))
              for _ in range(count)]
    else:
        lists = [[] for _ in range(count)]
        ps = [threading.Thread(target=watcher, args=(kapi, rv, n, got, ready, None, table))
              for got in lists]
    for p in ps:
        p.start()
    for _ in range(count):
        ready.acquire()

    def finish():
        out = [q.get(timeout=300) for _ in ps] if procs else lists
        for p in ps:
            p.join(timeout=120)
        return out
    return finish


def start_c_watchers(kapi, rv, n, count, table):
    """count watchers in one bench_kapi_watch process; a function as start_watchers gives."""
    p = subprocess.Popen([WATCH_CLIENT, str(kapi.port), kapi.cafile, watch_path(rv),
                          TABLE if table else "application/json", str(count), str(n)],
                         stdout=subprocess.PIPE, text=True)
    if p.stdout.readline().strip() != "ready":
        p.kill()
        raise RuntimeError("bench_kapi_watch did not start its watches")

    def finish():
        out, _ = p.communicate(timeout=300)
        got = [(int(s), float(t)) for s, t in (ln.split() for ln in out.splitlines())]
        return [got]  # one list of every watcher's arrivals
    return finish


def bench_watch(kapi, watchers, n, client, table=False, run=0, interval=0.0):
    c = kapi.conn()
    path = GROUP + "/boilerhouseclaims/claim-t0-benchwl"
    rv = kapi.call(c, "GET", path)["metadata"]["resourceVersion"]
    if client == "c":
        finish = start_c_watchers(kapi, rv, n, watchers, table)
    else:
        finish = start_watchers(kapi, rv, n, watchers, client == "processes", table)
    sent, acked = {}, {}
    for i in range(n):
        # the label's value is unique per run and watch, so every patch is a change
        body = json.dumps({"metadata": {"labels": {"seq": str(i), "run": "r%d" % run}}})
        if i and interval:  # paced: each write starts interval after the one before
            time.sleep(max(0.0, sent[i - 1] + interval - mono()))
        sent[i] = mono()
        kapi.call(c, "PATCH", path, body, "application/merge-patch+json")
        acked[i] = mono()
    results = finish()
    from_send = [(t - sent[s]) * 1000 for got in results for s, t in got]
    from_ack = [(t - acked[s]) * 1000 for got in results for s, t in got]
    write = [(acked[i] - sent[i]) * 1000 for i in range(n)]
    received = sum(len(g) for g in results)
    return from_send, from_ack, write, received


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--claims", type=int, default=1000)
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--watchers", type=int, default=50)
    ap.add_argument("--client", choices=("c", "processes", "threads"), default="c",
                    help="the watchers: c (default) all in one bench_kapi_watch process, epoll "
                    "and OpenSSL; processes: a Python process each; threads: Python threads of "
                    "this process (the GIL's queueing included)")
    ap.add_argument("--watch-only", action="store_true",
                    help="skip apply and kubectl get; claims are still made (for the list rows);"
                    " the watch is measured --runs times")
    ap.add_argument("--interval-ms", type=float, default=0,
                    help="pace the watch's writes: each starts this long after the one before "
                    "(default 0: back to back, each sent when the one before is answered)")
    ap.add_argument("--table", action="store_true",
                    help="Table watches too (Accept: as=Table, as kubectl get -w asks)")
    a = ap.parse_args()
    if not shutil.which("kubectl"):
        sys.exit("kubectl is needed (scripts/install-deps.sh)")
    # No rate limit: the benchmark's own bursts (1,000 creates, 50 watchers) are not abuse.
    d = Daemon(extra_env={"BOILERHOUSE_RATE_LIMIT": "0"})
    tmp = tempfile.mkdtemp(prefix="bh-bench-kapi-")
    try:
        d.start()
        kc = os.path.join(tmp, "kubeconfig")
        with open(kc, "w") as f:
            f.write(subprocess.run([BINARY, "kubeconfig", "--state-dir", d.state, "--kube-listen",
                                    "127.0.0.1:%d" % d.kube_port], capture_output=True,
                                   text=True, check=True).stdout)
        env = dict(os.environ, KUBECONFIG=kc)
        kapi = Kapi(d)
        timed(["kubectl", "apply", "-f", os.path.join(SOURCE, "crds")], env)
        kube_apply, rest_apply, nfiles = bench_apply(d, env, 0 if a.watch_only else a.runs)
        make_claims(d, kapi, a.claims)
        kube_get, rest_get, server, client = bench_list(d, kapi, env, a.runs, a.claims)
        watch_runs = a.runs if a.watch_only else 1
        modes = [("JSON", False)] + ([("Table", True)] if a.table else [])
        watches = []  # (label, [per-run results])
        for mode, table in modes:
            for label, count in (("1 watcher", 1), ("%d watchers" % a.watchers, a.watchers)):
                runs = []
                for r in range(watch_runs):
                    runs.append(bench_watch(kapi, count, a.events, a.client, table,
                                            len(watches) * 1000 + r, a.interval_ms / 1000.0))
                watches.append(("%s, %s" % (label, mode), count, runs))
    finally:
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    print(HEADER)
    print(row("kubectl apply -f workloads/ (%d files)" % nfiles, kube_apply))
    print(row("REST: curl POST x%d" % nfiles, rest_apply))
    print(row("kubectl get bhc (%d claims)" % a.claims, kube_get))
    print(row("REST: curl GET /api/v1/tenants", rest_get))
    print(row("server: list of %d, JSON (daemon log)" % a.claims, server["kapi"]))
    print(row("server: list of %d, Table (daemon log)" % a.claims, server["table"]))
    print(row("client: kapi list JSON, kept-alive", client["kapi"]))
    print(row("client: kapi list Table, kept-alive", client["table"]))
    print(row("client: REST /api/v1/tenants, kept-alive", client["rest"]))
    for label, count, runs in watches:
        from_send = [v for r in runs for v in r[0]]
        from_ack = [v for r in runs for v in r[1]]
        write = [v for r in runs for v in r[2]]
        received = sum(r[3] for r in runs)
        print(row("watch %s: delivery from send" % label, from_send))
        print(row("watch %s: delivery from ack" % label, from_ack))
        print(row("watch %s: the write (PATCH)" % label, write))
        print("watch %s: %d of %d events received; p99 from ack per run: %s" % (
            label, received, a.events * count * len(runs),
            " ".join("%.1f" % pct(r[1], 99) for r in runs)))


if __name__ == "__main__":
    main()
