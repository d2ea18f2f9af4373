"""Pools, hibernate/restore, idle detection and crash safety, on real containers."""
import json
import os
import re
import time
import unittest

from bh import Daemon, wait_for

NOTES = """
apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: %(name)s
spec:
  version: "%(version)s"
  image:
    ref: localhost/busybox:latest
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: %(disk)d}
  network: {access: none, websocket: /ws}
  filesystem:
    overlayDirs: ["/workspace"]
    encryptOverlays: %(encrypt)s
  idle:
    timeoutSeconds: %(idle)d
    action: hibernate
    watchDirs: ["/workspace"]
  entrypoint:
    cmd: sh
    args: ["-c", "mkdir -p /workspace && exec sleep 2147483647"]
"""


def notes(name="notes", version="1", encrypt="false", idle=0, disk=1):
    return NOTES % {"name": name, "version": version, "encrypt": encrypt, "idle": idle,
                    "disk": disk}


class Base(unittest.TestCase):
    DAEMON_ENV = {}  # the daemon's extra_env for every test of the class

    def setUp(self):
        self.d = Daemon(extra_env=dict(self.DAEMON_ENV))
        self.addCleanup(self.d.cleanup)
        self.d.start()

    def exec(self, iid, script):
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["sh", "-c", script]})
        self.assertEqual(status, 200, out)
        return out

    def claim(self, tenant, workload, status=(200, 201)):
        code, body = self.d.claim(tenant, workload)
        self.assertIn(code, status, (body, self.d.log()))
        return body

    def reconcile_failures(self, word):
        """How many failed reconciles of a key holding word the daemon has logged so far."""
        with open(self.d.log_path) as f:
            return sum(1 for l in f if "reconcile " in l and word in l and " failed: " in l)

    def pool(self, name, workload, size):
        body = {"name": name, "spec": {"workloadRef": workload, "size": size}}
        status, out = self.d.request("POST", "/api/v1/pools", body)
        self.assertEqual(status, 201, out)

    def pool_status(self, name):
        return self.d.request("GET", "/api/v1/pools/" + name)[1]["status"]

    def pool_instances(self, workload):
        insts = self.d.request("GET", "/api/v1/instances")[1]
        return [i for i in insts if i["workloadRef"] == workload and "tenantId" not in i]

    def wait_pool_ready(self, name, n):
        return wait_for(lambda: self.pool_status(name).get("ready") == n and
                        self.pool_status(name), what="pool %s ready=%d" % (name, n))

    def snapshots(self):
        return self.d.request("GET", "/api/v1/snapshots")[1]

    def storage_file(self, snap):
        return os.path.join(self.d.state, "snapshots", snap["key"])


