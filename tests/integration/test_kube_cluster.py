"""The project's CRDs and example manifests on a real kube-apiserver (kube_env.KubeEnv), and
local mode's Kubernetes-compatible API compared with it: what kubectl shows for the four kinds
must not depend on which of the two it talks to. The groundwork of Kubernetes mode."""
import glob
import os
import re
import unittest

from bh import Daemon
from kube_env import CRDS, KINDS, KubeEnv, kubectl

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# One object per CEL rule in crds/, each breaking only that rule. Kubernetes 1.20 cannot
# enforce CEL rules, so the real API server takes these objects; the daemon must refuse them
# itself, so that no cluster version (or --validate=false) lets one reach reconciliation.
WORKLOAD = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata: {name: %s}
spec:
  version: "1"
  image: %s
  resources: {vcpus: 1, memoryMb: 64, diskGb: 1}
  network: %s
"""
TRIGGER = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseTrigger
metadata: {name: %s}
spec:
  type: webhook
  workloadRef: sleeper
  tenant: %s
  config: {path: /hooks/x}
"""
CLAIM = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseClaim
metadata: {name: %s}
spec: {tenantId: "%s", workloadRef: sleeper}
"""
RESTRICTED = ("{access: restricted, allowlist: [api.example.com], credentials: [{domain: "
              "api.example.com, headers: [{name: x-api-key, %s}]}]}")
CEL_CASES = {
    "has(self.ref) != has(self.dockerfile)":
        WORKLOAD % ("cel-image", "{ref: localhost/busybox:latest, dockerfile: Dockerfile}",
                    "{access: none}"),
    "has(self.value) != has(self.valueFrom)":
        WORKLOAD % ("cel-value", "{ref: localhost/busybox:latest}",
                    RESTRICTED % "value: v, valueFrom: {secretKeyRef: {name: s, key: k}}"),
    "has(self.secretKeyRef) != has(self.tenantSecretKeyRef)":
        WORKLOAD % ("cel-ref", "{ref: localhost/busybox:latest}",
                    RESTRICTED % ("valueFrom: {secretKeyRef: {name: s, key: k}, "
                                  "tenantSecretKeyRef: {name: s, key: k}}")),
    "has(self.static) || has(self.from)": TRIGGER % ("cel-tenant", "{prefix: tg-}"),
    "self != '.' && self != '..'": [TRIGGER % ("cel-static", "{static: '..'}"),
                                    CLAIM % ("cel-claim", "..")],
}


def cel_rules():
    rules = []
    for path in sorted(glob.glob(os.path.join(CRDS, "*.yaml"))):
        with open(path) as f:
            rules += [l.split("rule:", 1)[1].strip() for l in f if "- rule:" in l]
    return rules


class KubeClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kube = KubeEnv()
        cls.addClassCleanup(cls.kube.stop)
        cls.kube.install_crds()

    def daemon(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.start()
        return d

    def test_crds_are_established_with_short_names(self):
        out = self.kube.kubectl("api-resources", "--api-group=boilerhouse.dev",
                                "-o", "name").stdout.split()
        self.assertEqual(sorted(out), sorted(k + ".boilerhouse.dev" for k in KINDS))
        wide = self.kube.kubectl("api-resources", "--api-group=boilerhouse.dev").stdout
        for short in ("bhw", "bhp", "bhc", "bht"):
            self.assertIn(" %s " % short, wide)

    def test_example_workloads_are_valid_objects_for_a_real_server(self):
        files = sorted(glob.glob(os.path.join(ROOT, "workloads", "*.yaml")))
        self.assertTrue(files)
        for f in files:
            self.kube.kubectl("apply", "--validate=false", "--dry-run=server", "-f", f)

    def test_schema_refuses_what_the_daemon_refuses(self):
        # a structural-schema violation the CRD states without CEL: vcpus must be >= 1
        bad = """
apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata: {name: bad-vcpus}
spec:
  version: "1"
  image: {ref: "localhost/busybox:latest"}
  resources: {vcpus: -1, memoryMb: 64, diskGb: 1}
"""
        res = self.kube.kubectl("apply", "--validate=false", "-f", "-", input=bad, check=False)
        self.assertNotEqual(res.returncode, 0, res.stdout)
        self.assertIn("spec.resources.vcpus", res.stderr)
        d = self.daemon()
        status, body = d.request("POST", "/api/v1/workloads", raw=bad.encode())
        self.assertEqual(status, 400, body)
        self.assertIn("spec.resources.vcpus", body["error"])

    def test_daemon_enforces_every_cel_rule_an_old_cluster_cannot(self):
        self.assertEqual(sorted(set(cel_rules())), sorted(CEL_CASES),
                         "every CEL rule in crds/ needs a case here")
        local = self.daemon().kubeconfig()
        for rule, manifests in CEL_CASES.items():
            for m in manifests if isinstance(manifests, list) else [manifests]:
                cluster = self.kube.kubectl("apply", "--validate=false", "--dry-run=server",
                                            "-f", "-", input=m, check=False)
                self.assertEqual(cluster.returncode, 0, "1.20 has no CEL: %s\n%s" % (
                    rule, cluster.stderr))
                res = kubectl(local, "apply", "-n", "boilerhouse", "-f", "-", input=m,
                              check=False)
                self.assertNotEqual(res.returncode, 0, "local mode took %s:\n%s" % (rule, m))
                self.assertIn("is invalid", res.stderr, rule)

    def test_discovery_matches_local_mode(self):
        """kubectl shows the same four kinds, and the same fields under each, whether it talks
        to the real API server or to local mode's. (explain's layout differs: kubectl renders
        1.20's OpenAPI v2 and local mode's v3 differently, so the field lists are compared.)"""
        local = self.daemon().kubeconfig()
        args = ["api-resources", "--api-group=boilerhouse.dev"]
        self.assertEqual(kubectl(local, *args).stdout, self.kube.kubectl(*args).stdout)
        for path in ("bhw.spec", "bhp.spec", "bhc.spec", "bht.spec"):
            args = ["explain", "--recursive", path]
            cluster = explained_fields(self.kube.kubectl(*args).stdout)
            mine = explained_fields(kubectl(local, *args).stdout)
            self.assertTrue(cluster, path)
            self.assertEqual(sorted(mine), sorted(cluster), path)
            # kubectl's v3 renderer leaves the type of a free-form object out of --recursive
            for field, kind in cluster.items():
                if kind and mine[field]:
                    self.assertEqual(mine[field], kind, "%s.%s" % (path, field))


def explained_fields(text):
    """{dotted field path: type} from `kubectl explain --recursive`, nesting by indentation."""
    out, stack = {}, []
    fields = text.split("FIELDS:", 1)[1] if "FIELDS:" in text else ""
    for line in fields.splitlines():
        m = re.match(r"^(\s+)(\S+)\s+<([^>]*)>", line)
        if not m:
            continue
        depth = len(m.group(1))
        while stack and stack[-1][0] >= depth:
            stack.pop()
        stack.append((depth, m.group(2)))
        out[".".join(n for _, n in stack)] = m.group(3)
    return out

if __name__ == "__main__":
    unittest.main()
