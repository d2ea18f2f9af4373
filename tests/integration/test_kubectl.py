"""kubectl against the Kubernetes-compatible API of local mode: what a user would type, run
with the real kubectl and the generated kubeconfig, asserting on kubectl's own output and exit
codes. Needs kubectl on PATH (scripts/install-deps.sh); without it the test is skipped, and
fails under CI=true."""
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import unittest

from bh import BINARY, SOURCE, DaemonTestCase, http_get, wait_for
from wsclient import WsClient

KUBECTL = shutil.which("kubectl")
# Debian's kubectl 1.20, unpacked by scripts/install-deps.sh: it reads OpenAPI v2 only as
# protobuf, which the current kubectl never asks for.
KUBECTL_OLD = os.environ.get("BH_KUBECTL_OLD",
                             "/var/cache/boilerhouse/kubectl-debian/usr/bin/kubectl")

CLAIM = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseClaim
metadata:
  name: claim-alice-httpserver
spec:
  tenantId: alice
  workloadRef: httpserver
"""

SSA = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: ssa-demo
spec:
  version: "1"
  image: {ref: localhost/busybox:latest}
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: 1}
"""

UNKNOWN = SSA.replace("ssa-demo", "loose").replace('version: "1"', 'version: "1"\n  bogus: 1')

CRED = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: %s
spec:
  version: "1"
  image: {ref: localhost/busybox:latest}
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: 1}
  entrypoint: {cmd: sh, args: ["-c", "exec sleep 2147483647"]}
  network:
    access: restricted
    allowlist: [api.example.test]
    credentials:
      - domain: api.example.test
        headers:
          - name: x-api-key
            valueFrom:
              secretKeyRef: {name: %s, key: key}
"""

DATA = """apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: datakeeper
spec:
  version: "1"
  image: {ref: localhost/busybox:latest}
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: 1}
  filesystem: {overlayDirs: [/data]}
  entrypoint: {cmd: sh, args: ["-c", "echo kept > /data/f; exec sleep 2147483647"]}
