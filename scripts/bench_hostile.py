#!/usr/bin/env python3
"""GET /api/v1/health under a slow-client attack, beside the same run's no-attack baseline.

Starts the real daemon (tests/integration/bh.py, log level info), then for each row runs
wrk (50 connections, --latency) and a single-connection probe (one request at a time, its
own p50/p99) against GET /api/v1/health:
  baseline      no attack
  2000 slow     2,000 connections from 127.0.0.2 holding half a request head each
                (GET ... HTTP/1.1 / Host: x / and never the blank line)
Prints a Markdown table for docs/benchmarks.md, with the daemon's RSS and thread count after
each row (each connection has a thread of its own). Needs root (the daemon's network plugins)
and wrk (scripts/install-deps.sh)."""
import argparse
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import time
import http.client

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
from bh import Daemon, wait_for  # noqa: E402

PARTIAL_HEAD = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n"


def wrk(port, conns, secs):
    out = subprocess.run(["wrk", "-t2", "-c%d" % conns, "-d%ds" % secs, "--latency",
                          "http://127.0.0.1:%d/api/v1/health" % port],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {q: to_ms(v) for q, v in re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
    return rps, lat["50"], lat["99"], errors.group(0) if errors else ""


def to_ms(v):
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def probe(port, n):
    """p50, p99 (ms) of n health requests, one at a time, each on a new connection."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/api/v1/health")
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 200, r.status
        times.append((time.perf_counter() - t0) * 1000)
    q = statistics.quantiles(times, n=100)
    return q[49], q[98]


def gauge(d, pattern):
    status, text = d.request("GET", "/metrics")
    m = re.search("^" + pattern + r" (\d+)", text, re.M)
    return int(m.group(1)) if status == 200 and m else -1


def open_conns(d):
    return gauge(d, r'boilerhouse_http_connections_open\{listener="api"\}')


def slow_clients(port, n):
    conns = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        s.sendall(PARTIAL_HEAD)
        conns.append(s)
    return conns


def row(name, d, args):
    rps, p50, p99, errs = wrk(d.port, 50, args.seconds)
    pp50, pp99 = probe(d.port, args.probes)
    rss = gauge(d, "process_resident_memory_bytes") / (1 << 20)
    print("| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %s | %.0f | %d |"
          % (name, rps, p50, p99, pp50, pp99, errs or "none", rss,
             gauge(d, "process_threads")), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slow", type=int, default=2000, help="slow connections (2000)")
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration per row (10)")
    ap.add_argument("--probes", type=int, default=500, help="single-connection probes (500)")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    d = Daemon(log_level="info", extra_env={
        "BOILERHOUSE_HTTP_IDLE_TIMEOUT_SECONDS": "600",  # the attack outlives the runs
        "BOILERHOUSE_HTTP_MAX_CONNECTIONS": str(a.slow + 1000),
        "BOILERHOUSE_HTTP_MAX_CONNECTIONS_PER_IP": str(a.slow + 100)})
    slow = []
    try:
        d.start()
        print("| load | wrk req/s (50 conns) | wrk p50 ms | wrk p99 ms | probe p50 ms "
              "| probe p99 ms | errors | daemon RSS MiB | threads |\n"
              "|---|---:|---:|---:|---:|---:|---|---:|---:|", flush=True)
        row("baseline (no attack)", d, a)
        slow = slow_clients(d.port, a.slow)
        wait_for(lambda: open_conns(d) >= a.slow, timeout=120, what="slow connections held")
        row("%d slow connections open" % a.slow, d, a)
        print("\n(daemon held %d connections after the attacked row)" % open_conns(d))
    finally:
        for s in slow:
            s.close()
        d.cleanup()


if __name__ == "__main__":
    main()
