"""The Kubernetes objects of an instance (core/kube/objects.h, printed by `boilerhouse kube
render`) and the deployment manifests (deploy/kubernetes/) on a real kube-apiserver
(kube_env.KubeEnv). Every object rendered for the example workloads, in each access mode, is
created for real (the server has no kubelet: Pods stay Pending), must pass kubectl's schema
validation (which refuses unknown fields), and must come back from the server with every field
we sent (Kubernetes 1.20 drops an unknown field silently instead of refusing it). The RBAC of
deploy/kubernetes/ is checked against the server's authorizer, allowed and refused."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from bh import BINARY, require, run_checked
from kube_env import KubeEnv

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy", "kubernetes")
NS = "bh-objects"
MODES = ["none", "unrestricted", "restricted"]
TENANT = "Weird Tenant/ü.x"  # not a label value: the builders hash it into one
SA = "system:serviceaccount:boilerhouse:boilerhouse"


def subset_mismatch(sent, got, path=""):
    """Where got lacks something of sent (the server may add defaults, never drop), or None."""
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return path or "."
        for k, v in sent.items():
            if k not in got:
                return "%s.%s missing" % (path, k)
            bad = subset_mismatch(v, got[k], "%s.%s" % (path, k))
            if bad:
                return bad
        return None
    if isinstance(sent, list):
        if not isinstance(got, list) or len(got) != len(sent):
            return "%s: %r != %r" % (path, sent, got)
        for i, (s, g) in enumerate(zip(sent, got)):
            bad = subset_mismatch(s, g, "%s[%d]" % (path, i))
            if bad:
                return bad
        return None
    return None if sent == got else "%s: sent %r, stored %r" % (path, sent, got)


class KubeObjectsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        require(shutil.which("nft") is not None, "nft not installed (Debian nftables)")
        cls.kube = KubeEnv()
        cls.addClassCleanup(cls.kube.stop)
        cls.tmp = tempfile.mkdtemp(prefix="bh-kube-objects-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.kube.kubectl("create", "namespace", NS)
        cls.ca_dir = os.path.join(cls.tmp, "ca")
        os.mkdir(cls.ca_dir)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=test egress CA",
                        "-days", "1", "-keyout", os.path.join(cls.ca_dir, "ca.key"),
                        "-out", os.path.join(cls.ca_dir, "ca.crt")],
                       check=True, capture_output=True)

    def render(self, workload, *args):
        res = run_checked([BINARY, "kube", "render", "--workload", workload, "--output", "json",
                           "--namespace", NS, "--ca-dir", self.ca_dir,
                           "--cluster-cidr", "10.96.0.0/16", "--cluster-cidr", "10.244.0.0/16",
                           "--proxy-image", "localhost/boilerhouse:test", *args], check=True,
                          text=True)
        doc = json.loads(res.stdout)
        return doc["items"] if doc.get("kind") == "List" else [doc]

    def variant(self, path, mode):
        """The workload file with spec.network.access set to mode."""
        with open(path) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^\s+access: \S+$", path)
        out = os.path.join(self.tmp, "%s-%s.yaml" % (os.path.basename(path), mode))
        with open(out, "w") as f:
            f.write(re.sub(r"(?m)^(\s+access: )\S+$", r"\g<1>" + mode, text))
        return out

    def create_checked(self, obj):
        kind, name = obj["kind"].lower(), obj["metadata"]["name"]
        # kubectl validates against the server's schema first: an unknown field is an error
        self.kube.kubectl("apply", "-f", "-", input=json.dumps(obj))
        got = json.loads(self.kube.kubectl("get", "-n", NS, kind, name, "-o", "json").stdout)
        bad = subset_mismatch(obj, got)
        self.assertIsNone(bad, "%s %s as stored: %s" % (kind, name, bad))

    def test_rendered_objects_are_created_by_the_real_server(self):
        files = sorted(glob.glob(os.path.join(ROOT, "workloads", "*.yaml")) +
                       glob.glob(os.path.join(ROOT, "workloads", "examples", "*.yaml")))
        self.assertGreaterEqual(len(files), 8)
        made = {"Pod": 0, "Service": 0, "NetworkPolicy": 0, "Secret": 0}
        names = set()
        n = 0
        for path in files:
            for mode in MODES:
                n += 1
                warm = n % 2 == 0  # half as warm pool Pods, half claimed by TENANT
                # a claimed tenant resumes a snapshot: the restore init container is checked too
                who = (["--pool", "pool-a"] if warm
                       else ["--tenant", TENANT, "--claim", "c-1", "--restore"])
                items = self.render(self.variant(path, mode), "--id", "%012x" % n, *who)
                kinds = [o["kind"] for o in items]
                pod = next(o for o in items if o["kind"] == "Pod")
                agents = [c["name"] for c in pod["spec"]["containers"]
                          + pod["spec"].get("initContainers", []) if "snapshot" in c["name"]]
                has_dirs = any(m["name"] == "overlays"
                               for m in pod["spec"]["containers"][0].get("volumeMounts", []))
                self.assertEqual(agents, (["snapshot-agent"] + ([] if warm else ["snapshot-restore"]))
                                 if has_dirs else [], path)
                self.assertEqual(kinds.count("Pod"), 1, path)
                self.assertEqual(kinds.count("NetworkPolicy"), 1, path)
                self.assertEqual(kinds.count("Secret"), 1 if mode == "restricted" else 0, path)
                for obj in items:
                    with self.subTest(file=os.path.basename(path), mode=mode, kind=obj["kind"]):
                        self.create_checked(obj)
                        made[obj["kind"]] += 1
                        names.add(obj["metadata"]["name"])
        self.assertEqual(made["Pod"], len(files) * len(MODES))
        self.assertGreater(made["Service"], 0)
        pods = json.loads(self.kube.kubectl("get", "pods", "-n", NS, "-o", "json").stdout)
        mine = [p for p in pods["items"] if p["metadata"]["name"] in names]
        self.assertEqual(len(mine), len(files) * len(MODES))
        for p in mine:
            self.assertEqual(p["status"]["phase"], "Pending")  # no kubelet here

    def test_tenant_label_selects_the_tenants_pod(self):
        tenant = "Only/This Tenant"
        items = self.render(os.path.join(ROOT, "workloads", "sleeper.yaml"), "--kind", "pod",
                            "--id", "00000000abcd", "--tenant", tenant)
        self.create_checked(items[0])
        label = items[0]["metadata"]["labels"]["boilerhouse.dev/tenant"]
        out = self.kube.kubectl("get", "pods", "-n", NS, "-l",
                                "boilerhouse.dev/tenant=" + label, "-o", "name").stdout.split()
        self.assertEqual(out, ["pod/" + items[0]["metadata"]["name"]])
        got = json.loads(self.kube.kubectl("get", "pod", "-n", NS, items[0]["metadata"]["name"],
                                           "-o", "json").stdout)
        self.assertEqual(got["metadata"]["annotations"]["boilerhouse.dev/tenant-id"], tenant)

    def test_redirect_rules_load_in_nft(self):
        items = self.render(self.variant(os.path.join(ROOT, "workloads", "sleeper.yaml"),
                                         "restricted"), "--kind", "pod", "--id", "0000000000ff")
        init = items[0]["spec"]["initContainers"][0]
        self.assertEqual(init["command"][0], "nft")
        # -c: parsed and checked by the kernel's nftables, nothing is changed
        res = subprocess.run(["nft", "-c", init["command"][1]], capture_output=True, text=True)
        self.assertEqual(res.returncode, 0, res.stderr)

    def test_render_refuses_bad_input(self):
        sleeper = os.path.join(ROOT, "workloads", "sleeper.yaml")
        res = run_checked([BINARY, "kube", "render", "--workload", sleeper, "--id", "XYZ"],
                          text=True)
        self.assertEqual(res.returncode, 1)
        self.assertIn("instance id", res.stderr)
        self.assertEqual(res.stdout, "")
        res = run_checked([BINARY, "kube", "render", "--workload", sleeper, "--kind", "secret"],
                          text=True)
        self.assertEqual(res.returncode, 1)
        self.assertIn("only a restricted workload", res.stderr)
        res = run_checked([BINARY, "kube", "render", "--workload", sleeper, "--kind", "crd"],
                          text=True)
        self.assertEqual(res.returncode, 2)
        bad = os.path.join(self.tmp, "bad.yaml")
        with open(bad, "w") as f:
            f.write("apiVersion: boilerhouse.dev/v1alpha1\nkind: BoilerhouseWorkload\n"
                    "metadata: {name: bad}\nspec: {version: '1', image: {ref: x},"
                    " resources: {vcpus: 0, memoryMb: 1, diskGb: 1}}\n")
        res = run_checked([BINARY, "kube", "render", "--workload", bad], text=True)
        self.assertEqual(res.returncode, 1)
        self.assertIn("spec.resources.vcpus", res.stderr)

    def test_yaml_output_is_what_kubectl_applies(self):
        res = run_checked([BINARY, "kube", "render", "--workload",
                           os.path.join(ROOT, "workloads", "examples", "agent.yaml"),
                           "--namespace", NS, "--id", "0000000000aa", "--tenant", "yaml-t",
                           "--ca-dir", self.ca_dir], check=True, text=True)
        self.assertEqual(res.stdout.count("\n---"), 3, res.stdout[:400])  # 4 documents
        out = self.kube.kubectl("apply", "--dry-run=server", "-f", "-", input=res.stdout).stdout
        for what in ("secret/bh-agent-egress-ca", "pod/bh-agent-0000000000aa",
                     "service/bh-agent-0000000000aa", "networkpolicy.networking.k8s.io/"
                     "bh-agent-0000000000aa"):
            self.assertIn(what, out)

    def test_deploy_manifests_apply_and_rbac_is_least_privilege(self):
        # the CRDs' CEL rules need Kubernetes >= 1.25: 1.20 takes them only unvalidated
        self.kube.kubectl("apply", "--validate=false", "-f", DEPLOY)
        for path in sorted(glob.glob(os.path.join(DEPLOY, "*.yaml"))):
            if not os.path.islink(path):  # everything but the CRDs passes strict validation
                self.kube.kubectl("apply", "-f", path)
        for crd in ("boilerhouseworkloads", "boilerhousepools", "boilerhouseclaims",
                    "boilerhousetriggers"):
            self.kube.wait_established(crd)
        dep = json.loads(self.kube.kubectl("get", "-n", "boilerhouse", "deployment",
                                           "boilerhouse", "-o", "json").stdout)
        self.assertEqual(dep["spec"]["replicas"], 2)
        for kind, name in (("service", "boilerhouse"), ("networkpolicy", "boilerhouse"),
                           ("serviceaccount", "boilerhouse")):
            self.kube.kubectl("get", "-n", "boilerhouse", kind, name)
        allowed = [
            ("create", "boilerhouseclaims.boilerhouse.dev"),
            ("watch", "boilerhouseworkloads.boilerhouse.dev"),
            ("patch", "boilerhousepools.boilerhouse.dev", "--subresource=status"),
            ("update", "boilerhouseclaims.boilerhouse.dev", "--subresource=finalizers"),
            ("create", "pods"), ("patch", "pods"), ("delete", "pods"), ("watch", "pods"),
            ("create", "services"), ("create", "networkpolicies.networking.k8s.io"),
            ("get", "secrets"), ("create", "secrets"), ("create", "events"),
            ("create", "leases.coordination.k8s.io"),
            ("update", "leases.coordination.k8s.io/boilerhouse-operator"),
        ]
        refused = [
            ("create", "pods", "--subresource=exec"), ("create", "configmaps"),
            ("update", "pods", "--subresource=status"), ("get", "pods", "--subresource=log"),
            ("create", "deployments.apps"), ("create", "roles.rbac.authorization.k8s.io"),
            ("update", "leases.coordination.k8s.io/someone-else"),
            ("create", "persistentvolumeclaims"), ("escalate", "clusterroles"),
        ]
        for want, cases, ns in ((True, allowed, "boilerhouse"), (False, refused, "boilerhouse"),
                                (False, allowed[:1] + allowed[4:5], "default")):
            for verb, *what in cases:
                res = self.kube.kubectl("auth", "can-i", "--as", SA, "-n", ns, verb, *what,
                                        check=False)
                self.assertEqual(res.stdout.strip(), "yes" if want else "no",
                                 "%s %s in %s" % (verb, " ".join(what), ns))
        # nothing cluster-wide: not even the Pods of another namespace
        res = self.kube.kubectl("auth", "can-i", "--as", SA, "list", "pods", "--all-namespaces",
                                check=False)
        self.assertEqual(res.stdout.strip(), "no")


if __name__ == "__main__":
    unittest.main()
