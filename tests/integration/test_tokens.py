"""Scoped API tokens on the real daemon: the scope matrix (admin, viewer, tenant:<id>, a
revoked token, no token; against every route family on REST, /ws and the Kubernetes-compatible
API), expiry and revocation taking effect on the next request, the CLI, audit records of mint
and revoke, and per-claim tokens used from inside real runc instances (pool and cold) through
the instance API socket: scoped to their tenant and workload, refused after release.

Inside instances: busybox plus `unixget` (unixget.c, linked statically), a one-request HTTP
client over a unix socket, in an image built here with umoci from the busybox layout."""
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import unittest
import urllib.error
import urllib.request

from bh import BINARY, Daemon, busybox_with, require, run_checked, wait_for
from wsclient import WsClient

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "tokens-test-admin-key"
IMAGE = "localhost/apibox:latest"


def workload(name, api_scopes=None):
    spec = {"version": "1", "image": {"ref": IMAGE},
            "resources": {"vcpus": 0.5, "memoryMb": 64, "diskGb": 0},
            "network": {"access": "none"},
            "idle": {"timeoutSeconds": 600, "action": "destroy"},
            "entrypoint": {"cmd": "sh", "args": ["-c", "exec sleep 2147483647"]}}
    if api_scopes is not None:
        spec["apiAccess"] = {"scopes": api_scopes}
    return json.dumps({"apiVersion": "boilerhouse.dev/v1alpha1", "kind": "BoilerhouseWorkload",
                       "metadata": {"name": name}, "spec": spec})


def pool(name, wl, size):
    return json.dumps({"apiVersion": "boilerhouse.dev/v1alpha1", "kind": "BoilerhousePool",
                       "metadata": {"name": name}, "spec": {"workloadRef": wl, "size": size}})


class TokensBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-it-tok-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.make_image()
        cls.d = Daemon(api_key=KEY)
        cls.addClassCleanup(cls.d.cleanup)
        cls.d.import_image(cls.layout, IMAGE)
        cls.d.start()
        cls.d.apply_workload(workload("notes", ["tenant"]))

    @classmethod
    def make_image(cls):
        t = cls.tmp
        exe = os.path.join(t, "unixget")
        out = subprocess.run(["gcc", "-static", "-O2", "-o", exe, os.path.join(HERE, "unixget.c")],
                             capture_output=True, text=True)
        require(out.returncode == 0, "cannot build unixget: " + out.stderr[-500:])
        cls.layout = busybox_with(t, "apibox", {"/bin/unixget": exe})

    # ---- calls ----

    def call(self, token, method, path, body=None):
        """REST with the given bearer token (None: no Authorization header)."""
        return self.d.request(method, path, body, token=token, anonymous=token is None)

    def kapi(self, token, method, path):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request("https://127.0.0.1:%d%s" % (self.d.kube_port, path),
                                     method=method)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=60, context=ctx) as r:
                return r.status, json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode() or "{}")

    def ws_status(self, token, query=""):
        headers = {"Authorization": "Bearer " + token} if token else {}
        c = WsClient(self.d.port, "/ws" + query, headers=headers)
        self.addCleanup(c.sock.close)
        return c

    def mint(self, name, scopes, ttl=None, token=KEY):
        body = {"name": name, "scopes": scopes}
        if ttl is not None:
            body["ttlSeconds"] = ttl
        status, out = self.call(token, "POST", "/api/v1/tokens", body)
        self.assertEqual(status, 201, out)
        self.assertTrue(out["token"].startswith("bht_"), out)
        return out

    def audit(self, action):
        status, recs = self.call(KEY, "GET", "/api/v1/audit?limit=1000")
        self.assertEqual(status, 200, recs)
        return [r for r in recs if r["action"] == action]

    def release(self, tenant, wl):
        status, out = self.call(KEY, "POST", "/api/v1/tenants/%s/release" % tenant,
                                {"workload": wl})
        self.assertIn(status, (200, 404), out)


