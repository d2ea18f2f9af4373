#!/usr/bin/env python3
"""Claim latency benchmark on this machine, against baselines measured in the same run.

  scripts/bench.py [--claims N]

Starts a real daemon (build/ must exist: scripts/build.sh), applies the busybox httpserver
workload, and measures N cold claims (REST round trip until the instance answers its health
check) and N releases. Baseline: a bare `runc run -d` + `runc delete -f` of the same image
(unpacked with umoci), with no overlay, network or health check. Prints one table."""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
from bh import BUSYBOX_LAYOUT, Daemon, read_manifest  # noqa: E402


def pct(values, p):
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1)))))
    return values[k]


def row(name, values):
    return "| %-34s | %5d | %8.1f | %8.1f | %8.1f |" % (
        name, len(values), pct(values, 50), pct(values, 95), pct(values, 99))


def bench_claims(n):
    d = Daemon()
    try:
        d.start()
        d.apply_workload(read_manifest("httpserver.yaml"))
        d.claim("warmup", "httpserver")
        d.release("warmup", "httpserver")
        claims, releases, existing = [], [], []
        for i in range(n):
            t0 = time.perf_counter()
            status, body = d.claim("bench-%d" % i, "httpserver")
            claims.append((time.perf_counter() - t0) * 1000)
            assert status == 201 and body["phase"] == "Active", body
            t0 = time.perf_counter()
            status, body = d.claim("bench-%d" % i, "httpserver")
            existing.append((time.perf_counter() - t0) * 1000)
            assert body["source"] == "existing", body
            t0 = time.perf_counter()
            status, _ = d.release("bench-%d" % i, "httpserver")
            releases.append((time.perf_counter() - t0) * 1000)
            assert status == 200
        return claims, existing, releases
    finally:
        d.cleanup()


def bench_bare_runc(n):
    work = tempfile.mkdtemp(prefix="bh-bench-")
    try:
        bundle = os.path.join(work, "bundle")
        subprocess.run(["umoci", "unpack", "--image", BUSYBOX_LAYOUT + ":latest", bundle],
                       check=True, capture_output=True)
        cfg = os.path.join(bundle, "config.json")
        import json
        with open(cfg) as f:
            c = json.load(f)
        c["process"]["terminal"] = False
        c["process"]["args"] = ["httpd", "-f", "-p", "8080", "-h", "/www"]
        with open(cfg, "w") as f:
            json.dump(c, f)
        root = os.path.join(work, "root")
        times = []
        for i in range(n):
            cid = "bh-bench-%d-%d" % (os.getpid(), i)
            t0 = time.perf_counter()
            # Detached: the container keeps its stdio, so give it /dev/null, not a pipe.
            subprocess.run(["runc", "--root", root, "run", "-d", "--bundle", bundle, cid],
                           check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            times.append((time.perf_counter() - t0) * 1000)
            subprocess.run(["runc", "--root", root, "delete", "-f", cid], check=True,
                           capture_output=True)
        return times
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--claims", type=int, default=20)
    args = ap.parse_args()
    bare = bench_bare_runc(args.claims)
    claims, existing, releases = bench_claims(args.claims)
    print("| %-34s | %5s | %8s | %8s | %8s |" % ("measurement (ms)", "n", "p50", "p95", "p99"))
    print("|" + "-" * 36 + "|-------|----------|----------|----------|")
    print(row("bare runc run -d (same image)", bare))
    print(row("claim: cold (until healthy)", claims))
    print(row("claim: existing", existing))
    print(row("release (destroy)", releases))
    print("\ncold claim p50 / bare runc p50 = %.2f" % (
        statistics.median(claims) / statistics.median(bare)))


if __name__ == "__main__":
    main()
