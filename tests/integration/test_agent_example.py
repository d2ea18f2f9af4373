"""The agent example (workloads/examples/agent.yaml, agent/Dockerfile, agent/bridge.mjs) end to
end: built by the real buildah FROM the Debian test image served by the loopback registry,
run by the real daemon in the restricted network, prompted through a webhook trigger whose
driver is `websocket` (the claude-code message protocol on the workload's network.websocket).

The bridge calls the "model API" at ANTHROPIC_BASE_URL=http://api.anthropic.com with a
placeholder key; the egress proxy upgrades the request to HTTPS and injects the real key. The
fake model API lives in a fake internet (a netns the test creates, reached through a veth):
it answers 401 unless the injected key arrived, and says how many turns of history it got,
which is how the test sees the workspace (the conversation file) come back after the
instance hibernated. Everything made here is removed in class cleanups, even on failure."""
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import unittest

import fakenet
from bh import SOURCE, Daemon, net_slot, wait_for
from test_registry import debian_base_registry

BUILD_TIMEOUT = 300  # a first build pulls the Debian base from the registry
SECRET = "sk-ant-real-6f1e2d9c4b"
HOOK_SECRET = "agent-hook-secret"
MODEL = "api.anthropic.com"


def sig(body):
    return "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()


class AgentExampleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        n = net_slot(cls.addClassCleanup)
        cls.tmp = tempfile.mkdtemp(prefix="bh-it-agent-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        reg, cls.base = debian_base_registry(cls.tmp)
        cls.addClassCleanup(reg.stop)
        cls.workloads_dir()
        cls.ns, cls.veth = "bhit-ainet-%d" % os.getpid(), "btai%d" % n
        cls.host_ip, cls.inet_ip = "10.251.%d.1" % n, "10.251.%d.2" % n
        cls.record = os.path.join(cls.tmp, "requests.jsonl")
        ca = fakenet.make_ca(cls.tmp, [MODEL], "Boilerhouse Agent Test Root")
        fakenet.netns(cls.addClassCleanup, cls.ns, cls.veth, "btao", cls.host_ip, cls.inet_ip)
        fakenet.upstream(cls.addClassCleanup, cls.ns, cls.inet_ip, cls.record, cls.tmp,
                         model_key=SECRET)
        hosts = os.path.join(cls.tmp, "hosts")
        with open(hosts, "w") as f:
            f.write("%s %s\n" % (cls.inet_ip, MODEL))
        cls.d = Daemon(restricted_config={"trust_bundle": ca, "hosts_file": hosts},
                       extra_env={"BOILERHOUSE_WORKLOADS_DIR": cls.wdir})
        cls.addClassCleanup(cls.d.cleanup)
        cls.d.start()
        cls.d.put_secret("anthropic-api", "key", SECRET)
        cls.d.put_secret("webhook-agent", "secret", HOOK_SECRET)
        with open(os.path.join(SOURCE, "workloads/examples/agent.yaml")) as f:
            cls.d.apply_workload(f.read(), timeout=BUILD_TIMEOUT)
        with open(os.path.join(SOURCE, "workloads/triggers/agent-webhook.yaml")) as f:
            status, body = cls.d.request("POST", "/api/v1/triggers", raw=f.read())
        assert status == 201, (status, body)
        cls.offline_agent()
        for name in ("agent-webhook", "agent-offline"):
            wait_for(lambda: cls.d.request("GET", "/api/v1/triggers/" + name)[1]
                     .get("status", {}).get("phase") == "Active", 60, "trigger Active")

    @classmethod
    def offline_agent(cls):
        """The same image without a network: the driver reaches the bridge through the
        instance's unix socket endpoint (the bridge also listens on /run/boilerhouse/http.sock)."""
        status, wl = cls.d.request("GET", "/api/v1/workloads/agent")
        spec = json.loads(json.dumps(wl["spec"]))
        spec["image"] = {"ref": wl["status"]["imageRef"]}
        spec["network"] = {"access": "none", "websocket": "/ws"}
        spec["entrypoint"]["env"]["BRIDGE_SOCKET"] = "/run/boilerhouse/http.sock"
        status, body = cls.d.request("POST", "/api/v1/workloads",
                                     {"name": "agent-offline", "spec": spec})
        assert status == 201, (status, body)
        cls.d.wait_workload("agent-offline", "Ready")
        status, body = cls.d.request("POST", "/api/v1/triggers", {
            "name": "agent-offline",
            "spec": {"type": "webhook", "workloadRef": "agent-offline",
                     "tenant": {"from": "user", "prefix": "offline-"}, "driver": "websocket",
                     "config": {"path": "/hooks/agent-offline", "signature": "github",
                                "secretName": "webhook-agent"}}})
        assert status == 201, (status, body)

    @classmethod
    def workloads_dir(cls):
        """The example's build context, its base swapped for the registry's copy."""
        cls.wdir = os.path.join(cls.tmp, "workloads")
        shutil.copytree(os.path.join(SOURCE, "workloads/examples/agent"),
                        os.path.join(cls.wdir, "agent"))
        path = os.path.join(cls.wdir, "agent/Dockerfile")
        with open(path) as f:
            text = f.read().replace("docker.io/library/debian:12-slim", cls.base)
        with open(path, "w") as f:
            f.write(text)

    # ---- helpers ----

    def prompt(self, user, text, path="/hooks/agent"):
        body = json.dumps({"user": user, "text": text}).encode()
        return self.d.request("POST", path, raw=body,
                              headers={"Content-Type": "application/json",
                                       "X-Hub-Signature-256": sig(body)}, timeout=150)

    def model_calls(self):
        try:
            with open(self.record) as f:
                return [r for r in map(json.loads, f) if r["path"] == "/v1/messages"]
        except FileNotFoundError:
            return []

    def instance(self, tenant, workload="agent"):
        status, body = self.d.request("GET", "/api/v1/tenants/" + tenant)
        self.assertEqual(status, 200, body)
        ids = [c.get("instanceId") for c in body.get("claims", [])
               if c.get("workload") == workload]
        self.assertTrue(ids and ids[0], body)
        return ids[0]

    def run_in(self, iid, argv):
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": argv})
        self.assertEqual(status, 200, out)
        return out["exitCode"], out.get("stdout", "") + out.get("stderr", "")

    def bridge_log(self, iid):
        status, out = self.d.request("GET", "/api/v1/instances/%s/logs" % iid)
        self.assertEqual(status, 200, out)
        return out if isinstance(out, str) else json.dumps(out)

    # ---- the test ----

    def test_prompt_reply_hibernate_and_the_workspace_comes_back(self):
        tenant = "agent-jane"
        self.addCleanup(self.d.release, tenant, "agent")
        status, body = self.prompt("jane", "remember the number 42")
        self.assertEqual(status, 200, (body, self.d.log()))
        self.assertEqual(body, {"text": "model heard 1 turns; last: remember the number 42"})

        # The model API got the real key (the proxy injected it, over HTTPS upstream) and the
        # bridge's request as it sent it; the instance holds only the placeholder.
        calls = self.model_calls()
        self.assertEqual(len(calls), 1, calls)
        self.assertEqual((calls[0]["port"], calls[0]["headers"].get("x-api-key")), (443, SECRET))
        self.assertEqual(calls[0]["body"]["messages"],
                         [{"role": "user", "content": "remember the number 42"}])
        iid = self.instance(tenant)
        rc, out = self.run_in(iid, ["sh", "-c", "env; cat /proc/1/environ; "
                                    "grep -rl sk-ant-real / --exclude-dir=proc --exclude-dir=sys"
                                    " 2>/dev/null; true"])
        self.assertIn("ANTHROPIC_API_KEY=sk-ant-proxy-managed", out)
        self.assertNotIn(SECRET, out)

        # The second prompt goes over the same session (one init), with the history the
        # bridge keeps in the workspace.
        status, body = self.prompt("jane", "what was it?")
        self.assertEqual((status, body), (200, {"text": "model heard 3 turns; last: what was it?"}),
                         self.d.log())
        self.assertEqual(self.bridge_log(iid).count("session 1 opened for agent-jane"), 1)
        self.assertNotIn("session 2", self.bridge_log(iid))

        # Another tenant: its own instance, session and workspace.
        self.addCleanup(self.d.release, "agent-ann", "agent")
        status, body = self.prompt("ann", "hello")
        self.assertEqual((status, body), (200, {"text": "model heard 1 turns; last: hello"}))

        # Release hibernates the workspace; the next prompt claims again (the driver opens a
        # new session to the new instance) and the history is there.
        status, out = self.d.release(tenant, "agent")
        self.assertEqual(status, 200, out)
        wait_for(lambda: not any(c.get("workload") == "agent" for c in
                                 self.d.request("GET", "/api/v1/tenants/" + tenant)[1]
                                 .get("claims", [])), 60, "the claim released")
        status, body = self.prompt("jane", "and now?")
        self.assertEqual((status, body), (200, {"text": "model heard 5 turns; last: and now?"}),
                         self.d.log())
        iid2 = self.instance(tenant)
        rc, out = self.run_in(iid2, ["cat", "/workspace/agent-jane/conversation.md"])
        self.assertEqual(rc, 0, out)
        self.assertIn("## user\nremember the number 42", out)
        self.assertIn("## assistant\nmodel heard 5 turns; last: and now?", out)

    def test_without_a_network_through_the_unix_socket(self):
        """The session runs over the socket endpoint (init, ready, prompt); the bridge cannot
        reach the model API, and its error message comes back as the driver's error."""
        self.addCleanup(self.d.release, "offline-bob", "agent-offline")
        status, body = self.prompt("bob", "anyone there?", "/hooks/agent-offline")
        self.assertEqual(status, 502, body)
        self.assertIn("the agent reported an error", json.dumps(body))
        self.assertRegex(json.dumps(body), "ENOTFOUND|EAI_AGAIN|fetch failed")
        iid = self.instance("offline-bob", "agent-offline")
        status, inst = self.d.request("GET", "/api/v1/instances/" + iid)
        self.assertEqual(status, 200, inst)
        self.assertIn("session 1 opened for offline-bob", self.bridge_log(iid))
        status, claim = self.d.claim("offline-bob", "agent-offline")
        self.assertEqual(status, 200, claim)
        self.assertNotIn("host", claim.get("endpoint", {}), claim)
        self.assertIn("socket", claim.get("endpoint", {}), claim)


if __name__ == "__main__":
    unittest.main()
