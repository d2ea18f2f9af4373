"""The harness's own checks: a sanitizer report in a daemon's log or a helper's output fails the
test, whatever its assertions said, and the daemon's log is kept; a network slot is held by
one process at a time (no daemon is started)."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import bh

ASAN_REPORT = """[info] reconciler: pool p1
=================================================================
==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x602000001234
READ of size 2 at 0x602000001234 thread T9
    #0 0x7f in bh_pool_reconcile core/controllers/pool.c:274
"""


class SanitizerCheckTest(unittest.TestCase):
    def fake_daemon(self, log_text):
        """A Daemon with a state dir and a log, but no process."""
        d = bh.Daemon.__new__(bh.Daemon)
        d.state = tempfile.mkdtemp(prefix="bh-it-harness-")
        self.addCleanup(shutil.rmtree, d.state, ignore_errors=True)
        d.log_path = os.path.join(d.state, "daemon.log")
        d.kept_log = None
        with open(d.log_path, "w") as f:
            f.write(log_text)
        return d

    def test_report_in_daemon_log_fails_and_log_is_kept(self):
        d = self.fake_daemon("[info] starting\n" + ASAN_REPORT + "[info] more\n")
        with self.assertRaises(AssertionError) as cm:
            d.keep_log()
        self.assertIn("heap-use-after-free", str(cm.exception))
        self.assertIn("pool.c:274", str(cm.exception))
        self.assertTrue(d.kept_log and os.path.exists(d.kept_log))
        self.addCleanup(os.unlink, d.kept_log)
        self.assertIn("heap-use-after-free", d.log(tail=None))

    def test_every_sanitizer_is_recognised(self):
        for line in ("==1==ERROR: LeakSanitizer: detected memory leaks",
                     "core/util/json.c:12:5: runtime error: load of null pointer",
                     "SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior x.c:1:1",
                     "WARNING: ThreadSanitizer: data race (pid=7)"):
            self.assertIsNotNone(bh.sanitizer_report("ok\n" + line + "\n"), line)
        self.assertIsNone(bh.sanitizer_report("[error] claim: workload w not found\n"))

    def test_clean_daemon_log_passes(self):
        d = self.fake_daemon("[info] starting\n[info] stopped\n")
        d.keep_log()
        self.addCleanup(os.unlink, d.kept_log)

    def test_report_from_helper_process_fails(self):
        argv = [sys.executable, "-c",
                "import sys; sys.stderr.write('x.c:1:1: runtime error: signed overflow\\n')"]
        with self.assertRaises(AssertionError) as cm:
            bh.run_checked(argv, "helper")
        self.assertIn("signed overflow", str(cm.exception))
        self.assertEqual(bh.run_checked([sys.executable, "-c", "print(1)"]).returncode, 0)


class SlotTest(unittest.TestCase):
    """Files run in parallel build bridge names and subnets from slots (bh.take_slot)."""

    def other_process_locks(self, n):
        """Whether another process can lock slot n (and releases it again at once)."""
        out = subprocess.run([sys.executable, "-c", "import bh, sys; "
                              "sys.stdout.write(str(bh.lock_slot(%d) is not None))" % n],
                             capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout == "True"

    def test_a_held_slot_is_nobody_elses_until_released(self):
        n = max(bh.SLOTS) + 1000  # one no test takes, so that only this test decides
        fd = bh.lock_slot(n)
        self.assertIsNotNone(fd)
        self.addCleanup(os.unlink, os.path.join(bh.SLOT_DIR, str(n)))
        try:
            self.assertFalse(self.other_process_locks(n))
        finally:
            os.close(fd)
        self.assertTrue(self.other_process_locks(n))

    def test_two_daemons_of_one_process_get_two_slots(self):
        n, fd = bh.take_slot()
        m, fd2 = bh.take_slot()
        os.close(fd)
        os.close(fd2)
        self.assertEqual(len({n, m} & set(bh.SLOTS)), 2)


if __name__ == "__main__":
    unittest.main()
