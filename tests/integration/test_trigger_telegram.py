"""The telegram trigger end to end against a fake Telegram Bot API server in this process
(real HTTP on loopback, the Bot API's shapes: /bot<token>/<method>, getUpdates long polling
with offset confirmation), the real daemon and a real echo-agent container."""
import json
import time

from bh import DaemonTestCase, wait_for
from fakeapi import FakeJsonApi

TOKEN = "123456:TEST-token_abc"


class FakeBotApi(FakeJsonApi):
    """Records every call; getUpdates returns the queued updates at or after `offset` (an
    offset confirms, and drops, the ones before it, as Telegram does) or waits up to `timeout`
    seconds for one to be queued."""

    def __init__(self):
        self.updates = []
        self.broken = False  # answers every call with an error (Telegram down)
        super().__init__()
        self.url = self.base

    def handle(self, path, body, auth):
        prefix = "/bot" + TOKEN + "/"
        if not path.startswith(prefix):
            return 401, {"ok": False, "description": "Unauthorized"}
        method = path[len(prefix):]
        self.record(method, body, auth)
        if self.broken:
            return 502, {"ok": False, "description": "Bad Gateway"}
        return 200, {"ok": True, "result": self.result(method, body)}

    def result(self, method, body):
        if method == "getMe":
            return {"id": 99, "is_bot": True, "username": "bh_test_bot"}
        if method != "getUpdates":
            return True if method in ("deleteWebhook", "setWebhook", "sendChatAction",
                                      "answerCallbackQuery") else {"message_id": 1}
        deadline = time.monotonic() + body.get("timeout", 0)
        with self.cond:
            while True:
                self.updates = [u for u in self.updates
                                if u["update_id"] >= body.get("offset", 0)]
                if self.updates or time.monotonic() >= deadline:
                    return list(self.updates)
                self.cond.wait(deadline - time.monotonic())

    def push(self, update):
        with self.cond:
            self.updates.append(update)
            self.cond.notify_all()

    def sent(self, method="sendMessage", chat=None):
        with self.cond:
            return [b for m, b, _ in self.calls if m == method and
                    (chat is None or b.get("chat_id") == chat)]


def tg_spec(api, allowed, **config):
    return {"type": "telegram", "workloadRef": "echo-agent",
            "tenant": {"from": "usernameOrId", "prefix": "tg-"},
            "driverOptions": {"path": "/cgi-bin/agent"},
            "guards": [{"type": "allowlist",
                        "config": {"tenants": allowed,
                                   "denyMessage": "Ask the admin for access."}}],
            "config": dict({"secretName": "tg", "apiBaseUrl": api.url}, **config)}


def user(uid, username=None):
    u = {"id": uid, "is_bot": False, "first_name": "U%d" % uid}
    if username:
        u["username"] = username
    return u


def message(update_id, uid, username, text, kind="message"):
    return {"update_id": update_id,
            kind: {"message_id": update_id, "date": int(time.time()),
                   "from": user(uid, username), "chat": {"id": uid * 10, "type": "private"},
                   "text": text}}


def callback(update_id, uid, username, data):
    return {"update_id": update_id,
            "callback_query": {"id": "cb%d" % update_id, "from": user(uid, username),
                               "data": data,
                               "message": {"message_id": 1, "date": 0,
                                           "chat": {"id": uid * 10, "type": "private"}}}}


