"""TLS on the REST listener: off loopback it serves HTTPS with a CA of its own (whose
fingerprint it logs) and refuses plain HTTP unless told otherwise; an operator's certificate
files work; /ws shares the TLS listener. Off loopback means an address on a dummy interface
the test creates (a veth pair; deleted after)."""
import hashlib
import http.client
import os
import re
import socket
import ssl
import subprocess
import tempfile
import unittest

from bh import Daemon, net_slot, run_checked

KEY = "tls-test-key"


def fingerprint(pem_path):
    with open(pem_path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return ":".join("%02X" % b for b in hashlib.sha256(der).digest())


def https(host, port, cafile, path="/api/v1/health", key=None):
    ctx = ssl.create_default_context(cafile=cafile)
    c = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
    try:
        c.request("GET", path, headers={"Authorization": "Bearer " + key} if key else {})
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def plain(host, port, path="/api/v1/health"):
    c = http.client.HTTPConnection(host, port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status
    finally:
        c.close()


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        n = net_slot(cls.addClassCleanup)
        cls.link, cls.ip = "bhtl%d" % n, "10.249.%d.1" % n
        subprocess.run(["ip", "link", "del", cls.link], capture_output=True)
        # A veth pair (no dummy module in a container): the address on one end, both up;
        # deleting one end deletes both.
        run_checked(["ip", "link", "add", cls.link, "type", "veth", "peer", "name",
                     cls.link + "p"])
        cls.addClassCleanup(subprocess.run, ["ip", "link", "del", cls.link], capture_output=True)
        run_checked(["ip", "addr", "add", cls.ip + "/32", "dev", cls.link])
        for dev in (cls.link, cls.link + "p"):
            run_checked(["ip", "link", "set", dev, "up"])

    def daemon(self, host, *args, api_key=KEY):
        d = Daemon(api_key=api_key, listen_host=host, extra_args=list(args))
        self.addCleanup(d.cleanup)
        return d

    def test_off_loopback_serves_tls_with_its_own_ca_and_refuses_plain_http(self):
        d = self.daemon(self.ip)
        ca = os.path.join(d.state, "tls", "ca.crt")
        d.start(ready=lambda: os.path.exists(ca) and https(self.ip, d.port, ca)[0] == 200)
        logged = re.search(r"CA \S+ca\.crt, SHA-256 fingerprint ([0-9A-F:]+)", d.log(tail=None))
        self.assertIsNotNone(logged, "the CA's fingerprint is not in the log")
        self.assertEqual(logged.group(1), fingerprint(ca))
        self.assertEqual(https(self.ip, d.port, ca, "/api/v1/workloads", KEY)[0], 200)
        self.assertEqual(https(self.ip, d.port, ca, "/api/v1/workloads", "wrong")[0], 401)
        # A client that does not trust the CA is refused by its own verification.
        with self.assertRaises(ssl.SSLCertVerificationError):
            https(self.ip, d.port, None)
        # Plain HTTP gets no HTTP answer.
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            plain(self.ip, d.port)
        # /ws upgrades over the same TLS listener.
        ctx = ssl.create_default_context(cafile=ca)
        with ctx.wrap_socket(socket.create_connection((self.ip, d.port), timeout=30),
                             server_hostname=self.ip) as s:
            s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n"
                       % KEY).encode())
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 101"))

    def test_plain_http_off_loopback_only_when_told(self):
        d = self.daemon(self.ip, "--tls", "off")
        self.assertEqual(d.start(expect_fail=True), 1)
        self.assertIn("--insecure-http", d.log())
        d2 = self.daemon(self.ip, "--tls", "off", "--insecure-http", "1")
        d2.start(ready=lambda: plain(self.ip, d2.port) == 200)

    def test_operator_certificate_files(self):
        tmp = tempfile.mkdtemp(prefix="bh-tls-")
        self.addCleanup(subprocess.run, ["rm", "-rf", tmp])
        cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
        run_checked(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                     "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                     "-days", "1", "-subj", "/CN=bh-test", "-addext",
                     "subjectAltName=IP:127.0.0.1"])
        d = self.daemon("127.0.0.1", "--tls-cert", cert, "--tls-key", key)
        d.start(ready=lambda: https("127.0.0.1", d.port, cert)[0] == 200)
        self.assertIn("SHA-256 fingerprint " + fingerprint(cert), d.log(tail=None))
        self.assertFalse(os.path.exists(os.path.join(d.state, "tls")))  # nothing made

    def test_bad_tls_settings_are_named(self):
        d = self.daemon("127.0.0.1", "--tls-cert", "/nonexistent/c.pem", "--tls-key",
                        "/nonexistent/k.pem")
        self.assertEqual(d.start(expect_fail=True), 1)
        self.assertIn("/nonexistent/c.pem", d.log())
        d2 = self.daemon("127.0.0.1", "--tls-cert", "/nonexistent/c.pem")
        self.assertEqual(d2.start(expect_fail=True), 1)
        self.assertIn("--tls-cert and --tls-key go together", d2.log())
        d3 = self.daemon("127.0.0.1", "--tls", "maybe")
        self.assertEqual(d3.start(expect_fail=True), 2)
        self.assertIn("--tls maybe: expected one of auto|on|off", d3.log())


if __name__ == "__main__":
    unittest.main()
