"""Bad input gets a clear 4xx naming the problem and changes nothing; auth; plugin refusal."""
import os
import shutil
import subprocess
import tempfile
import unittest

from bh import BUILD, Daemon, DaemonTestCase, read_manifest
from wsclient import WsClient


class BadInputTest(DaemonTestCase):
    MANIFESTS = ("sleeper.yaml",)

    def snapshot(self):
        return (self.d.request("GET", "/api/v1/workloads")[1],
                self.d.request("GET", "/api/v1/tenants")[1],
                self.d.request("GET", "/api/v1/instances")[1])

    def assertRejected(self, status, body, code, *words):
        self.assertEqual(status, code, body)
        self.assertIsInstance(body, dict, body)
        for w in words:
            self.assertIn(w, body["error"])

    def test_malformed_and_invalid_workloads_change_nothing(self):
        before = self.snapshot()
        cases = [
            (b'{"name": "x", "spec": {', 400, ["invalid request body"]),
            (b"name: [unclosed\nspec: {}\n", 400, ["line"]),
            (b"", 400, ["empty"]),
            (b'{"name": "w1", "spec": {}, "extra": 1}', 400, ["extra", "unknown field"]),
            (b'{"name": "w1", "spec": {"version": "1", "image": {"ref": "a"}, '
             b'"resources": {"vcpus": 1, "memoryMb": 64, "diskGb": 1}, "bogus": true}}',
             400, ["spec.bogus", "unknown field"]),
            (b'{"name": "w1", "spec": {"version": "1", "image": {"ref": "a"}, '
             b'"resources": {"vcpus": 0, "memoryMb": 64, "diskGb": 1}}}',
             400, ["spec.resources.vcpus"]),
            (b'{"name": "w1", "spec": {"version": "1", "image": {"ref": "a", "dockerfile": "b"}, '
             b'"resources": {"vcpus": 1, "memoryMb": 64, "diskGb": 1}}}',
             400, ["spec.image"]),
            (b'{"name": "Bad_Name", "spec": {"version": "1", "image": {"ref": "a"}, '
             b'"resources": {"vcpus": 1, "memoryMb": 64, "diskGb": 1}}}',
             400, ["metadata.name"]),
            (b'{"name": "w1", "spec": {"version": "1", "image": {"ref": "a"}, '
             b'"resources": {"vcpus": 1, "memoryMb": 64, "diskGb": 1}, '
             b'"network": {"access": "everything"}}}',
             400, ["spec.network.access"]),
        ]
        for raw, code, words in cases:
            status, body = self.d.request("POST", "/api/v1/workloads", raw=raw)
            self.assertRejected(status, body, code, *words)
        self.assertEqual(self.snapshot(), before)

    def test_bad_query_values_name_the_parameter(self):
        cases = [
            ("/api/v1/audit?limit=5abc", "limit", "not an integer"),
            ("/api/v1/audit?limit=0", "limit", "from 1 to 10000"),
            ("/api/v1/audit?limit=99999999999999999999", "limit", "from 1 to 10000"),
            ("/api/v1/audit?since=yesterday", "since", "RFC 3339"),
            ("/api/v1/audit?since=2026-12-02T05:00:00%2B01:00", "since", "RFC 3339"),
            ("/api/v1/workloads/sleeper/logs?tail=-1", "tail", "from 1"),
            ("/api/v1/workloads/sleeper/logs?tail=%2010", "tail", "not an integer"),
        ]
        for path, param, words in cases:
            status, body = self.d.request("GET", path)
            self.assertRejected(status, body, 400, param + ":", words)
        status, body = self.d.request("GET", "/api/v1/audit?limit=2&since=2026-01-01T00:00:00.5Z")
        self.assertEqual(status, 200, body)
        ws = WsClient(self.d.port, "/ws?since=12x")
        self.assertEqual(ws.status, 400)
        body = ws.body
        while b"}" not in body:  # the JSON body may follow the head in a later segment
            chunk = ws.sock.recv(4096)
            if not chunk:
                break
            body += chunk
        ws.sock.close()
        self.assertIn(b"since:", body)

    def test_duplicate_workload_is_a_conflict(self):
        status, body = self.d.request("POST", "/api/v1/workloads", raw=read_manifest("sleeper.yaml"))
        self.assertRejected(status, body, 409, "already exists")

    def test_invalid_tenant_ids_are_refused_before_anything_happens(self):
        before = self.snapshot()
        # Not Kubernetes label values (the boilerhouse.dev/tenant label): "-", "-a", "a.", "_x".
        bad = ["..", ".", "a" * 64, "a%3Bb", "%24(id)", "a%20b", "x%2F..%2Fy", "%00", "-", "-a",
               "a.", "_x"]
        for t in bad:
            status, body = self.d.raw_request("POST", "/api/v1/tenants/%s/claim" % t,
                                              b'{"workload":"sleeper"}')
            self.assertRejected(status, body, 400, "invalid tenant id")
        status, body = self.d.raw_request("POST", "/api/v1/tenants/../x/claim",
                                          b'{"workload":"sleeper"}')
        self.assertRejected(status, body, 400, "invalid tenant id")
        status, body = self.d.raw_request("POST", "/api/v1/tenants//claim",
                                          b'{"workload":"sleeper"}')
        self.assertRejected(status, body, 400, "invalid tenant id")
        self.assertEqual(self.snapshot(), before)
        self.assertEqual(os.listdir(os.path.join(self.d.state, "instances"))
                         if os.path.isdir(os.path.join(self.d.state, "instances")) else [], [])

    def test_bad_claim_bodies(self):
        before = self.snapshot()
        status, body = self.d.request("POST", "/api/v1/tenants/ok/claim", raw=b'{"workload": 3}')
        self.assertRejected(status, body, 400, "workload")
        status, body = self.d.request("POST", "/api/v1/tenants/ok/claim", raw=b'{"wl": "x"}')
        self.assertRejected(status, body, 400, "wl", "unknown field")
        status, body = self.d.request("POST", "/api/v1/tenants/ok/claim", {"workload": "nope"})
        self.assertRejected(status, body, 404, "nope")
        self.assertEqual(self.snapshot(), before)

    def test_oversized_body_is_413(self):
        before = self.snapshot()
        big = b'{"name": "' + b"a" * (2 << 20) + b'"}'
        status, body = self.d.request("POST", "/api/v1/workloads", raw=big)
        self.assertRejected(status, body, 413, "exceeds")
        self.assertEqual(self.snapshot(), before)

    def test_unknown_route_and_method(self):
        self.assertEqual(self.d.request("GET", "/api/v1/nothing")[0], 404)
        self.assertEqual(self.d.request("DELETE", "/api/v1/health")[0], 405)
        self.assertEqual(self.d.request("GET", "/api/v1/instances/abc/logs")[0], 404)
        deep = "/api/v1/tenants/" + "/".join(["a"] * 80) + "/claim"
        self.assertEqual(self.d.raw_request("POST", deep, b'{"workload":"sleeper"}')[0], 404)
        long_path = "/api/v1/tenants/" + "b" * 3000 + "/claim"
        self.assertEqual(self.d.raw_request("POST", long_path, b'{"workload":"sleeper"}')[0], 404)


