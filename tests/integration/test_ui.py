"""The dashboard at /ui on the real daemon.

UiFilesTest: the static file handler (redirect, content types, caching headers, no escape
from its directory by '..', encoded dots, hidden files or symlinks, the "not installed"
answer) against a directory the test writes, so it runs without node.

DashboardTest: the built dashboard in real Chromium (Debian's chromium driven by
playwright-core, tests/ui/dashboard.mjs) against the daemon with real runc instances: login,
claim from the form and out of band (live, no reload), the idle bar counting down, release
to hibernated with the snapshot, the instance page, a webhook trigger's event, a daemon
restart (the page reconnects), phone width; the instance page live with no HTTP polling (new
log lines and stats samples arrive over /ws while the browser's request log shows no repeated
GET) and its charts opening with history after a reload; a viewer token (no mutating buttons,
403 on a forced call); and a tenant token (its own claims and instances only, live, 403
outside its tenant, no event of another tenant on its stream). Screenshots go to
<build>/test-artifacts/ui/."""
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from bh import BUILD, SOURCE, Daemon, DaemonTestCase, require, wait_for
from test_observe import NOTES  # a busybox workload with an overlay dir, network none

KEY = "ui-test-admin-key"
HOOK_SECRET = "ui-hook-secret"
ARTIFACTS = os.path.join(BUILD, "test-artifacts", "ui")
NODE_MODULES = os.path.join(BUILD, "ui-node", "node_modules")
CHROMIUM = os.environ.get("BH_CHROMIUM", "/usr/bin/chromium")
WORKLOAD = NOTES % "notes"
POOL = {"name": "notes-pool", "spec": {"workloadRef": "notes", "size": 1}}
TRIGGER = {"name": "uihook", "spec": {
    "type": "webhook", "workloadRef": "notes", "tenant": {"from": "user.login", "prefix": "gh-"},
    "driver": "http", "driverOptions": {"path": "/"},
    "guards": [{"type": "allowlist", "config": {"tenants": ["gh-someone-else"],
                                                "denyMessage": "not on the list"}}],
    "config": {"path": "/hooks/ui", "signature": "github", "secretName": "uihook"}}}


class UiFilesTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = tempfile.mkdtemp(prefix="bh-ui-files-")
        os.makedirs(os.path.join(cls.root, "assets"))
        with open(os.path.join(cls.root, "index.html"), "w") as f:
            f.write("<!doctype html><title>t</title>")
        with open(os.path.join(cls.root, "assets", "app-ABC123.js"), "w") as f:
            f.write("console.log(1)")
        with open(os.path.join(cls.root, ".secret"), "w") as f:
            f.write("hidden")
        os.symlink("/etc/passwd", os.path.join(cls.root, "leak.txt"))
        cls.empty = tempfile.mkdtemp(prefix="bh-ui-empty-")
        cls.DAEMON_KW = {"api_key": KEY, "extra_env": {"BOILERHOUSE_UI_DIR": cls.root}}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.root, ignore_errors=True)
        shutil.rmtree(cls.empty, ignore_errors=True)

    def head_of(self, path, method="GET"):
        """(status, headers dict with lower-case names, body) of a request sent exactly as
        given (no client-side normalisation of '..') and without the API key."""
        raw = self.d.raw_exchange(method, path, auth=False)
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split()[1]), headers, body

    def test_page_and_assets(self):
        status, h, _ = self.head_of("/ui")
        self.assertEqual(status, 301)
        self.assertEqual(h["location"], "/ui/")
        status, h, body = self.head_of("/ui/")
        self.assertEqual(status, 200, body)
        self.assertEqual(h["content-type"], "text/html; charset=utf-8")
        self.assertEqual(h["cache-control"], "no-cache")
        self.assertIn("default-src 'self'", h["content-security-policy"])
        self.assertEqual(h["x-content-type-options"], "nosniff")
        self.assertIn(b"<title>t</title>", body)
        status, h, body = self.head_of("/ui/assets/app-ABC123.js")
        self.assertEqual(status, 200)
        self.assertEqual(h["content-type"], "text/javascript; charset=utf-8")
        self.assertIn("immutable", h["cache-control"])
        self.assertEqual(body, b"console.log(1)")
        # No key needed for the files; the API they call still wants one.
        self.assertEqual(self.head_of("/api/v1/stats")[0], 401)

    def test_no_escape(self):
        for path in ("/ui/../api/v1/stats", "/ui/%2e%2e/%2e%2e/etc/passwd", "/ui/assets/../../x",
                     "/ui/./index.html", "/ui//etc/passwd", "/ui/.secret", "/ui/assets/%2e%2e",
                     "/ui/a\\..\\b"):
            status, _, body = self.head_of(path)
            self.assertEqual(status, 400, (path, body))
            self.assertNotIn(b"root:", body)
        # A symlink under the root resolves inside it (/etc/passwd there does not exist).
        status, _, body = self.head_of("/ui/leak.txt")
        self.assertEqual(status, 404, body)
        self.assertNotIn(b"root:", body)
        self.assertEqual(self.head_of("/ui/assets")[0], 404)  # a directory is not a file
        self.assertEqual(self.head_of("/ui/missing.js")[0], 404)
        self.assertEqual(self.head_of("/ui/", "POST")[0], 405)

    def test_not_installed(self):
        other = Daemon(api_key=KEY, extra_env={"BOILERHOUSE_UI_DIR": self.empty})
        try:
            other.start()
            status, body = other.request("GET", "/ui/")
            self.assertEqual(status, 404)
            self.assertIn("dashboard is not installed", body)
            self.assertEqual(other.request("GET", "/api/v1/health")[0], 200)
        finally:
            other.cleanup()


