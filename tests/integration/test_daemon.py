"""The daemon end to end: real containers under the OCI runtime, real HTTP to them."""
import os
import shutil
import subprocess
import threading
import unittest

from bh import BINARY, Daemon, DaemonTestCase, http_get, path_without, read_manifest, wait_for


class ClaimTest(DaemonTestCase):
    MANIFESTS = ("httpserver.yaml", "sleeper.yaml")

    def claim_ok(self, tenant, workload, expect_status=201):
        status, body = self.d.claim(tenant, workload)
        self.assertEqual(status, expect_status, (body, self.d.log()))
        self.assertEqual(body["phase"], "Active", body)
        self.assertEqual(body["tenantId"], tenant)
        self.assertEqual(body["workload"], workload)
        self.assertIn("latencyMs", body)
        return body

    def claim_in(self, tenant, phase):
        """The tenant's (only) claim if it is in phase, else None."""
        claim = self.d.request("GET", "/api/v1/tenants/" + tenant)[1]["claims"][0]
        return claim if claim["phase"] == phase else None

    def test_two_tenants_get_own_reachable_instances_and_release_removes_them(self):
        a = self.claim_ok("alice", "httpserver")
        b = self.claim_ok("bob", "httpserver")
        self.assertEqual(a["source"], "cold")
        self.assertNotEqual(a["instanceId"], b["instanceId"])
        self.assertNotEqual(a["endpoint"]["host"], b["endpoint"]["host"])
        for c in (a, b):
            ep = c["endpoint"]
            self.assertEqual(ep["port"], 8080)
            status, page = http_get("http://%s:%d/" % (ep["host"], ep["port"]))
            self.assertEqual(status, 200)
            self.assertIn("boilerhouse busybox httpd", page)
        self.assertIn("bh-" + a["instanceId"], self.d.containers())

        again = self.claim_ok("alice", "httpserver", expect_status=200)
        self.assertEqual(again["source"], "existing")
        self.assertEqual(again["instanceId"], a["instanceId"])

        status, tenant = self.d.request("GET", "/api/v1/tenants/alice")
        self.assertEqual(status, 200)
        self.assertEqual(tenant["claims"][0]["instanceId"], a["instanceId"])
        status, inst = self.d.request("GET", "/api/v1/instances/" + a["instanceId"])
        self.assertEqual((status, inst["phase"], inst["tenantId"]), (200, "Running", "alice"))

        for t in ("alice", "bob"):
            status, body = self.d.release(t, "httpserver")
            self.assertEqual(status, 200, body)
            self.assertEqual(body["status"], "released")
        ids = self.d.containers()
        self.assertNotIn("bh-" + a["instanceId"], ids)
        self.assertNotIn("bh-" + b["instanceId"], ids)
        self.assertFalse(os.path.exists(os.path.join(self.d.state, "instances", a["instanceId"])))
        self.assertEqual([m for m in self.d.mounts() if a["instanceId"] in m], [])
        with self.assertRaises(OSError):
            http_get("http://%s:8080/" % a["endpoint"]["host"], timeout=1)
        self.assertEqual(self.d.release("alice", "httpserver")[0], 404)

    def test_concurrent_claims_for_one_tenant_yield_one_instance(self):
        results = []

        def claim():
            results.append(self.d.claim("carol", "httpserver"))

        threads = [threading.Thread(target=claim) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ids = {body["instanceId"] for status, body in results}
        self.assertEqual(len(ids), 1, results)
        self.assertTrue(all(s in (200, 201) for s, _ in results), results)
        status, insts = self.d.request("GET", "/api/v1/instances")
        self.assertEqual([i["id"] for i in insts if i.get("tenantId") == "carol"], list(ids))
        self.assertEqual(self.d.release("carol", "httpserver")[0], 200)

    def test_no_network_instance_gets_a_socket_dir_and_runs_unprivileged(self):
        c = self.claim_ok("dave", "sleeper")
        sock = c["endpoint"]["socket"]
        self.assertTrue(os.path.isdir(sock))
        iid = c["instanceId"]
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["sh", "-c", "id -u; echo hi > /run/boilerhouse/f; cat /proc/net/dev"]})
        self.assertEqual(status, 200, out)
        self.assertEqual(out["exitCode"], 0, out)
        lines = out["stdout"].splitlines()
        self.assertEqual(lines[0], "0")  # root inside the container ...
        self.assertNotIn("eth0", out["stdout"])  # ... with loopback only
        with open(os.path.join(sock, "f")) as f:
            self.assertEqual(f.read(), "hi\n")
        # ... but an unprivileged user on the host.
        st = os.stat(os.path.join(sock, "f"))
        self.assertNotEqual(st.st_uid, 0)
        status, logs = self.d.request("GET", "/api/v1/instances/%s/logs?tail=5" % iid)
        self.assertEqual(status, 200)
        self.assertIn("sleeper ready", logs)
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["sh", "-c", "echo x > /proc/sys/kernel/hostname"]})
        self.assertNotEqual(out["exitCode"], 0)
        status, body = self.d.request("POST", "/api/v1/instances/%s/destroy" % iid)
        self.assertEqual((status, body["status"]), (200, "destroyed"))
        self.assertNotIn("bh-" + iid, self.d.containers())
        claim = wait_for(lambda: self.claim_in("dave", "Error"), what="dave's claim in Error")
        self.assertEqual(claim["phase"], "Error")
        self.assertIn("no longer running", claim["detail"])
        # Claiming again boots a fresh instance.
        again = self.claim_ok("dave", "sleeper")
        self.assertNotEqual(again["instanceId"], iid)
        self.assertEqual(self.d.release("dave", "sleeper")[0], 200)

    def test_dockerfile_workload_without_buildah_reports_why(self):
        d = self.d
        if shutil.which("buildah"):
            # Runs everywhere, not skipped where buildah is installed: a daemon of its own
            # whose PATH hides buildah.
            path, shadow = path_without("buildah")
            self.addCleanup(shutil.rmtree, shadow, True)
            d = Daemon(extra_env={"PATH": path})
            self.addCleanup(d.cleanup)
            d.start()
        manifest = read_manifest("examples/minimal.yaml").replace("name: minimal", "name: built")
        name = d.apply_workload(manifest, ready=False)
        body = d.wait_workload(name, "Error")
        self.assertIn("buildah", body["status"]["detail"])
        status, claim = d.claim("henry", "built")
        self.assertEqual(status, 500, claim)
        self.assertIn("not ready", claim["error"])
        self.assertEqual(d.request("DELETE", "/api/v1/workloads/built")[0], 200)

    def test_exec_health_gates_readiness_and_failures_tear_down(self):
        manifest = {
            "name": "checked",
            "spec": {
                "version": "1",
                "image": {"ref": "localhost/busybox:latest"},
                "resources": {"vcpus": 0.5, "memoryMb": 64, "diskGb": 1},
                "health": {"intervalSeconds": 1, "unhealthyThreshold": 2,
                           "exec": {"command": ["test", "-f", "/tmp/ok"]}},
                "entrypoint": {"cmd": "sh",
                               "args": ["-c", "sleep 0.7; touch /tmp/ok; exec sleep 1000"]},
            },
        }
        status, body = self.d.request("POST", "/api/v1/workloads", manifest)
        self.assertEqual(status, 201, body)
        self.d.wait_workload("checked", "Ready")
        c = self.claim_ok("nina", "checked")
        self.assertGreaterEqual(c["latencyMs"], 600)  # not handed out before it was healthy
        self.d.request("POST", "/api/v1/instances/%s/exec" % c["instanceId"],
                       {"command": ["rm", "/tmp/ok"]})
        t = wait_for(lambda: self.claim_in("nina", "Error"), what="nina's claim in Error")
        self.assertEqual(t["phase"], "Error", t)
        self.assertIn("failed 2 health checks", t["detail"])
        self.assertNotIn("bh-" + c["instanceId"], self.d.containers())
        self.assertEqual(self.d.request("DELETE", "/api/v1/workloads/checked")[0], 200)

    def test_stats_and_listing(self):
        status, stats = self.d.request("GET", "/api/v1/stats")
        self.assertEqual(status, 200)
        self.assertIn("byPhase", stats["instances"])
        status, wls = self.d.request("GET", "/api/v1/workloads")
        ready = [w["name"] for w in wls if w["status"]["phase"] == "Ready"]
        self.assertIn("httpserver", ready)
        self.assertIn("sleeper", ready)


class RestartTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.d.apply_workload(read_manifest("httpserver.yaml"))

    def test_kill9_keeps_claims_and_leaves_no_orphans(self):
        a = self.d.claim("erin", "httpserver")[1]
        b = self.d.claim("frank", "httpserver")[1]
        self.assertEqual((a["phase"], b["phase"]), ("Active", "Active"))
        self.d.kill9()
        # Something a crash could leave: a container no record accounts for.
        orphan_dir = os.path.join(self.d.state, "instances", "0123456789ab")
        os.makedirs(os.path.join(orphan_dir, "rootfs"))
        self.d.start()
        for c in (a, b):
            status, body = self.d.claim(c["tenantId"], "httpserver")
            self.assertEqual(status, 200, body)
            self.assertEqual(body["source"], "existing")
            self.assertEqual(body["instanceId"], c["instanceId"])
            self.assertEqual(body["endpoint"], c["endpoint"])
            self.assertEqual(http_get("http://%s:8080/" % c["endpoint"]["host"])[0], 200)
        self.assertFalse(os.path.exists(orphan_dir))
        self.assertEqual(sorted(self.d.containers()),
                         sorted("bh-" + c["instanceId"] for c in (a, b)))

    def test_sigterm_stops_cleanly_and_restart_readopts(self):
        a = self.d.claim("gina", "httpserver")[1]
        self.d.stop()
        self.assertEqual(self.d.proc.returncode, 0, self.d.log())
        self.d.start()
        status, body = self.d.request("GET", "/api/v1/tenants/gina")
        self.assertEqual(body["claims"][0]["phase"], "Active")
        self.assertEqual(http_get("http://%s:8080/" % a["endpoint"]["host"])[0], 200)


