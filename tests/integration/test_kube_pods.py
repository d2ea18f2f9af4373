"""The Pod runtime (core/kube/runtime_kube.c) against a real kube-apiserver + etcd
(kube_env.KubeEnv): an operator-mode daemon (`serve --kubeconfig`, whose runtime is then
`kube`) runs every instance as a Pod with its Service and NetworkPolicy. There is no kubelet:
the test plays its part, as envtest-based operator tests do, by writing Pod status (phase
Running, condition Ready=True, podIP) through the /status subresource (FakeKubelet). Each test
has a namespace of its own."""
import base64
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import fakenet
from bh import (BINARY, BUSYBOX_LAYOUT, Daemon, assert_no_sanitizer_report, first_line, net_slot,
                wait_for)
from fakenet import sh
from kube_env import ADMIN_TOKEN, KubeTestCase
from test_egress_sidecar import Sidecar, fake_internet, named, pod_client

WORKLOAD = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata: {name: %(name)s}
spec:
  version: "1"
  image: {ref: localhost/busybox:latest}
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: 1}
  network: %(network)s
  filesystem: {overlayDirs: [/data]}
  idle: {timeoutSeconds: 600, action: %(action)s}
  health: {intervalSeconds: 1, unhealthyThreshold: 2, httpGet: {path: /, port: 8080}}
  entrypoint: {cmd: httpd, args: ["-f", "-p", "8080"]}
"""
EXPOSED = "{access: unrestricted, expose: [{guest: 8080}]}"
POOL = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhousePool
metadata: {name: %s}
spec: {workloadRef: %s, size: %d}
"""
LEASE = "boilerhouse-operator"
CLUSTER_CIDRS = "10.96.0.0/16,10.244.0.0/16,fd00:10::/56"  # the cluster's own: not for instances
HOLD = "test.boilerhouse.dev/hold"  # a finalizer of the test's: the Pod stays "terminating"
# A restricted workload whose one credential header is each tenant's own secret.
TENANT_CRED = ("{access: restricted, allowlist: [api.example.test], credentials: [{domain: "
               "api.example.test, headers: [{name: x-tenant-key, valueFrom: {tenantSecretKeyRef:"
               " {name: tenantkey, key: k}}}]}]}")
TENANT_VALUE = "tenant-good-4e9d2a7c1b"


class FakeKubelet(threading.Thread):
    """Plays the kubelet for one namespace: every Pod not yet Ready is made Running and Ready
    with an IP of its own, unless its workload is told to stay Pending ("never") or to crash
    ("crash": its main container terminated, the Pod Failed)."""

    def __init__(self, kube, namespace):
        super().__init__(daemon=True)
        self.base = "https://127.0.0.1:%d/api/v1/namespaces/%s/pods" % (kube.port, namespace)
        self.ssl = ssl.create_default_context(cafile="%s/apiserver.crt" % kube.cert_dir)
        self.ssl.check_hostname = False  # the serving certificate names the node, not 127.0.0.1
        self.behaviour = {}  # workload -> "never" | "crash"
        self.addresses = {}  # workload -> Pod IPs to give out in order (then 10.244.0.x)
        self.given = {}  # Pod name -> its IP
        # A Pod with the snapshot-restore init container stays Pending (with its IP) until
        # init_done(name, ip) says the init container has exited.
        self.init_done = lambda name, ip: True
        self.stopping = threading.Event()
        self.next_ip = 10
        self.errors = []

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body else None)
        req.add_header("Authorization", "Bearer " + ADMIN_TOKEN)
        req.add_header("Content-Type", "application/merge-patch+json")
        with urllib.request.urlopen(req, context=self.ssl, timeout=10) as r:
            return json.loads(r.read())

    def status_for(self, pod):
        what = self.behaviour.get(pod["metadata"]["labels"].get("boilerhouse.dev/workload"))
        if what == "never":
            return None
        if what == "crash":
            return {"phase": "Failed", "containerStatuses": [{
                "name": "main", "image": "x", "imageID": "", "ready": False, "restartCount": 0,
                "state": {"terminated": {"exitCode": 7, "reason": "Error"}}}]}
        name, workload = pod["metadata"]["name"], pod["metadata"]["labels"].get(
            "boilerhouse.dev/workload")
        if name not in self.given:
            self.next_ip += 1
            mine = self.addresses.get(workload)
            self.given[name] = mine.pop(0) if mine else "10.244.0.%d" % self.next_ip
        ip = self.given[name]
        inits = [c["name"] for c in pod["spec"].get("initContainers", [])]
        if "snapshot-restore" in inits and not self.init_done(name, ip):
            if pod.get("status", {}).get("podIP") == ip:
                return None  # Pending with its address already
            return {"phase": "Pending", "podIP": ip, "podIPs": [{"ip": ip}]}
        return {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                "conditions": [{"type": "Ready", "status": "True"}]}

    def tick(self):
        for pod in self.call("GET", "")["items"]:
            st = pod.get("status", {})
            if (pod["metadata"].get("deletionTimestamp") or st.get("phase") == "Failed" or
                    any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in st.get("conditions", []))):
                continue
            status = self.status_for(pod)
            if status:
                self.call("PATCH", "/%s/status" % pod["metadata"]["name"], {"status": status})

    def run(self):
        while not self.stopping.wait(0.1):
            try:
                self.tick()
            except (urllib.error.URLError, OSError, ValueError) as e:
                self.errors.append(repr(e))  # a Pod deleted between list and patch: go on

    def stop(self):
        self.stopping.set()
        self.join(timeout=30)


