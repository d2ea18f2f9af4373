"""Lua through triggers: a `type: lua` guard on a webhook trigger (its reason reaches the
sender), claim policies (a custom one and the three examples) enforced on a trigger's claims,
and apply-time validation of a guard's Lua source. The real daemon, the webhook trigger plugin
and an echo-agent container."""
import os
import time

import test_triggers
from bh import DaemonTestCase
from test_lua_policies import example, sleeper
from test_triggers import SECRET, trigger

GUARD = """function guard(e)
  if e.text == "please" and e.workload == "echo-agent" and e.raw.user.login == "jane" then
    return true
  end
  return false, "say please, " .. e.tenantId
end
"""


class LuaTriggerTest(DaemonTestCase):
    MANIFESTS = ("echo-agent.yaml",)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.d.put_secret("hook", "secret", SECRET)

    # The helpers of test_triggers (the module, not its class: unittest would run it here).
    create = test_triggers.TriggerTest.create
    wait_phase = test_triggers.TriggerTest.wait_phase
    post = test_triggers.TriggerTest.post
    signed = test_triggers.TriggerTest.signed
    claimed = test_triggers.TriggerTest.claimed

    def test_lua_guard_and_claim_policy_on_trigger_events(self):
        self.create(trigger("lg", "/hooks/lg", guards=[{"type": "lua",
                                                         "config": {"source": GUARD}}]))
        self.wait_phase("lg", "Active")
        status, body = self.signed("/hooks/lg", {"user": {"login": "jane"}, "text": "hello"})
        self.assertEqual((status, body.get("error")), (403, "say please, gh-jane"), body)
        self.assertFalse(self.claimed("gh-jane"))
        status, body = self.signed("/hooks/lg", {"user": {"login": "jane"}, "text": "please"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["received"]["text"], "please")

        # The default claim policy governs the trigger's claims too.
        pdir = os.path.join(self.d.state, "policies")
        with open(os.path.join(pdir, "default.lua"), "w") as f:
            f.write("function policy(e)\n"
                    "  if e.tenantId == 'gh-ann' then return false, 'ann may not claim' end\n"
                    "  return true\n"
                    "end\n")
        self.create(trigger("lp", "/hooks/lp", guards=[]))
        self.wait_phase("lp", "Active")
        status, body = self.signed("/hooks/lp", {"user": {"login": "ann"}, "text": "hi"})
        self.assertGreaterEqual(status, 400, body)
        self.assertIn("ann may not claim", body.get("error", ""), body)
        status, body = self.signed("/hooks/lp", {"user": {"login": "jane"}, "text": "hi"})
        self.assertEqual(status, 200, body)
        os.unlink(os.path.join(pdir, "default.lua"))

    def deploy_default(self, text):
        """The global claim policy, written as a deploy would (renamed over the old one)."""
        pdir = os.path.join(self.d.state, "policies")
        tmp = os.path.join(pdir, ".default.lua.tmp")
        with open(tmp, "w") as f:
            f.write(text)
        if not os.path.exists(os.path.join(pdir, "default.lua")):
            self.addCleanup(os.unlink, os.path.join(pdir, "default.lua"))
        os.rename(tmp, os.path.join(pdir, "default.lua"))

    def event(self, path, login):
        return self.signed(path, {"user": {"login": login}, "text": "hi"})

    def test_example_policies_on_trigger_claims(self):
        """examples/lua governs the claims a trigger makes as it does REST claims."""
        self.create(trigger("lx", "/hooks/lx", guards=[]))
        self.create(trigger("lv", "/hooks/lv", guards=[],
                            tenant={"from": "user.login", "prefix": "vip-"}))
        self.wait_phase("lx", "Active")
        self.wait_phase("lv", "Active")

        # Quota across workloads: kim already holds an instance of another workload.
        self.deploy_default(example("quota.lua").replace("local MAX = 2", "local MAX = 1"))
        self.d.apply_workload(sleeper("other", "default.lua"))
        self.assertEqual(self.d.claim("gh-kim", "other")[0], 201)
        status, body = self.event("/hooks/lx", "kim")
        self.assertGreaterEqual(status, 400, body)
        self.assertIn("already runs 1 instances (at most 1)", body.get("error", ""), body)
        self.assertEqual(self.d.release("gh-kim", "other")[0], 200)
        status, body = self.event("/hooks/lx", "kim")
        self.assertEqual(status, 200, body)

        # Business hours, closed now, then open.
        hour = time.gmtime().tm_hour
        src = example("business-hours.lua")
        closed = "\n".join("local DAYS = {true, true, true, true, true, true, true}"
                           if line.startswith("local DAYS = ") else line
                           for line in src.split("\n"))
        hours = "local OPEN, CLOSE = %d, %d" % ((hour + 2) % 24, (hour + 2) % 24 + 1)
        closed = closed.replace("local OPEN, CLOSE = 8, 18", hours)
        self.deploy_default(closed)
        status, body = self.event("/hooks/lx", "lee")
        self.assertGreaterEqual(status, 400, body)
        self.assertIn("outside business hours", body.get("error", ""), body)
        self.deploy_default(closed.replace(hours, "local OPEN, CLOSE = 0, 24"))
        status, body = self.event("/hooks/lx", "lee")
        self.assertEqual(status, 200, body)

        # VIP idle timeouts: the trigger's vip- tenants get the override and the label.
        self.deploy_default(example("vip-idle.lua"))
        status, body = self.event("/hooks/lv", "ada")
        self.assertEqual(status, 200, body)
        status, tenant = self.d.request("GET", "/api/v1/tenants/vip-ada")
        self.assertEqual(status, 200, tenant)
        claim = next(c for c in tenant["claims"] if c["workload"] == "echo-agent")
        self.assertEqual(claim["policy"]["overrides"]["idleTimeoutSeconds"], 3600, claim)
        self.assertEqual(claim["policy"]["overrides"]["labels"], {"tier": "vip"}, claim)
        for t in ("gh-kim", "gh-lee", "vip-ada"):
            self.assertEqual(self.d.release(t, "echo-agent")[0], 200)

    def test_lua_guard_config_is_validated_at_apply(self):
        for config, field in (({"source": "function guard(e) return"}, "config.source"),
                              ({"script": "../x.lua"}, "config.script"),
                              ({}, "exactly one of script or source"),
                              ({"source": "x", "scrpt": "a.lua"}, "scrpt")):
            status, body = self.d.request("POST", "/api/v1/triggers",
                                          trigger("bad", "/hooks/bad",
                                                  guards=[{"type": "lua", "config": config}]))
            self.assertTrue(400 <= status < 500, (config, status, body))
            self.assertIn(field, body["error"], config)
