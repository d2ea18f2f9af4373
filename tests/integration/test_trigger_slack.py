"""The slack trigger end to end: a fake Slack Web API server in this process (real HTTP on
loopback, recording auth.test and chat.postMessage), events signed with the app's signing
secret (v0) posted to the daemon's shared listener, the real daemon and real agent
containers. Also the per-tenant ordering of the event pipeline and its bounded queues, with
an agent that holds an event until the test opens its gate."""
import hashlib
import hmac
import json
import threading
import time
import urllib.request
import uuid

from bh import DaemonTestCase, wait_for
from fakeapi import FakeJsonApi

SIGNING = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-test-0123456789"
BOT_USER = "UBOT0001"

# An agent whose CGI holds an event whose text contains "block" until /tmp/www/open exists
# (GET /cgi-bin/open makes it), and reports whether another event was inside the agent at
# the same time (a mkdir lock held while it works).
GATE_AGENT = r"""
apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: gate-agent
spec:
  version: "0.1.0"
  image:
    ref: localhost/busybox:latest
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: 1}
  network:
    access: unrestricted
    expose:
      - guest: 8080
  health:
    intervalSeconds: 1
    unhealthyThreshold: 3
    httpGet: {path: /, port: 8080}
  entrypoint:
    cmd: sh
    args:
      - -c
      - |
        mkdir -p /tmp/www/cgi-bin && echo ok > /tmp/www/index.html
        cat > /tmp/www/cgi-bin/agent <<'CGI'
        #!/bin/sh
        body=$(dd bs=1 count="${CONTENT_LENGTH:-0}" 2>/dev/null)
        if mkdir /tmp/inside 2>/dev/null; then overlap=false; else overlap=true; fi
        case "$body" in
          *'"text":"block'*)
            i=0
            while [ ! -e /tmp/www/open ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done ;;
        esac
        [ "$overlap" = false ] && rmdir /tmp/inside
        printf 'Content-Type: application/json\r\n\r\n{"agent":"gate","overlap":%s,"received":%s}' "$overlap" "$body"
        CGI
        cat > /tmp/www/cgi-bin/state <<'CGI'
        #!/bin/sh
        if [ -d /tmp/inside ]; then s=inside; else s=idle; fi
        printf 'Content-Type: text/plain\r\n\r\n%s' "$s"
        CGI
        cat > /tmp/www/cgi-bin/open <<'CGI'
        #!/bin/sh
        touch /tmp/www/open
        printf 'Content-Type: text/plain\r\n\r\nopen'
        CGI
        chmod +x /tmp/www/cgi-bin/agent /tmp/www/cgi-bin/open /tmp/www/cgi-bin/state
        exec httpd -f -p 8080 -h /tmp/www
"""


