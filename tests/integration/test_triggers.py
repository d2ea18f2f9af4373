"""Triggers end to end: the real daemon, the webhook trigger and allowlist guard plugins, a
real echo-agent container answering the http driver, signed requests from this process."""
import base64
import hashlib
import hmac
import http.server
import json
import os
import threading
import time
import uuid

from bh import SOURCE, DaemonTestCase, wait_for

SECRET = "gh-signing-secret"
STD_KEY = b"standard-webhooks-key-0123456789"
STD_SECRET = "whsec_" + base64.b64encode(STD_KEY).decode()


def github_sig(body, secret=SECRET):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def std_headers(body, msg_id=None, ts=None, key=STD_KEY):
    msg_id = msg_id or "msg_" + uuid.uuid4().hex
    ts = str(int(time.time()) if ts is None else ts)
    mac = hmac.new(key, ("%s.%s." % (msg_id, ts)).encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": ts,
            "webhook-signature": "v1," + base64.b64encode(mac).decode()}


def trigger(name, path, signature="github", secret_name="hook", guards=None, **spec):
    s = {"type": "webhook", "workloadRef": "echo-agent",
         "tenant": {"from": "user.login", "prefix": "gh-"},
         "driver": "http", "driverOptions": {"path": "/cgi-bin/agent"},
         "guards": guards if guards is not None else
         [{"type": "allowlist", "config": {"tenants": ["GH-Jane", "gh-ann"],
                                           "denyMessage": "not for you"}}],
         "config": {"path": path, "signature": signature, "secretName": secret_name}}
    s.update(spec)
    return {"name": name, "spec": s}