"""

DAVE = CLAIM.replace("claim-alice-httpserver", "daves-box").replace("alice", "dave").replace(
    "httpserver", "datakeeper")

# A workload that keeps its tenants' /data; HOLD is a finalizer of the test's own, which keeps
# the deleted workload in view (Terminating) after Boilerhouse's cascade let go of it.
HOLD = "test.boilerhouse.dev/hold"
DOOMED = DATA.replace("name: datakeeper", "name: doomed\n  finalizers: [%s]" % HOLD)


def doomed_claim(tenant):
    return CLAIM.replace("claim-alice-httpserver", "doomed-" + tenant).replace(
        "alice", tenant).replace("httpserver", "doomed")


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

    def kapi(self, method, path, body):
        """A raw request to the Kubernetes-compatible API: (status, headers, text)."""
        ctx = ssl.create_default_context(cafile=os.path.join(self.d.state, "kapi", "ca.crt"))
        conn = http.client.HTTPSConnection("127.0.0.1", self.d.kube_port, context=ctx,
                                           timeout=60)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            return r.status, r.headers, r.read().decode()
        finally:
            conn.close()

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

    def test_03b_server_side_apply(self):
        self.assertIn("ssa-demo serverside-applied",
                      self.out("apply", "--server-side", "-f", "-", stdin=SSA))
        managers = self.out("get", "bhw", "ssa-demo", "-o",
                            "jsonpath={.metadata.managedFields[*].manager}")
        self.assertEqual(managers, "kubectl")
        # Another manager changing kubectl's field: kubectl's own conflict report, no change.
        other = SSA.replace('version: "1"', 'version: "2"')
        r = self.kubectl("apply", "--server-side", "--field-manager=other", "-f", "-",
                         stdin=other, ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn('Apply failed with 1 conflict: conflict with "kubectl" using '
                      'boilerhouse.dev/v1alpha1: .spec.version', r.stderr)
        self.assertIn("--force-conflicts", r.stderr)
        self.assertEqual(self.out("get", "bhw", "ssa-demo", "-o", "jsonpath={.spec.version}"), "1")
        # Forced, the field changes hands.
        self.assertIn("serverside-applied", self.out("apply", "--server-side",
                                                     "--field-manager=other", "--force-conflicts",
                                                     "-f", "-", stdin=other))
        self.assertEqual(self.out("get", "bhw", "ssa-demo", "-o", "jsonpath={.spec.version}"), "2")
        owners = self.out("get", "bhw", "ssa-demo", "-o", "json", "--show-managed-fields")
        fields = {m["manager"]: m["fieldsV1"] for m in
                  json.loads(owners)["metadata"]["managedFields"]}
        self.assertIn("f:version", fields["other"]["f:spec"])
        self.assertNotIn("f:version", fields["kubectl"]["f:spec"])
        # kubectl re-applying without the field leaves other's value alone.
        self.out("apply", "--server-side", "-f", "-",
                 stdin=SSA.replace('  version: "1"\n', ""))
        self.assertEqual(self.out("get", "bhw", "ssa-demo", "-o", "jsonpath={.spec.version}"), "2")
        self.assertIn("deleted", self.out("delete", "bhw", "ssa-demo"))

    def test_03c_field_validation(self):
        r = self.kubectl("create", "--validate=strict", "-f", "-", stdin=UNKNOWN, ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('strict decoding error: unknown field "spec.bogus"', r.stderr)
        self.assertIn("NotFound", self.kubectl("get", "bhw", "loose", ok=False).stderr)
        r = self.kubectl("create", "--validate=warn", "-f", "-", stdin=UNKNOWN)
        self.assertIn('Warning: unknown field "spec.bogus"', r.stderr)
        self.assertIn("loose created", r.stdout)
        self.assertEqual(self.out("get", "bhw", "loose", "-o", "jsonpath={.spec.bogus}"), "")
        self.out("delete", "bhw", "loose")
        r = self.kubectl("create", "--validate=ignore", "-f", "-", stdin=UNKNOWN)
        self.assertNotIn("Warning", r.stderr)
        self.out("delete", "bhw", "loose")
        # Duplicate keys (kubectl's YAML parser refuses them first; a raw JSON client can send
        # them): Strict names the field, Warn keeps the last value and says so.
        body = ('{"apiVersion":"boilerhouse.dev/v1alpha1","kind":"BoilerhouseWorkload",'
                '"metadata":{"name":"twice"},"spec":{"version":"1","version":"2",'
                '"image":{"ref":"localhost/busybox:latest"},'
                '"resources":{"vcpus":0.5,"memoryMb":64,"diskGb":1}}}')
        path = "/apis/boilerhouse.dev/v1alpha1/namespaces/boilerhouse/boilerhouseworkloads"
        status, _, text = self.kapi("POST", path + "?fieldValidation=Strict", body)
        self.assertEqual(status, 400, text)
        self.assertIn('strict decoding error: duplicate field \\"spec.version\\"', text)
        status, headers, text = self.kapi("POST", path + "?fieldValidation=Warn", body)
        self.assertEqual(status, 201, text)
        self.assertIn('duplicate field \\"spec.version\\"', headers.get("Warning", ""))
        self.assertEqual(self.out("get", "bhw", "twice", "-o", "jsonpath={.spec.version}"), "2")
        self.out("delete", "bhw", "twice")

    def test_04_explain(self):
        text = self.out("explain", "bhw.spec.network.access")
        self.assertIn("KIND:       BoilerhouseWorkload", text)
        self.assertIn("FIELD: access <string>", text)
        # Every field has its CRD's description (test_resource checks crds/ has one for each);
        # a sample of each kind, words compared whatever kubectl's wrapping.
        for path, words in (
                ("bhw.spec.network.access", "Network access of each instance: none (loopback"),
                ("bhw.spec.resources.memoryMb", "Memory limit in MiB"),
                ("bhw.spec.network.credentials.headers.valueFrom.tenantSecretKeyRef.key",
                 "The key within the secret."),
                ("bhw.status.phase", "Terminating (being deleted"),
                ("bhp.spec.maxFillConcurrency", "(at least 1; default 2)"),
                ("bhc.spec.resume", "Restore the tenant's snapshot"),
                ("bhc.status.endpoint.port", "The port (spec.network.expose[0].guest"),
                ("bht.spec.tenant.from", "A dotted path into the event's payload"),
                ("bht.spec.guards.type", "The guard plugin")):
            self.assertIn(words, " ".join(self.out("explain", path).split()), path)

    def test_05_invalid_creates_nothing(self):
        r = self.kubectl("create", "-f", "-", stdin=BAD, ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('The BoilerhouseWorkload "bad" is invalid: spec.resources.vcpus: '
                      'Invalid value: -1', r.stderr)
        r = self.kubectl("get", "bhw", "bad", ok=False)
        self.assertIn('boilerhouseworkloads.boilerhouse.dev "bad" not found', r.stderr)
        # A tenant ID that is no Kubernetes label value is refused, naming the rule.
        r = self.kubectl("create", "-f", "-", stdin=CLAIM.replace("tenantId: alice",
                                                                 "tenantId: _x"), ok=False)
        self.assertIn('spec.tenantId: Invalid value: "_x": must be 1-63 characters of '
                      '[A-Za-z0-9._-], beginning and ending with a letter or digit', r.stderr)

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
        # A credential workload resolves the secret kubectl made when its instance starts;
        # one naming a secret nobody made fails that start, naming it.
        self.out("apply", "-f", "-", stdin=CRED % ("cred", "anthropic-api"))
        self.out("apply", "-f", "-", stdin=CRED % ("nocred", "missing-api"))
        for wl in ("cred", "nocred"):
            self.out("wait", "bhw/" + wl, "--for=jsonpath={.status.phase}=Ready",
                     "--timeout=60s")
        status, body = self.d.request("POST", "/api/v1/tenants/erin/claim", {"workload": "cred"})
        self.assertEqual(status, 201, body)
        status, body = self.d.request("POST", "/api/v1/tenants/erin/claim",
                                      {"workload": "nocred"})
        self.assertGreaterEqual(status, 400, body)
        self.assertIn("missing-api", json.dumps(body))
        for wl in ("cred", "nocred"):
            self.d.request("POST", "/api/v1/tenants/erin/release/force", {"workload": wl})
            self.out("delete", "bhw", wl, "--timeout=90s")

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
            described = self.out("describe", "bhc", "claim-alice-httpserver")
            self.assertRegex(described, r"Events:\s+Type\s+Reason\s+Age\s+From\s+Message")
            self.assertRegex(described, r"Normal\s+Active\s+\S+\s+boilerhouse\s+Active: "
                                        r"instance \S+ from (cold|pool|restore|existing) in \d+ ms")
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
            # REST names its claims as documented; repeats aggregate into one event.
            self.assertRegex(self.out("get", "bhc"), r"claim-bob-httpserver\s+bob\s+httpserver")
            status, body = self.d.request("POST", "/api/v1/tenants/alice/claim",
                                          {"workload": "httpserver"})
            self.assertEqual(body["source"], "existing")
            # A claim kubectl made under any name is the pair's claim for REST too; deleting
            # it releases it, hibernating its data first, and its events say so.
            self.out("apply", "-f", "-", stdin=DATA)
            self.out("wait", "bhw/datakeeper", "--for=jsonpath={.status.phase}=Ready",
                     "--timeout=60s")
            self.out("apply", "-f", "-", stdin=DAVE)
            self.out("wait", "bhc/daves-box", "--for=jsonpath={.status.phase}=Active",
                     "--timeout=60s")
            status, body = self.d.request("POST", "/api/v1/tenants/dave/keepalive",
                                          {"workload": "datakeeper"})
            self.assertEqual(status, 200, body)
            status, body = self.d.request("POST", "/api/v1/tenants/dave/claim",
                                          {"workload": "datakeeper"})
            self.assertEqual((status, body["source"]), (200, "existing"), body)
            self.assertNotIn("claim-dave-datakeeper", self.out("get", "bhc"))
            self.assertIn("deleted", self.out("delete", "bhc", "daves-box", "--timeout=90s"))
            events = self.out("get", "events", "--field-selector=involvedObject.name=daves-box")
            self.assertRegex(events, r"Normal\s+Hibernated\s+daves-box\s+tenant dave: \d+ bytes")
            self.assertRegex(events, r"Normal\s+Released\s+daves-box\s+released \(normal\)")
            self.out("delete", "bhw", "datakeeper")
            r = self.kubectl("create", "-f", "-", stdin=CLAIM.replace(
                "claim-alice-httpserver", "another-alice"), ok=False)
            self.assertIn("already has a claim", r.stderr)
            self.assertIn("deleted", self.out("delete", "bhc", "claim-alice-httpserver",
                                              "--timeout=90s"))
            self.assertNotIn("claim-alice-httpserver", self.out("get", "bhc"))
            events = self.out("get", "events",
                              "--field-selector=involvedObject.name=claim-alice-httpserver")
            self.assertRegex(events, r"Normal\s+Released\s+claim-alice-httpserver")
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

    def test_08c_delete_workload_cascades(self):
        """delete bhw with two live claims: the workload turns Terminating and takes no new
        claim; both claims are released (saved) and kept Released; only then does its
        finalizer go; kubectl wait --for=delete sees it gone."""
        self.out("apply", "-f", "-", stdin=DOOMED)
        self.out("wait", "bhw/doomed", "--for=jsonpath={.status.phase}=Ready", "--timeout=60s")
        self.assertEqual(self.out("get", "bhw", "doomed", "-o",
                                  "jsonpath={.metadata.finalizers[*]}"),
                         HOLD + " boilerhouse.dev/cleanup")
        for t in ("gus", "hal"):
            self.out("apply", "-f", "-", stdin=doomed_claim(t))
        for t in ("gus", "hal"):
            self.out("wait", "bhc/doomed-" + t, "--for=jsonpath={.status.phase}=Active",
                     "--timeout=60s")
        released = 'boilerhouse_releases_total{variant="workload-deleted"}'
        before = self.metric(released)
        ws = WsClient(self.d.port, "/ws?types=tenant.released&workload=doomed")
        self.addCleanup(ws.close)
        self.assertEqual(ws.recv()["type"], "hello")
        self.assertIn("deleted", self.out("delete", "bhw", "doomed", "--wait=false"))
        self.assertRegex(self.out("get", "bhw", "doomed"), r"doomed\s+Terminating\s")
        # No new claim, through either door.
        r = self.kubectl("create", "-f", "-", stdin=doomed_claim("ivy"), ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Error from server (Conflict)", r.stderr)
        self.assertIn("workload doomed is being deleted: it takes no new claims", r.stderr)
        status, body = self.d.request("POST", "/api/v1/tenants/ivy/claim", {"workload": "doomed"})
        self.assertEqual(status, 409, body)
        self.assertIn("being deleted", body["error"])
        # Boilerhouse lets go (its finalizer leaves) only once both claims are Released, saved.
        wait_for(lambda: self.out("get", "bhw", "doomed", "-o",
                                  "jsonpath={.metadata.finalizers[*]}") == HOLD,
                 what="the cascade to finish")
        for t in ("gus", "hal"):
            self.assertEqual(self.out("get", "bhc", "doomed-" + t, "-o",
                                      "jsonpath={.status.phase} {.status.releaseReason}"),
                             "Released workload-deleted")
            # Told as its own variant, not as an idle release: event, /ws and metric.
            wait_for(lambda: re.search(r"Normal\s+Released\s+\S+\s+boilerhouse\s+"
                                       r"released \(workload-deleted\)",
                                       self.out("describe", "bhc", "doomed-" + t)),
                     what="doomed-%s's Released (workload-deleted) event" % t)
        variants = {}
        while len(variants) < 2:
            m, _ = ws.recv_until(lambda m: m["type"] == "tenant.released", what="a release")
            variants[m["tenant"]] = m["variant"]
        self.assertEqual(variants, {"gus": "workload-deleted", "hal": "workload-deleted"})
        wait_for(lambda: self.metric(released) - before >= 2, what="the releases' metric")
        self.assertEqual(self.metric(released) - before, 2)
        status, snaps = self.d.request("GET", "/api/v1/workloads/doomed/snapshots")
        self.assertEqual(status, 200, snaps)
        self.assertEqual(sorted(s["tenantId"] for s in snaps), ["gus", "hal"])
        self.assertNotIn("ivy", self.out("get", "bhc"))
        self.assertRegex(self.out("get", "bhw", "doomed"), r"doomed\s+Terminating\s")
        # Our finalizer gone, the test's own is the last: removing it lets the object go.
        self.out("patch", "bhw", "doomed", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        self.out("wait", "bhw/doomed", "--for=delete", "--timeout=60s")
        for t in ("gus", "hal"):
            self.out("delete", "bhc", "doomed-" + t, "--timeout=60s")

    def test_08d_rest_delete_workload_cascades(self):
        """The same cascade through REST's DELETE, which answers once the workload is gone;
        kubectl's default delete waits for it too."""
        for name in ("rest-doomed", "kube-doomed"):
            self.out("apply", "-f", "-", stdin=DATA.replace("datakeeper", name))
            self.out("wait", "bhw/" + name, "--for=jsonpath={.status.phase}=Ready",
                     "--timeout=60s")
            status, body = self.d.request("POST", "/api/v1/tenants/jo/claim", {"workload": name})
            self.assertEqual(status, 201, body)
        status, body = self.d.request("DELETE", "/api/v1/workloads/rest-doomed")
        self.assertEqual((status, body), (200, {"status": "deleted"}))
        self.assertIn("deleted", self.out("delete", "bhw", "kube-doomed", "--timeout=90s"))
        for name in ("rest-doomed", "kube-doomed"):
            self.assertIn("NotFound", self.kubectl("get", "bhw", name, ok=False).stderr)
            claim = "claim-jo-" + name
            self.assertEqual(self.out("get", "bhc", claim, "-o", "jsonpath={.status.phase}"),
                             "Released")
            status, snaps = self.d.request("GET", "/api/v1/workloads/%s/snapshots" % name)
            self.assertEqual([s["tenantId"] for s in snaps], ["jo"], snaps)
            self.out("delete", "bhc", claim, "--timeout=60s")

    def metric(self, series):
        status, text = self.d.request("GET", "/metrics")
        self.assertEqual(status, 200, text)
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[1])
        raise AssertionError("no %s in /metrics" % series)

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


    def test_10_debian_kubectl_1_20(self):
        """Debian's kubectl 1.20 downloads OpenAPI v2 as protobuf for explain and for the
        client-side validation of every apply; with a JSON answer both failed."""
        if not os.access(KUBECTL_OLD, os.X_OK):
            self.skipTest("no %s (scripts/install-deps.sh unpacks it)" % KUBECTL_OLD)
        env = dict(os.environ, KUBECONFIG=self.kubeconfig)

        def old(*args, stdin=None):
            r = subprocess.run([KUBECTL_OLD, *args], input=stdin, capture_output=True,
                               text=True, cwd=SOURCE, timeout=120, env=env)
            self.assertEqual(r.returncode, 0, "kubectl 1.20 %s:\n%s%s" % (
                " ".join(args), r.stdout, r.stderr))
            return r.stdout

        text = " ".join(old("explain", "bhw.spec.resources.memoryMb").split())
        self.assertIn("FIELD: memoryMb <integer>", text)
        self.assertIn("Memory limit in MiB", text)
        wl = DATA.replace("datakeeper", "old-client")
        self.assertIn("old-client created", old("apply", "-f", "-", stdin=wl))
        self.assertIn("old-client unchanged", old("apply", "-f", "-", stdin=wl))
        self.assertIn("old-client", old("get", "bhw"))
        # its get -w prints every event of a watch as a row, although the server sends the
        # columns in the watch's first Table only (as the API server does)
        watch_out = tempfile.TemporaryFile(mode="w+")
        self.addCleanup(watch_out.close)
        watcher = subprocess.Popen([KUBECTL_OLD, "get", "bhw", "old-client", "-w"],
                                   stdout=watch_out, stderr=subprocess.STDOUT, text=True, env=env)
        try:
            def rows():
                watch_out.seek(0)
                return watch_out.read()
            wait_for(lambda: "old-client" in rows(), what="kubectl 1.20's first row")
            for i in range(3):
                old("annotate", "--overwrite", "bhw", "old-client", "bench=%d" % i)
            wait_for(lambda: len(re.findall(r"(?m)^old-client\s", rows())) >= 4,
                     what="kubectl 1.20 printing each watch event as a row")
        finally:
            watcher.terminate()
            watcher.wait()
        self.assertEqual(len(re.findall(r"(?m)^NAME\s", rows())), 1, rows())
        # its client-side validation knows the schema: an unknown field is refused before
        # anything is sent
        r = subprocess.run([KUBECTL_OLD, "apply", "-f", "-"], capture_output=True, text=True,
                           input=wl.replace("  version:", "  bogus: 1\n  version:"), env=env,
                           timeout=120)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('unknown field "bogus"', r.stderr)
        old("delete", "bhw", "old-client")


if __name__ == "__main__":
    unittest.main()
