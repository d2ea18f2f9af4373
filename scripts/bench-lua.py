#!/usr/bin/env python3
"""Lua hooks benchmark: what a claim policy adds to a claim, and guard calls per second.

  scripts/bench-lua.py [--claims N] [--seconds S]

1. Claim latency, existing source (the tenant already holds a running instance), through a
   real daemon (tests/integration/bh.py: its own state dir, bridge and cleanup), REST round
   trip over a kept-alive connection, for three workloads of the same spec in one run,
   interleaved claim by claim so machine noise hits all alike: no policy, the quota example
   (examples/lua/quota.lua), and a rate limiter that increments a bh.kv counter per claim.
2. build/tests/bench_lua pinned to one core: guard calls/s, and a policy decision with its
   event read from a real store.

Needs root and a build with tests (cmake -DBH_TESTS=ON)."""
import argparse
import http.client
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
from bh import BUILD, SOURCE, Daemon, read_manifest  # noqa: E402

RATE = """function policy(e)
  local n = bh.kv.incr('claims:' .. e.tenantId, 3600)
  if n > 1e9 then return false, 'rate limit' end
  return true
end
"""

ROWS = (("no policy", "plain", None), ("quota.lua (example)", "quota", "quota.lua"),
        ("rate limit (bh.kv.incr)", "rate", "rate.lua"))


def pct(values, p):
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1)))))]


def workload(name, policy):
    text = read_manifest("sleeper.yaml").replace("name: sleeper", "name: " + name)
    return text.rstrip("\n") + ("\n  claimPolicy: %s\n" % policy if policy else "\n")


def claim_ms(conn, tenant, wl):
    body = json.dumps({"workload": wl})
    t0 = time.perf_counter()
    conn.request("POST", "/api/v1/tenants/%s/claim" % tenant, body=body,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    out = json.loads(r.read())
    ms = (time.perf_counter() - t0) * 1000
    if r.status not in (200, 201) or out.get("phase") != "Active":
        raise RuntimeError("claim %s: %s %r" % (wl, r.status, out))
    return ms, out


def bench_claims(n):
    d = Daemon()
    try:
        d.start()
        pdir = os.path.join(d.state, "policies")
        with open(os.path.join(SOURCE, "examples", "lua", "quota.lua")) as f:
            quota = f.read()
        for name, text in (("quota.lua", quota), ("rate.lua", RATE)):
            with open(os.path.join(pdir, name), "w") as f:
                f.write(text)
        for _, wl, policy in ROWS:
            d.apply_workload(workload(wl, policy))
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
        times = {wl: [] for _, wl, _ in ROWS}
        for _, wl, _ in ROWS:  # one instance each, a tenant each (the quota counts them)
            claim_ms(conn, "bench-" + wl, wl)
        for i in range(n + 50):
            for _, wl, _ in ROWS:
                ms, out = claim_ms(conn, "bench-" + wl, wl)
                assert out["source"] == "existing", out
                if i >= 50:  # warm-up
                    times[wl].append(ms)
        status = d.request("GET", "/api/v1/policies")[1]
        for _, wl, _ in ROWS:
            d.release("bench-" + wl, wl)
        return times, status
    finally:
        d.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--claims", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=3)
    args = ap.parse_args()
    times, policies = bench_claims(args.claims)
    base = times["plain"]
    print("| claim, existing source (ms)      |    n |   p50 |   p95 |   p99 | p50 - none (us) |")
    print("|----------------------------------|------|-------|-------|-------|-----------------|")
    for label, wl, _ in ROWS:
        t = times[wl]
        print("| %-32s | %4d | %5.3f | %5.3f | %5.3f | %15.0f |" % (
            label, len(t), pct(t, 50), pct(t, 95), pct(t, 99),
            (pct(t, 50) - pct(base, 50)) * 1000))
    for p in policies["policies"]:
        print("daemon's own p99 of %s: %d us over %d calls" % (p["name"], p["p99Micros"],
                                                                 p["calls"]))
    print()
    subprocess.run(["taskset", "-c", "0", os.path.join(BUILD, "tests", "bench_lua"),
                    str(args.seconds)], check=True, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