class TelegramTriggerTest(DaemonTestCase):
    MANIFESTS = ("echo-agent.yaml",)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d.put_secret("tg", "token", TOKEN)

    def claimed(self, tenant):
        status, body = self.d.request("GET", "/api/v1/tenants/" + tenant)
        return status == 200 and any(c.get("workload") == "echo-agent"
                                     for c in body.get("claims", []))

    def replies(self, api, chat):
        return [b["text"] for b in api.sent(chat=chat)]

    def test_bad_config_is_refused_at_apply(self):
        for config, want in ((dict(apiBaseUrl="ftp://x"), "spec.config.apiBaseUrl"),
                             (dict(pollTimeoutSeconds=99), "spec.config.pollTimeoutSeconds"),
                             (dict(secretKey=5), "secretKey"),
                             (dict(mode="pigeon"), "spec.config.mode"),
                             (dict(mode="webhook", webhookUrl="https://x/h"), "spec.config.path"),
                             (dict(mode="webhook", path="/hooks/x"), "spec.config.webhookUrl"),
                             (dict(path="/hooks/x"), "spec.config.path: only in webhook")):
            spec = {"type": "telegram", "workloadRef": "echo-agent",
                    "tenant": {"from": "username"}, "config": dict({"secretName": "tg"},
                                                                   **config)}
            status, body = self.d.request("POST", "/api/v1/triggers",
                                          {"name": "badtg", "spec": spec})
            self.assertTrue(400 <= status < 500, (config, status, body))
            self.assertIn(want, body["error"])

    def test_polling_end_to_end_and_restart(self):
        api = FakeBotApi()
        self.addCleanup(api.close)
        spec = tg_spec(api, ["tg-jane"], pollTimeoutSeconds=1)
        status, body = self.d.request("POST", "/api/v1/triggers", {"name": "tg", "spec": spec})
        self.assertEqual(status, 201, body)
        wait_for(lambda: api.sent("getUpdates"), timeout=30, what="the first poll")
        self.assertEqual([c[0] for c in api.calls[:2]], ["getMe", "deleteWebhook"])
        st = wait_for(lambda: self.d.request("GET", "/api/v1/triggers/tg")[1]["status"]
                      .get("adapter", {}).get("bot"), timeout=30, what="status.adapter.bot")
        self.assertEqual(st, "bh_test_bot")

        # An allowed user: a claim for her tenant, "typing", then the answer to her chat.
        api.push(message(1, 7, "Jane", "hello agent"))
        got = wait_for(lambda: self.replies(api, 70), timeout=90, what="the answer to jane")
        answer = json.loads(got[0])
        self.assertEqual(answer["received"]["tenantId"], "tg-jane")
        self.assertEqual(answer["received"]["text"], "hello agent")
        self.assertEqual(answer["received"]["payload"]["userId"], "7")
        self.assertTrue(self.claimed("tg-jane"))
        self.assertEqual(api.sent("sendChatAction", chat=70)[0]["action"], "typing")

        # A denied user gets the guard's message, and no claim exists for her.
        api.push(message(2, 8, "mallory", "let me in"))
        wait_for(lambda: self.replies(api, 80), timeout=30, what="the refusal")
        self.assertEqual(self.replies(api, 80), ["Ask the admin for access."])
        self.assertFalse(self.claimed("tg-mallory"))

        # A button press and an edit reach the agent as events too.
        api.push(callback(3, 7, "jane", "button-1"))
        wait_for(lambda: len(self.replies(api, 70)) >= 2, timeout=30, what="callback answer")
        self.assertIn("button-1", self.replies(api, 70)[1])
        self.assertEqual(api.sent("answerCallbackQuery")[0]["callback_query_id"], "cb3")
        api.push(message(4, 7, "jane", "edited text", kind="edited_message"))
        wait_for(lambda: len(self.replies(api, 70)) >= 3, timeout=30, what="edit answer")
        self.assertIn('"kind":"edited_message"', self.replies(api, 70)[2])

        # A long answer is split at 4096 characters; the pieces make the whole.
        long_text = "L" * 5000
        api.push(message(5, 7, "jane", long_text))

        def split_answer():  # every piece arrived: together they parse
            pieces = self.replies(api, 70)[3:]
            try:
                return pieces, json.loads("".join(pieces))
            except ValueError:
                return None
        pieces, whole = wait_for(split_answer, timeout=30, what="all of a split answer")
        self.assertGreaterEqual(len(pieces), 2)
        self.assertEqual({len(p) for p in pieces[:-1]}, {4096})
        self.assertEqual(whole["received"]["text"], long_text)

        # A restart in the middle of a long poll: update 6 arrives while the daemon is down.
        wait_for(lambda: [b for b in api.sent("getUpdates") if b.get("offset") == 6],
                 timeout=30, what="a poll past update 5")
        self.d.stop()
        api.push(message(6, 7, "jane", "while you were away"))
        polls_before = len(api.sent("getUpdates"))
        self.d.start()
        wait_for(lambda: any("while you were away" in t for t in self.replies(api, 70)),
                 timeout=90, what="the answer to update 6")
        # Every poll since the stop asks from update 6 on: the offset was persisted, nothing
        # repeated. (The stopped daemon's last poll may still be counted here: it asked from 6
        # too.)
        polls = wait_for(lambda: api.sent("getUpdates")[polls_before:], timeout=30,
                         what="a poll after the restart")
        self.assertEqual([p["offset"] for p in polls if p.get("offset", 0) < 6], [])
        # Let it poll a few more rounds, then count: every update answered exactly once.
        n = len(api.sent("getUpdates"))
        wait_for(lambda: len(api.sent("getUpdates")) >= n + 2, timeout=30, what="more polls")
        texts = [json.loads(t)["received"]["text"] for t in self.replies(api, 70)
                 if t.startswith("{") and t.endswith("}")]
        self.assertEqual(texts, ["hello agent", "button-1", "edited text",
                                 "while you were away"])
        self.assertEqual(self.replies(api, 80), ["Ask the admin for access."])
        self.assertEqual(self.d.request("DELETE", "/api/v1/triggers/tg")[0], 200)

    def status(self, name):
        return self.d.request("GET", "/api/v1/triggers/" + name)[1]["status"]

    def test_webhook_mode_end_to_end(self):
        api = FakeBotApi()
        self.addCleanup(api.close)
        spec = tg_spec(api, ["tg-ann01"], mode="webhook", path="/hooks/tg",
                       webhookUrl="https://bot.example/hooks/tg")
        status, body = self.d.request("POST", "/api/v1/triggers", {"name": "tgw", "spec": spec})
        self.assertEqual(status, 201, body)
        self.addCleanup(self.d.request, "DELETE", "/api/v1/triggers/tgw")
        hook = wait_for(lambda: api.sent("setWebhook"), timeout=30, what="setWebhook")[0]
        self.assertEqual(hook["url"], "https://bot.example/hooks/tg")
        self.assertEqual(sorted(hook["allowed_updates"]),
                         ["callback_query", "edited_message", "message"])
        token = hook["secret_token"]
        self.assertRegex(token, r"^[0-9a-f]{64}$")
        self.assertEqual(api.sent("getUpdates"), [])  # no polling in webhook mode
        wait_for(lambda: self.status("tgw").get("adapter", {}).get("mode") == "webhook",
                 timeout=30, what="status.adapter.mode webhook")

        def post(update, secret=token):
            h = {"Content-Type": "application/json"}
            if secret is not None:
                h["X-Telegram-Bot-Api-Secret-Token"] = secret
            return self.d.request("POST", "/hooks/tg", raw=json.dumps(update).encode(), headers=h)

        # Without the secret token, or with another, nothing happens.
        self.assertEqual(post(message(10, 9, "ann01", "forged"), secret=None)[0], 401)
        self.assertEqual(post(message(10, 9, "ann01", "forged"), secret="0" * 64)[0], 401)
        self.assertEqual(post(message(10, 9, "ann01", "forged"), secret=token[:-1])[0], 401)
        self.assertEqual(self.d.request("POST", "/hooks/tg", raw=b"{not json", headers={
            "X-Telegram-Bot-Api-Secret-Token": token})[0], 400)
        self.assertFalse(self.claimed("tg-ann01"))

        # An allowed user: acknowledged at once, then "typing" and the answer in her chat.
        self.assertEqual(post(message(11, 9, "Ann01", "via webhook")), (200, {"ok": "queued"}))
        got = wait_for(lambda: self.replies(api, 90), timeout=90, what="the answer to ann")
        self.assertEqual(json.loads(got[0])["received"]["text"], "via webhook")
        self.assertTrue(self.claimed("tg-ann01"))
        self.assertEqual(api.sent("sendChatAction", chat=90)[0]["action"], "typing")
        # A denied user gets the guard's message and no claim.
        self.assertEqual(post(message(12, 8, "mallory", "let me in"))[0], 200)
        wait_for(lambda: self.replies(api, 80), timeout=30, what="the refusal")
        self.assertEqual(self.replies(api, 80), ["Ask the admin for access."])
        self.assertFalse(self.claimed("tg-mallory"))
        # Telegram's retry of update 11 is acknowledged and not answered again; a callback
        # after it is (one chat's updates keep their order, so the retry was dropped).
        self.assertEqual(post(message(11, 9, "Ann01", "via webhook")), (200, {"ok": "skipped"}))
        self.assertEqual(post(callback(13, 9, "ann01", "button-2"))[0], 200)
        wait_for(lambda: len(self.replies(api, 90)) >= 2, timeout=30, what="callback answer")
        self.assertIn("button-2", self.replies(api, 90)[1])
        self.assertEqual(len(self.replies(api, 90)), 2)

    def test_a_failing_adapter_is_restarted_with_backoff(self):
        api = FakeBotApi()
        self.addCleanup(api.close)
        api.broken = True
        spec = {"type": "telegram", "workloadRef": "echo-agent",
                "tenant": {"from": "usernameOrId", "prefix": "tg-"},
                "config": {"secretName": "tg", "apiBaseUrl": api.url,
                           "pollTimeoutSeconds": 1}}
        status, body = self.d.request("POST", "/api/v1/triggers", {"name": "tgf", "spec": spec})
        self.assertEqual(status, 201, body)
        self.addCleanup(self.d.request, "DELETE", "/api/v1/triggers/tgf")
        # The adapter's thread dies on getMe; the phase says why and when it restarts.
        st = wait_for(lambda: (lambda s: s.get("phase") == "Error" and s)(self.status("tgf")),
                      timeout=60, what="phase Error", step=0.05)
        self.assertIn("adapter failed: getMe: Bad Gateway", st["detail"])
        self.assertRegex(st["detail"], r"restart \d+ in \d+ s")
        # It is started again, and fails again, with a growing count (backoff).
        st = wait_for(lambda: (lambda s: s.get("restarts", 0) >= 2 and s)(self.status("tgf")),
                      timeout=60, what="a second failed restart", step=0.1)
        self.assertGreaterEqual(len(api.sent("getMe")), 2)
        # Telegram is back: the next restart stays up.
        api.broken = False
        wait_for(lambda: self.status("tgf").get("phase") == "Active" and
                 api.sent("getUpdates"), timeout=90, what="Active again and polling")
        self.assertEqual(self.status("tgf").get("adapter", {}).get("bot"), "bh_test_bot")