def fill_tree(root):
    """What the workload leaves in its overlay dir /data: owners, modes, a link, depth."""
    data = os.path.join(root, "data")
    os.makedirs(os.path.join(data, "notes", "deep"))
    files = {"a.txt": b"alpha\n", "notes/deep/b.bin": os.urandom(50000), "empty": b""}
    for rel, body in files.items():
        with open(os.path.join(data, rel), "wb") as f:
            f.write(body)
    os.chmod(os.path.join(data, "a.txt"), 0o640)
    os.symlink("../a.txt", os.path.join(data, "notes", "link"))
    for dirpath, dirnames, filenames in os.walk(data):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), 1234, 1234)


def tree_of(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "data")):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            body = (os.readlink(p) if os.path.islink(p) else
                    hashlib.sha256(open(p, "rb").read()).hexdigest() if os.path.isfile(p)
                    else None)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, body)
    return out


def snapshot_agent(test, root, address, token, *extra):
    """A real `boilerhouse snapshot-agent` where the Pod's address says (a loopback address of
    the test's slot stands for the Pod's IP), as the Pod's sidecar or init container would run
    it; stopped when the test ends. test.tmp holds its token file."""
    token_file = os.path.join(test.tmp, "token")
    with open(token_file, "w") as f:
        f.write(token)
    return spawn_agent(test, [BINARY, "snapshot-agent", "--root", root, "--dir", "/data",
                              "--listen", "%s:15090" % address, "--token-file", token_file]
                       + list(extra))


def spawn_agent(test, argv):
    """Starts an agent's argv and waits for it to serve; stopped and checked when the test
    ends."""
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)

    def reap():
        if p.poll() is None:
            p.kill()
        p.wait()
        assert_no_sanitizer_report(p.stderr.read(), "snapshot-agent")
        p.stderr.close()
    test.addCleanup(reap)
    test.assertIn("serving", first_line(p.stderr, "the agent"))
    return p