class TestScopeMatrix(TokensBase):
    """Each scope against each route family: the expected status, and a 403 naming the
    caller's scope."""

    WL_PATH = "/apis/boilerhouse.dev/v1alpha1/namespaces/default/boilerhouseworkloads"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        status, out = cls.d.request("POST", "/api/v1/tokens",
                                    {"name": "ops-viewer", "scopes": ["viewer"]})
        assert status == 201, out
        cls.viewer = out["token"]
        status, out = cls.d.request("POST", "/api/v1/tokens",
                                    {"name": "alice-app", "scopes": ["tenant:alice"]})
        assert status == 201, out
        cls.tenant = out["token"]
        status, out = cls.d.request("POST", "/api/v1/tokens",
                                    {"name": "gone", "scopes": ["admin"]})
        assert status == 201, out
        cls.revoked = out["token"]
        status, _ = cls.d.request("DELETE", "/api/v1/tokens/" + out["id"])
        assert status == 200

    def tokens(self):
        return {"admin": KEY, "viewer": self.viewer, "tenant": self.tenant,
                "revoked": self.revoked, "none": None}

    # A tenant read is let through to its handler, which answers 404 for a tenant without
    # claims (another test's claim may still be on its way out).
    PASSED = (200, 404)
    # family: (method, path, body, {scope: expected status, or statuses})
    REST = [
        ("reads", "GET", "/api/v1/workloads", None,
         {"admin": 200, "viewer": 200, "tenant": 403}),
        ("reads", "GET", "/api/v1/instances", None,
         {"admin": 200, "viewer": 200, "tenant": 403}),
        ("tenant reads", "GET", "/api/v1/tenants/alice", None,
         {"admin": PASSED, "viewer": PASSED, "tenant": PASSED}),
        ("tenant reads", "GET", "/api/v1/tenants/bob", None,
         {"admin": PASSED, "viewer": PASSED, "tenant": 403}),
        ("claims", "POST", "/api/v1/tenants/bob/claim", {"workload": "notes"},
         {"viewer": 403, "tenant": 403}),
        ("claims", "POST", "/api/v1/tenants/alice/keepalive", {"workload": "nothing"},
         {"admin": 404, "viewer": 403, "tenant": 404}),
        ("workload writes", "DELETE", "/api/v1/workloads/absent", None,
         {"admin": 404, "viewer": 403, "tenant": 403}),
        ("pool writes", "POST", "/api/v1/pools", json.loads(pool("p0", "notes", 0)),
         {"admin": 201, "viewer": 403, "tenant": 403}),
        ("trigger writes", "DELETE", "/api/v1/triggers/absent", None,
         {"admin": 404, "viewer": 403, "tenant": 403}),
        ("instance writes", "POST", "/api/v1/instances/000000000000/destroy", None,
         {"viewer": 403, "tenant": 403}),
        ("secrets", "GET", "/api/v1/secrets", None,
         {"admin": 200, "viewer": 403, "tenant": 403}),
        ("secrets", "POST", "/api/v1/secrets", {"name": "s", "key": "k", "value": "v"},
         {"admin": 201, "viewer": 403, "tenant": 403}),
        ("tokens", "GET", "/api/v1/tokens", None,
         {"admin": 200, "viewer": 403, "tenant": 403}),
        ("tokens", "POST", "/api/v1/tokens", {"name": "x", "scopes": ["admin"]},
         {"admin": 201, "viewer": 403, "tenant": 403}),
        ("audit", "GET", "/api/v1/audit", None,
         {"admin": 200, "viewer": 200, "tenant": 403}),
        ("metrics", "GET", "/metrics", None,
         {"admin": 200, "viewer": 200, "tenant": 403}),
        ("whoami", "GET", "/api/v1/whoami", None,
         {"admin": 200, "viewer": 200, "tenant": 200}),
        # An instance a tenant scope does not hold (here: none at all) is not its to read.
        ("instance reads", "GET", "/api/v1/instances/000000000000", None,
         {"admin": 404, "viewer": 404, "tenant": 403}),
        ("instance reads", "GET", "/api/v1/instances/000000000000/samples", None,
         {"admin": 404, "viewer": 404, "tenant": 403}),
        ("chart history", "GET", "/api/v1/samples", None,
         {"admin": 200, "viewer": 200, "tenant": 403}),
        ("browser tokens", "POST", "/api/v1/ws/token", None,
         {"admin": 200, "viewer": 200, "tenant": 200}),
    ]

    def test_rest(self):
        for family, method, path, body, want in self.REST:
            for scope, token in self.tokens().items():
                expected = want.get(scope, 401 if scope in ("revoked", "none") else None)
                if expected is None:
                    continue
                with self.subTest(family=family, path=path, scope=scope):
                    status, out = self.call(token, method, path, body)
                    self.assertIn(status, expected if isinstance(expected, tuple) else
                                  (expected,), out)
                    if status == 403:
                        named = "viewer" if scope == "viewer" else "tenant:alice"
                        self.assertIn("token scope %s" % named, out["error"])

    def test_claim_in_scope(self):
        """tenant:alice claims and releases alice; admin sees the same pair."""
        self.addCleanup(self.release, "alice", "notes")
        status, out = self.call(self.tenant, "POST", "/api/v1/tenants/alice/claim",
                                {"workload": "notes"})
        self.assertIn(status, (200, 201), (out, self.d.log()))
        status, out = self.call(KEY, "POST", "/api/v1/tenants/alice/claim", {"workload": "notes"})
        self.assertEqual(status, 200, out)
        status, out = self.call(self.tenant, "POST", "/api/v1/tenants/alice/release",
                                {"workload": "notes"})
        self.assertEqual(status, 200, out)

    def test_whoami(self):
        for scope, want in (("admin", ["admin"]), ("viewer", ["viewer"]),
                            ("tenant", ["tenant:alice"])):
            status, out = self.call(self.tokens()[scope], "GET", "/api/v1/whoami")
            self.assertEqual((status, out["scopes"]), (200, want), out)
        self.assertEqual(self.call(KEY, "GET", "/api/v1/whoami")[1]["actor"], "admin")
        self.assertTrue(self.call(self.viewer, "GET", "/api/v1/whoami")[1]["actor"]
                        .startswith("token:tok-"))

    def test_ws(self):
        for scope, query, want in (("admin", "", 101), ("viewer", "", 101), ("tenant", "", 101),
                                   ("tenant", "?tenant=alice", 101),
                                   ("tenant", "?tenant=bob", 403), ("revoked", "", 401),
                                   ("none", "", 401)):
            with self.subTest(scope=scope, query=query):
                self.assertEqual(self.ws_status(self.tokens()[scope], query).status, want)

    def test_ws_tenant_stream_is_filtered(self):
        """A tenant token's stream carries only its tenant's events, whatever it asks."""
        self.addCleanup(self.release, "bob", "notes")
        self.addCleanup(self.release, "alice", "notes")
        mine = self.ws_status(self.tenant, "?tenant=")
        self.assertEqual(mine.status, 101)
        self.assertEqual(mine.recv()["type"], "hello")
        status, out = self.call(KEY, "POST", "/api/v1/tenants/bob/claim", {"workload": "notes"})
        self.assertIn(status, (200, 201), out)
        status, out = self.call(self.tenant, "POST", "/api/v1/tenants/alice/claim",
                                {"workload": "notes"})
        self.assertIn(status, (200, 201), out)
        got, seen = mine.recv_until(lambda m: m.get("type") == "tenant.claimed",
                                    what="alice's claim")
        self.assertEqual(got["tenant"], "alice", got)
        self.assertEqual({m.get("tenant") for m in seen}, {"alice"}, seen)

    def test_kapi(self):
        for scope, method, path, want in (
                ("admin", "GET", self.WL_PATH, 200), ("viewer", "GET", self.WL_PATH, 200),
                ("viewer", "GET", self.WL_PATH + "?watch=1&timeoutSeconds=1", 200),
                ("tenant", "GET", self.WL_PATH, 403), ("revoked", "GET", self.WL_PATH, 401),
                ("none", "GET", self.WL_PATH, 401),
                ("admin", "DELETE", self.WL_PATH + "/absent", 404),
                ("viewer", "DELETE", self.WL_PATH + "/absent", 403),
                ("tenant", "DELETE", self.WL_PATH + "/absent", 403)):
            with self.subTest(scope=scope, method=method, path=path):
                status, out = self.kapi(self.tokens()[scope], method, path)
                self.assertEqual(status, want, out)
                if status == 403:
                    self.assertIn("token scope", out["message"])


