"""The operator's view on the real daemon with real containers: the /ws event stream (auth,
typed events, replay by id, resync, filters, slow-consumer cut, keepalive) and /metrics
(promtool-clean, histogram counts equal to the claims made, scraped by a real Prometheus)."""
import json
import re
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from bh import DaemonTestCase, free_port, require, wait_for
from wsclient import Closed, WsClient

KEY = "observe-test-key"
NOTES = """
apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: %s
spec:
  version: "1"
  image:
    ref: localhost/busybox:latest
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: 1}
  network: {access: none}
  filesystem:
    overlayDirs: ["/workspace"]
  idle: {timeoutSeconds: 300, action: hibernate}
  entrypoint:
    cmd: sh
    args: ["-c", "mkdir -p /workspace && echo hi > /workspace/f && rm -f /tmp/say && mkfifo /tmp/say && while true; do cat /tmp/say; done"]
"""
# What is written to /tmp/say inside a NOTES instance lands in its log (its stdout).
AUTH = {"Authorization": "Bearer " + KEY}


class ObserveBase(DaemonTestCase):
    MANIFEST_TEXTS = (NOTES % "notes",)
    DAEMON_KW = {"api_key": KEY}

    def ws(self, query="", headers=AUTH, **kw):
        c = WsClient(self.d.port, "/ws" + ("?" + query if query else ""), headers=headers, **kw)
        if c.status == 101:
            self.addCleanup(c.close)
            hello = c.recv()
            self.assertEqual(hello["type"], "hello")
            c.hello = hello
        return c

    def claim(self, tenant, workload="notes"):
        status, body = self.d.claim(tenant, workload)
        self.assertIn(status, (200, 201), (body, self.d.log()))
        return body

    def release(self, tenant, workload="notes"):
        status, body = self.d.release(tenant, workload)
        self.assertEqual(status, 200, (body, self.d.log()))

    def metric(self, name):
        status, text = self.d.request("GET", "/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


class TestWs(ObserveBase):
    DAEMON_KW = {"api_key": KEY, "extra_env": {"BOILERHOUSE_WS_PING_SECONDS": "1"}}

    def refused(self, path):
        c = WsClient(self.d.port, path)
        c.sock.close()
        return c.status

    def test_auth_is_required_and_browser_tokens_work(self):
        self.assertEqual(self.refused("/ws"), 401)
        self.assertEqual(self.refused("/ws?token=123.abc"), 401)
        status, tok = self.d.request("POST", "/api/v1/ws/token")
        self.assertEqual(status, 200, tok)
        self.assertGreater(tok["expiresAt"], time.time())
        forged = tok["token"][:-1] + ("0" if tok["token"][-1] != "0" else "1")
        self.assertEqual(self.refused("/ws?token=" + forged), 401)
        c = self.ws("token=" + tok["token"], headers={})
        self.assertEqual(c.status, 101)
        # Not an upgrade: answered as plain HTTP.
        status, _ = self.d.request("GET", "/ws")
        self.assertEqual(status, 400)

    def test_claim_and_release_events_and_exact_replay(self):
        live = self.ws()
        first = self.ws()
        self.claim("alice")
        claimed, _ = first.recv_until(lambda m: m["type"] == "tenant.claimed"
                                      and m.get("tenant") == "alice", what="tenant.claimed")
        self.assertEqual(claimed["workload"], "notes")
        self.assertEqual(claimed["source"], "cold")
        self.assertGreater(claimed["latencyMs"], 0)
        self.assertTrue(claimed["instanceId"])
        last_seen = claimed["id"]
        first.close()

        self.release("alice")
        _, seen_live = live.recv_until(lambda m: m["type"] == "tenant.released"
                                       and m.get("tenant") == "alice", what="tenant.released")
        hib = [m for m in seen_live if m["type"] == "hibernate.done"]
        self.assertEqual(len(hib), 1, seen_live)
        self.assertGreater(hib[0]["bytes"], 0)
        self.assertEqual(hib[0]["tenant"], "alice")
        ids = [m["id"] for m in seen_live]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), len(ids))
        missed = [i for i in ids if i > last_seen]
        self.assertIn(claimed["id"], ids)

        again = self.ws("since=%d" % last_seen)
        got = []
        while not got or got[-1] < missed[-1]:
            got.append(again.recv()["id"])
        self.assertEqual(got, missed)

    def test_resync_when_the_id_is_too_old_or_unknown(self):
        for since in (1, self.d_last_id() + 10**9):
            c = self.ws("since=%d" % since)
            msg = c.recv()
            self.assertEqual(msg["type"], "resync", msg)

    def d_last_id(self):
        return self.ws().hello["lastId"]

    def test_filters_by_type_and_tenant(self):
        c = self.ws("types=tenant.claimed,tenant.released&tenant=bob")
        self.claim("carol")
        self.claim("bob")
        m = c.recv()
        self.assertEqual((m["type"], m["tenant"]), ("tenant.claimed", "bob"))
        self.release("bob")
        m = c.recv()
        self.assertEqual((m["type"], m["tenant"], m["variant"]), ("tenant.released", "bob",
                                                                   "normal"))
        w = self.ws("workload=notes&types=tenant.released")
        self.release("carol")
        m = w.recv()
        self.assertEqual((m["type"], m["tenant"]), ("tenant.released", "carol"))

    def test_keepalive_pings_and_a_silent_client_is_cut(self):
        c = WsClient(self.d.port, "/ws", headers=AUTH)
        self.addCleanup(c.close)
        ops = []
        while True:  # never answer: pings arrive, then the daemon gives up on us
            op, data = c.frame()
            ops.append(op)
            if op == 0x8:
                self.assertEqual(int.from_bytes(data[:2], "big"), 1001)
                self.assertIn(b"no pong", data)
                break
        self.assertIn(0x9, ops)
        # A client that answers stays: two ping intervals pass and it still gets events.
        good = self.ws()
        pings = 0
        while pings < 3:
            op, data = good.frame()
            if op == 0x9:
                pings += 1
                good.send(0xA, data)
        self.claim("dave")
        m, _ = good.recv_until(lambda m: m["type"] == "tenant.claimed", what="claim event")
        self.assertEqual(m["tenant"], "dave")


