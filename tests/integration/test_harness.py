"""The harness's own checks: a sanitizer report in a daemon's log or a helper's output fails the
test, whatever its assertions said, and the daemon's log is kept (no daemon is started)."""
import os
import shutil
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


if __name__ == "__main__":
    unittest.main()
