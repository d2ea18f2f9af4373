#!/usr/bin/env python3
"""Cost of token auth: the same read (GET /api/v1/whoami and GET /api/v1/workloads) over one
kept-alive connection, authenticated by the admin key (a constant-time compare: the baseline)
and by a viewer token (a SHA-256 and an indexed SQLite lookup per request). No containers: a
daemon on a temp state dir. Prints p50/p95/p99 per credential, interleaved rounds so load on
the machine hits both alike.

usage: scripts/bench-tokens.py [--requests N] [--build DIR]"""
import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "build"))
    a = ap.parse_args()
    state = tempfile.mkdtemp(prefix="bh-bench-tok-")
    port, key = free_port(), "bench-admin-key"
    log = open(os.path.join(state, "daemon.log"), "w")
    d = subprocess.Popen([os.path.join(a.build, "boilerhouse"), "serve", "--state-dir", state,
                          "--listen", "127.0.0.1:%d" % port, "--kube-listen", "127.0.0.1:%d" % free_port(),
                          "--plugin-dir", os.path.join(a.build, "plugins")],
                         env=dict(os.environ, BOILERHOUSE_API_KEY=key), stdout=log, stderr=log)
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        deadline = time.time() + 20
        while True:
            try:
                c.request("GET", "/api/v1/health")
                c.getresponse().read()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("POST", "/api/v1/tokens", json.dumps({"name": "bench", "scopes": ["viewer"]}),
                  {"Authorization": "Bearer " + key})
        token = json.loads(c.getresponse().read())["token"]
        creds = {"admin key": key, "viewer token": token}
        for path in ("/api/v1/whoami", "/api/v1/workloads"):
            times = {k: [] for k in creds}
            for _ in range(a.requests):
                for name, cred in creds.items():
                    t0 = time.perf_counter()
                    c.request("GET", path, headers={"Authorization": "Bearer " + cred})
                    r = c.getresponse()
                    r.read()
                    times[name].append((time.perf_counter() - t0) * 1000)
                    assert r.status == 200, r.status
            print("GET %s, %d requests each" % (path, a.requests))
            print("| credential    | p50 ms | p95 ms | p99 ms |")
            print("|---------------|-------:|-------:|-------:|")
            for name, xs in times.items():
                print("| %-13s | %6.3f | %6.3f | %6.3f |" % (name, pct(xs, 50), pct(xs, 95),
                                                          pct(xs, 99)))
    finally:
        d.terminate()
        d.wait(timeout=20)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