class PolicyServer:
    """A real policy service for the api guard on loopback: records each request and answers
    by tenant (jane allowed, mallory denied with an overlong multi-line reason, slow past the
    guard's timeout, broken with 500, garbage with a body that is not JSON)."""

    def __init__(self):
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"auth": self.headers.get("Authorization"), "body": body})
                tenant = body.get("tenantId")
                if tenant == "gh-slow":
                    time.sleep(2)
                status, answer = {
                    "gh-jane": (200, {"allow": True}),
                    "gh-mallory": (200, {"allow": False,
                                         "reason": "Mallory\nis banned " + "x" * 1000}),
                    "gh-broken": (500, {"allow": True}),
                }.get(tenant, (200, None))
                raw = b"<html>not json" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/check" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TriggerTest(DaemonTestCase):
    MANIFESTS = ("echo-agent.yaml", "openclaw-agent.yaml")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for name, key, value in (("hook", "secret", SECRET), ("std", "secret", STD_SECRET),
                                 ("policy", "token", "policy-s3cret"),
                                 ("gateway", "token", "gw-t0ken")):
            cls.d.put_secret(name, key, value)

    # ---- helpers ----

    def create(self, t, expect=201):
        status, body = self.d.request("POST", "/api/v1/triggers", t)
        self.assertEqual(status, expect, body)
        return body

    def wait_phase(self, name, phase, timeout=60):
        def reached():
            status, body = self.d.request("GET", "/api/v1/triggers/" + name)
            return status == 200 and body["status"].get("phase") == phase and body

        return wait_for(reached, timeout, "trigger %s %s" % (name, phase), step=0.05)

    def post(self, path, payload, headers=None, raw=None):
        body = raw if raw is not None else json.dumps(payload).encode()
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.d.request("POST", path, raw=body, headers=h)

    def signed(self, path, payload, **extra):
        body = json.dumps(payload).encode()
        h = {"X-Hub-Signature-256": github_sig(body)}
        h.update(extra)
        return self.post(path, None, h, raw=body)

    def claimed(self, tenant):
        status, body = self.d.request("GET", "/api/v1/tenants/" + tenant)
        return status == 200 and any(c.get("workload") == "echo-agent"
                                     for c in body.get("claims", []))

    # ---- tests ----

    def test_apply_time_validation_names_the_field(self):
        cases = [
            (dict(config={"path": "/hooks/v1", "signatur": "github"}), "signatur"),
            (dict(guards=[{"type": "nosuch"}]), "spec.guards[0].type"),
            (dict(guards=[{"type": "allowlist", "config": {"tenants": "x"}}]),
             "spec.guards[0].config"),
            (dict(driver="carrier-pigeon"), "spec.driver"),
            (dict(driverOptions={"path": "x?y"}), "spec.driverOptions.path"),
            (dict(driverOptions={"protocol": "pi"}), "spec.driverOptions.protocol: unknown"),
            (dict(driver="websocket", driverOptions={"protocol": "morse"}),
             "spec.driverOptions.protocol"),
            (dict(config={"path": "/api/v1/x", "secretName": "hook"}), "spec.config.path"),
        ]
        for override, field in cases:
            t = trigger("bad", "/hooks/bad")
            t["spec"].update(override)
            status, body = self.d.request("POST", "/api/v1/triggers", t)
            self.assertTrue(400 <= status < 500, (override, status, body))
            self.assertIn(field, body["error"], override)
            self.assertEqual(self.d.request("GET", "/api/v1/triggers/bad")[0], 404)

    def test_github_webhook_end_to_end(self):
        self.create(trigger("gh", "/hooks/gh"))
        self.wait_phase("gh", "Active")
        status, body = self.signed("/hooks/gh", {"user": {"login": "jane"}, "text": "hello"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["agent"], "echo")
        self.assertEqual(body["received"]["tenantId"], "gh-jane")
        self.assertEqual(body["received"]["text"], "hello")
        self.assertEqual(body["received"]["payload"]["user"]["login"], "jane")
        self.assertTrue(self.claimed("gh-jane"))  # the claim is the REST one
        # A second event reuses the instance.
        status, body = self.signed("/hooks/gh", {"user": {"login": "jane"}, "text": "again"})
        self.assertEqual((status, body["received"]["text"]), (200, "again"))

        # Refusals: each the right 4xx, and no claim for the sender.
        payload = json.dumps({"user": {"login": "ann"}}).encode()
        self.assertEqual(self.post("/hooks/gh", None, raw=payload)[0], 401)  # unsigned
        bad = {"X-Hub-Signature-256": github_sig(payload, "wrong")}
        self.assertEqual(self.post("/hooks/gh", None, bad, raw=payload)[0], 401)
        self.assertEqual(self.d.request("GET", "/hooks/gh")[0], 405)
        big = json.dumps({"user": {"login": "ann"}, "x": "y" * 300000}).encode()
        self.assertEqual(self.post("/hooks/gh", None, {"X-Hub-Signature-256": github_sig(big)},
                                   raw=big)[0], 413)
        self.assertFalse(self.claimed("gh-ann"))
        # A guard's refusal reaches the sender with its message.
        status, body = self.signed("/hooks/gh", {"user": {"login": "mallory"}})
        self.assertEqual((status, body["error"]), (403, "not for you"))
        self.assertFalse(self.claimed("gh-mallory"))
        # A payload without the tenant field is refused with a reason.
        status, body = self.signed("/hooks/gh", {"text": "who am I"})
        self.assertEqual(status, 422, body)
        self.assertIn("spec.tenant.from", body["error"])
        # A number too large for an ID is no tenant either (and no undefined conversion).
        status, body = self.signed("/hooks/gh", {"user": {"login": 1e300}})
        self.assertEqual(status, 422, body)
        # Replayed delivery id.
        d = str(uuid.uuid4())
        self.assertEqual(self.signed("/hooks/gh", {"user": {"login": "jane"}},
                                     **{"X-GitHub-Delivery": d})[0], 200)
        self.assertEqual(self.signed("/hooks/gh", {"user": {"login": "jane"}},
                                     **{"X-GitHub-Delivery": d})[0], 409)

        # Counters and the event log.
        def counted():
            st = self.wait_phase("gh", "Active")["status"]
            return st.get("events", 0) >= 5 and st.get("denied", 0) >= 2 and st

        st = wait_for(counted, what="5 events, 2 denied counted", step=0.05)
        self.assertGreaterEqual(st["events"], 5, st)
        self.assertGreaterEqual(st["denied"], 2, st)
        self.assertIn("lastEventAt", st)
        status, body = self.d.request("GET", "/api/v1/triggers/gh/events?limit=3")
        self.assertEqual(status, 200, body)
        self.assertEqual(len(body["events"]), 3)
        self.assertEqual(body["events"][0]["verdict"], "allow")
        self.assertIn("latencyMs", body["events"][0])

    def test_standard_webhooks(self):
        self.create(trigger("std", "/hooks/std", signature="standard", secret_name="std"))
        self.wait_phase("std", "Active")
        body = json.dumps({"user": {"login": "ann"}, "text": "std"}).encode()
        h = std_headers(body)
        status, reply = self.post("/hooks/std", None, h, raw=body)
        self.assertEqual(status, 200, reply)
        self.assertEqual(reply["received"]["tenantId"], "gh-ann")
        self.assertEqual(self.post("/hooks/std", None, h, raw=body)[0], 409)  # replay
        stale = std_headers(body, ts=int(time.time()) - 600)
        self.assertEqual(self.post("/hooks/std", None, stale, raw=body)[0], 401)
        forged = std_headers(body, key=b"another-key")
        self.assertEqual(self.post("/hooks/std", None, forged, raw=body)[0], 401)

    def test_route_lifecycle(self):
        self.create(trigger("life", "/hooks/life"))
        self.wait_phase("life", "Active")
        # Another trigger cannot take the same path.
        status, body = self.d.request("POST", "/api/v1/triggers", trigger("thief", "/hooks/life"))
        self.assertEqual(status, 409, body)
        self.assertIn("spec.config.path", body["error"])
        # A spec change restarts exactly this adapter on its new route.
        status, body = self.d.request("PUT", "/api/v1/triggers/life",
                                      {"spec": trigger("life", "/hooks/life2")["spec"]})
        self.assertEqual(status, 200, body)
        wait_for(lambda: self.signed("/hooks/life2", {"user": {"login": "jane"}})[0] == 200,
                 what="the adapter serving its new route", step=0.05)
        self.assertEqual(self.signed("/hooks/life", {"user": {"login": "jane"}})[0], 404)
        # The test endpoint walks the stages.
        status, body = self.d.request("POST", "/api/v1/triggers/life/test",
                                      {"text": "t", "payload": {"user": {"login": "jane"}}})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["verdict"], "allow", body)
        self.assertEqual([s["stage"] for s in body["stages"]],
                         ["tenant", "guard[0] allowlist", "claim", "driver"])
        # Deleting stops the adapter and frees its route.
        self.assertEqual(self.d.request("DELETE", "/api/v1/triggers/life")[0], 200)
        wait_for(lambda: self.signed("/hooks/life2", {})[0] == 404, what="the route freed",
                 step=0.05)
        self.create(trigger("heir", "/hooks/life2"))
        self.wait_phase("heir", "Active")

    def test_missing_secret_is_an_error_phase_then_recovers(self):
        self.create(trigger("nosecret", "/hooks/nosecret", secret_name="later"))
        st = self.wait_phase("nosecret", "Error")["status"]
        self.assertIn("later", st["detail"])
        self.d.put_secret("later", "secret", "x")
        self.wait_phase("nosecret", "Active", timeout=90)

    def test_api_guard_asks_a_policy_service_and_fails_closed(self):
        policy = PolicyServer()
        self.addCleanup(policy.close)
        guard = {"type": "api", "config": {"url": policy.url, "secretName": "policy",
                                           "timeoutMs": 500}}
        self.create(trigger("pol", "/hooks/pol", guards=[guard]))
        self.wait_phase("pol", "Active")
        status, body = self.signed("/hooks/pol", {"user": {"login": "jane"}, "text": "hi"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["received"]["tenantId"], "gh-jane")
        self.assertTrue(self.claimed("gh-jane"))
        req = policy.requests[-1]
        self.assertEqual(req["auth"], "Bearer policy-s3cret")
        self.assertEqual(req["body"], {"trigger": "pol", "tenantId": "gh-jane",
                                       "payload": {"user": {"login": "jane"}, "text": "hi"}})
        # A deny reaches the sender with the service's reason, capped, controls replaced.
        status, body = self.signed("/hooks/pol", {"user": {"login": "mallory"}})
        self.assertEqual(status, 403, body)
        self.assertTrue(body["error"].startswith("Mallory is banned xxx"), body)
        self.assertLessEqual(len(body["error"]), 300)
        # Fail closed: too slow, a 500, an answer that is not a verdict. The sender learns the
        # service failed, not where it lives.
        for login, why in (("slow", "did not answer within 500 ms"),
                           ("broken", "answered 500"), ("garbage", "gave no verdict")):
            status, body = self.signed("/hooks/pol", {"user": {"login": login}})
            self.assertEqual(status, 403, (login, body))
            self.assertIn(why, body["error"])
            self.assertNotIn("127.0.0.1", body["error"])
            self.assertFalse(self.claimed("gh-" + login))
        self.assertFalse(self.claimed("gh-mallory"))
        # No service at all: refused too.
        policy.close()
        status, body = self.signed("/hooks/pol", {"user": {"login": "jane"}})
        self.assertEqual(status, 403, body)
        self.assertIn("could not be asked", body["error"])
        self.assertEqual(self.d.request("DELETE", "/api/v1/triggers/pol")[0], 200)

    def test_openclaw_driver_streams_a_chat_completion(self):
        t = trigger("claw", "/hooks/claw", signature="none", guards=[], driver="openclaw",
                    workloadRef="openclaw-agent",
                    driverOptions={"path": "/cgi-bin/chat", "model": "oc-test",
                                   "gatewayTokenSecretRef": {"name": "gateway", "key": "token"}})
        self.create(t)
        self.wait_phase("claw", "Active")
        status, body = self.post("/hooks/claw", {"user": {"login": "jane"}, "text": "hi claw"})
        self.assertEqual(status, 200, body)
        # The chunks, concatenated: the tenant as the session key, the gateway token as a
        # bearer token, and the chat completion request the instance got.
        head, _, request = body["text"].partition(" {")
        self.assertEqual(head, "session=gh-jane auth=Bearer gw-t0ken")
        self.assertEqual(json.loads("{" + request),
                         {"model": "oc-test", "stream": True, "user": "gh-jane",
                          "messages": [{"role": "user", "content": "hi claw"}]})
        # Another tenant is another session.
        status, body = self.post("/hooks/claw", {"user": {"login": "ann"}, "text": "x"})
        self.assertEqual(status, 200, body)
        self.assertTrue(body["text"].startswith("session=gh-ann "), body)
        # Validation names the driver's keys; a missing gateway secret fails the delivery.
        bad = trigger("claw2", "/hooks/claw2", signature="none", driver="openclaw",
                      driverOptions={"gatewayTokenSecretRef": {"name": "x"}})
        status, body = self.d.request("POST", "/api/v1/triggers", bad)
        self.assertTrue(400 <= status < 500, (status, body))
        self.assertIn("spec.driverOptions.gatewayTokenSecretRef", body["error"])
        bad["spec"]["driverOptions"] = {"modle": "x"}
        status, body = self.d.request("POST", "/api/v1/triggers", bad)
        self.assertTrue(400 <= status < 500, (status, body))
        self.assertIn("spec.driverOptions.modle: unknown (openclaw:", body["error"])
        t["spec"]["driverOptions"]["gatewayTokenSecretRef"]["name"] = "nosuch"
        status, body = self.d.request("PUT", "/api/v1/triggers/claw", {"spec": t["spec"]})
        self.assertEqual(status, 200, body)
        wait_for(lambda: self.post("/hooks/claw", {"user": {"login": "jane"}})[0] == 502,
                 what="delivery failing without the gateway secret", step=0.05)
        status, body = self.post("/hooks/claw", {"user": {"login": "jane"}})
        self.assertIn("gatewayTokenSecretRef", body["error"])
        self.assertNotIn("gw-t0ken", json.dumps(body))

    def test_example_trigger_manifests_apply(self):
        """Every workloads/triggers/*.yaml is accepted as it is (one per trigger type)."""
        d = os.path.join(SOURCE, "workloads", "triggers")
        names = sorted(n for n in os.listdir(d) if n.endswith(".yaml"))
        types = set()
        for n in names:
            with open(os.path.join(d, n)) as f:
                text = f.read()
            status, body = self.d.request("POST", "/api/v1/triggers", raw=text,
                                          headers={"Content-Type": "application/yaml"})
            self.assertEqual(status, 201, (n, body))
            status, obj = self.d.request("GET", "/api/v1/triggers/" + body["name"])
            types.add(obj["spec"]["type"])
            self.assertEqual(self.d.request("DELETE", "/api/v1/triggers/" + body["name"])[0], 200)
        self.assertEqual(types, {"webhook", "cron", "telegram", "slack"})