class TestWatch(ObserveBase):
    """Watching an instance over /ws (instance=): its stats samples are published only while
    someone watches, its log streams as it is written, the chart history is served by REST,
    and a tenant-scoped stream sees only its tenant's instances."""

    def samples(self, iid):
        status, body = self.d.request("GET", "/api/v1/instances/%s/samples" % iid)
        self.assertEqual(status, 200, body)
        return body["points"]

    def last_id(self):
        c = self.ws()
        last = c.hello["lastId"]
        c.close()
        return last

    def stats_since(self, iid, since):
        """instance.stats events of iid published after id since and before this call,
        replayed from the server's ring (a plain stream never carries stats, so the replay
        asks for them; asking starts a publication, which ends the replay: its id is newer)."""
        c = self.ws("since=%d&types=instance.stats&instance=%s" % (since, iid))
        last = c.hello["lastId"]
        found = []
        while True:
            m = c.recv()
            self.assertNotEqual(m["type"], "resync", m)
            if m["id"] > last:
                break
            found.append(m)
        c.close()
        return found

    def say(self, iid, text):
        """Appends a line to the instance's log from inside it (its stdout is the log)."""
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["sh", "-c", "echo %s > /tmp/say" % text]})
        self.assertEqual((status, out.get("exitCode")), (200, 0), out)

    def test_stats_only_while_watched_and_history(self):
        iid = self.claim("wanda")["instanceId"]
        # Nobody watches: the sampler records history but publishes nothing.
        before = self.last_id()
        n0 = len(self.samples(iid))
        wait_for(lambda: len(self.samples(iid)) >= n0 + 2, timeout=60, what="two more samples")
        self.assertEqual(self.stats_since(iid, before), [], "stats published with nobody watching")
        pts = self.samples(iid)
        self.assertGreater(pts[-1]["cpuNs"], 0, pts[-1])
        self.assertGreater(pts[-1]["memoryBytes"], 0, pts[-1])
        ts = [p["t"] for p in pts]
        self.assertEqual(ts, sorted(ts))
        # A watcher gets typed samples; a plain stream does not.
        plain = self.ws()
        watch = self.ws("instance=%s&types=instance.stats" % iid)
        got = [watch.recv() for _ in range(2)]
        for m in got:
            self.assertEqual((m["type"], m["instance"], m["tenant"], m["workload"]),
                             ("instance.stats", iid, "wanda", "notes"), m)
            self.assertGreater(m["memoryBytes"], 0, m)
            self.assertIn("diskBytes", m)
        self.assertLess(got[0]["id"], got[1]["id"])
        self.assertGreaterEqual(got[1]["t"], got[0]["t"] + 4, got)
        self.assertIn(got[1]["t"], [p["t"] for p in self.samples(iid)])  # the same samples
        self.claim("xavier")
        _, seen = plain.recv_until(lambda m: m["type"] == "tenant.claimed", what="claim event")
        self.assertFalse([m for m in seen if m["type"] == "instance.stats"], seen)
        # The watcher leaves: the subscription goes with it, publishing stops.
        watch.close()
        wait_for(lambda: self.metric("boilerhouse_ws_clients") == 1,
                 what="the watcher's reader closed")
        quiet = self.last_id()
        n1 = len(self.samples(iid))
        wait_for(lambda: len(self.samples(iid)) >= n1 + 2, timeout=60, what="two more samples")
        self.assertEqual(self.stats_since(iid, quiet), [],
                         "stats still published after the watcher left")

    def test_pool_and_claim_history(self):
        self.claim("yvonne")
        status, o = self.d.request("GET", "/api/v1/samples")
        self.assertEqual(status, 200, o)
        self.assertTrue(any(c["source"] in ("cold", "pool") and c["ms"] > 0 for c in o["claims"]), o)
        self.assertEqual(o["stepSeconds"], 5)
        self.assertIsInstance(o["pools"], dict)

    def test_log_streams_as_written(self):
        iid = self.claim("zoe")["instanceId"]
        self.say(iid, "before-watch")
        watch = self.ws("instance=%s&types=instance.log" % iid)
        first = watch.recv()
        self.assertEqual((first["type"], first["instance"], first["reset"]),
                         ("instance.log", iid, True), first)
        self.assertIn("before-watch", first["text"])
        self.assertNotIn("id", first)
        for i in range(3):
            self.say(iid, "line-%d" % i)
            m, _ = watch.recv_until(lambda m: "line-%d" % i in m.get("text", ""),
                                    what="line-%d" % i)
            self.assertFalse(m["reset"])
            self.assertEqual(m["type"], "instance.log")
        # Bytes that are not UTF-8 arrive replaced, the stream stays valid.
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["sh", "-c", r"printf 'bad-\377-end\n' > /tmp/say"]})
        self.assertEqual(status, 200, out)
        m, _ = watch.recv_until(lambda m: "bad-" in m.get("text", ""), what="the bad line")
        self.assertIn("bad-\ufffd-end", m["text"])
        # No log without instance.log in types, and a malformed instance is refused.
        quiet = self.ws("instance=%s&types=instance.stats" % iid)
        self.say(iid, "unseen")
        m = quiet.recv()
        self.assertEqual(m["type"], "instance.stats", m)
        bad = WsClient(self.d.port, "/ws?instance=../etc", headers=AUTH)
        bad.sock.close()
        self.assertEqual(bad.status, 400)

    def test_tenant_scope(self):
        mine = self.claim("tina")["instanceId"]
        other = self.claim("olga")["instanceId"]
        status, tok = self.d.request("POST", "/api/v1/tokens",
                                     {"name": "tina", "scopes": ["tenant:tina"], "ttlSeconds": 600})
        self.assertEqual(status, 201, tok)
        for path, want in (("/api/v1/instances/%s" % mine, 200),
                           ("/api/v1/instances/%s/samples" % mine, 200),
                           ("/api/v1/instances/%s/logs" % mine, 200),
                           ("/api/v1/instances/%s" % other, 403),
                           ("/api/v1/instances/%s/samples" % other, 403),
                           ("/api/v1/instances/%s/stats" % other, 403),
                           ("/api/v1/instances/000000000000", 403),
                           ("/api/v1/instances", 403),
                           ("/api/v1/samples", 403)):
            status, body = self.d.request("GET", path, token=tok["token"])
            self.assertEqual(status, want, (path, body))
        # A browser token minted by the tenant token holds the stream to its tenant.
        status, wt = self.d.request("POST", "/api/v1/ws/token", token=tok["token"])
        self.assertEqual(status, 200, wt)
        self.assertTrue(wt["token"].endswith(".tina"), wt)
        forged = wt["token"][:-4] + "olga"
        c = WsClient(self.d.port, "/ws?token=" + forged)
        c.sock.close()
        self.assertEqual(c.status, 401)
        theirs = self.ws("token=%s&tenant=olga" % wt["token"], headers={})
        peek = self.ws("token=%s&instance=%s" % (wt["token"], other), headers={})
        ours = self.ws("token=%s&instance=%s" % (wt["token"], mine), headers={})
        m = ours.recv()
        self.assertEqual((m["type"], m["reset"]), ("instance.log", True), m)
        m = ours.recv()
        self.assertEqual((m["type"], m["tenant"]), ("instance.stats", "tina"), m)
        # By now the other tenant's instance was sampled too: nothing of it reached the peek.
        peek.sock.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            peek.recv()
        self.release("olga")
        self.release("tina")
        m, seen = theirs.recv_until(lambda m: m["type"] == "tenant.released", what="tina's release")
        self.assertEqual(m["tenant"], "tina")
        self.assertFalse([x for x in seen if x.get("tenant") != "tina"], seen)


