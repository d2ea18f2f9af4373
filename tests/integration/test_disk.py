"""resources.diskGb on real containers: the writable layer lives on a loop-mounted image of
that size, so a write past it fails inside the instance and the host never holds more."""
import os
import shutil
import unittest

from bh import Daemon, require, wait_for
from test_pools import notes

GB = 1 << 30


class DiskQuotaTest(unittest.TestCase):
    def setUp(self):
        require(os.path.exists("/dev/loop-control"), "no /dev/loop-control")
        require(shutil.which("mkfs.ext4") or os.path.exists("/usr/sbin/mkfs.ext4"),
                "mkfs.ext4 is not installed (e2fsprogs)")
        self.d = Daemon()
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.d.apply_workload(notes())

    def exec(self, iid, script):
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["sh", "-c", script]}, timeout=300)
        self.assertEqual(status, 200, out)
        return out

    def claim(self, tenant):
        status, body = self.d.claim(tenant, "notes")
        self.assertIn(status, (200, 201), (body, self.d.log()))
        return body

    def image(self, iid):
        return os.path.join(self.d.state, "instances", iid, "disk.img")

    def fill(self, iid):
        """Writes past 1 GB into /workspace; returns dd's output and the file's size."""
        out = self.exec(iid, "dd if=/dev/zero of=/workspace/big bs=1M count=1100 2>&1; "
                             "echo rc=$?; sync")
        size = self.exec(iid, "wc -c < /workspace/big")["stdout"].strip()
        return out["stdout"], int(size)

    def test_write_past_disk_gb_fails_with_enospc_and_host_stays_within(self):
        c = self.claim("dora")
        iid = c["instanceId"]
        self.assertEqual(len(self.d.loops()), 1)
        out, size = self.fill(iid)
        self.assertIn("No space left on device", out)
        self.assertNotIn("rc=0", out)
        self.assertGreater(size, GB * 9 // 10)
        self.assertLessEqual(size, GB)
        # Anything else outside tmpfs is on the same disk: the rootfs and the socket dir.
        for path in ("/etc/more", "/run/boilerhouse/more"):
            res = self.exec(iid, "dd if=/dev/zero of=%s bs=1M count=8 2>&1" % path)
            self.assertNotEqual(res["exitCode"], 0, path)
            self.assertIn("No space left on device", res["stdout"], path)
        st = os.stat(self.image(iid))
        self.assertLessEqual(st.st_blocks * 512, GB)
        self.assertEqual(st.st_size, GB)
        # The full volume hibernates and comes back whole.
        status, body = self.d.release("dora", "notes")
        self.assertEqual(status, 200, body)
        wait_for(lambda: self.d.loops() == [], what="the disk freed after release")
        self.assertFalse(os.path.exists(os.path.join(self.d.state, "instances", iid)))
        c = self.claim("dora")
        self.assertNotEqual(c["instanceId"], iid)
        res = self.exec(c["instanceId"], "wc -c < /workspace/big")
        self.assertEqual(res["stdout"], str(size), (res, self.d.log()[-3000:]))
        status, body = self.d.release("dora", "notes")
        self.assertEqual(status, 200, body)
        wait_for(lambda: self.d.loops() == [] and self.d.mounts() == [],
                 what="no disk or mount left after release")

    def test_restored_disk_follows_a_larger_disk_gb(self):
        c = self.claim("gus")
        self.exec(c["instanceId"], "echo kept > /workspace/note; sync")
        status, body = self.d.release("gus", "notes")
        self.assertEqual(status, 200, body)
        wait_for(lambda: self.d.loops() == [], what="the disk freed after release")
        status, body = self.d.request("PUT", "/api/v1/workloads/notes",
                                      raw=notes(version="2", disk=2))
        self.assertEqual(status, 200, body)
        self.d.wait_workload("notes", "Ready")
        c = self.claim("gus")
        iid = c["instanceId"]
        self.assertEqual(self.exec(iid, "cat /workspace/note")["stdout"].strip(), "kept")
        self.assertEqual(os.stat(self.image(iid)).st_size, 2 * GB)
        # The filesystem was grown with its image: past the old 1 GB there is room now.
        df = self.exec(iid, "df -k /workspace | tail -1")["stdout"].split()
        self.assertGreater(int(df[1]) * 1024, GB * 3 // 2, df)
        self.assertIn("grown", self.d.log())
        self.assertEqual(self.d.release("gus", "notes")[0], 200)
        wait_for(lambda: self.d.loops() == [], what="the disk freed after release")

    def test_restart_after_kill9_mid_boot_frees_the_disk(self):
        self.d.stop()
        self.d.extra_env = {"BOILERHOUSE_CRASH_AT": "boot.before-start"}
        self.d.start()
        try:
            self.d.claim("hal", "notes")
        except OSError:
            pass  # the daemon died mid-request, as asked
        self.d.proc.wait(timeout=30)
        self.assertEqual(len(self.d.loops()), 1)  # the crashed boot's disk is still mounted
        self.d.extra_env = {}
        self.d.start()
        c = wait_for(lambda: (lambda r: r[1].get("phase") == "Active" and r[1])(
            self.d.claim("hal", "notes")), what="claim active after the crash")
        # Recovery removed the half-booted instance with its disk; only the new one has one.
        self.assertEqual(self.d.loops(), [self.image(c["instanceId"])])
        self.assertEqual(self.d.release("hal", "notes")[0], 200)
        wait_for(lambda: self.d.loops() == [], what="the disk freed after release")


if __name__ == "__main__":
    unittest.main()
