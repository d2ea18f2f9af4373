"""The telegram trigger end to end against a fake Telegram Bot API server in this process
(real HTTP on loopback, the Bot API's shapes: /bot<token>/<method>, getUpdates long polling
with offset confirmation), the real daemon and a real echo-agent container."""
import http.server
import json
import threading
import time

from bh import DaemonTestCase, wait_for

TOKEN = "123456:TEST-token_abc"


class FakeBotApi:
    """Records every call; getUpdates returns the queued updates at or after `offset` (an
    offset confirms, and drops, the ones before it, as Telegram does) or waits up to `timeout`
    seconds for one to be queued."""

    def __init__(self):
        self.calls = []
        self.updates = []
        self.cond = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                prefix = "/bot" + TOKEN + "/"
                if not self.path.startswith(prefix):
                    return self.answer(401, {"ok": False, "description": "Unauthorized"})
                method = self.path[len(prefix):]
                with outer.cond:
                    outer.calls.append((method, body))
                    outer.cond.notify_all()
                self.answer(200, {"ok": True, "result": outer.result(method, body)})

            def answer(self, status, obj):
                raw = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def result(self, method, body):
        if method == "getMe":
            return {"id": 99, "is_bot": True, "username": "bh_test_bot"}
        if method != "getUpdates":
            return True if method in ("deleteWebhook", "sendChatAction",
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
            return [b for m, b in self.calls if m == method and
                    (chat is None or b.get("chat_id") == chat)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


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
                             (dict(secretKey=5), "secretKey")):
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
        spec = {"type": "telegram", "workloadRef": "echo-agent",
                "tenant": {"from": "usernameOrId", "prefix": "tg-"},
                "driverOptions": {"path": "/cgi-bin/agent"},
                "guards": [{"type": "allowlist",
                            "config": {"tenants": ["tg-jane"],
                                       "denyMessage": "Ask the admin for access."}}],
                "config": {"secretName": "tg", "apiBaseUrl": api.url,
                           "pollTimeoutSeconds": 1}}
        status, body = self.d.request("POST", "/api/v1/triggers", {"name": "tg", "spec": spec})
        self.assertEqual(status, 201, body)
        wait_for(lambda: api.sent("getUpdates"), timeout=30, what="the first poll")
        self.assertEqual([m for m, _ in api.calls[:2]], ["getMe", "deleteWebhook"])
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
        wait_for(lambda: len(self.replies(api, 70)) >= 5, timeout=30, what="a split answer")
        pieces = self.replies(api, 70)[3:]
        self.assertEqual(len(pieces[0]), 4096)
        whole = json.loads("".join(pieces))
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
