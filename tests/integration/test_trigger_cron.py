"""The cron trigger end to end: the real daemon and plugin, a real echo-agent container
answering the http driver. Schedules are seconds-scale through the documented test-oriented
`@every <n>s` extension; the missed-run policy is driven by a real daemon restart, with the
persisted last-run time set back to stand for a long downtime."""
import os
import time

from bh import DaemonTestCase, read_manifest, wait_for


def cron(name, schedule, tenant, **config):
    c = {"schedule": schedule}
    c.update(config)
    return {"name": name,
            "spec": {"type": "cron", "workloadRef": "echo-agent",
                     "tenant": {"static": tenant},
                     "driverOptions": {"path": "/cgi-bin/agent"}, "config": c}}


def slow_agent():
    """The echo agent under another name, taking 4 s per event."""
    text = read_manifest("echo-agent.yaml").replace("name: echo-agent", "name: slow-agent")
    return text.replace("#!/bin/sh\n", "#!/bin/sh\n        sleep 4\n", 1)


class CronTriggerTest(DaemonTestCase):
    MANIFESTS = ("echo-agent.yaml",)

    def create(self, t, expect=201):
        status, body = self.d.request("POST", "/api/v1/triggers", t)
        self.assertEqual(status, expect, body)
        return body

    def status(self, name):
        status, body = self.d.request("GET", "/api/v1/triggers/" + name)
        self.assertEqual(status, 200, body)
        return body["status"]

    def claimed(self, tenant, workload="echo-agent"):
        status, body = self.d.request("GET", "/api/v1/tenants/" + tenant)
        return status == 200 and any(c.get("workload") == workload
                                     for c in body.get("claims", []))

    def state_file(self, name):
        return os.path.join(self.d.state, "triggers", "cron", name, "last-schedule")

    def test_bad_config_is_refused_at_apply_naming_the_key(self):
        cases = [
            (dict(schedule="61 * * * *"), "spec.config.schedule: minute \"61\""),
            (dict(schedule="* * *"), "spec.config.schedule"),
            (dict(schedule="0 0 30 2 *"), "spec.config.schedule: no time matches"),
            (dict(schedule="@daily", timeZone="../../etc/passwd"), "spec.config.timeZone"),
            (dict(schedule="@daily", timeZone="Mars/Olympus_Mons"), "unknown zone"),
            (dict(schedule="@daily", concurrencyPolicy="Replace"),
             "spec.config.concurrencyPolicy"),
            (dict(schedule="@daily", payload=5), "spec.config.payload"),
            (dict(schedule="@daily", startingDeadlineSeconds=-5),
             "spec.config.startingDeadlineSeconds"),
        ]
        for config, want in cases:
            t = cron("badcron", "x", "t1")
            t["spec"]["config"] = config
            status, body = self.d.request("POST", "/api/v1/triggers", t)
            self.assertTrue(400 <= status < 500, (config, status, body))
            self.assertIn(want, body["error"], config)
            self.assertEqual(self.d.request("GET", "/api/v1/triggers/badcron")[0], 404)

    def test_fires_into_a_real_instance_with_next_run_in_status(self):
        self.create(cron("tick", "@every 2s", "cron-tick", timeZone="Europe/Berlin",
                         payload={"text": "tick", "job": "report"}))
        st = wait_for(lambda: (lambda s: s if s.get("events", 0) >= 2 else None)(
            self.status("tick")), timeout=90, what="two cron runs")
        self.assertEqual(st["phase"], "Active", st)
        self.assertEqual(st["failed"], 0, st)
        # nextRun is shown in the trigger's zone (CET or CEST).
        self.assertRegex(st["adapter"]["nextRun"],
                         r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00$")
        self.assertIn("lastScheduleTime", st["adapter"])
        self.assertTrue(self.claimed("cron-tick"))
        status, body = self.d.request("GET", "/api/v1/triggers/tick/events?limit=2")
        self.assertEqual([e["verdict"] for e in body["events"]], ["allow", "allow"], body)
        self.assertEqual({e["tenant"] for e in body["events"]}, {"cron-tick"})
        # The runs keep coming, one per period.
        n = st["events"]
        wait_for(lambda: self.status("tick")["events"] >= n + 2, timeout=30,
                 what="two more runs")
        # The payload reached the agent: the plugin logs the agent's answer (the echo).
        self.assertRegex(self.d.log().replace('\\"', '"'), r'run \S+: answer: \{"agent":"echo","received":.*'
                         r'"text":"tick".*"payload":\{"text":"tick","job":"report"\}')
        self.assertEqual(self.d.request("DELETE", "/api/v1/triggers/tick")[0], 200)

    def test_forbid_skips_a_run_while_the_previous_is_going(self):
        self.d.apply_workload(slow_agent())
        t = cron("slow", "@every 1s", "cron-slow", concurrencyPolicy="Forbid",
                 payload="a string payload")
        t["spec"]["workloadRef"] = "slow-agent"
        self.create(t)
        st = wait_for(lambda: (lambda s: s if "skippedRuns" in s.get("adapter", {}) and
                               s.get("events", 0) >= 1 else None)(self.status("slow")),
                      timeout=120, what="a skipped run and a finished one")
        self.assertGreaterEqual(int(st["adapter"]["skippedRuns"]), 1, st)
        self.assertEqual(st["failed"], 0, st)  # Forbid skips: nothing waits in the lane
        self.assertTrue(self.claimed("cron-slow", "slow-agent"))
        self.assertEqual(self.d.request("DELETE", "/api/v1/triggers/slow")[0], 200)

    def test_missed_run_after_downtime(self):
        # Daily at midnight UTC: after a "downtime" since two days ago, today's midnight run
        # is missed. Without a deadline it is started at once; with a 10 s deadline it is too
        # late (unless the test runs in the 10 s after midnight: then wait them out).
        wait_for(lambda: time.time() % 86400 > 15, timeout=30, what="not just after midnight")
        self.create(cron("nodeadline", "0 0 * * *", "cron-late"))
        self.create(cron("deadline", "0 0 * * *", "cron-strict", startingDeadlineSeconds=10))
        for name in ("nodeadline", "deadline"):
            wait_for(lambda: "nextRun" in self.status(name).get("adapter", {}), timeout=30,
                     what=name + " scheduled")
        self.d.stop()
        two_days_ago = int(time.time()) - 2 * 86400
        for name in ("nodeadline", "deadline"):
            os.makedirs(os.path.dirname(self.state_file(name)), exist_ok=True)
            with open(self.state_file(name), "w") as f:
                f.write("%d\n" % two_days_ago)
        self.d.start()
        midnight = int(time.time()) // 86400 * 86400
        st = wait_for(lambda: (lambda s: s if s.get("events", 0) >= 1 else None)(
            self.status("nodeadline")), timeout=90, what="the missed run")
        self.assertEqual(st["adapter"]["lastScheduleTime"],
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(midnight)), st)
        self.assertTrue(self.claimed("cron-late"))
        with open(self.state_file("nodeadline")) as f:
            self.assertEqual(int(f.read()), midnight)
        # The strict one decided (it is scheduled) and started nothing.
        st = wait_for(lambda: (lambda s: s if "nextRun" in s.get("adapter", {}) else None)(
            self.status("deadline")), timeout=30, what="deadline scheduled")
        self.assertEqual(st.get("events", 0), 0, st)
        self.assertNotIn("lastScheduleTime", st["adapter"])
        self.assertFalse(self.claimed("cron-strict"))