class PoolTest(Base):
    def test_pool_claims_restore_and_refill(self):
        # diskGb 0: tar snapshots, restored into a warm instance (pool+data); an image
        # snapshot (diskGb > 0) boots cold instead (test_restore.py).
        self.d.apply_workload(notes(disk=0))
        self.pool("notes-pool", "notes", 2)
        self.wait_pool_ready("notes-pool", 2)
        self.assertEqual(self.pool_status("notes-pool")["phase"], "Healthy")
        warm = {i["id"] for i in self.pool_instances("notes")}
        self.assertEqual(len(warm), 2)

        a = self.claim("alice", "notes")
        self.assertEqual(a["source"], "pool")
        self.assertEqual(a["websocket"], "/ws")
        self.assertIn(a["instanceId"], warm)
        self.exec(a["instanceId"], "echo 'alice was here' > /workspace/note.txt")
        self.wait_pool_ready("notes-pool", 2)  # refilled after the claim

        status, body = self.d.release("alice", "notes")
        self.assertEqual(status, 200, body)
        snaps = self.snapshots()
        self.assertEqual([(s["tenantId"], s["workloadRef"]) for s in snaps], [("alice", "notes")])
        self.assertEqual(len(snaps[0]["digest"]), 64)
        self.assertTrue(os.path.exists(self.storage_file(snaps[0])))
        self.assertNotIn("bh-" + a["instanceId"], self.d.containers())

        b = self.claim("alice", "notes")
        self.assertEqual(b["source"], "pool+data")
        out = self.exec(b["instanceId"], "cat /workspace/note.txt")
        self.assertEqual(out["stdout"], "alice was here")

        # Without a pool: cold+data.
        self.assertEqual(self.d.request("DELETE", "/api/v1/pools/notes-pool")[0], 200)
        wait_for(lambda: not self.pool_instances("notes"), what="pool drained")
        # The tenant's instance survived the pool's deletion.
        self.assertIn("bh-" + b["instanceId"], self.d.containers())
        self.exec(b["instanceId"], "echo second >> /workspace/note.txt")
        self.assertEqual(self.d.release("alice", "notes")[0], 200)
        c = self.claim("alice", "notes")
        self.assertEqual(c["source"], "cold+data")
        self.assertEqual(self.exec(c["instanceId"], "cat /workspace/note.txt")["stdout"],
                         "alice was here\nsecond")
        # A tenant without a snapshot starts empty.
        d = self.claim("bob", "notes")
        self.assertEqual(d["source"], "cold")
        self.assertEqual(self.exec(d["instanceId"], "ls /workspace")["stdout"], "")

    def test_stale_instances_are_drained_and_never_handed_out(self):
        self.d.apply_workload(notes())
        self.pool("p", "notes", 2)
        self.wait_pool_ready("p", 2)
        old = {i["id"] for i in self.pool_instances("notes")}
        status, body = self.d.request("PUT", "/api/v1/workloads/notes",
                                      raw=notes(version="2"))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["generation"], 2)
        # A claim right after the change never gets an old instance.
        c = self.claim("carol", "notes")
        self.assertNotIn(c["instanceId"], old)
        wait_for(lambda: len(self.pool_instances("notes")) == 2 and
                 not (old & {i["id"] for i in self.pool_instances("notes")}),
                 what="old pool instances replaced")
        insts = self.pool_instances("notes")
        self.assertTrue(all(i["workloadGeneration"] == 2 for i in insts), insts)

    def test_scale_down_and_up(self):
        self.d.apply_workload(notes())
        self.pool("p", "notes", 3)
        self.wait_pool_ready("p", 3)
        status, _ = self.d.request("PUT", "/api/v1/pools/p",
                                   {"spec": {"workloadRef": "notes", "size": 1}})
        self.assertEqual(status, 200)
        wait_for(lambda: len(self.pool_instances("notes")) == 1, what="scaled down to 1")
        self.assertEqual(len(self.d.containers()), 1)
        status, _ = self.d.request("PUT", "/api/v1/pools/p",
                                   {"spec": {"workloadRef": "notes", "size": 2}})
        self.assertEqual(status, 200)
        self.wait_pool_ready("p", 2)
        self.assertEqual(len(self.pool_instances("notes")), 2)
        self.assertEqual(len(self.d.containers()), 2)

    def test_failing_warm_instances_back_off_without_blocking(self):
        broken = notes(name="broken").replace(
            'args: ["-c", "mkdir -p /workspace && exec sleep 2147483647"]', 'args: ["-c", "exit 3"]')
        self.d.apply_workload(broken)
        self.pool("bp", "broken", 2)
        def reported():
            st = self.pool_status("bp")
            return "exited" in (st.get("detail") or "") and st

        st = wait_for(reported, what="pool failure reported")
        self.assertEqual(st["phase"], "Degraded")
        self.assertGreaterEqual(st["failures"], 1)
        # Backoff: over 4 s a tight loop would fail dozens of times; 1 s, 2 s, 4 s... allows a few.
        first = st["failures"]
        for _ in range(8):
            time.sleep(0.5)
            self.assertLessEqual(len(self.d.containers()), 2)  # never more than the pool's size
            self.assertNotEqual(self.pool_status("bp")["phase"], "Healthy")
        grown = self.pool_status("bp")["failures"] - first
        self.assertLessEqual(grown, 4, "failures grew by %d in 4 s: no backoff" % grown)
        # The daemon is not blocked by the failing pool: other claims are served.
        self.d.apply_workload(notes())
        self.assertEqual(self.claim("sam", "notes")["phase"], "Active")