class CommandLineTest(unittest.TestCase):
    def run_cli(self, *args, env=None):
        return subprocess.run([BINARY] + list(args), capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, **(env or {})))

    def test_malformed_setting_stops_the_daemon_naming_it(self):
        for env, args, named in (({"BOILERHOUSE_PORT": "abc"}, (), "BOILERHOUSE_PORT"),
                                 ({"BOILERHOUSE_WORKERS": "0"}, (), "BOILERHOUSE_WORKERS"),
                                 ({}, ("--workers", "0"), "--workers 0"),
                                 ({}, ("--claim-timeout", "soon"), "--claim-timeout soon")):
            out = self.run_cli("serve", "--state-dir", "/nonexistent/never-made", *args, env=env)
            self.assertEqual(out.returncode, 2, (env, args, out.stderr))
            self.assertIn(named, out.stderr)
            self.assertFalse(os.path.exists("/nonexistent/never-made"))

    def test_help_lists_every_subcommand_and_setting(self):
        out = self.run_cli("--help")
        self.assertEqual(out.returncode, 0, out.stderr)
        for cmd in ("serve", "image", "secret", "version"):
            self.assertIn("\n  %s " % cmd, out.stdout)
        out = self.run_cli("serve", "--help")
        self.assertEqual(out.returncode, 0, out.stderr)
        for name in ("--state-dir", "--listen", "--workers", "BOILERHOUSE_PORT",
                     "BOILERHOUSE_API_KEY", "BOILERHOUSE_CLAIM_TIMEOUT_SECONDS"):
            self.assertIn(name, out.stdout)


if __name__ == "__main__":
    unittest.main()