class TestLifecycle(TokensBase):
    def test_expiry_takes_effect(self):
        tok = self.mint("short", ["viewer"], ttl=2)
        self.assertEqual(self.call(tok["token"], "GET", "/api/v1/workloads")[0], 200)
        wait_for(lambda: self.call(tok["token"], "GET", "/api/v1/workloads")[0] == 401,
                 timeout=30, what="the token to expire")
        listed = {t["id"]: t for t in self.call(KEY, "GET", "/api/v1/tokens")[1]}
        self.assertIn("expiresAt", listed[tok["id"]])

    def test_revocation_takes_effect_at_once(self):
        tok = self.mint("rev", ["admin"])
        self.assertEqual(self.call(tok["token"], "GET", "/api/v1/workloads")[0], 200)
        status, out = self.call(KEY, "DELETE", "/api/v1/tokens/" + tok["id"])
        self.assertEqual(status, 200, out)
        # The very next request: no cache to wait out.
        self.assertEqual(self.call(tok["token"], "GET", "/api/v1/workloads")[0], 401)
        self.assertEqual(self.call(KEY, "DELETE", "/api/v1/tokens/tok-000000000000")[0], 404)

    def test_bad_mint_requests_change_nothing(self):
        before = self.call(KEY, "GET", "/api/v1/tokens")[1]
        for body, field in (({"name": "a", "scopes": ["root"]}, "scopes[0]"),
                            ({"name": "a", "scopes": ["tenant:../x"]}, "scopes[0]"),
                            ({"name": "a", "scopes": []}, "scopes"),
                            ({"name": "a b", "scopes": ["viewer"]}, "name"),
                            ({"name": "a", "scopes": ["viewer"], "ttl": 5}, "ttl"),
                            ({"name": "a", "scopes": ["viewer"], "ttlSeconds": -1}, "ttlSeconds")):
            with self.subTest(body=body):
                status, out = self.call(KEY, "POST", "/api/v1/tokens", body)
                self.assertEqual(status, 400, out)
                self.assertTrue(out["error"].startswith(field), out)
        self.assertEqual(self.call(KEY, "GET", "/api/v1/tokens")[1], before)

    def test_secret_is_stored_hashed_and_listed_without_it(self):
        tok = self.mint("hashed", ["viewer"])
        listing = json.dumps(self.call(KEY, "GET", "/api/v1/tokens")[1])
        self.assertNotIn(tok["token"], listing)
        self.assertNotIn(tok["token"][4:], listing)
        with open(os.path.join(self.d.state, "store.db"), "rb") as f:
            db = f.read()
        for name in ("store.db-wal",):
            p = os.path.join(self.d.state, name)
            if os.path.exists(p):
                with open(p, "rb") as f:
                    db += f.read()
        self.assertNotIn(tok["token"].encode(), db)

    def test_audit_records_mint_and_revoke_without_the_secret(self):
        tok = self.mint("audited", ["viewer"])
        self.call(KEY, "DELETE", "/api/v1/tokens/" + tok["id"])
        mints = [r for r in self.audit("token.mint") if r.get("target") == "audited"]
        revokes = [r for r in self.audit("token.revoke") if r.get("target") == tok["id"]]
        self.assertEqual(len(mints), 1, mints)
        self.assertEqual(len(revokes), 1, revokes)
        self.assertEqual((mints[0]["actor"], revokes[0]["actor"]), ("admin", "admin"))
        status, recs = self.call(KEY, "GET", "/api/v1/audit?limit=1000")
        self.assertNotIn(tok["token"], json.dumps(recs))

    def test_cli(self):
        env = dict(os.environ, BOILERHOUSE_STATE_DIR=self.d.state)
        out = run_checked([BINARY, "token", "create", "cli-viewer", "--scope", "viewer",
                           "--ttl", "600"], env=env, capture_output=True, text=True, check=True)
        secret = out.stdout.strip()
        self.assertTrue(secret.startswith("bht_"), out)
        status, who = self.call(secret, "GET", "/api/v1/whoami")
        self.assertEqual((status, who["scopes"]), (200, ["viewer"]), who)
        listed = run_checked([BINARY, "token", "list"], env=env, capture_output=True,
                             text=True, check=True)
        tok = [t for t in json.loads(listed.stdout) if t["name"] == "cli-viewer"][0]
        self.assertNotIn(secret, listed.stdout)
        run_checked([BINARY, "token", "revoke", tok["id"]], env=env, capture_output=True,
                    check=True)
        self.assertEqual(self.call(secret, "GET", "/api/v1/whoami")[0], 401)
        self.assertEqual([r["actor"] for r in self.audit("token.revoke")
                          if r.get("target") == tok["id"]], ["cli"])
        bad = subprocess.run([BINARY, "token", "create", "x", "--scope", "god"], env=env,
                             capture_output=True, text=True)
        self.assertEqual(bad.returncode, 1, bad)
        self.assertIn("scopes[0]", bad.stderr)