class KubePodsTest(KubeTestCase):
    NS_PREFIX = "pods-"

    def setUp(self):
        super().setUp()
        self.kubelet = FakeKubelet(self.kube, self.ns)
        self.kubelet.start()
        self.addCleanup(self.kubelet.stop)

    # ---- helpers ----

    def items(self, kind, *selector):
        args = ["get", kind, "-o", "json"] + (["-l", ",".join(selector)] if selector else [])
        return json.loads(self.kubectl(*args).stdout)["items"]

    def daemon(self, claim_timeout_s=60):
        d = Daemon(extra_args=["--kubeconfig", self.kc, "--operator-id", "pods",
                               "--lease-duration", "4", "--kube-cluster-cidrs", CLUSTER_CIDRS],
                   extra_env={"BOILERHOUSE_CLAIM_TIMEOUT_SECONDS": str(claim_timeout_s)})
        self.addCleanup(d.cleanup)
        d.start(timeout=60)
        wait_for(lambda: (self.get("lease", LEASE) or {}).get("spec", {})
                 .get("holderIdentity") == "pods", 30, "the daemon leads\n" + d.log())
        self.assertIn("runtime kube", d.log(tail=None))
        return d

    def workload(self, d, name, network=EXPOSED):
        self.kubectl("apply", "--validate=false", "-f", "-",
                     input=WORKLOAD % {"name": name, "network": network, "action": "destroy"})
        d.wait_workload(name, "Ready", 90)

    def pool(self, d, name, workload, size):
        self.kubectl("apply", "--validate=false", "-f", "-", input=POOL % (name, workload, size))

    def claim(self, d, tenant, workload, ok=True):
        status, body = d.claim(tenant, workload)
        if ok:
            self.assertIn(status, (200, 201), (body, d.log()))
            self.assertEqual(body["phase"], "Active", body)
        return status, body

    def pod_of(self, workload, instance_id):
        return self.get("pod", "bh-%s-%s" % (workload, instance_id))

    def gone(self, name):
        return all(self.get(k, name) is None for k in ("pod", "service", "networkpolicy"))

    # ---- tests ----

    def test_pool_claim_and_release(self):
        d = self.daemon()
        self.workload(d, "web")
        self.pool(d, "web-pool", "web", 2)
        # Exactly `size` warm Pods, every field accepted by the server, labelled ready once the
        # kubelet says Ready; each with its Service and NetworkPolicy.
        warm = wait_for(lambda: (lambda ps: len(ps) == 2 and ps)(
            self.items("pods", "boilerhouse.dev/pool=web-pool",
                       "boilerhouse.dev/pool-status=ready")), 60, "two ready warm Pods\n" + d.log())
        self.assertEqual(len(self.items("pods", "boilerhouse.dev/workload=web")), 2)
        for p in warm:
            c = p["spec"]["containers"][0]
            self.assertEqual(c["resources"]["requests"], c["resources"]["limits"])
            self.assertEqual(c["resources"]["limits"]["ephemeral-storage"], "1Gi")
            self.assertEqual(c["securityContext"]["capabilities"]["drop"], ["ALL"])
            self.assertEqual(c["readinessProbe"]["httpGet"]["port"], 8080)
            self.assertEqual(p["metadata"]["labels"]["boilerhouse.dev/generation"], "1")
            self.assertIsNotNone(self.get("service", p["metadata"]["name"]))
            self.assertIsNotNone(self.get("networkpolicy", p["metadata"]["name"]))
        wait_for(lambda: d.request("GET", "/api/v1/pools/web-pool")[1].get("status", {})
                 .get("ready") == 2, 30, "the pool counts two ready\n" + d.log())
        # A claim takes a warm Pod: relabelled as the tenant's in the cluster.
        _, body = self.claim(d, "t1", "web")
        self.assertEqual(body["source"], "pool", body)
        pod = self.pod_of("web", body["instanceId"])
        self.assertIn(pod["metadata"]["name"], [p["metadata"]["name"] for p in warm])
        labels = pod["metadata"]["labels"]
        self.assertEqual(labels["boilerhouse.dev/pool-status"], "acquired")
        self.assertTrue(labels["boilerhouse.dev/tenant"].startswith("t-"))
        self.assertEqual(pod["metadata"]["annotations"]["boilerhouse.dev/tenant-id"], "t1")
        # Its endpoint is the Service's ClusterIP and port.
        svc = self.get("service", pod["metadata"]["name"])
        self.assertEqual(body["endpoint"], {"host": svc["spec"]["clusterIP"], "port": 8080})
        # The claim is Active in the cluster, as kubectl shows it.
        bhc = wait_for(lambda: [c for c in self.items("bhc")
                                if c.get("status", {}).get("phase") == "Active"], 60,
                       "an Active claim in the cluster\n" + d.log())
        self.assertEqual(labels["boilerhouse.dev/claim"], bhc[0]["metadata"]["name"])
        self.assertIn("Active", self.kubectl("get", "bhc").stdout)
        # The pool refills: two warm again, besides the tenant's.
        wait_for(lambda: len(self.items("pods", "boilerhouse.dev/pool=web-pool",
                                        "boilerhouse.dev/pool-status=ready")) == 2, 60,
                 "the pool refilled\n" + d.log())
        # The instance record is there as in local mode (REST, dashboard).
        status, inst = d.request("GET", "/api/v1/instances/" + body["instanceId"])
        self.assertEqual(status, 200, inst)
        self.assertEqual(inst["phase"], "Running")
        # Release deletes the Pod, its Service and NetworkPolicy (idle action destroy: no
        # snapshot; saving one is test_release_saves_and_claim_restores_through_the_agent).
        status, out = d.release("t1", "web")
        self.assertIn(status, (200, 202), out)
        wait_for(lambda: self.gone(pod["metadata"]["name"]), 60, "the Pod gone\n" + d.log())

    def test_warm_pod_taken_elsewhere_is_not_handed_out(self):
        d = self.daemon()
        self.workload(d, "race")
        self.pool(d, "race-pool", "race", 1)
        warm = wait_for(lambda: self.items("pods", "boilerhouse.dev/pool=race-pool",
                                           "boilerhouse.dev/pool-status=ready"), 60,
                        "a ready warm Pod\n" + d.log())[0]["metadata"]["name"]
        wait_for(lambda: d.request("GET", "/api/v1/pools/race-pool")[1].get("status", {})
                 .get("ready") == 1, 30, "the pool counts it\n" + d.log())
        # Another taker (a replica's claim) relabels it first: the daemon's record still says
        # ready, the server's resourceVersion check and labels say otherwise.
        self.kubectl("label", "pod", warm, "--overwrite", "boilerhouse.dev/pool-status=acquired",
                     "boilerhouse.dev/claim=someone-else")
        _, body = self.claim(d, "t6", "race")
        self.assertEqual(body["source"], "cold", body)
        self.assertIn("not handing out", d.log(tail=None))
        self.assertIn("was taken (pool-status acquired)", d.log(tail=None))
        # Theirs is left alone; the tenant's is a new Pod.
        self.assertEqual(self.get("pod", warm)["metadata"]["labels"]["boilerhouse.dev/claim"],
                         "someone-else")
        self.assertNotEqual("bh-race-" + body["instanceId"], warm)

    def test_cold_claim_when_no_pool(self):
        d = self.daemon()
        self.workload(d, "solo")
        _, body = self.claim(d, "t2", "solo")
        self.assertEqual(body["source"], "cold", body)
        pod = self.pod_of("solo", body["instanceId"])
        labels = pod["metadata"]["labels"]
        self.assertNotIn("boilerhouse.dev/pool", labels)
        self.assertEqual(pod["metadata"]["annotations"]["boilerhouse.dev/tenant-id"], "t2")
        svc = self.get("service", pod["metadata"]["name"])
        self.assertEqual(body["endpoint"], {"host": svc["spec"]["clusterIP"], "port": 8080})
        # No exposed port: no Service, the endpoint is the Pod's IP.
        self.workload(d, "quiet", "{access: none}")
        _, body = self.claim(d, "t2", "quiet")
        pod = self.pod_of("quiet", body["instanceId"])
        self.assertIsNone(self.get("service", pod["metadata"]["name"]))
        self.assertEqual(body["endpoint"]["host"], pod["status"]["podIP"])

    def test_non_root_image_makes_the_pod_run_as_non_root(self):
        d = self.daemon()
        tmp = tempfile.mkdtemp(prefix="bh-pods-img-")
        self.addCleanup(shutil.rmtree, tmp, ignore_errors=True)
        layout = os.path.join(tmp, "nonroot")
        shutil.copytree(BUSYBOX_LAYOUT, layout)
        subprocess.run(["umoci", "config", "--image", layout + ":latest",
                        "--config.user", "1000:1000"], check=True, capture_output=True)
        d.import_image(layout, "localhost/nonroot:latest")
        self.kubectl("apply", "--validate=false", "-f", "-",
                     input=(WORKLOAD % {"name": "nr", "network": "{access: none}",
                                        "action": "destroy"}).replace(
                         "localhost/busybox:latest", "localhost/nonroot:latest"))
        d.wait_workload("nr", "Ready", 90)
        _, body = self.claim(d, "t8", "nr")
        spec = self.pod_of("nr", body["instanceId"])["spec"]
        self.assertIs(spec["securityContext"].get("runAsNonRoot"), True, spec)
        # the snapshot agent still runs as root (it restores owners), overriding the Pod's
        agent = [c for c in spec["containers"] if c["name"] == "snapshot-agent"][0]
        self.assertIs(agent["securityContext"]["runAsNonRoot"], False)
        # busybox's own user is root: no runAsNonRoot there
        self.workload(d, "rootful", "{access: none}")
        _, body = self.claim(d, "t8", "rootful")
        self.assertNotIn("runAsNonRoot",
                         self.pod_of("rootful", body["instanceId"])["spec"]["securityContext"])

    def test_network_policy_per_access_mode(self):
        d = self.daemon()
        modes = {"none": "{access: none}",
                 "unrestricted": EXPOSED,
                 "restricted": "{access: restricted, allowlist: [example.com],"
                               " expose: [{guest: 8080}]}"}
        pods = {}
        for mode, network in modes.items():
            self.workload(d, "n-" + mode, network)
            _, body = self.claim(d, "t3", "n-" + mode)
            pods[mode] = self.pod_of("n-" + mode, body["instanceId"])
        for mode, pod in pods.items():
            np = self.get("networkpolicy", pod["metadata"]["name"])["spec"]
            self.assertEqual(sorted(np["policyTypes"]), ["Egress", "Ingress"], mode)
            self.assertEqual(np["podSelector"]["matchLabels"]["boilerhouse.dev/instance"],
                             pod["metadata"]["name"])
            egress = np.get("egress", [])
            blocks = [p["ipBlock"] for r in egress for p in r.get("to", []) if "ipBlock" in p]
            ports = sorted({(p.get("protocol"), p.get("port")) for r in egress
                            for p in r.get("ports", [])})
            if mode == "none":
                self.assertEqual(egress, [], np)
            elif mode == "unrestricted":
                self.assertIn({"cidr": "0.0.0.0/0", "except": [
                    "169.254.0.0/16", "10.96.0.0/16", "10.244.0.0/16"]}, blocks)
                self.assertIn({"cidr": "::/0", "except": [
                    "fd00:ec2::254/128", "fd00:10::/56"]}, blocks)
                self.assertIn(("UDP", 53), ports)
            else:
                self.assertEqual(ports, [("TCP", 53), ("TCP", 80), ("TCP", 443), ("UDP", 53)])
        # restricted: the egress sidecar and the workload's CA in a Secret (never a ConfigMap).
        names = [c["name"] for c in pods["restricted"]["spec"]["containers"]]
        self.assertEqual(names, ["main", "egress-proxy", "snapshot-agent"])
        secret = self.get("secret", "bh-n-restricted-egress-ca")
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        self.assertEqual(sorted(secret["data"]), ["tls.crt", "tls.key"])
        self.assertEqual([c for c in self.items("configmaps")
                          if c["metadata"]["name"].startswith("bh-")], [])

    def test_pod_never_ready_fails_the_claim(self):
        d = self.daemon(claim_timeout_s=4)
        self.kubelet.behaviour.update({"stuck": "never", "crashy": "crash"})
        self.workload(d, "stuck")
        t0 = time.monotonic()
        _, body = self.claim(d, "t4", "stuck", ok=False)
        self.assertNotEqual(body.get("phase") if isinstance(body, dict) else None, "Active")
        claim = wait_for(lambda: [c for c in self.items("bhc")
                                  if c.get("status", {}).get("phase") == "Error"], 60,
                         "the claim in Error\n" + d.log())[0]
        detail = claim["status"]["detail"]
        self.assertIn("not ready after 4000 ms", detail)
        self.assertIn("not Ready", detail)
        self.assertLess(time.monotonic() - t0, 45)
        # The failed boot's Pod is gone.
        wait_for(lambda: self.items("pods", "boilerhouse.dev/workload=stuck") == [], 30,
                 "the stuck Pod deleted\n" + d.log())
        # A container that exits fails the claim at once, with the kubelet's reason.
        self.workload(d, "crashy")
        self.claim(d, "t4", "crashy", ok=False)
        claim = wait_for(lambda: [c for c in self.items("bhc")
                                  if c["spec"]["workloadRef"] == "crashy" and
                                  c.get("status", {}).get("phase") == "Error"], 60,
                         "the crashy claim in Error\n" + d.log())[0]
        self.assertIn("container main terminated: Error (exit code 7)", claim["status"]["detail"])

    def test_finalizer_keeps_claim_until_pod_gone(self):
        d = self.daemon()
        self.workload(d, "held")
        _, body = self.claim(d, "t5", "held")
        name = "bh-held-" + body["instanceId"]
        # A finalizer of the test's keeps the Pod terminating, as a kubelet stopping it would.
        self.kubectl("patch", "pod", name, "--type", "merge",
                     "-p", json.dumps({"metadata": {"finalizers": [HOLD]}}))
        claim = self.items("bhc")[0]["metadata"]["name"]
        self.kubectl("delete", "bhc", claim, "--wait=false")
        wait_for(lambda: "is still terminating" in d.log(tail=None), 60,
                 "the release waiting for the Pod\n" + d.log())
        self.assertIsNotNone(self.get("bhc", claim))
        self.assertIsNotNone(self.get("pod", name)["metadata"].get("deletionTimestamp"))
        # The Pod goes: the retried release finishes and the finalizer lets the claim go.
        self.kubectl("patch", "pod", name, "--type", "merge",
                     "-p", json.dumps({"metadata": {"finalizers": None}}))
        wait_for(lambda: self.get("bhc", claim) is None, 90, "the claim gone\n" + d.log())
        self.assertTrue(self.gone(name))


    # ---- overlay data through the Pods' snapshot agents ----

    def agent(self, root, address, token, *extra):
        return snapshot_agent(self, root, address, token, *extra)

    def agent_token(self):
        secret = self.get("secret", "boilerhouse-agent")
        self.assertEqual(secret["type"], "Opaque")
        return base64.b64decode(secret["data"]["token"]).decode()

    def save_and_restore(self, workload, network, encrypted):
        d = self.daemon()
        self.tmp = tempfile.mkdtemp(prefix="bh-pods-agent-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        slot = int(re.search(r"(\d+)$", d.bridge).group(1))
        first, second = "127.77.%d.1" % slot, "127.77.%d.2" % slot
        self.kubelet.addresses[workload] = [first, second]
        text = WORKLOAD % {"name": workload, "network": network, "action": "hibernate"}
        if encrypted:
            text = text.replace("overlayDirs: [/data]}", "overlayDirs: [/data], encryptOverlays: true}")
        self.kubectl("apply", "--validate=false", "-f", "-", input=text)
        d.wait_workload(workload, "Ready", 90)
        _, body = self.claim(d, "t7", workload)
        self.assertEqual(body["source"], "cold", body)
        pod = self.pod_of(workload, body["instanceId"])
        self.assertEqual([c["name"] for c in pod["spec"]["containers"]],
                         ["main", "snapshot-agent"])
        self.assertNotIn("initContainers", pod["spec"])  # nothing to restore for a new tenant
        token = self.agent_token()
        # The workload has written its files; the Pod's sidecar agent serves them.
        src = os.path.join(self.tmp, "pod1")
        fill_tree(src)
        self.agent(src, first, token)
        status, out = d.release("t7", workload)
        self.assertIn(status, (200, 202), out)
        wait_for(lambda: self.gone(pod["metadata"]["name"]), 60, "the Pod gone\n" + d.log())
        snaps = wait_for(lambda: [s for s in d.request("GET", "/api/v1/snapshots")[1]
                                  if s["tenantId"] == "t7" and s["workloadRef"] == workload], 60,
                         "the tenant's snapshot\n" + d.log())
        self.assertEqual(snaps[0]["encrypted"], encrypted)
        self.assertNotIn("format", snaps[0])  # the tar format: what a Pod takes back
        stored = os.path.join(d.state, "snapshots", snaps[0]["key"])
        with open(stored, "rb") as f:
            self.assertEqual(f.read(8) == b"BHSNAP1\0", encrypted)
        # The next claim boots a Pod whose init container takes the data before the workload
        # starts; the kubelet holds the Pod Pending until that agent has exited.
        dst = os.path.join(self.tmp, "pod2")  # the Pod's fresh volume
        os.makedirs(dst)
        restore = self.agent(dst, second, token, "--restore-once")
        self.kubelet.init_done = lambda name, ip: ip != second or restore.poll() == 0
        status, body = self.claim(d, "t7", workload, ok=False)
        self.assertIn(status, (200, 201), (body, self.kubelet.errors, d.log()))
        self.assertEqual(body["source"], "cold+data", body)
        pod = self.pod_of(workload, body["instanceId"])
        self.assertEqual([c["name"] for c in pod["spec"]["initContainers"]],
                         ["snapshot-restore"])
        self.assertEqual(restore.wait(timeout=60), 0)
        self.assertEqual(tree_of(dst), tree_of(src))
        return d

    def test_release_saves_and_claim_restores_through_the_agent(self):
        self.save_and_restore("keep", "{access: none}", encrypted=False)

    def test_idle_follows_the_pods_activity_through_its_agent(self):
        """Idle detection of a Pod: the daemon cannot see its counters, its agent can. A
        namespace of the test's plays the Pod (its agent listens on the Pod's address, the
        host is the node); the workload's connections and its files under a watched
        directory keep the claim past its idle timeout, silence hibernates it."""
        d = self.daemon()
        n = net_slot(self.addCleanup)
        ns, pod_ip, node_ip = "bhit-idlepod-%d" % n, "10.247.%d.2" % n, "10.247.%d.1" % n
        fakenet.netns(self.addCleanup, ns, "bhitiv%d" % n, "eth0", node_ip, pod_ip)
        self.kubelet.addresses["quiet"] = [pod_ip]
        timeout = 6
        text = (WORKLOAD % {"name": "quiet", "network": "{access: none}", "action": "hibernate"}
                ).replace("timeoutSeconds: 600,", "timeoutSeconds: %d, watchDirs: [/data/ws, /etc]," % timeout)
        self.kubectl("apply", "--validate=false", "-f", "-", input=text)
        d.wait_workload("quiet", "Ready", 90)
        _, body = self.claim(d, "t9", "quiet")
        pod = self.pod_of("quiet", body["instanceId"])
        agent = [c for c in pod["spec"]["containers"] if c["name"] == "snapshot-agent"][0]
        args = agent["command"]
        # Only what the agent has of the files is watched; probes come from the node.
        self.assertEqual(args[args.index("--watch") + 1], "/data/ws")
        self.assertEqual(args.count("--watch"), 1)
        self.assertEqual(args[args.index("--probe-peer") + 1], "$(BOILERHOUSE_HOST_IP)")
        self.assertIn({"name": "BOILERHOUSE_HOST_IP",
                       "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.hostIP"}}},
                      agent["env"])
        self.tmp = tempfile.mkdtemp(prefix="bh-pods-idle-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        root = os.path.join(self.tmp, "pod")
        os.makedirs(os.path.join(root, "data", "ws"))
        token_file = os.path.join(self.tmp, "token")
        with open(token_file, "w") as f:
            f.write(self.agent_token())
        # The Pod's own command line, with this machine's paths, and the value the kubelet
        # would expand $(BOILERHOUSE_HOST_IP) to.
        local = {"--root": root, "--listen": pod_ip + ":15090", "--token-file": token_file,
                 "--probe-peer": node_ip}
        argv = [BINARY] + [local.get(args[i - 1], a) for i, a in enumerate(args) if i > 0]
        spawn_agent(self, ["ip", "netns", "exec", ns] + argv)

        def phase():
            return d.request("GET", "/api/v1/tenants/t9")[1]["claims"][0]["phase"]

        def busy(seconds, act):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                act()
                self.assertEqual(phase(), "Active", d.log())
                time.sleep(1)  # the workload's pace, not a wait for the daemon

        # Network: a connection of the workload's every second, for three idle timeouts.
        srv = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                "import socket\ns = socket.create_server(('127.0.0.1', 9000))\n"
                                "print('ready', flush=True)\nwhile True:\n"
                                "  c, _ = s.accept()\n  c.sendall(c.recv(100))\n  c.close()\n"],
                               stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (srv.kill(), srv.wait(), srv.stdout.close()))
        self.assertEqual(first_line(srv.stdout, "the server").strip(), "ready")
        ping = ("import socket\nc = socket.create_connection(('127.0.0.1', 9000))\n"
                "c.sendall(b'x')\nc.recv(10)\nc.close()")
        busy(3 * timeout, lambda: subprocess.run(["ip", "netns", "exec", ns, sys.executable,
                                                  "-c", ping], check=True, timeout=60))
        # Files: an edit under the watched directory every second, no traffic.
        counter = [0]

        def edit():
            counter[0] += 1
            with open(os.path.join(root, "data", "ws", "draft.txt"), "w") as f:
                f.write("edit %d\n" % counter[0])
        busy(3 * timeout, edit)
        # Silence: the claim is hibernated through the agent (its data saved).
        wait_for(lambda: phase() == "Released", 120, "the idle claim released\n" + d.log())
        wait_for(lambda: self.gone(pod["metadata"]["name"]), 60, "the Pod gone\n" + d.log())
        snaps = [s for s in d.request("GET", "/api/v1/snapshots")[1] if s["tenantId"] == "t9"]
        self.assertEqual(len(snaps), 1, snaps)

    def test_encrypted_snapshot_key_stays_with_the_daemon(self):
        d = self.save_and_restore("vault", EXPOSED, encrypted=True)
        # Nothing the Pod's agents saw was encrypted: the daemon re-wrapped it both ways.
        self.assertIn("restored", d.log(tail=None))