class TestSlowConsumer(ObserveBase):
    DAEMON_KW = {"api_key": KEY, "extra_env": {"BOILERHOUSE_WS_QUEUE": "16"}}

    def test_a_client_that_stops_reading_is_cut_and_others_are_not(self):
        slow = self.ws(rcvbuf=4096)
        fast = self.ws()
        n = 0
        deadline = time.monotonic() + 120
        # Cheap events (workload phases) until the stalled client is behind by more than the
        # queue; the fast client keeps reading meanwhile.
        while self.metric("boilerhouse_ws_slow_clients_cut_total") == 0:
            self.assertLess(time.monotonic(), deadline, "the slow client was never cut")
            for _ in range(10):
                name = "filler%d" % n
                n += 1
                self.d.apply_workload(NOTES % name, ready=False)
                self.assertEqual(self.d.request("DELETE", "/api/v1/workloads/" + name)[0], 200)
                while True:
                    m = fast.recv()
                    if m["type"] == "workload.phase" and m["workload"] == name and \
                            m["phase"] == "Deleted":
                        break
        with self.assertRaises(Closed) as cm:
            while True:
                slow.recv()
        self.assertEqual(cm.exception.code, 4008)
        self.assertEqual(self.metric("boilerhouse_ws_slow_clients_cut_total"), 1)
        # The fast one is still served.
        self.claim("erin")
        m, _ = fast.recv_until(lambda m: m["type"] == "tenant.claimed", what="claim event")
        self.assertEqual(m["tenant"], "erin")


