"""kubectl against the Kubernetes-compatible API of local mode: what a user would type, run
with the real kubectl and the generated kubeconfig, asserting on kubectl's own output and exit
codes. Needs kubectl on PATH (scripts/install-deps.sh); without it the test is skipped, and
fails under CI=true."""
import os
import shutil
import subprocess
import tempfile
import unittest

from bh import BINARY, SOURCE, DaemonTestCase, http_get

KUBECTL = shutil.which("kubectl")

CLAIM = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseClaim
metadata:
  name: claim-alice-httpserver
spec:
  tenantId: alice
  workloadRef: httpserver
"""

BAD = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: bad
spec:
  version: "1"
  image: {ref: localhost/busybox:latest}
  resources: {vcpus: -1, memoryMb: 64}
"""


@unittest.skipIf(not KUBECTL and os.environ.get("CI") != "true", "kubectl not installed")
class KubectlTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        if not KUBECTL:
            raise AssertionError("kubectl is required under CI=true (scripts/install-deps.sh)")
        super().setUpClass()
        cls.kubeconfig = os.path.join(cls.d.state, "kubeconfig")
        out = subprocess.run([BINARY, "kubeconfig", "--state-dir", cls.d.state,
                              "--kube-listen", "127.0.0.1:%d" % cls.d.kube_port],
                             capture_output=True, text=True, check=True).stdout
        with open(cls.kubeconfig, "w") as f:
            f.write(out)

    def kubectl(self, *args, stdin=None, ok=True, timeout=120):
        r = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True,
                           cwd=SOURCE, timeout=timeout,
                           env=dict(os.environ, KUBECONFIG=self.kubeconfig))
        if ok:
            self.assertEqual(r.returncode, 0, "kubectl %s:\n%s%s\n%s" % (
                " ".join(args), r.stdout, r.stderr, self.d.log()))
        return r

    def out(self, *args, **kw):
        return self.kubectl(*args, **kw).stdout

    def test_01_discovery(self):
        text = self.out("api-resources", "--api-group=boilerhouse.dev")
        for plural, short in (("boilerhouseworkloads", "bhw"), ("boilerhousepools", "bhp"),
                              ("boilerhouseclaims", "bhc"), ("boilerhousetriggers", "bht")):
            self.assertRegex(text, r"%s\s+%s\s+boilerhouse.dev/v1alpha1\s+true" % (plural, short))
        self.assertIn("Server Version: v1.32", self.out("version"))

    def test_02_apply_workloads(self):
        text = self.out("apply", "-f", "crds/")
        self.assertEqual(text.count("created") + text.count("unchanged"), 4, text)
        self.assertIn("boilerhouseworkload.boilerhouse.dev/httpserver created",
                      self.out("apply", "-f", "workloads/"))
        self.assertIn("boilerhouseworkload.boilerhouse.dev/httpserver unchanged",
                      self.out("apply", "-f", "workloads/"))
        self.out("wait", "bhw/httpserver", "--for=jsonpath={.status.phase}=Ready",
                 "--timeout=60s")
        table = self.out("get", "bhw")
        self.assertRegex(table.splitlines()[0], r"NAME\s+PHASE\s+VERSION\s+IMAGE\s+AGE")
        self.assertRegex(table, r"httpserver\s+Ready\s+\S+\s+localhost/busybox:latest")
        self.assertEqual(self.out("get", "bhw", "httpserver", "-o",
                                  "jsonpath={.metadata.namespace}"), "boilerhouse")
        self.assertIn("kind: BoilerhouseWorkload", self.out("get", "bhw", "httpserver", "-o",
                                                            "yaml"))

    def test_03_configured_bumps_generation(self):
        with open(os.path.join(SOURCE, "workloads", "sleeper.yaml")) as f:
            text = f.read()
        self.out("apply", "-f", "-", stdin=text)
        gen = int(self.out("get", "bhw", "sleeper", "-o", "jsonpath={.metadata.generation}"))
        edited = text.replace("version: \"0.1.0\"", "version: \"0.1.1\"").replace(
            "version: 0.1.0", "version: 0.1.1")
        self.assertNotEqual(edited, text)
        diff = self.kubectl("diff", "-f", "-", stdin=edited, ok=False)
        self.assertEqual(diff.returncode, 1, diff.stderr)
        self.assertIn("0.1.1", diff.stdout)
        self.assertEqual(self.out("get", "bhw", "sleeper", "-o", "jsonpath={.metadata.generation}"),
                         str(gen))  # diff applied nothing
        self.assertIn("configured", self.out("apply", "-f", "-", stdin=edited))
        self.assertEqual(self.out("get", "bhw", "sleeper", "-o", "jsonpath={.metadata.generation}"),
                         str(gen + 1))

    def test_04_explain(self):
        text = self.out("explain", "bhw.spec.network.access")
        self.assertIn("KIND:       BoilerhouseWorkload", text)
        self.assertIn("FIELD: access <string>", text)

    def test_05_invalid_creates_nothing(self):
        r = self.kubectl("create", "-f", "-", stdin=BAD, ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('The BoilerhouseWorkload "bad" is invalid: spec.resources.vcpus: '
                      'Invalid value: -1', r.stderr)
        r = self.kubectl("get", "bhw", "bad", ok=False)
        self.assertIn('boilerhouseworkloads.boilerhouse.dev "bad" not found', r.stderr)

    def test_06_secret_write_only(self):
        self.assertIn("secret/anthropic-api created",
                      self.out("create", "secret", "generic", "anthropic-api",
                               "--from-literal=key=sk-test-value", "-n", "boilerhouse"))
        self.assertIn("anthropic-api", self.out("get", "secret"))
        yaml = self.out("get", "secret", "anthropic-api", "-o", "yaml")
        self.assertIn("key:", yaml)
        self.assertNotIn("sk-test-value", yaml)
        self.assertNotIn("c2stdGVzdC12YWx1ZQ", yaml)  # base64 of the value
        status, body = self.d.request("GET", "/api/v1/secrets")
        self.assertEqual(status, 200)
        self.assertIn("anthropic-api", [s["name"] for s in body])

    def test_07_label_annotate_patch_conflict(self):
        self.assertIn("labeled", self.out("label", "bhw", "httpserver", "team=a"))
        self.assertIn("httpserver", self.out("get", "bhw", "-l", "team=a"))
        self.assertNotIn("httpserver", self.out("get", "bhw", "-l", "team!=a"))
        self.assertIn("annotated", self.out("annotate", "bhw", "httpserver", "note=x"))
        self.assertIn("patched", self.out("patch", "bhw", "httpserver", "--type=merge", "-p",
                                          '{"metadata":{"labels":{"tier":"web"}}}'))
        self.assertIn("patched", self.out("patch", "bhw", "httpserver", "--type=json", "-p",
                                          '[{"op":"replace","path":"/metadata/labels/tier",'
                                          '"value":"api"}]'))
        self.assertEqual(self.out("get", "bhw", "httpserver", "-o",
                                  "jsonpath={.metadata.labels.tier}"), "api")
        stale = self.out("get", "bhw", "httpserver", "-o", "json")
        self.out("label", "bhw", "httpserver", "fresh=1")
        r = self.kubectl("replace", "-f", "-", stdin=stale, ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Operation cannot be fulfilled", r.stderr)
        self.assertIn("has been modified", r.stderr)

    def test_08_claim_watch_delete(self):
        watch_out = tempfile.TemporaryFile(mode="w+")
        self.addCleanup(watch_out.close)
        watcher = subprocess.Popen([KUBECTL, "get", "bhc", "-w"], stdout=watch_out,
                                   stderr=subprocess.STDOUT, text=True,
                                   env=dict(os.environ, KUBECONFIG=self.kubeconfig))
        try:
            self.assertIn("created", self.out("apply", "-f", "-", stdin=CLAIM))
            self.out("wait", "bhc/claim-alice-httpserver", "--for=jsonpath={.status.phase}=Active",
                     "--timeout=60s")
            host = self.out("get", "bhc", "claim-alice-httpserver", "-o",
                            "jsonpath={.status.endpoint.host}")
            self.assertEqual(http_get("http://%s:8080/" % host)[0], 200)
            # REST claims of the same pair find kubectl's claim: one instance per pair.
            status, body = self.d.request("POST", "/api/v1/tenants/alice/claim",
                                          {"workload": "httpserver"})
            self.assertEqual(status, 200, body)
            self.assertEqual(body["source"], "existing")
            self.assertEqual(body["endpoint"]["host"], host)
            status, body = self.d.request("POST", "/api/v1/tenants/bob/claim",
                                          {"workload": "httpserver"})
            self.assertEqual(status, 201, body)
            self.assertIn("claim-alice-httpserver", self.out("get", "bhc"))
            r = self.kubectl("create", "-f", "-", stdin=CLAIM.replace(
                "claim-alice-httpserver", "another-alice"), ok=False)
            self.assertIn("already has a claim", r.stderr)
            self.assertIn("deleted", self.out("delete", "bhc", "claim-alice-httpserver",
                                              "--timeout=90s"))
            self.assertNotIn("claim-alice-httpserver", self.out("get", "bhc"))
            status, _ = self.d.request("POST", "/api/v1/tenants/bob/release",
                                       {"workload": "httpserver"})
            self.assertEqual(status, 200)
            self.out("wait", "bhc", "--all", "--for=delete", "--timeout=60s")
        finally:
            watcher.terminate()
            watcher.wait()
        watch_out.seek(0)
        lines = watch_out.read()
        self.assertRegex(lines, r"claim-alice-httpserver\s+alice\s+httpserver\s+Active")
        self.assertRegex(lines, r"\s+bob\s+httpserver\s+")

    def test_09_errors(self):
        r = self.kubectl("get", "bhw", "nope", ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('Error from server (NotFound): boilerhouseworkloads.boilerhouse.dev "nope" '
                      'not found', r.stderr)
        r = self.kubectl("get", "bhw", "-l", "a in (b)", ok=False)
        self.assertIn("set-based selectors are not supported", r.stderr)
        self.assertIn("No resources found in default namespace",
                      self.kubectl("get", "bhw", "-n", "default").stderr)
        self.assertIn("boilerhouse", self.out("get", "ns"))


if __name__ == "__main__":
    unittest.main()
