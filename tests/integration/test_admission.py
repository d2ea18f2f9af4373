"""Admission control on the real daemon with real runc containers: a storm of 300 tenants
claiming at once against a pool of 5, with the boot bound and the per-tenant instance limit.
Admitted claims become Active; the rest are refused at once (503 or 429 with Retry-After and a
reason), leave no instance, no container and no claim that boots later, and a retry after the
advertised delay succeeds."""
import http.client
import json
import sys
import threading
import time
import unittest

from bh import Daemon, wait_for

STORM = 300
POOL = 5
MAX_BOOTS = 2

WORKLOAD = """
apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: %s
spec:
  version: "1"
  image:
    ref: localhost/busybox:latest
  resources: {vcpus: 0.25, memoryMb: 32, diskGb: 0}
  network: {access: none}
  entrypoint:
    cmd: sh
    args: ["-c", "exec sleep 2147483647"]
"""


def post_claim(port, tenant, workload):
    """One claim on its own connection: (status, Retry-After header or None, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/api/v1/tenants/%s/claim" % tenant,
                     body=json.dumps({"workload": workload}),
                     headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.getheader("Retry-After"), json.loads(r.read() or b"{}")
    finally:
        conn.close()


class AdmissionTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon(extra_env={"BOILERHOUSE_MAX_BOOTS": str(MAX_BOOTS),
                                   "BOILERHOUSE_MAX_TENANT_INSTANCES": "2"})
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.d.apply_workload(WORKLOAD % "tiny")

    def claims(self):
        """{tenant: claim} for every claim the daemon lists."""
        status, groups = self.d.request("GET", "/api/v1/tenants")
        self.assertEqual(status, 200, groups)
        return {c["tenantId"] + "/" + c["workload"]: c for g in groups for c in g["claims"]}

    def instances(self):
        return self.d.request("GET", "/api/v1/instances")[1]

    def pool_members(self):
        return [i for i in self.instances() if "tenantId" not in i]

    def release_all(self):
        for key, c in self.claims().items():
            tenant, wl = key.split("/")
            status, body = self.d.request("POST", "/api/v1/tenants/%s/release/force" % tenant,
                                          {"workload": wl})
            self.assertIn(status, (200, 404), body)

    def test_claim_storm_against_a_pool(self):
        d = self.d
        status, out = d.request("POST", "/api/v1/pools",
                                {"name": "p", "spec": {"workloadRef": "tiny", "size": POOL}})
        self.assertEqual(status, 201, out)
        wait_for(lambda: d.request("GET", "/api/v1/pools/p")[1]["status"].get("ready") == POOL,
                 timeout=120, what="pool full")
        results = [None] * STORM
        go = threading.Event()

        def claim(i):
            go.wait()
            try:
                results[i] = post_claim(d.port, "s%03d" % i, "tiny")
            except Exception as e:  # noqa: BLE001 - asserted below
                results[i] = (0, None, {"error": repr(e)})
        threads = [threading.Thread(target=claim, args=(i,)) for i in range(STORM)]
        for t in threads:
            t.start()
        go.set()
        for t in threads:
            t.join()

        admitted = {"s%03d" % i: r[2] for i, r in enumerate(results) if r[0] in (200, 201)}
        refused = {"s%03d" % i: r for i, r in enumerate(results) if r[0] not in (200, 201)}
        sys.stderr.write("storm: %d admitted (%d from the pool), %d refused\n" % (
            len(admitted), sum(1 for b in admitted.values() if b.get("source") == "pool"),
            len(refused)))
        for tenant, body in admitted.items():
            self.assertEqual(body["phase"], "Active", (tenant, body))
        self.assertGreaterEqual(len(admitted), POOL)  # the pool's instances at least
        self.assertGreater(len(refused), 0, "300 claims on %d boot slots: some must wait" %
                           MAX_BOOTS)
        for tenant, (status, retry_after, body) in refused.items():
            self.assertEqual(status, 503, (tenant, status, body))
            self.assertEqual(body.get("reason"), "Overloaded", body)
            self.assertIn("booting or restoring", body.get("error", ""), body)
            self.assertTrue(retry_after and int(retry_after) >= 1, (tenant, retry_after))
            self.assertEqual(int(retry_after), body.get("retryAfterSeconds"), body)
            self.assertNotIn("instanceId", body)

        # Nothing half-made: every claim is Active (admitted) or ended in Error (refused); no
        # claim is left Pending to boot later; each admitted tenant holds one instance and the
        # refused hold none; runc runs exactly those and the pool's.
        claims = self.claims()
        self.assertEqual({k.split("/")[0] for k, c in claims.items() if c["phase"] == "Active"},
                         set(admitted))
        for key, c in claims.items():
            if key.split("/")[0] in refused:
                self.assertEqual(c["phase"], "Error", c)
        held = [i for i in self.instances() if "tenantId" in i]
        self.assertEqual(sorted(i["tenantId"] for i in held), sorted(admitted))
        wait_for(lambda: d.request("GET", "/api/v1/pools/p")[1]["status"].get("ready") == POOL,
                 timeout=120, what="pool refilled")
        expect = {"bh-" + i["id"] for i in self.instances()}
        self.assertEqual(len(expect), len(admitted) + POOL)
        self.assertEqual(set(d.containers()), expect)

        # A retry after the advertised delay succeeds (all were refused at once: one wait for
        # the longest delay is past every one of them).
        retry = sorted(refused)[:5]
        time.sleep(max(int(refused[tenant][1]) for tenant in retry))
        for tenant in retry:
            status, _, body = post_claim(d.port, tenant, "tiny")
            self.assertIn(status, (200, 201), body)
            self.assertEqual(body["phase"], "Active", body)

        self.release_all()
        wait_for(lambda: set(d.containers()) == {"bh-" + i["id"] for i in self.pool_members()},
                 timeout=120, what="only the pool's containers left")

    def test_tenant_instance_limit(self):
        d = self.d
        d.apply_workload(WORKLOAD % "tiny2")
        d.apply_workload(WORKLOAD % "tiny3")
        for wl in ("tiny", "tiny2"):
            status, _, body = post_claim(d.port, "tess", wl)
            self.assertEqual(status, 201, body)
        status, retry_after, body = post_claim(d.port, "tess", "tiny3")
        self.assertEqual(status, 429, body)
        self.assertEqual(body["reason"], "TenantLimit", body)
        self.assertIn("the limit per tenant is 2", body["error"])
        self.assertTrue(retry_after and int(retry_after) >= 1, retry_after)
        held = [i for i in self.instances() if i.get("tenantId") == "tess"]
        self.assertEqual(sorted(i["workloadRef"] for i in held), ["tiny", "tiny2"])
        self.assertEqual(len(d.containers()), 2)
        # Another tenant is not limited by tess; after a release tess has room again.
        self.assertEqual(post_claim(d.port, "uma", "tiny3")[0], 201)
        self.assertEqual(d.release("tess", "tiny")[0], 200)
        status, _, body = post_claim(d.port, "tess", "tiny3")
        self.assertEqual(status, 201, body)
        self.release_all()
        wait_for(lambda: d.containers() == [], what="all containers gone")


if __name__ == "__main__":
    unittest.main()
