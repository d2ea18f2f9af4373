"""Real clients in real instances, in every network mode: from inside instances of the Debian
test image (scripts/build-debian-image.sh), `getent hosts`, curl, Python requests, Node's
fetch and Node's https.get, by name, with the image's own defaults plus what Boilerhouse
injects (resolv.conf, hosts, proxy variables, CA bundle).

The fake internet lives in a netns the test creates (veth to the host, routed): one address
serving HTTPS on 443 and HTTP on 80 for every name in NAMES (one certificate from a test CA,
recording each request), and a DNS server for those names on the host end of the veth. That
address is a host address, which instances may not reach: the unrestricted plugin, pointed at
it as the host's resolver (resolv_conf), must run its forwarder on the gateway. The restricted
plugin resolves the names through its hosts_file and trusts the test CA (trust_bundle). The
test CA plays the public roots: it is appended to the image's CA bundle in a layer of its own.
Everything made here is removed in class cleanups, even on failure."""
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

import fakenet
from bh import DEBIAN_LAYOUT, Daemon, net_slot
from fakenet import sh

NAMES = ["api.example.test", "allowed.test", "blocked.test"]
SECRET = "sk-real-3c9d1e7a5b"
IMAGE = "localhost/debian:test"
BUNDLE = "etc/ssl/certs/ca-certificates.crt"

# A UDP DNS server: A records for the names given, NOERROR/empty for other types of them,
# NXDOMAIN for every other name.
DNS = r'''
import socket, struct, sys
ip, answer = sys.argv[1], socket.inet_aton(sys.argv[2])
names = set(sys.argv[3:])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((ip, 53))
print("ready", flush=True)
while True:
    q, addr = s.recvfrom(4096)
    off, labels = 12, []
    while q[off]:
        labels.append(q[off + 1:off + 1 + q[off]].decode().lower())
        off += 1 + q[off]
    qtype = struct.unpack(">H", q[off + 1:off + 3])[0]
    question = q[12:off + 5]
    known = ".".join(labels) in names
    ans = b""
    if known and qtype == 1:
        ans = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + answer
    flags = 0x8180 | (0 if known else 3)
    s.sendto(q[:2] + struct.pack(">HHHHH", flags, 1, 1 if ans else 0, 0, 0) + question + ans,
             addr)
'''

NODE_FETCH = ("fetch(process.argv[1]).then(r => r.text()).then(t => { console.log(t); "
              "process.exit(0) }, e => { console.error(e.cause || e); process.exit(1) })")
NODE_HTTPS = ("require(process.argv[1].split(':')[0]).get(process.argv[1], r => { let b = ''; r.on('data', d => b += d);"
              " r.on('end', () => { console.log(b); process.exit(0) }) })"
              ".on('error', e => { console.error(e); process.exit(1) })")
PY_REQUESTS = "import requests, sys; r = requests.get(sys.argv[1], timeout=8); print(r.text)"


def clients(url):
    """argv of each client fetching url ("{}" becomes the client's name); each prints the body
    and exits 0 on success."""
    return {
        "curl": ["curl", "-sS", "--max-time", "8", url.format("curl")],
        "requests": ["python3", "-c", PY_REQUESTS, url.format("requests")],
        "fetch": ["node", "-e", NODE_FETCH, url.format("fetch")],
        "https.get": ["node", "-e", NODE_HTTPS, url.format("https.get")],  # http.get for http:
    }


def workload(name, network):
    return json.dumps({
        "apiVersion": "boilerhouse.dev/v1alpha1", "kind": "BoilerhouseWorkload",
        "metadata": {"name": name},
        "spec": {"version": "0.1.0", "image": {"ref": IMAGE},
                 "resources": {"vcpus": 1, "memoryMb": 256, "diskGb": 1},
                 "network": network, "idle": {"timeoutSeconds": 300, "action": "hibernate"},
                 "entrypoint": {"cmd": "sleep", "args": ["infinity"]}}})


@unittest.skipUnless(os.path.exists(os.path.join(DEBIAN_LAYOUT, "index.json")),
                     "no Debian test image: run scripts/build-debian-image.sh")
class RealClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        n = net_slot(cls.addClassCleanup)
        cls.tmp = tempfile.mkdtemp(prefix="bh-it-rc-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.ns, cls.veth = "bhit-cinet-%d" % os.getpid(), "btci%d" % n
        cls.host_ip, cls.inet_ip = "10.253.%d.1" % n, "10.253.%d.2" % n
        cls.record = os.path.join(cls.tmp, "requests.jsonl")
        cls.ca_crt = fakenet.make_ca(cls.tmp, NAMES, "Boilerhouse Real Clients Root")
        cls.make_image()
        cls.fake_internet()
        hosts = os.path.join(cls.tmp, "hosts")
        with open(hosts, "w") as f:
            f.write("".join("%s %s\n" % (cls.inet_ip, name) for name in NAMES))
        resolv = os.path.join(cls.tmp, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("nameserver %s\n" % cls.host_ip)
        cls.d = Daemon(restricted_config={"trust_bundle": cls.ca_crt, "hosts_file": hosts},
                       unrestricted_config={"resolv_conf": resolv})
        cls.addClassCleanup(cls.d.cleanup)
        cls.d.import_image(cls.layout, IMAGE)
        cls.d.start()
        cls.d.put_secret("upstream", "apikey", SECRET, ok=(200, 201))
        cred = [{"domain": "api.example.test", "headers": [
            {"name": "x-api-key",
             "valueFrom": {"secretKeyRef": {"name": "upstream", "key": "apikey"}}}]}]
        for name, net in (("rc-open", {"access": "unrestricted"}),
                          ("rc-closed", {"access": "restricted",
                                         "allowlist": ["api.example.test", "allowed.test"],
                                         "credentials": cred}),
                          ("rc-none", {"access": "none"})):
            cls.d.apply_workload(workload(name, net), timeout=120)

    # ---- fixtures ----

    @classmethod
    def image_bundle(cls):
        """The Debian image's own CA bundle, read from its layers (last one wins)."""
        with open(os.path.join(cls.layout, "index.json")) as f:
            digest = json.load(f)["manifests"][0]["digest"]
        blob = lambda d: os.path.join(cls.layout, "blobs", *d.split(":"))
        with open(blob(digest)) as f:
            layers = json.load(f)["layers"]
        found = None
        for layer in layers:
            with gzip.open(blob(layer["digest"])) as z, tarfile.open(fileobj=z, mode="r|") as tf:
                for m in tf:
                    if m.name.lstrip("./") == BUNDLE and m.isfile():
                        found = tf.extractfile(m).read()
        return found

    @classmethod
    def make_image(cls):
        """A copy of the cached layout (blobs hard-linked) plus a layer with the test CA in the
        system bundle."""
        cls.layout = os.path.join(cls.tmp, "debian")
        if subprocess.run(["cp", "-al", DEBIAN_LAYOUT, cls.layout]).returncode != 0:
            shutil.rmtree(cls.layout, ignore_errors=True)
            sh("cp", "-a", DEBIAN_LAYOUT, cls.layout)  # another filesystem
        os.unlink(os.path.join(cls.layout, "index.json"))
        shutil.copy(os.path.join(DEBIAN_LAYOUT, "index.json"), cls.layout)
        with open(cls.ca_crt, "rb") as ca:
            data = cls.image_bundle() + b"\n" + ca.read()
        # `umoci insert` (0.4.7) writes a truncated layer here; add-layer takes a plain tar.
        layer = os.path.join(cls.tmp, "ca-layer.tar")
        with tarfile.open(layer, "w") as tf:
            info = tarfile.TarInfo(BUNDLE)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            tf.addfile(info, io.BytesIO(data))
        sh("umoci", "raw", "add-layer", "--image", cls.layout + ":latest", layer)

    @classmethod
    def fake_internet(cls):
        fakenet.netns(cls.addClassCleanup, cls.ns, cls.veth, "btco", cls.host_ip, cls.inet_ip)
        fakenet.upstream(cls.addClassCleanup, cls.ns, cls.inet_ip, cls.record, cls.tmp)
        fakenet.spawn(cls.addClassCleanup, [sys.executable, "-c", DNS, cls.host_ip, cls.inet_ip]
                      + NAMES)

    # ---- helpers ----

    def claim(self, tenant, wl):
        status, body = self.d.claim(tenant, wl)
        self.assertIn(status, (200, 201), (body, self.d.log()))
        self.addCleanup(self.d.release, tenant, wl)
        return body["instanceId"]

    def run_in(self, iid, argv, timeout=20):
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                     {"command": ["timeout", str(timeout)] + argv})
        self.assertEqual(status, 200, out)
        return out["exitCode"], out.get("stdout", "") + out.get("stderr", "")

    def recorded(self, path):
        try:
            with open(self.record) as f:
                return [r for r in map(json.loads, f) if r["path"] == path]
        except FileNotFoundError:
            return []

    def assert_all_clients(self, iid, base, host, path):
        """Every client fetches base+path+<client>; returns {client: request upstream saw}."""
        seen = {}
        for client, argv in clients("%s%s-{}" % (base, path)).items():
            with self.subTest(client=client, url=base):
                rc, out = self.run_in(iid, argv)
                self.assertEqual(rc, 0, out)
                self.assertIn("hello " + host, out)
                recs = self.recorded("%s-%s" % (path, client))
                self.assertTrue(recs, "upstream saw no request from " + client)
                seen[client] = recs[-1]
        return seen

    # ---- tests ----

    def test_identity_files(self):
        iid = self.claim("rc-id", "rc-open")
        rc, out = self.run_in(iid, ["sh", "-c", "cat /etc/hostname; getent hosts $(hostname);"
                                    " getent hosts localhost; touch /etc/hosts"])
        self.assertIn("bh-" + iid, out)
        self.assertIn("::1", out)
        self.assertRegex(out, "Read-only file system|Permission denied")

    def test_unrestricted_names_resolve_and_https_works(self):
        iid = self.claim("rc-open-1", "rc-open")
        rc, out = self.run_in(iid, ["cat", "/etc/resolv.conf"])
        gateway = self.d.subnet.rsplit(".", 1)[0] + ".1"
        self.assertIn("nameserver " + gateway, out)
        self.assertNotIn("127.", out)
        rc, out = self.run_in(iid, ["getent", "hosts", "allowed.test"])
        self.assertEqual((rc, out.split()[:1]), (0, [self.inet_ip]), out)
        rc, out = self.run_in(iid, ["getent", "hosts", "nowhere.test"])
        self.assertNotEqual(rc, 0, out)
        self.assert_all_clients(iid, "https://allowed.test", "allowed.test", "/open")
        # The resolver the forwarder relays to is a host address: not reachable directly.
        rc, out = self.run_in(iid, ["dig", "+time=1", "+tries=1", "@" + self.host_ip,
                                    "allowed.test"])
        self.assertNotEqual(rc, 0, out)
        rc, out = self.run_in(iid, ["curl", "-sS", "--max-time", "2", "http://169.254.169.254/"])
        self.assertNotEqual(rc, 0, out)

    def test_restricted_allowlisted_names_work_with_every_client(self):
        iid = self.claim("rc-closed-1", "rc-closed")
        rc, out = self.run_in(iid, ["cat", "/etc/resolv.conf"])
        self.assertIn("nameserver " + self.d.rgateway, out)
        for name in ("allowed.test", "api.example.test"):
            rc, out = self.run_in(iid, ["getent", "hosts", name])
            self.assertEqual(rc, 0, out)
        self.assert_all_clients(iid, "https://allowed.test", "allowed.test", "/pass")
        seen = self.assert_all_clients(iid, "https://api.example.test", "api.example.test",
                                       "/cred")
        for client, req in seen.items():
            self.assertEqual(req["headers"].get("x-api-key"), SECRET, client)
        # As ANTHROPIC_BASE_URL=http://api.anthropic.com does: plain HTTP, upgraded upstream.
        seen = self.assert_all_clients(iid, "http://api.example.test", "api.example.test",
                                       "/plain")
        for client, req in seen.items():
            self.assertEqual((req["port"], req["headers"].get("x-api-key")), (443, SECRET),
                             client)
        rc, out = self.run_in(iid, ["env"])
        self.assertNotIn(SECRET, out)

    def test_restricted_other_names_do_not_resolve(self):
        iid = self.claim("rc-closed-2", "rc-closed")
        rc, out = self.run_in(iid, ["getent", "hosts", "blocked.test"])
        self.assertNotEqual(rc, 0, out)
        for client, argv in clients("https://blocked.test/no").items():
            with self.subTest(client=client):
                rc, out = self.run_in(iid, argv)
                self.assertNotEqual(rc, 0, out)
        rc, out = self.run_in(iid, ["curl", "-sS", "--max-time", "3", "--noproxy", "*",
                                    "-k", "https://%s/ip" % self.inet_ip])
        self.assertNotEqual(rc, 0, out)
        self.assertFalse(self.recorded("/no") + self.recorded("/ip"))

    def test_none_fails_at_once(self):
        # "At once" is checked without a clock: the instance names no resolver, and each lookup
        # runs with RES_OPTIONS (which overrides resolv.conf's options) stretching any wait for
        # a resolver to 30 s, past the exec's 20 s limit and curl's 8 s. A lookup that waited
        # ends as a timeout (124, curl's 28); one that failed at once ends as a name
        # resolution error, however slow the machine.
        iid = self.claim("rc-none-1", "rc-none")
        rc, out = self.run_in(iid, ["cat", "/etc/resolv.conf"])
        self.assertEqual(rc, 0, out)
        self.assertNotIn("nameserver", out)
        slow_resolver = ["env", "RES_OPTIONS=timeout:30 attempts:1"]
        rc, out = self.run_in(iid, slow_resolver + ["getent", "hosts", "allowed.test"])
        self.assertEqual(rc, 2, out)  # not found (not 124: no wait)
        for client, argv in clients("https://allowed.test/none").items():
            with self.subTest(client=client):
                rc, out = self.run_in(iid, slow_resolver + argv)
                self.assertNotIn(rc, (0, 124, 28), out)
                self.assertRegex(out, "(?i)resolv|getaddrinfo", client)
        rc, out = self.run_in(iid, ["curl", "-sS", "--max-time", "3",
                                    "http://%s/none-ip" % self.inet_ip])
        self.assertNotEqual(rc, 0, out)
        self.assertFalse(self.recorded("/none-ip"))


if __name__ == "__main__":
    unittest.main()
