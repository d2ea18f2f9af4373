#!/usr/bin/env python3
"""Trigger path benchmark: what the webhook trigger and the http driver add to an event.

  scripts/bench-triggers.py [--events N] [--pool N] [--tenants N] [--per-tenant N]

Through a real daemon (tests/integration/bh.py: its own state dir, bridge and cleanup) and
the echo agent (workloads/echo-agent.yaml, busybox httpd running a CGI per request):

1. Latency, warm instance: a signed webhook (GitHub-style HMAC, an allowlist guard, tenant
   from the payload) -> pipeline -> existing claim -> http driver -> the instance's CGI ->
   the JSON reply, against a direct POST of the same event to the same instance's endpoint,
   interleaved request by request over kept-alive connections so machine noise hits both.
2. Latency, from a pool: each event for a new tenant, claimed from a full pool (size
   --pool), so the row holds the pool claim and the first delivery.
3. Throughput: --tenants tenants with warm instances, one client thread per tenant sending
   --per-tenant events one after the other; events/s through the trigger, then the same
   direct to the instances.

Needs root (runc, network namespaces) and a build with tests."""
import argparse
import hashlib
import hmac
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration"))
from bh import Daemon, read_manifest, wait_for  # noqa: E402

SECRET = b"bench-signing-secret"


def pct(values, p):
    values = sorted(values)
    return values[max(0, min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1)))))]


class Client:
    """One kept-alive HTTP connection; post() returns (ms, status, body)."""

    def __init__(self, base):
        u = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        self.prefix = u.path.rstrip("/")

    def post(self, path, raw, headers):
        t0 = time.perf_counter()
        self.conn.request("POST", self.prefix + path, body=raw, headers=headers)
        r = self.conn.getresponse()
        body = r.read()
        return (time.perf_counter() - t0) * 1000.0, r.status, body


def event(tenant, i):
    raw = json.dumps({"user": {"login": tenant}, "text": "event %d" % i}).encode()
    sig = "sha256=" + hmac.new(SECRET, raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Hub-Signature-256": sig}


def direct_body(tenant, i):
    # What the driver delivers: the same shape, so the CGI does the same work.
    return json.dumps({"trigger": "bench", "tenantId": "b-" + tenant, "text": "event %d" % i,
                       "source": "webhook",
                       "payload": {"user": {"login": tenant}, "text": "event %d" % i}}).encode()


def endpoint(d, tenant):
    status, body = d.claim("b-" + tenant, "echo-agent")
    assert status in (200, 201), (status, body)
    ep = body.get("endpoint") or body["status"]["endpoint"]
    return "http://%s:%d" % (ep["host"], ep["port"])


def check(status, body, tenant):
    assert status == 200, (status, body)
    assert json.loads(body)["received"]["tenantId"] == "b-" + tenant, body


def warm_latency(d, n):
    ep = endpoint(d, "warm")
    hook, direct = Client("http://127.0.0.1:%d" % d.port), Client(ep)
    rows = {"trigger": [], "direct": []}
    for i in range(n + 10):
        raw, h = event("warm", i)
        ms_d, st, body = direct.post("/cgi-bin/agent", direct_body("warm", i),
                                     {"Content-Type": "application/json"})
        check(st, body, "warm")
        ms_t, st, body = hook.post("/hooks/bench", raw, h)
        check(st, body, "warm")
        if i >= 10:  # the first few warm the connections and caches
            rows["direct"].append(ms_d)
            rows["trigger"].append(ms_t)
    return rows


def pool_latency(d, n):
    status, body = d.request("POST", "/api/v1/pools", {"name": "bench-pool", "spec": {
        "workloadRef": "echo-agent", "size": n}})
    assert status == 201, (status, body)
    wait_for(lambda: d.request("GET", "/api/v1/pools/bench-pool")[1]["status"].get("ready") == n,
             timeout=300, what="pool full")
    hook = Client("http://127.0.0.1:%d" % d.port)
    out = []
    for i in range(n):
        raw, h = event("pool%d" % i, 0)
        ms, st, body = hook.post("/hooks/bench", raw, h)
        check(st, body, "pool%d" % i)
        out.append(ms)
    d.request("DELETE", "/api/v1/pools/bench-pool")
    return out


def throughput(d, tenants, per_tenant):
    eps = {t: endpoint(d, t) for t in tenants}
    results = {}
    for mode in ("trigger", "direct"):
        errors = []

        def run(t):
            c = Client("http://127.0.0.1:%d" % d.port if mode == "trigger" else eps[t])
            for i in range(per_tenant):
                if mode == "trigger":
                    raw, h = event(t, i)
                    _, st, body = c.post("/hooks/bench", raw, h)
                else:
                    _, st, body = c.post("/cgi-bin/agent", direct_body(t, i),
                                         {"Content-Type": "application/json"})
                if st != 200:
                    errors.append((t, st, body))

        threads = [threading.Thread(target=run, args=(t,)) for t in tenants]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t0
        assert not errors, errors[:3]
        results[mode] = len(tenants) * per_tenant / elapsed
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--pool", type=int, default=20)
    ap.add_argument("--tenants", type=int, default=50)
    ap.add_argument("--per-tenant", type=int, default=20)
    a = ap.parse_args()
    d = Daemon()
    try:
        d.start()
        d.apply_workload(read_manifest("echo-agent.yaml"))
        d.put_secret("bench", "secret", SECRET.decode())
        status, body = d.request("POST", "/api/v1/triggers", {"name": "bench", "spec": {
            "type": "webhook", "workloadRef": "echo-agent",
            "tenant": {"from": "user.login", "prefix": "b-"},
            "driverOptions": {"path": "/cgi-bin/agent"},
            "guards": [{"type": "allowlist", "config": {"patterns": ["b-*"]}}],
            "config": {"path": "/hooks/bench", "secretName": "bench",
                       "rateLimitPerMinute": 1000000}}})
        assert status == 201, (status, body)
        wait_for(lambda: d.request("GET", "/api/v1/triggers/bench")[1]["status"]
                 .get("phase") == "Active", what="trigger Active")
        warm = warm_latency(d, a.events)
        pool = pool_latency(d, a.pool)
        tput = throughput(d, ["t%02d" % i for i in range(a.tenants)], a.per_tenant)
    finally:
        d.cleanup()
    print("| webhook -> reply latency (ms)        |    n |   p50 |   p99 |")
    print("|--------------------------------------|------|-------|-------|")
    for name, vals in (("trigger, warm instance", warm["trigger"]),
                       ("direct POST to the same instance", warm["direct"]),
                       ("trigger, from a pool (new tenant)", pool)):
        print("| %-36s | %4d | %5.1f | %5.1f |" % (name, len(vals), pct(vals, 50),
                                                  pct(vals, 99)))
    add = pct(warm["trigger"], 50) - pct(warm["direct"], 50)
    print()
    print("trigger path adds %.1f ms at p50 over the direct call (target <= 5 ms)" % add)
    print()
    print("| %d tenants x %d events, %d clients | events/s |" % (a.tenants, a.per_tenant,
                                                              a.tenants))
    print("|------------------------------------|----------|")
    print("| through the webhook trigger        | %8.1f |" % tput["trigger"])
    print("| direct to the instances            | %8.1f |" % tput["direct"])


if __name__ == "__main__":
    main()