class PodNet:
    """A network namespace that plays a Pod's, as in test_egress_sidecar.py: its egress goes
    to a fake internet (a second namespace with the recording web server, HTTPS for NAMES),
    and the host (where the daemon runs) reaches it at pod_ip, the address the fake kubelet
    gives the Pod. The real sidecar runs in it from the Pod's spec in the cluster."""

    def __init__(self, test):
        n = net_slot(test.addCleanup)
        self.test = test
        self.tmp = tempfile.mkdtemp(prefix="bh-pods-net-")
        test.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        os.chmod(self.tmp, 0o755)  # the sidecar's uid reads its volumes in here
        self.ns, inet_ns = "bhit-kpod-%d" % n, "bhit-kinet-%d" % n
        self.pod_ip, host_ip = "10.254.%d.2" % n, "10.254.%d.1" % n
        self.inet_ip = "10.250.%d.1" % n
        self.inet_ca, self.record = fake_internet(test.addCleanup, self.tmp, self.ns, inet_ns,
                                                  "10.250.%d.2" % n, self.inet_ip)
        veth = "vkpod%d" % n
        test.addCleanup(subprocess.run, ["ip", "link", "del", veth], capture_output=True)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth1", "netns", self.ns)
        sh("ip", "addr", "add", host_ip + "/24", "dev", veth)
        sh("ip", "link", "set", "dev", veth, "up")
        sh("ip", "-n", self.ns, "addr", "add", self.pod_ip + "/24", "dev", "eth1")
        sh("ip", "-n", self.ns, "link", "set", "dev", "eth1", "up")
        self.rules_loaded = False
        self.sidecar = None

    def run_sidecar(self, pod):
        """What the kubelet does with pod's init rules and egress-proxy container."""
        if not self.rules_loaded:
            init = named(pod["spec"]["initContainers"], "egress-init")
            sh("ip", "netns", "exec", self.ns, *init["command"])
            self.rules_loaded = True
        if self.sidecar:
            self.sidecar.stop()
        wl = pod["metadata"]["labels"]["boilerhouse.dev/workload"]
        secret = self.test.get("secret", "bh-%s-egress-ca" % wl)
        token = base64.b64decode(self.test.get("secret", "boilerhouse-agent")["data"]["token"])
        d = tempfile.mkdtemp(dir=self.tmp)
        os.chmod(d, 0o755)
        self.sidecar = Sidecar(self.test.addCleanup, d, self.ns, pod, secret,
                               {"SSL_CERT_FILE": self.inet_ca}, token.decode())
        self.sidecar.start()
        self.sidecar.wait_ready()
        self.main_ca = os.path.join(d, "ca.crt")
        with open(self.main_ca, "wb") as f:
            f.write(base64.b64decode(secret["data"]["tls.crt"]))
        os.chmod(self.main_ca, 0o644)

    def upstream_saw(self, path):
        """The x-tenant-key header the upstream got on an intercepted request of the Pod's
        workload (None: none), after checking the workload itself never saw the value."""
        out = pod_client(self.ns, "https", self.inet_ip, "api.example.test", path, self.main_ca)
        self.test.assertEqual(out.get("status"), 200, out)
        self.test.assertNotIn(TENANT_VALUE, json.dumps(out))
        with open(self.record) as f:
            recs = [json.loads(line) for line in f if line.strip()]
        rec = [r for r in recs if r["path"] == path]
        self.test.assertEqual(len(rec), 1, recs)
        return rec[0]["headers"].get("x-tenant-key")


