"""Lua through triggers: a `type: lua` guard on a webhook trigger (its reason reaches the
sender), a claim policy enforced on a trigger's claim, and apply-time validation of a guard's
Lua source. The real daemon, the webhook trigger plugin and an echo-agent container."""
import os

import test_triggers
from bh import DaemonTestCase
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
        status, body = cls.d.request("POST", "/api/v1/secrets",
                                     {"name": "hook", "key": "secret", "value": SECRET})
        assert status == 201, (status, body)

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
