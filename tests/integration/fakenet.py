"""A fake internet for network tests: a test CA with a server certificate for chosen names, a
network namespace joined to the host by a veth pair, and the recording web server
(upstream_server.py) inside it. Every helper registers its own cleanup with add_cleanup
(a test class's addClassCleanup), so nothing outlives the test even when it fails."""
import os
import subprocess
import sys

from bh import first_line

HERE = os.path.dirname(os.path.abspath(__file__))


def sh(*argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, **kw)


def make_ca(tmp, names, cn):
    """A CA (tmp/ca.crt) and a server certificate for names (tmp/srv.crt, tmp/srv.key)."""
    ca = os.path.join(tmp, "ca.crt")
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", tmp + "/ca.key", "-out", ca, "-days", "2", "-subj", "/CN=" + cn,
       "-addext", "basicConstraints=critical,CA:TRUE")
    with open(tmp + "/ext.cnf", "w") as f:
        f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n" %
                ",".join("DNS:" + x for x in names))
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", tmp + "/srv.key", "-out", tmp + "/srv.csr", "-subj", "/CN=fake-internet")
    sh("openssl", "x509", "-req", "-in", tmp + "/srv.csr", "-CA", ca, "-CAkey", tmp + "/ca.key",
       "-CAcreateserial", "-out", tmp + "/srv.crt", "-days", "2", "-extfile", tmp + "/ext.cnf")
    return ca


def netns(add_cleanup, ns, veth, peer, host_ip, inet_ip, host_ns=None):
    """Namespace ns reached from the host through veth (host_ip/24) <-> peer (inet_ip/24), its
    default route back through the host. With host_ns, veth lives in that namespace instead of
    the host's (a Pod's network namespace, say), which then routes everything to ns."""
    on = ["ip", "-n", host_ns] if host_ns else ["ip"]
    add_cleanup(subprocess.run, ["ip", "netns", "del", ns], capture_output=True)
    add_cleanup(subprocess.run, on + ["link", "del", veth], capture_output=True)
    sh("ip", "netns", "add", ns)
    sh(*on, "link", "add", veth, "type", "veth", "peer", "name", peer, "netns", ns)
    sh(*on, "addr", "add", host_ip + "/24", "dev", veth)
    sh(*on, "link", "set", "dev", veth, "up")
    sh("ip", "-n", ns, "addr", "add", inet_ip + "/24", "dev", peer)
    sh("ip", "-n", ns, "link", "set", "dev", peer, "up")
    sh("ip", "-n", ns, "link", "set", "dev", "lo", "up")
    sh("ip", "-n", ns, "route", "add", "default", "via", host_ip)
    if host_ns:
        sh(*on, "route", "add", "default", "via", inet_ip)


def spawn(add_cleanup, argv):
    """Starts argv and waits for its "ready" line."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    add_cleanup(lambda: (p.kill(), p.wait(), p.stdout.close()))
    if first_line(p.stdout, argv[0]).strip() != "ready":
        raise AssertionError("fake internet: %s did not start" % argv)


def upstream(add_cleanup, ns, ip, record, tmp, http="80", https="443", model_key=None):
    """The recording web server at ip inside ns, with tmp's server certificate; with
    model_key, also the fake model API (upstream_server.py)."""
    spawn(add_cleanup, ["ip", "netns", "exec", ns, sys.executable,
                        os.path.join(HERE, "upstream_server.py"), ip, record, tmp + "/srv.crt",
                        tmp + "/srv.key", "--http", http, "--https", https]
          + (["--model-key", model_key] if model_key else []))