class KubeTenantSecretsTest(KubeTestCase):
    """A claim's tenant secret reaches the real egress sidecar of its Pod (in a namespace that
    plays the Pod, at the address the fake kubelet gives it), through a warm pool Pod and a
    cold boot; a tenant without the secret gets a failed claim naming it."""
    NS_PREFIX = "tsec-"

    def setUp(self):
        super().setUp()
        self.kubelet = FakeKubelet(self.kube, self.ns)
        self.kubelet.start()
        self.addCleanup(self.kubelet.stop)

    def daemon(self, claim_timeout_s=60):
        d = Daemon(extra_args=["--kubeconfig", self.kc, "--operator-id", "tsec",
                               "--lease-duration", "4", "--kube-cluster-cidrs", CLUSTER_CIDRS],
                   extra_env={"BOILERHOUSE_CLAIM_TIMEOUT_SECONDS": str(claim_timeout_s)})
        self.addCleanup(d.cleanup)
        d.start(timeout=60)
        wait_for(lambda: (self.get("lease", LEASE) or {}).get("spec", {})
                 .get("holderIdentity") == "tsec", 30, "the daemon leads\n" + d.log())
        return d

    def workload(self, d, name):
        self.kubectl("apply", "--validate=false", "-f", "-",
                     input=WORKLOAD % {"name": name, "network": TENANT_CRED,
                                       "action": "destroy"})
        d.wait_workload(name, "Ready", 90)

    def pods(self, *selector):
        return json.loads(self.kubectl("get", "pods", "-o", "json", "-l",
                                       ",".join(selector)).stdout)["items"]

    def test_tenant_secret_reaches_the_pods_sidecar(self):
        d = self.daemon()
        net = PodNet(self)
        d.put_secret("tenantkey", "k", TENANT_VALUE, tenant="t-good")
        self.workload(d, "sec")
        self.kubelet.addresses["sec"] = [net.pod_ip]
        self.kubectl("apply", "--validate=false", "-f", "-", input=POOL % ("sec-pool", "sec", 1))
        warm = wait_for(lambda: self.pods("boilerhouse.dev/pool=sec-pool",
                                          "boilerhouse.dev/pool-status=ready"), 60,
                        "a ready warm Pod\n" + d.log())[0]
        self.assertEqual(warm["status"]["podIP"], net.pod_ip)
        net.run_sidecar(warm)
        # A warm Pod has no tenant: the header is not injected.
        self.assertIsNone(net.upstream_saw("/warm"))
        # The claim takes it; before it is Active the daemon has pushed the tenant's value.
        status, body = d.claim("t-good", "sec")
        self.assertIn(status, (200, 201), (body, d.log()))
        self.assertEqual((body["phase"], body["source"]), ("Active", "pool"), body)
        self.assertEqual("bh-sec-" + body["instanceId"], warm["metadata"]["name"])
        self.assertEqual(net.upstream_saw("/claimed"), TENANT_VALUE)
        self.assertIn("the tenant's 1 credential headers are set", net.sidecar.log())
        # The value is nowhere in the cluster: not in the Pod, nor in any Secret or ConfigMap.
        everything = self.kubectl("get", "pods,secrets,configmaps", "-o", "json").stdout
        self.assertNotIn(TENANT_VALUE, everything)
        self.assertNotIn(base64.b64encode(TENANT_VALUE.encode()).decode(), everything)
        self.assertNotIn(TENANT_VALUE, d.log(tail=None))
        self.assertNotIn(TENANT_VALUE, net.sidecar.log())
        # A tenant without the secret: the claim fails naming it, and its Pod goes.
        wait_for(lambda: self.pods("boilerhouse.dev/pool=sec-pool",
                                   "boilerhouse.dev/pool-status=ready"), 60,
                 "the pool refilled\n" + d.log())
        status, body = d.claim("t-bad", "sec")
        self.assertNotEqual(body.get("phase"), "Active", body)
        claim = wait_for(lambda: [c for c in self.items_bhc()
                                  if c["spec"]["tenantId"] == "t-bad" and
                                  c.get("status", {}).get("phase") == "Error"], 60,
                         "t-bad's claim in Error\n" + d.log())[0]
        detail = claim["status"]["detail"]
        self.assertIn("tenantSecretKeyRef tenantkey key k", detail)
        self.assertIn("tenant t-bad has no secret tenantkey", detail)
        wait_for(lambda: not self.pods("boilerhouse.dev/workload=sec",
                                       "boilerhouse.dev/pool-status=acquired",
                                       "boilerhouse.dev/tenant!=%s" % self.tenant_label("t-good")),
                 60, "t-bad's Pod deleted\n" + d.log())
        # Released, the tenant's Pod goes with its sidecar's memory (never back to the pool).
        status, out = d.release("t-good", "sec")
        self.assertIn(status, (200, 202), out)
        wait_for(lambda: self.get("pod", warm["metadata"]["name"]) is None, 60,
                 "t-good's Pod deleted\n" + d.log())
        net.sidecar.stop()  # what the kubelet does with a deleted Pod's containers

        # A cold boot: the Pod's sidecar starts after the daemon began pushing (it is not
        # listening yet: asked again), and the claim is Active once it took the value.
        self.kubectl("delete", "bhp", "sec-pool")
        self.workload(d, "cold")
        self.kubelet.addresses["cold"] = [net.pod_ip]
        result = {}
        t = threading.Thread(target=lambda: result.update(out=d.claim("t-good", "cold")))
        t.start()
        self.addCleanup(t.join, 90)
        pod = wait_for(lambda: [p for p in self.pods("boilerhouse.dev/workload=cold")
                                if p.get("status", {}).get("podIP") == net.pod_ip], 60,
                       "the cold Pod with its address\n" + d.log())[0]
        net.run_sidecar(pod)
        t.join(90)
        status, body = result["out"]
        self.assertIn(status, (200, 201), (body, d.log()))
        self.assertEqual((body["phase"], body["source"]), ("Active", "cold"), body)
        self.assertEqual(net.upstream_saw("/cold"), TENANT_VALUE)
        tries = re.findall(r"taken by Pod bh-cold-%s's sidecar \(try (\d+)\)" % body["instanceId"],
                           d.log(tail=None))
        self.assertEqual(len(tries), 1, d.log())
        self.assertGreater(int(tries[0]), 1)  # it was not listening yet at first

    def test_sidecar_never_answering_fails_the_claim(self):
        """Nothing takes the push (no sidecar listens at the Pod's address): asked again
        until the claim timeout, then the claim fails saying so and its Pod goes."""
        d = self.daemon(claim_timeout_s=4)
        slot = int(re.search(r"(\d+)$", d.bridge).group(1))
        d.put_secret("tenantkey", "k", TENANT_VALUE, tenant="t-good")
        self.workload(d, "mute")
        self.kubelet.addresses["mute"] = ["127.77.%d.3" % slot]  # nothing listens there
        status, body = d.claim("t-good", "mute")
        self.assertNotEqual(body.get("phase"), "Active", body)
        claim = wait_for(lambda: [c for c in self.items_bhc()
                                  if c.get("status", {}).get("phase") == "Error"], 60,
                         "the claim in Error\n" + d.log())[0]
        self.assertIn("not taken after", claim["status"]["detail"])
        self.assertIn("tenant credentials to Pod bh-mute-", claim["status"]["detail"])
        wait_for(lambda: not self.pods("boilerhouse.dev/workload=mute"), 60,
                 "the Pod deleted\n" + d.log())
        self.assertNotIn(TENANT_VALUE, d.log(tail=None))

    def test_no_push_to_a_pod_whose_sidecar_died(self):
        """A warm Pod whose sidecar has exited (a workload that took its port first, say) is
        not Ready: nothing is sent to whatever holds the port at its address, and the claim
        fails with the kubelet's reason."""
        d = self.daemon(claim_timeout_s=4)
        slot = int(re.search(r"(\d+)$", d.bridge).group(1))
        address = "127.77.%d.4" % slot
        impostor = socket.socket()
        impostor.bind((address, 15091))
        impostor.listen()
        impostor.settimeout(0.2)
        self.addCleanup(impostor.close)
        d.put_secret("tenantkey", "k", TENANT_VALUE, tenant="t-good")
        self.workload(d, "dead")
        self.kubelet.addresses["dead"] = [address]
        self.kubectl("apply", "--validate=false", "-f", "-", input=POOL % ("dead-pool", "dead", 1))
        warm = wait_for(lambda: self.pods("boilerhouse.dev/pool=dead-pool",
                                          "boilerhouse.dev/pool-status=ready"), 60,
                        "a ready warm Pod\n" + d.log())[0]["metadata"]["name"]
        self.kubelet.behaviour["dead"] = "never"  # what the kubelet says next is ours
        self.kubelet.call("PATCH", "/%s/status" % warm, {"status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "egress-proxy", "image": "x", "imageID": "",
                                   "ready": False, "restartCount": 0, "state": {
                                       "terminated": {"exitCode": 1, "reason": "Error"}}}]}})
        status, body = d.claim("t-good", "dead")
        self.assertNotEqual(body.get("phase"), "Active", body)
        detail = wait_for(lambda: [c for c in self.items_bhc()
                                   if c.get("status", {}).get("phase") == "Error"], 60,
                          "the claim in Error\n" + d.log())[0]["status"]["detail"]
        self.assertIn("container egress-proxy terminated", detail)
        with self.assertRaises(socket.timeout):  # nobody ever connected to the impostor
            impostor.accept()

    def items_bhc(self):
        return json.loads(self.kubectl("get", "bhc", "-o", "json").stdout)["items"]

    @staticmethod
    def tenant_label(tenant):
        return "t-" + hashlib.sha256(tenant.encode()).hexdigest()[:32]


if __name__ == "__main__":
    unittest.main()
