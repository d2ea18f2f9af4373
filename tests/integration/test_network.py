"""Network isolation end to end: real instances under the daemon, real traffic from inside
them (exec of busybox wget). A fake internet lives in a netns the test creates (reached
through the host by NAT); 169.254.169.254 and a host service listen on the host. Everything
the test makes is removed in tearDown, even when a test fails."""
import os
import subprocess
import sys
import tempfile
import time
import unittest

from bh import Daemon, DaemonTestCase, read_manifest, take_slot


def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)


class FakeInternet:
    def __init__(self):
        self.n, self.slot_fd = take_slot()
        self.ns = "bhit-inet-%d" % os.getpid()
        self.veth = "btii%d" % self.n
        self.host_ip = "10.251.%d.1" % self.n
        self.inet_ip = "10.251.%d.2" % self.n
        self.procs = []
        self.www = tempfile.mkdtemp(prefix="bh-it-www-")
        with open(os.path.join(self.www, "index.html"), "w") as f:
            f.write("ok\n")

    def up(self):
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "btio", "netns", self.ns)
        sh("ip", "addr", "add", self.host_ip + "/24", "dev", self.veth)
        sh("ip", "addr", "add", "169.254.169.254/32", "dev", self.veth)
        sh("ip", "link", "set", "dev", self.veth, "up")
        sh("ip", "-n", self.ns, "addr", "add", self.inet_ip + "/24", "dev", "btio")
        sh("ip", "-n", self.ns, "link", "set", "dev", "btio", "up")
        sh("ip", "-n", self.ns, "link", "set", "dev", "lo", "up")
        self.serve(["ip", "netns", "exec", self.ns], self.inet_ip, 80)
        self.serve([], "169.254.169.254", 80)
        self.serve([], self.host_ip, 8081)

    def serve(self, prefix, ip, port):
        argv = prefix + [sys.executable, "-m", "http.server", "--bind", ip, "-d", self.www,
                         str(port)]
        self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))
        url = "http://%s:%d/" % (ip, port)
        for _ in range(100):
            if subprocess.run(["timeout", "1", "busybox", "wget", "-q", "-O", "/dev/null", url],
                              capture_output=True).returncode == 0:
                return
            time.sleep(0.05)
        raise AssertionError("server %s did not come up" % url)

    def down(self):
        for p in self.procs:
            p.kill()
            p.wait()
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["rm", "-rf", self.www])
        os.close(self.slot_fd)


class NetworkTest(DaemonTestCase):
    MANIFESTS = ("httpserver.yaml", "sleeper.yaml")

    def setUp(self):
        self.inet = FakeInternet()
        try:
            self.inet.up()
        except Exception:
            self.inet.down()
            raise

    def tearDown(self):
        self.inet.down()

    def claim(self, tenant, workload):
        status, body = self.d.claim(tenant, workload)
        self.assertIn(status, (200, 201), (body, self.d.log()))
        self.addCleanup(self.d.release, tenant, workload)
        return body

    def reaches(self, iid, url):
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["sh", "-c",
                                                  "timeout 2 wget -q -O /dev/null " + url]})
        self.assertEqual(status, 200, out)
        return out["exitCode"] == 0

    def test_unrestricted_reaches_internet_only(self):
        a = self.claim("net-alice", "httpserver")
        b = self.claim("net-bob", "httpserver")
        iid = a["instanceId"]
        gateway = a["endpoint"]["host"].rsplit(".", 1)[0] + ".1"
        self.assertTrue(self.reaches(iid, "http://%s/" % self.inet.inet_ip))
        self.assertFalse(self.reaches(iid, "http://169.254.169.254/"))
        self.assertFalse(self.reaches(iid, "http://%s:8081/" % self.inet.host_ip))
        self.assertFalse(self.reaches(iid, "http://%s:%d/api/v1/health" % (gateway, self.d.port)))
        self.assertFalse(self.reaches(iid, "http://%s:8080/" % b["endpoint"]["host"]))
        # ... while the host still reaches both (health checks, endpoints).
        self.assertTrue(self.reaches(b["instanceId"], "http://%s/" % self.inet.inet_ip))

    def test_none_reaches_nothing(self):
        c = self.claim("net-carol", "sleeper")
        iid = c["instanceId"]
        self.assertFalse(self.reaches(iid, "http://%s/" % self.inet.inet_ip))
        self.assertFalse(self.reaches(iid, "http://169.254.169.254/"))
        self.assertFalse(self.reaches(iid, "http://%s:8081/" % self.inet.host_ip))


if __name__ == "__main__":
    unittest.main()