class TestMetrics(ObserveBase):
    def scrape(self):
        status, text = self.d.request("GET", "/metrics")
        self.assertEqual(status, 200)
        return text

    @staticmethod
    def value(text, series):
        for line in text.splitlines():
            if line.startswith(series + " "):
                return float(line.split()[1])
        return 0.0

    def test_metrics_are_promtool_clean_and_count_every_claim(self):
        require(shutil.which("promtool"), "promtool (Debian package prometheus) is not installed")
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.d.port)
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual(cm.exception.code, 401)

        cold = 'boilerhouse_claim_duration_seconds_count{source="cold",outcome="success"}'
        existing = 'boilerhouse_claim_duration_seconds_count{source="existing",outcome="success"}'
        before = self.scrape()
        tenants = ["m%d" % i for i in range(3)]
        for t in tenants:
            self.claim(t)
        self.claim(tenants[0])  # already held: served from the existing instance
        self.release(tenants[1])
        after = self.scrape()
        self.assertEqual(self.value(after, cold) - self.value(before, cold), 3)
        self.assertEqual(self.value(after, existing) - self.value(before, existing), 1)
        self.assertEqual(self.value(after, 'boilerhouse_claims_total{source="cold",'
                                    'outcome="success"}'), self.value(after, cold))
        self.assertEqual(self.value(after, 'boilerhouse_releases_total{variant="normal"}')
                         - self.value(before, 'boilerhouse_releases_total{variant="normal"}'), 1)
        self.assertEqual(self.value(after, 'boilerhouse_snapshot_transfer_bytes_count'
                                    '{op="hibernate"}'), 1)
        self.assertGreaterEqual(
            self.value(after, 'boilerhouse_instances{workload="notes",phase="Running"}'), 2)
        self.assertGreater(self.value(after, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(self.value(after, "process_threads"), 1)
        self.assertGreater(self.value(after, "process_open_fds"), 3)
        # Every claim commits to the store (claim created, instance recorded, claim Active).
        commits = "boilerhouse_store_commit_duration_seconds_count"
        self.assertGreaterEqual(self.value(after, commits) - self.value(before, commits), 3 * 3)
        for series in ("boilerhouse_reconcile_retries_total",
                       "boilerhouse_reconcile_queue_depth",
                       'boilerhouse_policy_duration_seconds_count{kind="guard",verdict="deny"}',
                       'boilerhouse_policy_duration_seconds_count{kind="claim_policy",'
                       'verdict="allow"}'):
            self.assertRegex(after, r"(?m)^%s \d" % re.escape(series))
        for t in tenants:  # no tenant ID is ever a label
            self.assertNotIn('"%s"' % t, after)
        check = subprocess.run(["promtool", "check", "metrics"], input=after, text=True,
                               capture_output=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_a_real_prometheus_scrapes_the_daemon(self):
        prom = shutil.which("prometheus")
        require(prom, "prometheus (Debian package prometheus) is not installed")
        tmp = tempfile.mkdtemp(prefix="bh-prom-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write("global: {scrape_interval: 1s}\nscrape_configs:\n"
                    "  - job_name: boilerhouse\n    authorization: {credentials: %s}\n"
                    "    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % (KEY, self.d.port))
        port = free_port()
        log = open(os.path.join(tmp, "prometheus.log"), "w")
        p = subprocess.Popen([prom, "--config.file", os.path.join(tmp, "prometheus.yml"),
                              "--storage.tsdb.path", os.path.join(tmp, "data"),
                              "--web.listen-address", "127.0.0.1:%d" % port],
                             stdout=log, stderr=log)
        log.close()
        self.addCleanup(lambda: (p.terminate(), p.wait(timeout=30)))
        for t in ("p1", "p2"):
            self.claim(t)
        want = self.value(self.scrape(), 'boilerhouse_claims_total{source="cold",'
                                          'outcome="success"}')

        def query(q):
            url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (port, urllib.parse.quote(q))
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    res = json.load(r)["data"]["result"]
            except OSError:
                return None
            return res

        res = wait_for(lambda: [r for r in query('boilerhouse_claims_total{source="cold",'
                                                 'outcome="success"}') or []
                                if float(r["value"][1]) == want],
                       timeout=90, what="prometheus to have scraped the claims")
        self.assertEqual(res[0]["metric"]["job"], "boilerhouse")
        up = query('up{job="boilerhouse"}')
        self.assertEqual(up[0]["value"][1], "1")
        hist = query('boilerhouse_claim_duration_seconds_count{source="cold",outcome="success"}')
        self.assertEqual(float(hist[0]["value"][1]), want)
        self.assertTrue(query("boilerhouse_pool_ready") is not None)


class TestAudit(ObserveBase):
    def audit(self, query=""):
        status, body = self.d.request("GET", "/api/v1/audit" + query)
        self.assertEqual(status, 200, body)
        return body

    def test_each_state_change_leaves_one_record_that_survives_kill9(self):
        d = self.d
        since = self.audit("?limit=1")
        start = since[0]["id"] if since else 0
        self.claim("ann")
        self.release("ann")
        iid = self.claim("bea")["instanceId"]
        self.assertEqual(d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                   {"command": ["true"]})[0], 200)
        self.assertEqual(d.request("POST", "/api/v1/instances/%s/destroy" % iid)[0], 200)
        self.claim("cid")
        status, _ = d.request("POST", "/api/v1/tenants/cid/release/force", {"workload": "notes"})
        self.assertEqual(status, 200)
        status, _ = d.request("POST", "/api/v1/tenants/nobody/release", {"workload": "notes"})
        self.assertEqual(status, 404)
        d.apply_workload(NOTES % "other", ready=False)
        self.assertEqual(d.request("DELETE", "/api/v1/workloads/other")[0], 200)
        pool = {"name": "p", "spec": {"workloadRef": "notes", "size": 0}}
        self.assertEqual(d.request("POST", "/api/v1/pools", pool)[0], 201)
        self.assertEqual(d.request("DELETE", "/api/v1/pools/p")[0], 200)
        self.assertEqual(d.request("POST", "/api/v1/secrets", {"name": "s1", "key": "k",
                                                               "value": "hunter2-value"})[0],
                         201)
        self.assertEqual(d.request("DELETE", "/api/v1/secrets/s1")[0], 200)
        self.assertEqual(d.request("POST", "/api/v1/ws/token")[0], 200)
        d.request("GET", "/api/v1/workloads")  # reads are not audited

        want = [("claim", "ann", "notes", "ok"), ("release", "ann", "notes", "ok"),
                ("claim", "bea", "notes", "ok"), ("instance.exec", None, iid, "ok"),
                ("instance.destroy", None, iid, "ok"), ("claim", "cid", "notes", "ok"),
                ("release.force", "cid", "notes", "ok"),
                ("release", "nobody", "notes", "error"),
                ("workload.create", None, "other", "ok"),
                ("workload.delete", None, "other", "ok"), ("pool.create", None, "p", "ok"),
                ("pool.delete", None, "p", "ok"), ("secret.set", None, "s1", "ok"),
                ("secret.delete", None, "s1", "ok"), ("token.mint", None, None, "ok")]

        def ours():
            recs = [r for r in reversed(self.audit("?limit=1000")) if r["id"] > start]
            return [(r["action"], r.get("tenant"), r.get("target"), r["outcome"]) for r in recs]

        self.assertEqual(ours(), want)
        every = self.audit("?limit=1000")
        self.assertTrue(all(r["actor"] == "admin" for r in every))
        self.assertNotIn("hunter2", json.dumps(every))
        failed = [r for r in every if r["outcome"] == "error"][0]
        self.assertEqual(failed["status"], 404)
        self.assertTrue(failed["error"])
        # Filters.
        self.assertEqual({r["tenant"] for r in self.audit("?tenant=ann")}, {"ann"})
        self.assertEqual(self.audit("?actor=trigger:none"), [])
        self.assertEqual(len(self.audit("?limit=2")), 2)
        self.assertEqual(self.audit("?since=2999-01-01T00:00:00Z"), [])
        self.assertEqual(d.request("GET", "/api/v1/audit?since=yesterday")[0], 400)
        # kill -9 keeps every record.
        d.kill9()
        d.start()
        self.assertEqual(ours(), want)

    def test_existing_claim_record_is_committed_by_the_writer(self):
        """An existing claim's record is queued, not committed before the answer: the writer
        commits it within its interval (read from audit.db itself, since a query would commit
        the queue first), with the caller's actor, tenant, workload and status."""
        d = self.d
        status, tok = d.request("POST", "/api/v1/tokens", {"name": "dee-app",
                                                           "scopes": ["tenant:dee"]})
        self.assertEqual(status, 201, tok)
        first = self.claim("dee")
        status, again = d.request("POST", "/api/v1/tenants/dee/claim", {"workload": "notes"},
                                  token=tok["token"])
        self.assertEqual(status, 200, again)
        self.assertEqual(again["source"], "existing")
        self.assertEqual((again["instanceId"], again["endpoint"]),
                         (first["instanceId"], first["endpoint"]))
        actor = "token:" + tok["id"]
        row = wait_for(lambda: audit_rows(d, "actor = ?", (actor,)), timeout=30,
                       what="the existing claim's record in audit.db")
        self.assertEqual(row, [(actor, "claim", "dee", "notes", "ok", 200)])
        recs = self.audit("?actor=" + urllib.parse.quote(actor))
        self.assertEqual([(r["action"], r["tenant"], r["target"], r["status"]) for r in recs],
                         [("claim", "dee", "notes", 200)])
        self.release("dee")


def audit_rows(d, where, args=()):
    """(actor, action, tenant, target, outcome, status) of the audit.db rows matching where,
    oldest first, read from the file as the daemon left it (not through the API)."""
    db = sqlite3.connect("file:%s/audit.db?mode=ro" % d.state, uri=True, timeout=30)
    try:
        return db.execute("SELECT actor, action, tenant, target, outcome, status FROM audit "
                          "WHERE " + where + " ORDER BY id", args).fetchall()
    finally:
        db.close()


class TestAuditQueue(ObserveBase):
    """With a writer interval far longer than the test (an hour), existing claims' records are in the
    queue only: a clean shutdown commits them, so does the next synchronous record (in
    order), and that one survives kill -9 with them."""
    DAEMON_KW = {"api_key": KEY, "extra_env": {"BOILERHOUSE_AUDIT_FLUSH_MS": "3600000"}}
    N = 20

    def existing_claims(self, tenant, n):
        for _ in range(n):
            self.assertEqual(self.claim(tenant)["source"], "existing")

    def test_queued_records_survive_a_clean_shutdown(self):
        d = self.d
        self.claim("eve")  # new: committed before its answer
        self.assertEqual(audit_rows(d, "tenant = 'eve'"),
                         [("admin", "claim", "eve", "notes", "ok", 201)])
        self.existing_claims("eve", self.N)
        self.assertEqual(len(audit_rows(d, "tenant = 'eve'")), 1)  # queued, not committed
        d.stop()
        rows = audit_rows(d, "tenant = 'eve'")
        self.assertEqual(rows, [("admin", "claim", "eve", "notes", "ok", 201)] +
                         [("admin", "claim", "eve", "notes", "ok", 200)] * self.N)
        d.start()
        self.claim("eve")  # re-adopted (existing) or booted again: a record either way
        self.existing_claims("eve", 2)
        self.release("eve")  # synchronous: commits the queue before itself
        want = audit_rows(d, "tenant = 'eve'")
        self.assertEqual(len(want), 1 + self.N + 1 + 2 + 1)
        self.assertEqual(want[-3:], [("admin", "claim", "eve", "notes", "ok", 200)] * 2 +
                         [("admin", "release", "eve", "notes", "ok", 200)])
        d.kill9()
        self.assertEqual(audit_rows(d, "tenant = 'eve'"), want)
        d.start()

    def test_pool_claim_record_is_journaled_and_survives_kill9(self):
        """A claim served from a pool changed state but is answered before its record's
        commit (here an hour away): the record is in the journal beside audit.db, as
        crash-safe as a commit. kill -9 keeps it, and the next start commits it once."""
        d = self.d
        pool = {"name": "warm", "spec": {"workloadRef": "notes", "size": 1}}
        self.assertEqual(d.request("POST", "/api/v1/pools", pool)[0], 201)
        self.addCleanup(lambda: d.request("DELETE", "/api/v1/pools/warm"))
        wait_for(lambda: d.request("GET", "/api/v1/pools/warm")[1].get("status", {})
                 .get("ready") == 1, timeout=120, what="pool warm ready")
        self.assertEqual(self.claim("pia")["source"], "pool")
        self.assertEqual(audit_rows(d, "tenant = 'pia'"), [])  # journaled, not committed
        d.kill9()
        self.assertEqual(audit_rows(d, "tenant = 'pia'"), [])
        d.start()
        self.assertEqual(audit_rows(d, "tenant = 'pia'"),
                         [("admin", "claim", "pia", "notes", "ok", 201)])
        self.assertEqual([(r["action"], r["status"]) for r in
                          d.request("GET", "/api/v1/audit?tenant=pia")[1]], [("claim", 201)])
        self.release("pia")


if __name__ == "__main__":
    unittest.main()