def github_sig(body):
    return "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


class DashboardTest(DaemonTestCase):
    MANIFEST_TEXTS = (WORKLOAD,)
    DAEMON_KW = {"api_key": KEY}

    @classmethod
    def setUpClass(cls):
        require(os.path.exists(os.path.join(BUILD, "ui", "index.html")),
                "the dashboard is not built (needs node and npm at configure time)")
        require(os.path.isdir(os.path.join(NODE_MODULES, "playwright-core")),
                "playwright-core is not installed in %s" % NODE_MODULES)
        require(os.access(CHROMIUM, os.X_OK), "no chromium at %s (scripts/install-deps.sh)" % CHROMIUM)
        require(shutil.which("node"), "no node")
        super().setUpClass()
        os.makedirs(ARTIFACTS, exist_ok=True)
        try:
            cls.d.put_secret("uihook", "secret", HOOK_SECRET)
            for path, body in (("/api/v1/pools", POOL), ("/api/v1/triggers", TRIGGER)):
                status, out = cls.d.request("POST", path, body)
                assert status == 201, (path, status, out)
            wait_for(lambda: cls.d.request("GET", "/api/v1/triggers/uihook")[1]
                     .get("status", {}).get("phase") == "Active", what="trigger Active")
            wait_for(lambda: cls.d.request("GET", "/api/v1/pools/notes-pool")[1]
                     .get("status", {}).get("ready", 0) >= 1, what="a ready pool instance")
        except Exception:
            cls.d.cleanup()
            raise

    # ---- what the browser asks for ----

    def claim(self, tenant):
        status, body = self.d.claim(tenant, "notes")
        assert status in (200, 201), (status, body)

    def webhook(self):
        body = json.dumps({"user": {"login": "stranger"}, "text": "hi"}).encode()
        status, reply = self.d.request("POST", "/hooks/ui", raw=body,
                                       headers={"X-Hub-Signature-256": github_sig(body)})
        assert status == 403, (status, reply)  # the allowlist guard denies: verdict "deny"

    def say(self, iid, text):
        """A line in the instance's log, written from inside it (NOTES echoes /tmp/say)."""
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["sh", "-c", "echo %s > /tmp/say" % text]})
        assert status == 200 and out["exitCode"] == 0, (status, out)

    def restart(self):
        self.d.stop()
        self.d.start()

    def answer(self, line):
        what = line.split()[1:]
        if what[0] == "claim":
            self.claim(what[1])
        elif what[0] == "webhook":
            self.webhook()
        elif what[0] == "restart":
            self.restart()
        elif what[0] == "say":
            self.say(what[1], what[2])
        elif what[0] == "say-tenant":
            status, t = self.d.request("GET", "/api/v1/tenants/" + what[1])
            assert status == 200, (status, t)
            self.say(t["claims"][0]["instanceId"], what[2])
        else:
            raise AssertionError("unknown request %r" % line)

    def drive(self, mode, viewer=None, **more):
        """Runs tests/ui/dashboard.mjs in mode, answering its requests; returns its output."""
        cfg = {"base": "http://127.0.0.1:%d" % self.d.port, "key": KEY, "viewer": viewer,
               "mode": mode, "artifacts": ARTIFACTS, "workload": "notes", "chromium": CHROMIUM,
               "nodeModules": NODE_MODULES, **more}
        proc = subprocess.Popen(["node", os.path.join(SOURCE, "tests", "ui", "dashboard.mjs")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=dict(os.environ, BH_UI_TEST=json.dumps(cfg)))
        # A hung browser must not hang the test: the whole run has a deadline.
        timer = threading.Timer(420, proc.kill)
        timer.start()
        out = []
        try:
            for line in proc.stdout:
                out.append(line)
                print("  [%s] %s" % (mode, line.rstrip()), flush=True)
                if line.startswith("REQUEST "):
                    try:
                        self.answer(line.strip())
                        reply = "ok"
                    except Exception as e:  # the browser side reports it and fails
                        reply = "error %s" % str(e).replace("\n", " ")[:300]
                    proc.stdin.write(reply + "\n")
                    proc.stdin.flush()
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = "".join(out)
        self.assertEqual(rc, 0, "browser run failed:\n%s\n%s" % (text[-4000:], self.d.log()))
        self.assertIn("STEP done", text)
        return text

    def test_dashboard(self):
        text = self.drive("admin")
        for name in ("workloads-1280", "instance", "triggers", "metrics", "workloads-390"):
            self.assertTrue(os.path.getsize(os.path.join(ARTIFACTS, name + ".png")) > 1000, name)
        self.assertIn("IDLE ", text)
        # What the page showed is what the daemon holds.
        status, t = self.d.request("GET", "/api/v1/tenants/alice")
        self.assertEqual(status, 404, t)  # a released claim is gone; its snapshot stays
        status, snaps = self.d.request("GET", "/api/v1/workloads/notes/snapshots")
        self.assertTrue(any(s["tenantId"] == "alice" and s["sizeBytes"] > 0 for s in snaps), snaps)
        # (The trigger's recent events live in memory: the page checked them before the
        # restart, the daemon no longer has them after it.)

    def test_viewer(self):
        # Scoped tokens (issue 11 item 4): a viewer token from POST /api/v1/tokens.
        status, me = self.d.request("GET", "/api/v1/whoami")
        require(status == 200, "the daemon has no GET /api/v1/whoami (scoped tokens not merged)")
        status, tok = self.d.request("POST", "/api/v1/tokens",
                                     {"name": "ui-viewer", "scopes": ["viewer"], "ttlSeconds": 3600})
        self.assertEqual(status, 201, tok)
        self.claim("viewed")
        self.drive("viewer", viewer=tok["token"])
        status, t = self.d.request("GET", "/api/v1/tenants/viewed")
        self.assertEqual(t["claims"][0]["phase"], "Active", t)  # the forced release changed nothing
        self.assertEqual(self.d.request("GET", "/api/v1/tenants/viewer-new")[0], 404)  # nor the claim
        self.assertEqual(self.d.request("GET", "/api/v1/workloads/notes")[0], 200)  # nor the delete

    def test_tenant_token(self):
        # A tenant:<id> token sees its tenant's claims and instances only, live, and gets 403
        # for anything outside its tenant.
        status, tok = self.d.request("POST", "/api/v1/tokens",
                                     {"name": "ui-tenant", "scopes": ["tenant:tina"], "ttlSeconds": 3600})
        self.assertEqual(status, 201, tok)
        self.claim("tina")
        self.claim("olga")
        status, olga = self.d.request("GET", "/api/v1/tenants/olga")
        self.assertEqual(status, 200, olga)
        text = self.drive("tenant", tenantToken=tok["token"], tenant="tina", other="olga",
                          otherInstance=olga["claims"][0]["instanceId"])
        self.assertIn("TENANT CALLS", text)
        self.assertTrue(os.path.getsize(os.path.join(ARTIFACTS, "tenant.png")) > 1000)
        status, t = self.d.request("GET", "/api/v1/tenants/olga")
        self.assertEqual(t["claims"][0]["phase"], "Active", t)  # the forced release changed nothing
        status, t = self.d.request("GET", "/api/v1/tenants/olga3")
        self.assertEqual(status, 404, t)  # nor did the forced claim


if __name__ == "__main__":
    unittest.main()