class SnapshotSafetyTest(Base):
    # No hot tier: restores read (and verify) the stored object, which these tests tamper
    # with, re-key or crash around. Tests that set extra_env anew get the hot tier back.
    DAEMON_ENV = {"BOILERHOUSE_SNAPSHOT_HOT_BYTES": "0"}

    def hibernate_note(self, tenant, text, workload="notes"):
        c = self.claim(tenant, workload)
        self.exec(c["instanceId"], "echo '%s' > /workspace/note.txt" % text)
        status, body = self.d.release(tenant, workload)
        self.assertEqual(status, 200, body)
        return [s for s in self.snapshots() if s["tenantId"] == tenant][0]

    def test_tampered_snapshot_is_refused_and_kept(self):
        self.d.apply_workload(notes())
        snap = self.hibernate_note("dora", "precious")
        path = self.storage_file(snap)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            f.write(b"\x00garbage\x00")
        status, body = self.d.claim("dora", "notes")
        self.assertEqual(status, 500, body)
        self.assertEqual(body["phase"], "Error")
        self.assertIn("digest", body["error"])
        self.assertEqual(self.d.containers(), [])  # the half-restored instance is gone
        self.assertEqual([s["digest"] for s in self.snapshots()], [snap["digest"]])

    def test_encrypted_snapshot_hides_plaintext_and_needs_the_key(self):
        self.d.apply_workload(notes(encrypt="true"))
        snap = self.hibernate_note("erin", "top-secret-words")
        self.assertTrue(snap["encrypted"])
        with open(self.storage_file(snap), "rb") as f:
            self.assertNotIn(b"top-secret-words", f.read())
        c = self.claim("erin", "notes")
        self.assertEqual(self.exec(c["instanceId"], "cat /workspace/note.txt")["stdout"],
                         "top-secret-words")
        self.assertEqual(self.d.release("erin", "notes")[0], 200)
        # Another master key cannot read it, and says so.
        self.d.stop()
        self.d.extra_env = {"BOILERHOUSE_SECRET_KEY": "11" * 32}
        self.d.start()
        status, body = self.d.claim("erin", "notes")
        self.assertEqual(status, 500, body)
        self.assertIn("erin", body["error"])
        self.assertEqual(len(self.snapshots()), 1)

    def test_failed_hibernate_keeps_the_instance_and_retry_saves_it(self):
        self.d.apply_workload(notes())
        c = self.claim("rita", "notes")
        self.exec(c["instanceId"], "echo unsaved-work > /workspace/note.txt")
        # Make the storage plugin unable to write: a file where its workload dir must go.
        blocker = os.path.join(self.d.state, "snapshots", "notes")
        os.makedirs(os.path.dirname(blocker), exist_ok=True)
        with open(blocker, "w") as f:
            f.write("in the way")
        status, body = self.d.release("rita", "notes")
        self.assertEqual(status, 500, body)
        self.assertEqual(body["phase"], "ReleaseFailed")
        self.assertEqual(self.snapshots(), [])
        # The instance keeps running (thawed) with the tenant's work, while retries back off:
        # checked once the reconciler has retried the release (not after a fixed time).
        failed = self.reconcile_failures("rita")
        wait_for(lambda: self.reconcile_failures("rita") > failed, what="a release retry")
        self.assertEqual(self.exec(c["instanceId"], "cat /workspace/note.txt")["stdout"],
                         "unsaved-work")
        os.unlink(blocker)
        status, body = self.d.request("POST", "/api/v1/tenants/rita/release/retry",
                                      {"workload": "notes"})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["status"], "released")
        self.assertEqual([s["tenantId"] for s in self.snapshots()], ["rita"])
        self.assertNotIn("bh-" + c["instanceId"], self.d.containers())
        c = self.claim("rita", "notes")
        self.assertEqual(self.exec(c["instanceId"], "cat /workspace/note.txt")["stdout"],
                         "unsaved-work")

    def test_force_release_destroys_without_saving(self):
        self.d.apply_workload(notes())
        snap = self.hibernate_note("fay", "v1")
        c = self.claim("fay", "notes")
        self.exec(c["instanceId"], "echo v2 > /workspace/note.txt")
        status, body = self.d.request("POST", "/api/v1/tenants/fay/release/force",
                                      {"workload": "notes"})
        self.assertEqual(status, 200, body)
        self.assertFalse(body["saved"])
        self.assertEqual([s["digest"] for s in self.snapshots()], [snap["digest"]])
        c = self.claim("fay", "notes")
        self.assertEqual(self.exec(c["instanceId"], "cat /workspace/note.txt")["stdout"], "v1")

    def test_kill9_during_hibernate_loses_nothing(self):
        self.d.apply_workload(notes())
        first = self.hibernate_note("gus", "old")
        for point in ("hibernate.after-archive", "hibernate.after-put",
                      "hibernate.after-record", "release.before-destroy"):
            c = self.claim("gus", "notes")
            self.exec(c["instanceId"], "echo '%s' > /workspace/note.txt" % point)
            self.d.stop()
            self.d.extra_env = {"BOILERHOUSE_CRASH_AT": point}
            self.d.start()
            try:
                self.d.release("gus", "notes")
            except OSError:
                pass  # the daemon died mid-request, as asked
            self.d.proc.wait(timeout=30)
            self.d.extra_env = {}
            self.d.start()
            # The release resumes after the restart and converges.
            wait_for(lambda: self.d.request("GET", "/api/v1/tenants/gus")[0] == 404,
                     what="release finished after restart (%s)" % point)
            self.assertEqual(self.d.containers(), [], point)
            self.assertEqual(self.d.loops(), [], point)  # no instance disk left behind
            self.assertEqual(os.listdir(os.path.join(self.d.state, "tmp")), [], point)
            c = self.claim("gus", "notes")
            text = self.exec(c["instanceId"], "cat /workspace/note.txt")["stdout"]
            self.assertEqual(text, point)
            self.assertEqual(self.d.release("gus", "notes")[0], 200)
        self.assertNotEqual(self.snapshots()[0]["digest"], first["digest"])

    def test_kill9_during_pool_restore_keeps_the_snapshot(self):
        self.d.apply_workload(notes(disk=0))  # tar: restored into the pool instance
        self.hibernate_note("quinn", "keep-me")
        self.pool("p", "notes", 1)
        self.wait_pool_ready("p", 1)
        self.d.stop()
        self.d.extra_env = {"BOILERHOUSE_CRASH_AT": "restore.pool"}
        self.d.start()
        try:
            self.d.claim("quinn", "notes")
        except OSError:
            pass  # killed mid-restore, as asked
        self.d.proc.wait(timeout=30)
        self.d.extra_env = {}
        self.d.start()
        # The half-restored instance is gone, never handed out; the claim restores afresh.
        c = wait_for(lambda: (lambda r: r[1].get("phase") == "Active" and r[1])(
            self.d.claim("quinn", "notes")), what="claim after the crash")
        self.assertEqual(self.exec(c["instanceId"], "cat /workspace/note.txt")["stdout"], "keep-me")
        self.assertEqual(self.d.release("quinn", "notes")[0], 200)
        snaps = [s for s in self.snapshots() if s["tenantId"] == "quinn"]
        self.assertEqual(len(snaps), 1)
        c = self.claim("quinn", "notes")
        self.assertEqual(self.exec(c["instanceId"], "cat /workspace/note.txt")["stdout"], "keep-me")
        held = {"bh-" + c["instanceId"]} | {"bh-" + i["id"] for i in self.pool_instances("notes")}
        wait_for(lambda: set(self.d.containers()) <= held, what="no orphan containers")
        disks = {os.path.join(self.d.state, "instances", c[3:], "disk.img") for c in held}
        wait_for(lambda: set(self.d.loops()) <= disks, what="no orphan disks")

    def test_kill9_during_cold_boot_converges(self):
        self.d.apply_workload(notes())
        # Before the container starts, and after the boot thread has it running but before
        # the claim took it (boots.c): either way one instance, the claim Active.
        for tenant, point in (("hal", "boot.before-start"), ("ivy", "boot.before-claim")):
            self.d.stop()
            self.d.extra_env = {"BOILERHOUSE_CRASH_AT": point}
            self.d.start()
            try:
                self.d.claim(tenant, "notes")
            except OSError:
                pass
            self.d.proc.wait(timeout=30)
            self.d.extra_env = {}
            self.d.start()
            c = wait_for(lambda: (lambda r: r[1].get("phase") == "Active" and r[1])(
                self.d.claim(tenant, "notes")), what="claim active after crash (%s)" % point)
            self.assertEqual(self.d.containers(), ["bh-" + c["instanceId"]], point)
            self.assertEqual(self.d.loops(),
                             [os.path.join(self.d.state, "instances", c["instanceId"],
                                           "disk.img")], point)
            self.assertEqual(self.d.request("POST", "/api/v1/tenants/%s/release/force" % tenant,
                                            {"workload": "notes"})[0], 200, point)
            wait_for(lambda: self.d.containers() == [], what="released (%s)" % point)