class FakeSlackApi(FakeJsonApi):
    """Records every Web API call; auth.test names the bot, other calls succeed."""

    def __init__(self):
        super().__init__()
        self.url = self.base + "/api"

    def handle(self, path, body, auth):
        method = path.rsplit("/", 1)[-1]
        self.record(method, body, auth)
        if auth != "Bearer " + BOT_TOKEN:
            return 200, {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return 200, {"ok": True, "user_id": BOT_USER, "user": "bh-bot"}
        return 200, {"ok": True, "ts": "%.6f" % time.time()}

    def posted(self, thread=None):
        with self.cond:
            return [b for m, b, _ in self.calls if m == "chat.postMessage" and
                    (thread is None or b.get("thread_ts") == thread)]


def signed_headers(body, ts=None, secret=SIGNING):
    ts = str(int(time.time()) if ts is None else ts)
    sig = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": "v0=" + sig.hexdigest()}


class Events:
    """Builds event_callback envelopes with unique ids and timestamps."""

    def __init__(self):
        self.n = 0

    def message(self, user, text, channel="C0CHAN", thread_ts=None, **extra):
        self.n += 1
        ev = dict({"type": "message", "user": user, "text": text, "channel": channel,
                   "ts": "1700000000.%06d" % self.n}, **extra)
        if thread_ts:
            ev["thread_ts"] = thread_ts
        return {"type": "event_callback", "team_id": "T0TEAM", "api_app_id": "A0APP",
                "event_id": "Ev%08d%s" % (self.n, uuid.uuid4().hex[:6]), "event": ev,
                "event_time": int(time.time())}


def slack_trigger(name, path, api, guards=None, workload="echo-agent", **config):
    return {"name": name, "spec": {
        "type": "slack", "workloadRef": workload,
        "tenant": {"from": "userId", "prefix": "sl-"},
        "driverOptions": {"path": "/cgi-bin/agent", "timeoutSeconds": 300},
        "guards": guards if guards is not None else
        [{"type": "allowlist", "config": {"tenants": ["sl-ujane01"],
                                          "denyMessage": "not for you"}}],
        "config": dict({"path": path, "secretName": "slack", "apiBaseUrl": api.url}, **config)}}


class SlackTriggerTest(DaemonTestCase):
    MANIFESTS = ("echo-agent.yaml",)
    MANIFEST_TEXTS = (GATE_AGENT,)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d.put_secret("slack", "signingSecret", SIGNING)
        cls.d.put_secret("slack", "botToken", BOT_TOKEN)

    def setUp(self):
        self.api = FakeSlackApi()
        self.addCleanup(self.api.close)
        self.ev = Events()

    def create(self, t):
        status, body = self.d.request("POST", "/api/v1/triggers", t)
        self.assertEqual(status, 201, body)
        self.addCleanup(self.d.request, "DELETE", "/api/v1/triggers/" + t["name"])

        def active():
            st = self.d.request("GET", "/api/v1/triggers/" + t["name"])[1]["status"]
            return st.get("phase") == "Active" and st.get("adapter", {}).get("botUser") and st

        return wait_for(active, timeout=60, what="trigger %s Active" % t["name"], step=0.05)

    def send(self, path, envelope, headers=None, **kw):
        body = json.dumps(envelope).encode()
        h = signed_headers(body, **kw)
        h.update(headers or {})
        return self.d.request("POST", path, raw=body, headers=h)

    def claimed(self, tenant, workload="echo-agent"):
        status, body = self.d.request("GET", "/api/v1/tenants/" + tenant)
        return status == 200 and any(c.get("workload") == workload
                                     for c in body.get("claims", []))

    def reply(self, thread, n=1, timeout=90):
        return wait_for(lambda: len(self.api.posted(thread)) >= n and self.api.posted(thread),
                        timeout=timeout, what="%d replies in thread %s" % (n, thread))

    def test_events_api_end_to_end(self):
        st = self.create(slack_trigger("sl", "/hooks/slack", self.api))
        self.assertEqual(st["adapter"]["botUser"], BOT_USER)
        self.assertEqual(self.api.calls[0][0], "auth.test")

        # The Request URL check: the challenge comes back (signed like every request).
        status, body = self.send("/hooks/slack", {"type": "url_verification",
                                                  "challenge": "c-123", "token": "x"})
        self.assertEqual((status, body), (200, {"challenge": "c-123"}))

        # An allowed user: acknowledged at once, a claim for her tenant, the answer in her
        # message's thread, posted with the bot token.
        e = self.ev.message("UJANE01", "hello agent")
        status, body = self.send("/hooks/slack", e)
        self.assertEqual((status, body), (200, {"ok": "queued"}))
        posted = self.reply(e["event"]["ts"])
        self.assertEqual(posted[0]["channel"], "C0CHAN")
        answer = json.loads(posted[0]["text"])
        self.assertEqual(answer["received"]["tenantId"], "sl-UJANE01")
        self.assertEqual(answer["received"]["text"], "hello agent")
        self.assertEqual(answer["received"]["payload"]["teamUser"], "T0TEAM-UJANE01")
        self.assertTrue(self.claimed("sl-UJANE01"))
        self.assertTrue(all(auth == "Bearer " + BOT_TOKEN for _, _, auth in self.api.calls))

        # A reply inside a thread goes to that thread.
        e2 = self.ev.message("UJANE01", "in a thread", thread_ts="1699999999.000100")
        self.assertEqual(self.send("/hooks/slack", e2)[0], 200)
        self.assertIn("in a thread", self.reply("1699999999.000100")[0]["text"])

        # A denied user gets the guard's message in the thread, and no claim exists.
        e3 = self.ev.message("UMALLORY", "let me in")
        self.assertEqual(self.send("/hooks/slack", e3)[0], 200)
        self.assertEqual([p["text"] for p in self.reply(e3["event"]["ts"])], ["not for you"])
        self.assertFalse(self.claimed("sl-UMALLORY"))

        # Refused before anything runs: bad signature, stale timestamp, no signature.
        e4 = self.ev.message("UANN0001", "forged")
        raw = json.dumps(e4).encode()
        for h in (signed_headers(raw, secret="wrong"),
                  signed_headers(raw, ts=int(time.time()) - 400),
                  {"Content-Type": "application/json"}):
            status, body = self.d.request("POST", "/hooks/slack", raw=raw, headers=h)
            self.assertEqual(status, 401, body)
        status, body = self.d.request("POST", "/hooks/slack", raw=raw, headers=dict(
            signed_headers(raw), **{"X-Slack-Signature": "v0=" + "0" * 64}))
        self.assertEqual((status, body["error"]), (401, "signature does not verify"))
        self.assertFalse(self.claimed("sl-UANN0001"))

        # Acknowledged and dropped: Slack's retry of an event already taken, the bot's own
        # message, a bot message, an edit, a type not in eventTypes. A later event from the
        # same user is answered after them (one user's events keep their order), so once its
        # answer is there, none of the dropped ones produced a reply.
        self.assertEqual(self.send("/hooks/slack", e, headers={"X-Slack-Retry-Num": "1",
                                                               "X-Slack-Retry-Reason":
                                                               "http_timeout"}),
                         (200, {"ok": "event already taken (a retry)"}))
        for drop, why in ((self.ev.message(BOT_USER, "my own"), "not a message from a user"),
                          (self.ev.message("UJANE01", "b", bot_id="B01"),
                           "not a message from a user"),
                          (self.ev.message("UJANE01", "e", subtype="message_changed"),
                           "not a message from a user")):
            self.assertEqual(self.send("/hooks/slack", drop), (200, {"ok": why}))
        react = self.ev.message("UJANE01", "x")
        react["event"]["type"] = "reaction_added"
        self.assertEqual(self.send("/hooks/slack", react),
                         (200, {"ok": "event type not handled"}))
        last = self.ev.message("UJANE01", "last")
        self.assertEqual(self.send("/hooks/slack", last)[0], 200)
        self.reply(last["event"]["ts"])
        self.assertEqual(len(self.api.posted(e["event"]["ts"])), 1)
        self.assertEqual(len(self.api.posted()), 4)  # e, e2, e3 and last

    def test_bad_config_is_refused_at_apply(self):
        for config, want in ((dict(apiBaseUrl="ftp://x"), "spec.config.apiBaseUrl"),
                             (dict(eventTypes=[]), "spec.config.eventTypes"),
                             (dict(workers=99), "spec.config.workers"),
                             (dict(signingSecret="inline"), "signingSecret")):
            t = slack_trigger("badsl", "/hooks/badsl", self.api, **config)
            status, body = self.d.request("POST", "/api/v1/triggers", t)
            self.assertTrue(400 <= status < 500, (config, status, body))
            self.assertIn(want, body["error"])

    def endpoint(self, tenant, workload):
        status, body = self.d.claim(tenant, workload)
        self.assertIn(status, (200, 201), body)
        ep = body.get("endpoint") or body.get("status", {}).get("endpoint")
        return "http://%s:%d" % (ep["host"], ep["port"])

    def test_per_tenant_order_parallel_tenants_and_bounded_queues(self):
        self.create(slack_trigger("gate", "/hooks/gate", self.api, workload="gate-agent",
                                  guards=[], workers=4, queueMax=3))
        hook = {"name": "gatehook", "spec": {
            "type": "webhook", "workloadRef": "gate-agent",
            "tenant": {"from": "user", "prefix": "sl-"},
            "driverOptions": {"path": "/cgi-bin/agent", "timeoutSeconds": 300},
            "config": {"path": "/hooks/gatehook", "signature": "none",
                       "rateLimitPerMinute": 6000}}}
        status, body = self.d.request("POST", "/api/v1/triggers", hook)
        self.assertEqual(status, 201, body)
        self.addCleanup(self.d.request, "DELETE", "/api/v1/triggers/gatehook")
        gate_a = self.endpoint("sl-UAAA0001", "gate-agent")  # warm, so no boot in the way
        self.endpoint("sl-UBBB0001", "gate-agent")

        # A's first event is held inside A's agent until the gate opens.
        block = self.ev.message("UAAA0001", "block", channel="CA")
        self.assertEqual(self.send("/hooks/gate", block)[0], 200)
        wait_for(lambda: self.agent_state(gate_a) == "inside", timeout=60,
                 what="A's event inside the agent")
        # Another tenant is not held up by it: B is answered while A still waits.
        b = self.ev.message("UBBB0001", "hi from B", channel="CB")
        self.assertEqual(self.send("/hooks/gate", b)[0], 200)
        self.assertIn("hi from B", self.reply(b["event"]["ts"])[0]["text"])
        self.assertEqual(self.api.posted(block["event"]["ts"]), [])

        # A's next events wait behind the first; the Slack queue holds 3 (the running one
        # included), so the fourth is answered "busy" in its thread at once.
        second = self.ev.message("UAAA0001", "second", channel="CA")
        third = self.ev.message("UAAA0001", "third", channel="CA")
        fourth = self.ev.message("UAAA0001", "fourth", channel="CA")
        for e in (second, third):
            self.assertEqual(self.send("/hooks/gate", e), (200, {"ok": "queued"}))
        self.assertEqual(self.send("/hooks/gate", fourth),
                         (200, {"ok": "busy (answered in the thread)"}))
        self.assertIn("busy", self.reply(fourth["event"]["ts"])[0]["text"])

        # The pipeline's own line for A (16 events per tenant and workload) answers 429 past
        # its bound: webhook events for A pile up behind the held one.
        results = []

        def fire(i):
            results.append(self.d.request("POST", "/hooks/gatehook",
                                          {"user": "UAAA0001", "text": "w%d" % i}, timeout=120))

        threads = [threading.Thread(target=fire, args=(i,)) for i in range(18)]
        for t in threads:
            t.start()
        over = wait_for(lambda: [r for r in results if r[0] == 429], timeout=60,
                        what="a 429 from the full line")
        self.assertIn("busy", over[0][1]["error"])
        self.assertEqual(self.api.posted(block["event"]["ts"]), [])

        # Open the gate (a direct call to A's instance): every held event is answered, A's
        # Slack events in their order, none overlapping another inside the agent.
        with urllib.request.urlopen(gate_a + "/cgi-bin/open", timeout=30) as r:
            self.assertEqual(r.read(), b"open")
        for t in threads:
            t.join(120)
        self.assertTrue(all(s in (200, 429) for s, _ in results), results)
        ok = [b for s, b in results if s == 200]
        self.assertTrue(ok and all(b["overlap"] is False for b in ok), results)
        for e in (block, second, third):
            self.reply(e["event"]["ts"])
        answers = [json.loads(self.api.posted(e["event"]["ts"])[0]["text"])
                   for e in (block, second, third)]
        self.assertEqual([a["received"]["text"] for a in answers], ["block", "second", "third"])
        self.assertTrue(all(a["overlap"] is False for a in answers), answers)
        order = [p["thread_ts"] for p in self.api.posted()
                 if p["thread_ts"] in (block["event"]["ts"], second["event"]["ts"],
                                       third["event"]["ts"])]
        self.assertEqual(order, [block["event"]["ts"], second["event"]["ts"],
                                 third["event"]["ts"]])

    def agent_state(self, url):
        with urllib.request.urlopen(url + "/cgi-bin/state", timeout=30) as r:
            return r.read().decode()
