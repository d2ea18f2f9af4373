"""Failover with the Pod runtime against a real kube-apiserver + etcd (kube_env.KubeEnv): two
operator-mode daemons elect a leader; the leader runs a pool's warm Pods and tenants' Pods;
after `kill -9` of it, the replica that takes the Lease over adopts them (core/controllers/
adopt.c): the tenant's Pod stays the claim's instance (same Pod, same endpoint, answered as
`existing`, saved through its snapshot agent on release), the warm Pods stay the pool's (no
extra Pods), and a Pod whose claim was deleted while no leader ran is deleted. The test plays
the kubelet (test_kube_pods.FakeKubelet) and the Pod's snapshot agent (a real
`boilerhouse snapshot-agent` on a loopback address of the slot, the Pod's IP)."""
import base64
import json
import os
import re
import shutil
import tempfile
import unittest

import test_kube_pods as pods
from bh import Daemon, wait_for
from kube_env import KubeTestCase

LEASE = "boilerhouse-operator"
LEASE_S = 4
SIZE = 2


class KubeFailoverTest(KubeTestCase):
    NS_PREFIX = "fo-"

    def setUp(self):
        super().setUp()
        self.kubelet = pods.FakeKubelet(self.kube, self.ns)
        self.kubelet.start()
        self.addCleanup(self.kubelet.stop)
        self.tmp = tempfile.mkdtemp(prefix="bh-failover-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    # ---- helpers ----

    def daemon(self, ident):
        d = Daemon(extra_args=["--kubeconfig", self.kc, "--operator-id", ident,
                               "--lease-duration", str(LEASE_S),
                               "--kube-cluster-cidrs", pods.CLUSTER_CIDRS],
                   extra_env={"BOILERHOUSE_CLAIM_TIMEOUT_SECONDS": "60"})
        self.addCleanup(d.cleanup)
        d.start(timeout=60)
        return d

    def holder(self):
        lease = self.get("lease", LEASE)
        return lease and lease["spec"].get("holderIdentity")

    def set_lease_duration(self, holder, seconds):
        """Rewrites the Lease's duration while holder still holds it (a JSON patch `test`
        refuses it otherwise). A standby waits that long on an unchanged record before it
        takes over: a long one holds the election while the test acts as if no leader ran."""
        self.kubectl("patch", "lease", LEASE, "--type", "json", "-p", json.dumps([
            {"op": "test", "path": "/spec/holderIdentity", "value": holder},
            {"op": "replace", "path": "/spec/leaseDurationSeconds", "value": seconds}]))

    def pods(self):
        """Names of the managed Pods in the namespace."""
        out = json.loads(self.kubectl("get", "pods", "-l", "boilerhouse.dev/managed=true",
                                      "-o", "json").stdout)["items"]
        return sorted(p["metadata"]["name"] for p in out)

    def ready_warm(self):
        out = json.loads(self.kubectl("get", "pods", "-l", "boilerhouse.dev/pool=web-pool,"
                                      "boilerhouse.dev/pool-status=ready", "-o", "json")
                         .stdout)["items"]
        return sorted(p["metadata"]["name"] for p in out)

    def instances(self, d):
        status, body = d.request("GET", "/api/v1/instances")
        self.assertEqual(status, 200, body)
        return sorted(i["id"] for i in body)

    def active_claim(self, tenant):
        for c in json.loads(self.kubectl("get", "bhc", "-o", "json").stdout)["items"]:
            st = c.get("status", {})
            if c["spec"]["tenantId"] == tenant and st.get("phase") == "Active" and \
                    st.get("instanceId"):
                return c
        return None

    def agent(self, root, address):
        """The Pod's snapshot-agent sidecar, serving root at the Pod's IP."""
        token = base64.b64decode(self.get("secret", "boilerhouse-agent")["data"]["token"])
        return pods.snapshot_agent(self, root, address, token.decode())

    # ---- the test ----

    def test_new_leader_adopts_the_pods(self):
        a, b = self.daemon("fo-a"), self.daemon("fo-b")
        who = wait_for(lambda: self.holder() in ("fo-a", "fo-b") and self.holder(), 30,
                       "a leader")
        (leader, standby), other = ((a, b), "fo-b") if who == "fo-a" else ((b, a), "fo-a")
        slot = int(re.search(r"(\d+)$", leader.bridge).group(1))
        self.kubelet.addresses["web"] = ["127.77.%d.%d" % (slot, i) for i in range(1, 30)]
        self.kubectl("apply", "--validate=false", "-f", "-", input=pods.WORKLOAD % {
            "name": "web", "network": pods.EXPOSED, "action": "hibernate"})
        leader.wait_workload("web", "Ready", 90)
        self.kubectl("apply", "--validate=false", "-f", "-",
                     input=pods.POOL % ("web-pool", "web", SIZE))
        wait_for(lambda: len(self.ready_warm()) == SIZE, 60, "warm Pods\n" + leader.log())
        wait_for(lambda: leader.request("GET", "/api/v1/pools/web-pool")[1].get("status", {})
                 .get("ready") == SIZE, 30, "the pool counts them\n" + leader.log())
        # t1 keeps its Pod across the failover; t2's claim is deleted while no leader runs.
        held = {}
        for tenant in ("t1", "t2"):
            status, body = leader.claim(tenant, "web")
            self.assertIn(status, (200, 201), (body, leader.log()))
            self.assertEqual(body["phase"], "Active", body)
            held[tenant] = body
        wait_for(lambda: len(self.ready_warm()) == SIZE and len(self.pods()) == SIZE + 2, 60,
                 "the pool refilled\n" + leader.log())
        claims = {t: wait_for(lambda t=t: self.active_claim(t), 60,
                              "%s Active in the cluster\n%s" % (t, leader.log()))
                  for t in held}
        pod1 = self.get("pod", "bh-web-" + held["t1"]["instanceId"])
        orphan = "bh-web-" + held["t2"]["instanceId"]
        warm = self.ready_warm()
        # t1's Pod has written files; its sidecar agent serves them at the Pod's IP.
        src = os.path.join(self.tmp, "pod1")
        pods.fill_tree(src)
        self.agent(src, pod1["status"]["podIP"])
        # A standby knows no instance and acts on none.
        self.assertEqual(self.instances(standby), [])
        self.assertNotIn("module=adopt", standby.log(tail=None))

        leader.kill9()
        # No leader runs: the election is held while t2's claim goes (its finalizer dropped,
        # as a user forcing it would), so its Pod is nobody's when the new leader looks.
        self.set_lease_duration(who, 3600)
        c2 = claims["t2"]["metadata"]["name"]
        self.kubectl("patch", "bhc", c2, "--type", "merge",
                     "-p", json.dumps({"metadata": {"finalizers": None}}))
        self.kubectl("delete", "bhc", c2, "--wait=false")
        wait_for(lambda: self.get("bhc", c2) is None, 30, "t2's claim gone")
        self.assertEqual(self.holder(), who)
        self.set_lease_duration(who, LEASE_S)
        wait_for(lambda: self.holder() == other, 30, "%s takes over\n%s" % (other,
                                                                          standby.log()))

        # The new leader's records: t1's Pod and the warm ones, adopted; the orphan deleted
        # with its Service and NetworkPolicy.
        want = sorted([held["t1"]["instanceId"]] + [n[len("bh-web-"):] for n in warm])
        wait_for(lambda: self.instances(standby) == want, 60,
                 "the new leader's instances %s\n%s" % (want, standby.log()))
        wait_for(lambda: all(self.get(k, orphan) is None
                             for k in ("pod", "service", "networkpolicy")), 60,
                 "the orphan Pod deleted\n" + standby.log())
        self.assertIn("its claim %s does not exist" % c2, standby.log(tail=None))
        # The same Pod, no new one: the pool's size and t1's.
        now = self.get("pod", pod1["metadata"]["name"])
        self.assertEqual(now["metadata"]["uid"], pod1["metadata"]["uid"])
        self.assertEqual(self.pods(), sorted(warm + [pod1["metadata"]["name"]]))
        self.assertEqual(self.active_claim("t1")["status"]["instanceId"],
                         held["t1"]["instanceId"])
        # t1 claims through the new leader: its running instance, the same endpoint.
        status, body = standby.claim("t1", "web")
        self.assertEqual(status, 200, (body, standby.log()))
        self.assertEqual(body["source"], "existing", body)
        self.assertEqual(body["instanceId"], held["t1"]["instanceId"])
        self.assertEqual(body["endpoint"], held["t1"]["endpoint"])
        # The next claim is handed an adopted warm Pod; the pool refills by one.
        status, body = standby.claim("t3", "web")
        self.assertIn(status, (200, 201), (body, standby.log()))
        self.assertEqual(body["source"], "pool", body)
        self.assertIn("bh-web-" + body["instanceId"], warm)
        wait_for(lambda: len(self.ready_warm()) == SIZE, 60, "refilled\n" + standby.log())
        # Release through the new leader: saved through the Pod's agent, the Pod deleted.
        status, out = standby.release("t1", "web")
        self.assertIn(status, (200, 202), out)
        wait_for(lambda: all(self.get(k, pod1["metadata"]["name"]) is None
                             for k in ("pod", "service", "networkpolicy")), 60,
                 "t1's Pod gone\n" + standby.log())
        snaps = wait_for(lambda: [s for s in standby.request("GET", "/api/v1/snapshots")[1]
                                  if s["tenantId"] == "t1" and s["workloadRef"] == "web"], 60,
                         "t1's snapshot\n" + standby.log())
        self.assertGreater(snaps[0].get("files", 1), 0)
        # Nothing more was made: the pool's Pods and t3's, and the leader's records say so.
        self.assertEqual(len(self.pods()), SIZE + 1, self.pods())
        self.assertEqual(len(self.instances(standby)), SIZE + 1)

    def test_claim_whose_pod_vanished_boots_again(self):
        """A Pod deleted while no leader ran: its claim boots again, as a claim whose container
        a restart lost does in local mode; the other claim keeps its Pod. The new leader is a
        fresh replica, started once the old one is dead."""
        first = self.daemon("fo-1")
        wait_for(lambda: self.holder() == "fo-1", 30, "fo-1 leads\n" + first.log())
        self.kubectl("apply", "--validate=false", "-f", "-", input=pods.WORKLOAD % {
            "name": "web", "network": pods.EXPOSED, "action": "destroy"})
        first.wait_workload("web", "Ready", 90)
        held = {}
        for tenant in ("t1", "t2"):
            status, body = first.claim(tenant, "web")
            self.assertIn(status, (200, 201), (body, first.log()))
            self.assertEqual(body["source"], "cold", body)
            held[tenant] = body
            wait_for(lambda t=tenant: self.active_claim(t), 60,
                     "%s Active in the cluster\n%s" % (tenant, first.log()))
        pod1 = self.get("pod", "bh-web-" + held["t1"]["instanceId"])
        gone = "bh-web-" + held["t2"]["instanceId"]
        first.kill9()
        self.kubectl("delete", "pod", gone, "--grace-period=0", "--force")
        wait_for(lambda: self.get("pod", gone) is None, 30, "t2's Pod gone")
        second = self.daemon("fo-2")
        wait_for(lambda: self.holder() == "fo-2", 30, "fo-2 takes over\n" + second.log())
        # t2 boots again (a new instance, a new Pod); t1 keeps its own.
        c2 = wait_for(lambda: (lambda c: c and c["status"]["instanceId"] !=
                               held["t2"]["instanceId"] and c)(self.active_claim("t2")), 60,
                      "t2 Active again\n" + second.log())
        self.assertIn("lost in a daemon restart or failover; booting again",
                      second.log(tail=None))
        self.assertEqual(self.active_claim("t1")["status"]["instanceId"],
                         held["t1"]["instanceId"])
        self.assertEqual(self.get("pod", pod1["metadata"]["name"])["metadata"]["uid"],
                         pod1["metadata"]["uid"])
        want = sorted([held["t1"]["instanceId"], c2["status"]["instanceId"]])
        self.assertEqual(self.instances(second), want)
        self.assertEqual(self.pods(), sorted("bh-web-" + i for i in want))
        status, body = second.claim("t1", "web")
        self.assertEqual((status, body.get("source")), (200, "existing"), body)


if __name__ == "__main__":
    unittest.main()
