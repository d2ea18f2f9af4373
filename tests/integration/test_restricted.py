"""Network mode `restricted` end to end: real instances, real traffic from inside them.

A fake internet lives in a netns the test creates (veth to the host, routed): one address
serving HTTPS on 443 for api.example.test, allowed.test, a.allowed.test and blocked.test (one
certificate from a test CA made with the openssl CLI), plain HTTP on 80 and 8080; every request
is appended (request line + headers) as a JSON line to a file the test reads. The daemon's
restricted plugin resolves those names through its hosts_file and trusts the test CA
(trust_bundle).

Inside instances: busybox (wget for HTTP, nslookup, nc) plus `tlsget` (tlsget.c, linked
statically against Debian's libssl.a/libcrypto.a, since busybox wget has no TLS), in an image
built here with umoci from the busybox layout, whose system CA bundle is the test CA (the
"public roots"); the daemon appends the egress CA to it at boot. Everything made here is removed
in class cleanups, even on failure."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import fakenet
from bh import BUSYBOX_REF, Daemon, busybox_with, free_port, net_slot, require, wait_for
from fakenet import sh

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ["api.example.test", "allowed.test", "a.allowed.test", "blocked.test"]
SECRET = "sk-test-5b1f0c9e7d2a4e6f"
TENANT_SECRETS = {"rt-alpha": "tenant-alpha-7c41d9", "rt-beta": "tenant-beta-93e0aa"}

def workload(name, network, cmd="exec sleep 2147483647", image="localhost/tlsbox:latest"):
    return json.dumps({
        "apiVersion": "boilerhouse.dev/v1alpha1", "kind": "BoilerhouseWorkload",
        "metadata": {"name": name},
        "spec": {"version": "0.1.0", "image": {"ref": image},
                 "resources": {"vcpus": 0.5, "memoryMb": 64, "diskGb": 1},
                 "network": network, "idle": {"timeoutSeconds": 300, "action": "hibernate"},
                 "entrypoint": {"cmd": "sh", "args": ["-c", cmd]}}})


def credential(ref_kind, name, key):
    return [{"domain": "api.example.test",
             "headers": [{"name": "x-api-key", "valueFrom": {ref_kind: {"name": name, "key": key}}}]}]


ALLOW = ["api.example.test", "allowed.test", "*.allowed.test"]


class RestrictedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        n = net_slot(cls.addClassCleanup)
        cls.tmp = tempfile.mkdtemp(prefix="bh-it-rs-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.ns, cls.veth = "bhit-rinet-%d" % os.getpid(), "btri%d" % n
        cls.host_ip, cls.inet_ip = "10.252.%d.1" % n, "10.252.%d.2" % n
        cls.record = os.path.join(cls.tmp, "requests.jsonl")
        cls.ca_crt = fakenet.make_ca(cls.tmp, NAMES, "Boilerhouse Test Root")
        cls.make_image()
        cls.fake_internet()
        hosts = os.path.join(cls.tmp, "hosts")
        with open(hosts, "w") as f:
            f.write("".join("%s %s\n" % (cls.inet_ip, name) for name in NAMES))
        cls.d = Daemon(restricted_config={"trust_bundle": cls.ca_crt, "hosts_file": hosts})
        cls.addClassCleanup(cls.d.cleanup)
        cls.d.import_image(cls.layout, "localhost/tlsbox:latest")
        cls.d.start()
        cls.gw = cls.d.rgateway
        cls.secret("upstream", "apikey", SECRET)
        for tenant, value in TENANT_SECRETS.items():
            cls.secret("tenantkey", "k", value, tenant)
        cls.d.apply_workload(workload("rsbox", {"access": "restricted", "allowlist": ALLOW,
                                                "credentials": credential("secretKeyRef",
                                                                          "upstream", "apikey")}))

    # ---- fixtures ----

    @classmethod
    def make_image(cls):
        t = cls.tmp
        tlsget = os.path.join(t, "tlsget")
        out = subprocess.run(["gcc", "-static", "-O2", "-o", tlsget,
                              os.path.join(HERE, "tlsget.c"), "-lssl", "-lcrypto", "-lpthread"],
                             capture_output=True, text=True)
        require(out.returncode == 0, "cannot build a static TLS client: " + out.stderr[-500:])
        cls.layout = busybox_with(t, "tlsbox", {
            "/bin/tlsget": tlsget, "/etc/ssl/certs/ca-certificates.crt": cls.ca_crt})

    @classmethod
    def fake_internet(cls):
        fakenet.netns(cls.addClassCleanup, cls.ns, cls.veth, "btro", cls.host_ip, cls.inet_ip)
        fakenet.upstream(cls.addClassCleanup, cls.ns, cls.inet_ip, cls.record, cls.tmp,
                         http="80,8080")

    @classmethod
    def secret(cls, name, key, value, tenant=None):
        cls.d.put_secret(name, key, value, tenant, ok=(200, 201))

    # ---- helpers ----

    def claim(self, tenant, wl):
        status, body = self.d.claim(tenant, wl)
        self.assertIn(status, (200, 201), (body, self.d.log()))
        self.addCleanup(self.d.release, tenant, wl)
        return body

    def run_in(self, iid, script):
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["sh", "-c", script]})
        self.assertEqual(status, 200, out)
        return out["exitCode"], out.get("stdout", "")

    def files_containing(self, iid, head, tail):
        """Regular files in the instance holding head+tail (passed in two halves so the command
        line itself never holds the string). find does not follow symlinks, so busybox's ~270
        applet links are not read once each (a grep -r over / did, ~530 MB at 0.5 vCPU); no
        -xdev, so bind mounts and tmpfs are searched too; /proc, /sys and /dev are not files."""
        rc, out = self.run_in(iid, "a=%s; b=%s; find / \\( -path /proc -o -path /sys -o -path /dev "
                              "\\) -prune -o -type f -exec grep -l \"$a$b\" {} +; true"
                              % (head, tail))
        return out.strip()

    def requests(self, **match):
        try:
            with open(self.record) as f:
                recs = [json.loads(l) for l in f if l.strip()]
        except FileNotFoundError:
            return []
        return [r for r in recs if all(r["headers"].get(k) == v for k, v in match.items())]

    def mark(self):
        """A unique path, so each check finds its own requests in the record."""
        self._n = getattr(self, "_n", 0) + 1
        return "/%s-%d-%d" % (self._testMethodName, self._n, time.monotonic_ns())

    def recorded(self, path):
        return [r for r in self.requests() if r["line"].split()[1] == path]

    def https(self, iid, name, path, proxy=False):
        return self.run_in(iid, "timeout 8 tlsget %s %s %s %s" % (
            "-x" if proxy else "", name, self.inet_ip, path))

    def http(self, iid, url, host=None, proxy=False):
        env = "" if proxy else "http_proxy= HTTP_PROXY= "
        hdr = "--header 'Host: %s' " % host if host else ""
        return self.run_in(iid, "%stimeout 5 wget -q -O - %s'%s'" % (env, hdr, url))

    # ---- tests ----

    def egress(self, what, workload="rsbox"):
        """boilerhouse_egress_<what>_total{workload=...} from /metrics."""
        status, text = self.d.request("GET", "/metrics")
        self.assertEqual(status, 200)
        series = 'boilerhouse_egress_%s_total{workload="%s"} ' % (what, workload)
        return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(series))

    def test_allowlisted_names_reachable_over_http_and_https(self):
        requests, nbytes = self.egress("requests"), self.egress("bytes")
        iid = self.claim("rs-allow", "rsbox")["instanceId"]
        for name in ("allowed.test", "a.allowed.test"):
            for proxy in (False, True):
                p = self.mark()
                rc, out = self.https(iid, name, p, proxy=proxy)
                self.assertEqual(rc, 0, (name, proxy, out))
                self.assertIn("hello " + name, out)
                self.assertEqual(len(self.recorded(p)), 1)
                p = self.mark()
                if proxy:
                    rc, out = self.http(iid, "http://%s%s" % (name, p), proxy=True)
                else:
                    rc, out = self.http(iid, "http://%s%s" % (self.inet_ip, p), host=name)
                self.assertEqual(rc, 0, (name, proxy, out))
                self.assertEqual([r["headers"]["host"] for r in self.recorded(p)], [name])
        # 2 names x (HTTPS + HTTP) x (transparent + explicit proxy), counted per workload; the
        # bytes of a connection are added when the proxy is done with it.
        self.assertGreaterEqual(self.egress("requests") - requests, 8)
        wait_for(lambda: self.egress("bytes") - nbytes > 8 * 100, timeout=30,
                 what="the egress byte count")

    def test_other_names_ip_literals_and_ports_refused(self):
        denials = self.egress("denials")
        iid = self.claim("rs-deny", "rsbox")["instanceId"]
        for proxy in (False, True):
            p = self.mark()
            rc, _ = self.https(iid, "blocked.test", p, proxy=proxy)
            self.assertNotEqual(rc, 0)
            rc, _ = self.https(iid, "b.a.allowed.test.evil", p, proxy=proxy)
            self.assertNotEqual(rc, 0)
            self.assertEqual(self.recorded(p), [])
            p = self.mark()
            if proxy:
                rc, out = self.http(iid, "http://blocked.test%s" % p, proxy=True)
            else:
                rc, out = self.http(iid, "http://%s%s" % (self.inet_ip, p), host="blocked.test")
            self.assertNotEqual(rc, 0, out)
            # IP literals: by Host, by absolute URI and by CONNECT.
            rc, out = self.http(iid, "http://%s%s" % (self.inet_ip, p), proxy=proxy)
            self.assertNotEqual(rc, 0, out)
            self.assertEqual(self.recorded(p), [])
        p = self.mark()
        rc, _ = self.https(iid, self.inet_ip, p, proxy=True)
        self.assertNotEqual(rc, 0)
        # The 403 says why.
        rc, out = self.run_in(iid, "http_proxy= timeout 5 wget -S -O - --header 'Host: blocked.test'"
                              " http://%s/ 2>&1" % self.inet_ip)
        self.assertIn("403", out)
        # Every refusal that reached the proxy above (not those DNS already refused) is a
        # denial of this workload in /metrics.
        self.assertGreaterEqual(self.egress("denials") - denials, 6)
        # Any other port, straight to the fake internet: dropped.
        rc, out = self.run_in(iid, "echo 'GET /nc HTTP/1.0' | timeout 4 nc -w 2 %s 8080"
                              % self.inet_ip)
        self.assertNotEqual(rc, 0, out)
        self.assertEqual([r for r in self.requests() if r["port"] == 8080], [])

    def test_dns_answers_allowlisted_names_only(self):
        iid = self.claim("rs-dns", "rsbox")["instanceId"]
        for name in ("allowed.test", "a.allowed.test", "api.example.test"):
            rc, out = self.run_in(iid, "timeout 5 nslookup %s %s" % (name, self.gw))
            self.assertIn(self.inet_ip, out, (name, out))
        for name in ("blocked.test", "x.example.test", "example.test", "allowed.test.evil"):
            rc, out = self.run_in(iid, "timeout 5 nslookup %s %s 2>&1" % (name, self.gw))
            self.assertNotIn(self.inet_ip, out, name)
            self.assertIn("NXDOMAIN", out, (name, out))
        # Any other resolver address ends up at the filter too.
        rc, out = self.run_in(iid, "timeout 5 nslookup blocked.test %s 2>&1" % self.inet_ip)
        self.assertIn("NXDOMAIN", out)

    def test_credentials_injected_never_inside(self):
        iid = self.claim("rs-cred", "rsbox")["instanceId"]
        for proxy in (False, True):
            p = self.mark()
            rc, out = self.https(iid, "api.example.test", p, proxy=proxy)
            self.assertEqual(rc, 0, out)
            self.assertEqual([r["headers"].get("x-api-key") for r in self.recorded(p)], [SECRET])
        # Plain http:// to the credentials domain goes upstream over TLS, with the key.
        for proxy in (False, True):
            p = self.mark()
            if proxy:
                rc, out = self.http(iid, "http://api.example.test%s" % p, proxy=True)
            else:
                rc, out = self.http(iid, "http://%s%s" % (self.inet_ip, p), host="api.example.test")
            self.assertEqual(rc, 0, out)
            recs = self.recorded(p)
            self.assertEqual([(r["port"], r["headers"].get("x-api-key")) for r in recs],
                             [(443, SECRET)])
        # The instance holds no trace of it: environment, processes, files.
        rc, out = self.run_in(iid, "env; cat /proc/*/environ | tr '\\0' '\\n'")
        self.assertEqual(rc, 0)
        self.assertNotIn(SECRET, out)
        self.assertIn("SSL_CERT_FILE=/etc/boilerhouse/ca-bundle.crt", out)
        self.assertIn("HTTPS_PROXY=http://%s:3128" % self.gw, out)
        # The search itself works: it finds a string that is there.
        self.assertIn("/etc/passwd", self.files_containing(iid, "root:x:0", ":0:root"))
        half = len(SECRET) // 2
        self.assertEqual(self.files_containing(iid, SECRET[:half], SECRET[half:]), "")

    def test_tenant_credentials_differ_on_one_warm_pool(self):
        self.d.apply_workload(workload("rspool", {"access": "restricted", "allowlist": ALLOW,
                                                  "credentials": credential("tenantSecretKeyRef",
                                                                            "tenantkey", "k")}))
        status, out = self.d.request("POST", "/api/v1/pools",
                                     {"name": "rspool-pool", "spec": {"workloadRef": "rspool",
                                                                      "size": 2}})
        self.assertIn(status, (200, 201), out)
        self.addCleanup(self.d.request, "DELETE", "/api/v1/pools/rspool-pool")
        deadline = time.time() + 60
        while self.d.request("GET", "/api/v1/pools/rspool-pool")[1]["status"].get("ready") != 2:
            self.assertLess(time.time(), deadline, self.d.log())
            time.sleep(0.2)
        seen = {}
        for tenant, value in TENANT_SECRETS.items():
            body = self.claim(tenant, "rspool")
            self.assertEqual(body["source"], "pool", body)
            p = self.mark()
            rc, out = self.https(body["instanceId"], "api.example.test", p)
            self.assertEqual(rc, 0, out)
            seen[tenant] = [r["headers"].get("x-api-key") for r in self.recorded(p)]
        self.assertEqual(seen, {t: [v] for t, v in TENANT_SECRETS.items()})

    # ---- expose[].host: publishing on the host's addresses ----

    def from_internet(self, port, timeout=10):
        """Body of http://<host's veth address>:port/ fetched from the fake internet, or None."""
        deadline = time.time() + timeout
        while True:
            out = subprocess.run(["ip", "netns", "exec", self.ns, "timeout", "2", "busybox", "wget",
                                  "-q", "-O", "-", "http://%s:%d/" % (self.host_ip, port)],
                                 capture_output=True, text=True)
            if out.returncode == 0 or time.time() > deadline:
                return out.stdout if out.returncode == 0 else None
            time.sleep(0.2)

    def test_expose_host_port(self):
        hp, rhp = free_port(), free_port()
        web = "exec httpd -f -p 8080 -h /www"
        for name, access, port, image in (("pubweb", "unrestricted", hp, BUSYBOX_REF),
                                          ("pubweb2", "unrestricted", hp, BUSYBOX_REF),
                                          ("rspub", "restricted", rhp, "localhost/tlsbox:latest")):
            self.d.apply_workload(workload(name, {"access": access, "expose": [
                {"guest": 8080, "host": port}]}, cmd=web, image=image))
        self.claim("pub-a", "pubweb")
        self.assertIn("boilerhouse busybox httpd", self.from_internet(hp) or "")
        self.claim("pub-r", "rspub")
        self.assertIn("boilerhouse busybox httpd", self.from_internet(rhp) or "")
        # The port is taken: another instance cannot publish it.
        status, body = self.d.claim("pub-b", "pubweb2")
        self.assertNotIn(status, (200, 201), body)
        # Released: the DNAT goes with the instance, and the port is free again.
        self.assertIn(self.d.release("pub-a", "pubweb")[0], (200, 202))
        deadline = time.time() + 20
        while self.from_internet(hp, timeout=0) is not None:
            self.assertLess(time.time(), deadline, "port %d still published" % hp)
            time.sleep(0.2)
        self.claim("pub-b", "pubweb2")
        self.assertIn("boilerhouse busybox httpd", self.from_internet(hp) or "")


if __name__ == "__main__":
    unittest.main()
