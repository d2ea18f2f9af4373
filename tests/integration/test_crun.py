"""The daemon on crun, the other OCI runtime it supports: the suites of the container
lifecycle (claims cold and from pools, release, hibernate and restore, disks and quotas, the
network modes, kill -9 and restart) run again with BOILERHOUSE_RUNTIME=crun.

crun cannot run containers on a hybrid-cgroup host whose cgroup2 side holds a controller (this
VM's holds hugetlb); bh.crun_host binds such controllers to v1 hierarchies for the run and
gives them back after. It changes the host's cgroup layout, so ctest runs this file alone
(RUN_SERIAL): no runc container of another file may create cgroups meanwhile."""
import os
import re
import shutil
import subprocess
import sys
import unittest

import bh

SUITES = ["test_daemon", "test_pools", "test_restore", "test_disk", "test_network"]


class CrunTest(unittest.TestCase):
    def test_lifecycle_suites_pass_on_crun(self):
        bh.require(shutil.which("crun") is not None, "crun is not installed")
        env = dict(os.environ, BOILERHOUSE_RUNTIME="crun")
        with bh.crun_host():
            res = subprocess.run([sys.executable, "-m", "unittest"] + SUITES, env=env,
                                 cwd=os.path.dirname(os.path.abspath(__file__)),
                                 capture_output=True, text=True, timeout=1500)
        self.assertEqual(res.returncode, 0, "suites on crun failed:\n" + res.stderr[-6000:])
        # The harness lists a daemon's containers with the runtime BOILERHOUSE_RUNTIME names
        # (each runtime reads only its own state), and the suites assert on those lists: they
        # pass only if crun made the containers.
        ran = re.search(r"^Ran (\d+) tests?", res.stderr, re.M)
        self.assertTrue(ran and int(ran.group(1)) >= 30, res.stderr[-2000:])


if __name__ == "__main__":
    unittest.main()