class IdleTest(Base):
    def setUp(self):
        super().setUp()
        self.d.apply_workload(notes(idle=2))

    def claim_phase(self, tenant):
        return self.d.request("GET", "/api/v1/tenants/" + tenant)[1]["claims"][0]["phase"]

    def test_idle_instance_is_hibernated_and_restored(self):
        c = self.claim("ivy", "notes")
        self.assertIn("idleTimeLeftSeconds", c)
        w = self.exec(c["instanceId"], "echo idle-data > /workspace/note.txt && "
                      "cat /workspace/note.txt")
        self.assertEqual((w.get("exitCode"), w["stdout"]), (0, "idle-data"), w)
        wait_for(lambda: self.claim_phase("ivy") == "Released", what="idle release")
        status, t = self.d.request("GET", "/api/v1/tenants/ivy")
        self.assertIn("idle timeout", t["claims"][0]["detail"])
        # Told as an idle release (a workload's deletion has a variant of its own).
        wait_for(lambda: re.search(r'(?m)^boilerhouse_releases_total\{variant="idle"\} [1-9]',
                                   self.d.request("GET", "/metrics")[1]),
                 what="the idle release's metric")
        self.assertRegex(self.d.request("GET", "/metrics")[1],
                         r'(?m)^boilerhouse_releases_total\{variant="workload-deleted"\} 0$')
        self.assertEqual(self.d.containers(), [])
        c = self.claim("ivy", "notes")
        self.assertEqual(c["source"], "cold+data")
        r = self.exec(c["instanceId"], "cat /workspace/note.txt")
        self.assertEqual(r["stdout"], "idle-data", r)

    def test_busy_cpu_or_changing_files_keep_it_alive(self):
        a = self.claim("jay", "notes")
        self.exec(a["instanceId"], "(while :; do :; done) >/dev/null 2>&1 &")
        b = self.claim("kim", "notes")
        self.exec(b["instanceId"],
                  "(while :; do date > /workspace/tick; sleep 0.5; done) >/dev/null 2>&1 &")
        c = self.claim("lee", "notes")
        # The control idles out; jay and kim, claimed earlier, had at least as long to.
        wait_for(lambda: self.claim_phase("lee") == "Released", what="the control's idle release")
        self.assertEqual(self.claim_phase("jay"), "Active")
        self.assertEqual(self.claim_phase("kim"), "Active")
        self.assertEqual(self.claim_phase("lee"), "Released")  # the control really idled

    def test_keepalive_resets_the_clock(self):
        # 4 s of idleness allowed, a keepalive every second: generous enough for a loaded
        # machine, while 8 s in total is twice the timeout.
        self.d.apply_workload(notes(name="slow", idle=4))
        self.claim("max", "slow")
        for i in range(8):
            status, body = self.d.request("POST", "/api/v1/tenants/max/keepalive",
                                          {"workload": "slow"})
            self.assertEqual(status, 200, (i, body, self.d.log()[-3000:]))
            self.assertGreaterEqual(body["idleTimeLeftSeconds"], 1)
            time.sleep(1)
        self.assertEqual(self.claim_phase("max"), "Active")


if __name__ == "__main__":
    unittest.main()
