"""Operator mode against a real kube-apiserver + etcd (kube_env.KubeEnv): `boilerhouse serve
--kubeconfig` mirrors the cluster's four kinds into its store, writes status back through the
/status subresource, sends REST changes to the cluster, elects one leader on a Lease, and
survives an API server restart. Instances run locally under runc here (`--runtime runc`): these
tests are about the mirror and the Lease, and count containers; the Pod runtime operator mode
defaults to is tests/integration/test_kube_pods.py's. Each test has a namespace of its own."""
import concurrent.futures
import json
import os
import unittest

from bh import Daemon, wait_for
from kube_env import KubeTestCase
from wsclient import WsClient

WORKLOAD = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata: {name: %s}
spec:
  version: "%s"
  image: {ref: localhost/busybox:latest}
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: 1}
  network: {access: none}
  entrypoint: {cmd: sh, args: ["-c", "exec sleep 2147483647"]}
"""
# Breaks a CEL rule 1.20 cannot enforce (image: ref and dockerfile both set).
CEL_BAD = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata: {name: celbad}
spec:
  version: "1"
  image: {ref: localhost/busybox:latest, dockerfile: Dockerfile}
  resources: {vcpus: 1, memoryMb: 64, diskGb: 1}
  network: {access: none}
"""
LEASE = "boilerhouse-operator"
CLAIM = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseClaim
metadata: {name: c-%s}
spec: {tenantId: %s, workloadRef: gated}
"""


class KubeOperatorTest(KubeTestCase):
    NS_PREFIX = "op-"

    # ---- helpers ----

    def daemon(self, ident, lease_s=4, start=True, api_key=None):
        d = Daemon(api_key=api_key,
                   extra_args=["--kubeconfig", self.kc, "--lease-duration", str(lease_s),
                               "--operator-id", ident, "--runtime", "runc"])
        self.addCleanup(d.cleanup)
        if start:
            d.start(timeout=60)
        return d

    def holder(self):
        lease = self.get("lease", LEASE)
        return lease and lease["spec"].get("holderIdentity"), lease

    def wait_cluster_phase(self, kind, name, phase, d, timeout=90):
        def ok():
            o = self.get(kind, name)
            return o and o.get("status", {}).get("phase") == phase and o
        return wait_for(ok, timeout, "%s %s %s in the cluster\n%s" % (kind, name, phase,
                                                                       d.log()))

    def items(self, kind):
        return json.loads(self.kubectl("get", kind, "-o", "json").stdout)["items"]

    def claim_active(self, d):
        """A Ready workload "app" applied with kubectl, claimed by tenant t1 through REST, and
        the claim Active in the cluster."""
        self.kubectl("apply", "--validate=false", "-f", "-", input=WORKLOAD % ("app", "1"))
        d.wait_workload("app", "Ready", 90)
        code, body = d.claim("t1", "app")
        self.assertIn(code, (200, 201), (body, d.log()))
        wait_for(lambda: [c for c in json.loads(self.kubectl("get", "bhc", "-o", "json").stdout)
                          ["items"] if c.get("status", {}).get("phase") == "Active"], 60,
                 "an Active claim in the cluster\n" + d.log())

    # ---- tests ----

    def test_mirror_status_and_rest_writes(self):
        d = self.daemon("solo")
        wait_for(lambda: self.holder()[0] == "solo", 30, "solo holds the lease")
        # kubectl -> cluster -> daemon's REST; the daemon makes it Ready and writes the status
        # back through /status, with the cluster's generation.
        self.kubectl("apply", "--validate=false", "-f", "-", input=WORKLOAD % ("web", "1"))
        body = d.wait_workload("web", "Ready", 90)
        self.assertEqual(body["spec"]["version"], "1")
        obj = self.wait_cluster_phase("bhw", "web", "Ready", d)
        self.assertEqual(obj["status"].get("observedGeneration"), obj["metadata"]["generation"])
        out = self.kubectl("get", "bhw", "web").stdout
        self.assertIn("Ready", out)
        # A spec change in the cluster reaches the daemon (generation 2, observed as such).
        self.kubectl("apply", "--validate=false", "-f", "-", input=WORKLOAD % ("web", "2"))
        wait_for(lambda: d.request("GET", "/api/v1/workloads/web")[1]["spec"]["version"] == "2",
                 60, "version 2 in the daemon")
        wait_for(lambda: (self.get("bhw", "web").get("status", {}).get("observedGeneration")
                          == 2), 90, "observedGeneration 2 in the cluster\n" + d.log())
        # REST create -> the cluster has it (and its status); REST delete -> gone there.
        status, out = d.request("POST", "/api/v1/workloads", raw=WORKLOAD % ("fromrest", "1"))
        self.assertEqual(status, 201, out)
        self.wait_cluster_phase("bhw", "fromrest", "Ready", d)
        status, out = d.request("DELETE", "/api/v1/workloads/fromrest")
        self.assertIn(status, (200, 202, 204), out)
        wait_for(lambda: self.get("bhw", "fromrest") is None, 60, "fromrest gone\n" + d.log())
        # kubectl delete -> gone from the daemon.
        self.kubectl("delete", "bhw", "web", "--wait=false")
        wait_for(lambda: d.request("GET", "/api/v1/workloads/web")[0] == 404, 60,
                 "web gone from the daemon")
        wait_for(lambda: self.get("bhw", "web") is None, 60, "web gone from the cluster")
        # An object the 1.20 server takes but a CEL rule forbids never reaches the store.
        self.kubectl("apply", "--validate=false", "-f", "-", input=CEL_BAD)
        wait_for(lambda: "celbad from the cluster refused" in d.log(tail=None), 30,
                 "the refusal logged")
        self.assertEqual(d.request("GET", "/api/v1/workloads/celbad")[0], 404)

    def test_writes_answered_reach_the_cluster_before_shutdown(self):
        """REST writes are answered before the cluster has them (write-behind): a replica told
        to stop sends what it has answered for before it goes (bh_kube_mirror_flush)."""
        d = self.daemon("solo")
        wait_for(lambda: self.holder()[0] == "solo", 30, "solo holds the lease")
        names = ["burst%02d" % i for i in range(40)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda n: d.request("POST", "/api/v1/workloads",
                                                      raw=WORKLOAD % (n, "1"))[0], names))
        self.assertEqual(codes, [201] * len(names))
        d.stop()  # at once: the writer is still sending
        self.assertEqual(d.proc.returncode, 0, d.log())
        have = {o["metadata"]["name"] for o in
                json.loads(self.kubectl("get", "bhw", "-o", "json").stdout)["items"]}
        self.assertEqual(sorted(set(names) - have), [], d.log())

    def test_policies_metrics_and_events_work_on_top(self):
        """What runs on top of the store works unchanged when the store is the cluster: a Lua
        claim policy decides claims made with kubectl, the dashboard is served, /ws streams
        the claim's events, /metrics counts the policy's verdicts."""
        key = "operator-test-key"
        d = self.daemon("solo", api_key=key)
        wait_for(lambda: self.holder()[0] == "solo", 30, "solo holds the lease")
        pdir = os.path.join(d.state, "policies")
        os.makedirs(pdir, exist_ok=True)
        with open(os.path.join(pdir, "gate.lua"), "w") as f:
            f.write("function policy(e)\n"
                    "  if e.tenantId == 'mallory' then return false, 'mallory is barred' end\n"
                    "  return true\nend\n")
        self.kubectl("apply", "--validate=false", "-f", "-",
                     input=(WORKLOAD % ("gated", "1")) + "  claimPolicy: gate.lua\n")
        self.wait_cluster_phase("bhw", "gated", "Ready", d)
        ws = WsClient(d.port, "/ws?types=tenant.claimed", headers={"Authorization": "Bearer " + key})
        self.addCleanup(ws.close)
        self.assertEqual(ws.status, 101)
        self.assertEqual(ws.recv()["type"], "hello")
        for tenant in ("alice", "mallory"):
            self.kubectl("apply", "-f", "-", input=CLAIM % (tenant, tenant))
        alice = self.wait_cluster_phase("bhc", "c-alice", "Active", d)
        self.assertEqual(alice["status"]["policy"]["script"], "gate.lua")
        barred = self.wait_cluster_phase("bhc", "c-mallory", "Error", d)
        self.assertIn("mallory is barred", json.dumps(barred["status"]))
        claimed, _ = ws.recv_until(lambda m: m.get("tenant") == "alice", what="alice claimed")
        self.assertEqual(claimed["type"], "tenant.claimed")
        status, text = d.request("GET", "/metrics")
        self.assertEqual(status, 200)
        counts = {v: sum(float(l.split()[1]) for l in text.splitlines() if l.startswith(
            'boilerhouse_policy_duration_seconds_count{kind="claim_policy",verdict="%s"}' % v))
            for v in ("allow", "deny")}
        self.assertEqual(counts, {"allow": 1.0, "deny": 1.0}, text[-3000:])
        status, page = d.request("GET", "/ui/")
        self.assertEqual(status, 200)
        self.assertIn("<html", str(page).lower())  # the dashboard
        for tenant in ("alice", "mallory"):
            self.kubectl("delete", "bhc", "c-" + tenant, "--wait=false")
        wait_for(lambda: not self.items("bhc"), 90, "the claims gone\n" + d.log())

    def test_claim_finalizer_and_release(self):
        d = self.daemon("solo")
        wait_for(lambda: self.holder()[0] == "solo", 30, "solo holds the lease")
        self.claim_active(d)
        claims = json.loads(self.kubectl("get", "bhc", "-o", "json").stdout)["items"]
        self.assertEqual(len(claims), 1, claims)
        self.assertIn("boilerhouse.dev/cleanup", claims[0]["metadata"].get("finalizers", []))
        self.assertEqual(len(d.containers()), 1)
        # kubectl delete: the finalizer keeps the claim until the daemon released the instance.
        name = claims[0]["metadata"]["name"]
        self.kubectl("delete", "bhc", name, "--wait=false")
        wait_for(lambda: self.get("bhc", name) is None, 90, "claim gone\n" + d.log())
        wait_for(lambda: d.containers() == [], 60, "instance gone")

    def test_leader_election_and_failover(self):
        a = self.daemon("op-a")
        b = self.daemon("op-b")
        who, lease = wait_for(lambda: self.holder()[0] in ("op-a", "op-b") and self.holder(), 30,
                              "a leader")
        leader, standby = (a, b) if who == "op-a" else (b, a)
        transitions = lease["spec"].get("leaseTransitions", 0)
        self.kubectl("apply", "--validate=false", "-f", "-", input=WORKLOAD % ("one", "1"))
        self.wait_cluster_phase("bhw", "one", "Ready", leader)
        # Both serve reads: the standby mirrors what the leader wrote.
        standby.wait_workload("one", "Ready", 30)
        self.assertNotIn("reconcile BoilerhouseWorkload/one", standby.log(tail=None))
        # ... and refuses writes (a claim would boot at once, beside the leader's).
        status, out = standby.claim("t1", "one")
        self.assertEqual(status, 503, out)
        self.assertIn("standby", out["error"] if isinstance(out, dict) else out)
        leader.kill9()
        other = "op-b" if who == "op-a" else "op-a"
        # The standby takes over once the lease is 4 s unrenewed (generous for slow machines).
        _, lease = wait_for(lambda: self.holder()[0] == other and self.holder(), 30,
                            "%s takes over\n%s" % (other, standby.log()))
        self.assertEqual(lease["spec"]["leaseTransitions"], transitions + 1)
        self.kubectl("apply", "--validate=false", "-f", "-", input=WORKLOAD % ("two", "1"))
        self.wait_cluster_phase("bhw", "two", "Ready", standby)

    def test_lost_lease_shuts_down(self):
        d = self.daemon("solo")
        wait_for(lambda: self.holder()[0] == "solo", 30, "solo holds the lease")
        # Another holder appears (as after a partition the leader did not notice): the next
        # renewal sees it, and the replica stops reconciling by shutting down.
        self.kubectl("patch", "lease", LEASE, "--type", "merge",
                     "-p", '{"spec": {"holderIdentity": "intruder"}}')
        wait_for(lambda: d.proc.poll() is not None, 30, "the daemon exits\n" + d.log())
        self.assertIn("lost the lease: shutting down", d.log(tail=None))
        self.assertEqual(self.holder()[0], "intruder")  # and it did not take it back

    def test_apiserver_restart_resumes_without_double_acting(self):
        d = self.daemon("solo", lease_s=60)
        wait_for(lambda: self.holder()[0] == "solo", 30, "solo holds the lease")
        self.claim_active(d)
        before = json.loads(self.kubectl("get", "bhc", "-o", "json").stdout)["items"]
        wl_before = self.get("bhw", "app")
        self.kube.restart_apiserver()
        # The new server's watch cache starts at etcd's current revision, past the daemon's
        # resume points (the Lease's renewals moved it on): 410 Gone, and the daemon re-lists.
        wait_for(lambda: "expired (410 Gone): re-listing" in d.log(tail=None), 60,
                 "a re-list after 410\n" + d.log())
        # A change made after the restart arrives: the watches are back.
        self.kubectl("apply", "--validate=false", "-f", "-", input=WORKLOAD % ("after", "1"))
        d.wait_workload("after", "Ready", 90)
        self.wait_cluster_phase("bhw", "after", "Ready", d)
        # ... and nothing was done twice: one claim, one instance, no status rewritten.
        after = json.loads(self.kubectl("get", "bhc", "-o", "json").stdout)["items"]
        self.assertEqual([c["metadata"]["resourceVersion"] for c in after],
                         [c["metadata"]["resourceVersion"] for c in before])
        self.assertEqual(self.get("bhw", "app")["metadata"]["resourceVersion"],
                         wl_before["metadata"]["resourceVersion"])
        self.assertEqual(len(d.containers()), 1)


if __name__ == "__main__":
    unittest.main()