class TestPerClaimTokens(TokensBase):
    """Tokens minted into real instances when their claim turns Active (pool and cold), used
    from inside through the instance API socket."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d.apply_workload(workload("agent", ["tenant"]))
        cls.d.apply_workload(workload("plain"))
        status, out = cls.d.request("POST", "/api/v1/pools", raw=pool("agent-pool", "agent", 1))
        assert status == 201, out
        wait_for(lambda: cls.d.request("GET", "/api/v1/pools/agent-pool")[1]
                 .get("status", {}).get("ready") == 1, timeout=120, what="a warm agent")

    def claim(self, tenant, wl):
        status, out = self.call(KEY, "POST", "/api/v1/tenants/%s/claim" % tenant,
                                {"workload": wl})
        self.assertIn(status, (200, 201), (out, self.d.log()))
        self.addCleanup(self.release, tenant, wl)
        return out

    def run_in(self, iid, script):
        status, out = self.call(KEY, "POST", "/api/v1/instances/%s/exec" % iid,
                                {"command": ["sh", "-c", script]})
        self.assertEqual(status, 200, out)
        return out["exitCode"], out.get("stdout", "") + out.get("stderr", "")

    def api_from(self, iid, method, path, body=""):
        """A call from inside the instance with its own token; (status, text)."""
        rc, out = self.run_in(iid, "unixget \"$(cat /proc/1/environ | tr '\\0' '\\n' | "
                                   "sed -n 's/^BOILERHOUSE_API_SOCKET=//p')\" %s %s %s '%s'"
                              % (method, path, "/run/boilerhouse-api/token", body))
        self.assertEqual(rc, 0, out)
        head, _, text = out.partition("\r\n\r\n")
        return int(head.split()[1]), text

    def check_scoped(self, tenant, wl, iid):
        status, text = self.api_from(iid, "GET", "/api/v1/whoami")
        self.assertEqual(status, 200, text)
        who = json.loads(text)
        self.assertEqual((who["scopes"], who["workload"]), (["tenant:" + tenant], wl), who)
        self.assertEqual(self.api_from(iid, "GET", "/api/v1/tenants/" + tenant)[0], 200)
        status, text = self.api_from(iid, "GET", "/api/v1/tenants/other-tenant")
        self.assertEqual(status, 403, text)
        self.assertIn("tenant:" + tenant, text)
        status, text = self.api_from(iid, "POST", "/api/v1/tenants/other-tenant/claim",
                                     '{"workload":"%s"}' % wl)
        self.assertEqual(status, 403, text)
        status, text = self.api_from(iid, "POST", "/api/v1/tenants/%s/claim" % tenant,
                                     '{"workload":"plain"}')
        self.assertEqual(status, 403, text)
        self.assertIn("workload plain", text)
        self.assertEqual(self.api_from(iid, "GET", "/api/v1/workloads")[0], 403)
        status, text = self.api_from(iid, "POST", "/api/v1/tenants/%s/keepalive" % tenant,
                                     '{"workload":"%s"}' % wl)
        self.assertEqual(status, 200, text)

    def secret_in(self, iid):
        rc, out = self.run_in(iid, "cat /run/boilerhouse-api/token")
        self.assertEqual(rc, 0, out)
        return out.strip()

    def test_pool_and_cold_claims_get_scoped_tokens_revoked_on_release(self):
        pooled = self.claim("ten-a", "agent")
        self.assertEqual(pooled["source"], "pool", pooled)
        cold = self.claim("ten-b", "agent")
        for tenant, c in (("ten-a", pooled), ("ten-b", cold)):
            with self.subTest(tenant=tenant, source=c["source"]):
                self.check_scoped(tenant, "agent", c["instanceId"])
        rc, env = self.run_in(pooled["instanceId"], "tr '\\0' '\\n' < /proc/1/environ")
        self.assertIn("BOILERHOUSE_API_URL=", env)
        self.assertIn("BOILERHOUSE_API_KEY_FILE=/run/boilerhouse-api/token", env)
        rc, out = self.run_in(pooled["instanceId"], "echo x > /run/boilerhouse-api/token")
        self.assertNotEqual(rc, 0, "the token dir must be read-only inside: " + out)
        secret_a = self.secret_in(pooled["instanceId"])
        secret_b = self.secret_in(cold["instanceId"])
        self.assertNotEqual(secret_a, secret_b)
        # The TCP listener takes it too (same principal), until release.
        self.assertEqual(self.call(secret_a, "GET", "/api/v1/tenants/ten-a")[0], 200)
        self.release("ten-a", "agent")
        self.assertEqual(self.call(secret_a, "GET", "/api/v1/tenants/ten-a")[0], 401)
        self.assertEqual(self.call(secret_b, "GET", "/api/v1/tenants/ten-b")[0], 200)
        mints = [r for r in self.audit("token.mint") if r["tenant"] in ("ten-a", "ten-b")]
        self.assertEqual(sorted(r["tenant"] for r in mints), ["ten-a", "ten-b"], mints)
        revokes = [r for r in self.audit("token.revoke") if r["tenant"] == "ten-a"]
        self.assertEqual(len(revokes), 1, revokes)
        status, recs = self.call(KEY, "GET", "/api/v1/audit?limit=1000")
        self.assertNotIn(secret_a, json.dumps(recs))

    def test_no_api_access_no_token(self):
        c = self.claim("ten-c", "plain")
        rc, out = self.run_in(c["instanceId"], "ls /run/boilerhouse-api")
        self.assertNotEqual(rc, 0, out)

    def test_instance_socket_needs_a_token(self):
        """Even with open loopback access elsewhere, the instance socket takes only tokens."""
        sock = os.path.join(self.d.state, "api.sock")
        out = subprocess.run([os.path.join(self.tmp, "unixget"), sock, "GET", "/api/v1/whoami",
                              "-"], capture_output=True, text=True, timeout=30)
        self.assertIn(" 401 ", out.stdout.split("\r\n")[0], out.stdout)


if __name__ == "__main__":
    unittest.main()