class AuthTest(unittest.TestCase):
    def test_bearer_key_guards_everything_but_health(self):
        d = Daemon(api_key="s3cret-key")
        self.addCleanup(d.cleanup)
        d.start()
        d.api_key = None
        self.assertEqual(d.request("GET", "/api/v1/health")[0], 200)
        status, body = d.request("GET", "/api/v1/workloads")
        self.assertEqual(status, 401)
        self.assertIn("bearer", body["error"])
        status, _ = d.request("GET", "/api/v1/workloads", headers={"Authorization": "Bearer nope"})
        self.assertEqual(status, 401)
        status, _ = d.request("GET", "/api/v1/workloads",
                              headers={"Authorization": "Bearer s3cret-key"})
        self.assertEqual(status, 200)

    def test_refuses_non_loopback_without_key(self):
        d = Daemon()
        self.addCleanup(d.cleanup)
        log = open(d.log_path, "a")
        p = subprocess.run([os.path.join(BUILD, "boilerhouse"), "serve", "--state-dir", d.state,
                            "--listen", "0.0.0.0:%d" % d.port,
                            "--plugin-dir", d.plugin_dir, "--plugin-config", d.plugin_config],
                           stdout=log, stderr=log, timeout=30)
        log.close()
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("without an API key", d.log())


class PluginRefusalTest(unittest.TestCase):
    def test_bad_abi_plugin_is_refused_and_daemon_still_starts(self):
        pdir = tempfile.mkdtemp(prefix="bh-plugins-")
        self.addCleanup(shutil.rmtree, pdir, True)
        for f in os.listdir(os.path.join(BUILD, "plugins")):
            shutil.copy(os.path.join(BUILD, "plugins", f), pdir)
        bad = os.path.join(BUILD, "tests", "plugins", "bh-network-badabi.so")
        shutil.copy(bad, pdir)
        d = Daemon(plugin_dir=pdir)
        self.addCleanup(d.cleanup)
        d.start()
        self.assertIn("bh-network-badabi.so", d.log())
        self.assertIn("ABI", d.log())
        d.apply_workload(read_manifest("sleeper.yaml"))
        status, body = d.claim("ivy", "sleeper")
        self.assertEqual((status, body["phase"]), (201, "Active"), body)
        self.assertEqual(d.release("ivy", "sleeper")[0], 200)


if __name__ == "__main__":
    unittest.main()
