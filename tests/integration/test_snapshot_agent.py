"""`boilerhouse snapshot-agent` as the process a Pod runs (core/snapshot/agent.h): a sidecar
serving a tenant's overlay directories, a restore-mode agent taking them in and exiting so the
workload can start, over real HTTP on loopback. The trees are compared file by file (content,
mode, owner, symlink targets), bad requests and bad arguments change nothing. The sidecar's
activity counters are read from an agent in a network namespace of the test's own, the node
(the kubelet's probes) on the far side of a veth pair."""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

import fakenet
from bh import BINARY, assert_no_sanitizer_report, first_line, net_slot, run_checked

TOKEN = "t0ken-for-the-agent-0123456789abcdef"
DIRS = ["/workspace", "/home/u"]


def fill(root):
    """Files an agent's workload leaves: owners other than root, modes, links, depth."""
    ws = os.path.join(root, "workspace")
    os.makedirs(os.path.join(ws, "src", "deep", "er"))
    os.makedirs(os.path.join(ws, "empty"))
    os.makedirs(os.path.join(root, "home", "u"))
    files = {"workspace/a.txt": b"alpha\n", "workspace/src/deep/er/b.bin": os.urandom(70000),
             "workspace/empty.txt": b"", "home/u/.profile": b"export X=1\n"}
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    os.chmod(os.path.join(root, "workspace/a.txt"), 0o640)
    os.symlink("../a.txt", os.path.join(ws, "src", "link"))
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "workspace")):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), 1234, 1234)
    os.lchown(os.path.join(root, "home/u/.profile"), 1000, 1000)


def tree(root):
    """{relative path: (type, mode, uid, gid, content or link target)} below the overlay dirs."""
    out = {}
    for d in DIRS:
        top = os.path.join(root, d.lstrip("/"))
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [""] + dirnames + filenames:
                p = os.path.join(dirpath, name) if name else dirpath
                st = os.lstat(p)
                if os.path.islink(p):
                    body = os.readlink(p)
                elif os.path.isfile(p):
                    with open(p, "rb") as f:
                        body = hashlib.sha256(f.read()).hexdigest()
                else:
                    body = None
                out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, body)
    return out


def mtime_ms(path):
    return os.stat(path).st_mtime_ns // 1000000


class SnapshotAgentTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bh-agent-it-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        self.token_file = os.path.join(self.tmp, "token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")

    def agent(self, root, *extra, address="127.0.0.1", netns=None):
        """Starts an agent on a free port (in netns if given); returns (process, base URL)."""
        os.makedirs(root, exist_ok=True)
        argv = [BINARY, "snapshot-agent", "--root", root, "--listen", address + ":0",
                "--token-file", self.token_file]
        for d in DIRS:
            argv += ["--dir", d]
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        p = subprocess.Popen(argv + list(extra), stderr=subprocess.PIPE, text=True)
        self.addCleanup(self.reap, p)
        line = first_line(p.stderr, "the agent")
        m = re.search(r"on %s:(\d+)" % re.escape(address), line)
        self.assertIsNotNone(m, "agent did not start: %r" % line)
        return p, "http://%s:%s" % (address, m.group(1))

    @staticmethod
    def reap(p):
        if p.poll() is None:
            p.kill()
        p.wait()
        rest = p.stderr.read()
        p.stderr.close()
        assert_no_sanitizer_report(rest, "snapshot-agent")

    def request(self, url, method="GET", data=None, headers=None, token=TOKEN):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + token
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def scratch_empty(self, root):
        self.assertEqual(os.listdir(os.path.join(root, ".boilerhouse-agent")), [])

    def test_hibernate_and_restore_through_two_agents(self):
        src, dst = os.path.join(self.tmp, "src"), os.path.join(self.tmp, "dst")
        os.makedirs(src)
        fill(src)
        _, base = self.agent(src)
        status, headers, body = self.request(base + "/v1/snapshot")
        self.assertEqual(status, 200, body)
        digest = headers["X-Boilerhouse-Digest"]
        self.assertEqual(hashlib.sha256(body).hexdigest(), digest)
        self.assertEqual(int(headers["X-Boilerhouse-Files"]), len(tree(src)))
        self.scratch_empty(src)

        restore, base2 = self.agent(dst, "--restore-once")
        os.makedirs(os.path.join(dst, "workspace", "stale"))  # a fresh Pod's leftovers go
        status, _, text = self.request(base2 + "/v1/snapshot", "PUT", body,
                                       {"X-Boilerhouse-Digest": digest})
        self.assertEqual(status, 204, text)
        self.assertEqual(restore.wait(timeout=60), 0)  # the workload may start now
        self.assertEqual(tree(dst), tree(src))
        self.scratch_empty(dst)

    def test_nothing_to_restore(self):
        p, base = self.agent(os.path.join(self.tmp, "fresh"), "--restore-once")
        status, _, _ = self.request(base + "/v1/done", "POST", b"")
        self.assertEqual(status, 204)
        self.assertEqual(p.wait(timeout=60), 0)

    def test_bad_requests_change_nothing(self):
        src, dst = os.path.join(self.tmp, "src"), os.path.join(self.tmp, "dst")
        os.makedirs(src)
        fill(src)
        _, base = self.agent(src)
        _, headers, body = self.request(base + "/v1/snapshot")
        digest = headers["X-Boilerhouse-Digest"]
        p, base2 = self.agent(dst, "--restore-once")
        os.makedirs(os.path.join(dst, "workspace"))
        marker = os.path.join(dst, "workspace", "marker")
        open(marker, "w").close()
        put = {"X-Boilerhouse-Digest": digest}
        cases = [
            ("GET", "/v1/snapshot", None, {}, None, 401),       # no token
            ("GET", "/v1/snapshot", None, {}, "wrong", 401),    # wrong token
            ("PUT", "/v1/snapshot", body, {}, TOKEN, 400),      # no digest
            ("PUT", "/v1/snapshot", body[:-10], put, TOKEN, 422),  # truncated
            ("PUT", "/v1/snapshot", body, {"X-Boilerhouse-Digest": "0" * 64}, TOKEN, 422),
            ("PUT", "/v1/snapshot", b"not an archive",
             {"X-Boilerhouse-Digest": hashlib.sha256(b"not an archive").hexdigest()}, TOKEN, 422),
            ("DELETE", "/v1/snapshot", None, {}, TOKEN, 405),
            ("GET", "/v1/other", None, {}, TOKEN, 404),
        ]
        for method, path, data, headers, token, want in cases:
            with self.subTest(method=method, path=path, want=want):
                status, _, text = self.request(base2 + path, method, data, headers, token)
                self.assertEqual(status, want, text)
                self.assertTrue(os.path.exists(marker))
                self.assertIsNone(p.poll())  # still waiting for a good restore
        self.assertEqual(self.request(base2 + "/healthz", token=None)[0], 200)
        self.scratch_empty(dst)
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=60), 0)

    def activity(self, base):
        status, _, body = self.request(base + "/v1/activity")
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(sorted(doc), ["netActivity", "newestMtimeMs"])
        return doc

    def pod(self):
        """A namespace playing a Pod's, reached from the host (the node) through a veth pair:
        (namespace, the Pod's address, the node's address)."""
        n = net_slot(self.addCleanup)
        ns, pod_ip, node_ip = "bhit-actpod-%d" % n, "10.248.%d.2" % n, "10.248.%d.1" % n
        fakenet.netns(self.addCleanup, ns, "bhitav%d" % n, "eth0", node_ip, pod_ip)
        return ns, pod_ip, node_ip

    def in_pod(self, ns, code):
        """Runs Python code in the Pod's namespace (the workload's side) to completion."""
        run_checked(["ip", "netns", "exec", ns, sys.executable, "-c", code], timeout=60)

    def test_activity_counts_the_workloads_connections_and_files(self):
        ns, pod_ip, node_ip = self.pod()
        root = os.path.join(self.tmp, "pod")
        os.makedirs(os.path.join(root, "workspace", "proj"))
        _, base = self.agent(root, "--watch", "/workspace/proj", "--probe-peer", node_ip,
                             address=pod_ip, netns=ns)
        # Asking is not activity: the daemon's questions come to the agent's own port.
        first = self.activity(base)
        proj = os.path.join(root, "workspace", "proj")
        self.assertEqual(first["newestMtimeMs"], mtime_ms(proj))  # nothing in it yet
        for _ in range(3):
            self.assertEqual(self.activity(base)["netActivity"], first["netActivity"])
        # The kubelet's probes come from the node: a server in the Pod answering the node
        # moves bytes, and none of it counts.
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c",
             "import socket\ns = socket.create_server(('%s', 8080))\nprint('ready', flush=True)\n"
             "while True:\n  c, _ = s.accept()\n  c.sendall(c.recv(4096))\n  c.close()\n" % pod_ip],
            stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (server.kill(), server.wait(), server.stdout.close()))
        self.assertEqual(first_line(server.stdout, "the server").strip(), "ready")
        for _ in range(3):
            with socket.create_connection((pod_ip, 8080), timeout=30) as c:
                c.sendall(b"probe" * 100)
                self.assertEqual(len(c.recv(4096)), 500)
        self.assertEqual(self.activity(base)["netActivity"], first["netActivity"])
        # The workload's own traffic counts, a connection opened and closed between two
        # questions included.
        self.in_pod(ns, "import socket\nc = socket.create_connection(('%s', 8080))\n"
                        "c.sendall(b'x' * 3000)\nc.recv(4096)\nc.close()" % pod_ip)
        moved = self.activity(base)["netActivity"]
        self.assertGreater(moved, first["netActivity"])
        self.assertEqual(self.activity(base)["netActivity"], moved)  # and then it is quiet
        # A long-lived connection counts each time it moves bytes.
        self.in_pod(ns, "import socket, time, urllib.request\n"
                        "c = socket.create_connection(('%s', 8080))\n"
                        "c.sendall(b'y' * 2000)\nc.recv(4096)\n"
                        "req = urllib.request.Request('%s/v1/activity', headers={"
                        "'Authorization': 'Bearer %s'})\n"
                        "assert urllib.request.urlopen(req, timeout=30).status == 200\n"
                        "c.close()" % (pod_ip, base, TOKEN))
        self.assertGreater(self.activity(base)["netActivity"], moved + 2000)
        # Files written under a watched directory show as their mtime.
        os.utime(proj, ns=(0, 0))
        with open(os.path.join(proj, "edit.txt"), "w") as f:
            f.write("work\n")
        os.utime(proj, ns=(0, 0))
        mtime = mtime_ms(os.path.join(proj, "edit.txt"))
        self.assertEqual(self.activity(base)["newestMtimeMs"], mtime)
        # ...but not files beside it, outside --watch.
        with open(os.path.join(root, "workspace", "other.txt"), "w") as f:
            f.write("elsewhere\n")
        os.utime(os.path.join(root, "workspace", "other.txt"), (mtime / 1000 + 60,) * 2)
        self.assertEqual(self.activity(base)["newestMtimeMs"], mtime)

    def test_activity_needs_the_token_and_a_sidecar(self):
        _, base = self.agent(os.path.join(self.tmp, "pod"))
        self.assertEqual(self.request(base + "/v1/activity", token=None)[0], 401)
        self.assertEqual(self.request(base + "/v1/activity", token="wrong" * 8)[0], 401)
        self.assertEqual(self.request(base + "/v1/activity", "POST", b"")[0], 405)
        p, base2 = self.agent(os.path.join(self.tmp, "restore"), "--restore-once")
        status, _, text = self.request(base2 + "/v1/activity")
        self.assertEqual(status, 404, text)
        self.assertIn(b"restore mode", text)
        self.assertIsNone(p.poll())  # still waiting for its restore

    def test_bad_arguments_are_named(self):
        root = os.path.join(self.tmp, "root")
        os.makedirs(os.path.join(root, "workspace"))
        empty = os.path.join(self.tmp, "empty")
        open(empty, "w").close()
        cases = [
            (["--dir", "workspace"], "--dir workspace"),
            (["--dir", "/a/../b"], "--dir /a/../b"),
            (["--dir", "/"], "--dir /"),
            (["--dir", "/workspace", "--listen", "nowhere"], "--listen nowhere"),
            (["--dir", "/workspace", "--token-file", empty], "is empty"),
            (["--dir", "/workspace", "--compression", "xz"], "--compression xz"),
            (["--dir", "/workspace", "--scratch", os.path.join(root, "workspace", "s")],
             "inside an overlay directory"),
            (["--dir", "/workspace", "--watch", "/etc"], "--watch /etc: not an overlay directory"),
            (["--dir", "/workspace", "--watch", "/workspacex"], "--watch /workspacex: not an"),
            (["--dir", "/workspace", "--watch", "rel"], "--watch rel: expected an absolute"),
            (["--dir", "/workspace", "--probe-peer", "node-1"], "--probe-peer node-1"),
        ]
        res = run_checked([BINARY, "snapshot-agent", "--root", os.path.join(self.tmp, "none"),
                           "--dir", "/workspace"], text=True, timeout=60)
        self.assertEqual(res.returncode, 2, res.stderr)
        self.assertIn("not a directory", res.stderr)
        for args, text in cases:
            with self.subTest(args=args):
                res = run_checked([BINARY, "snapshot-agent", "--root", root] + args, text=True,
                                  timeout=60)
                self.assertEqual(res.returncode, 2, res.stderr)
                self.assertIn(text, res.stderr)
        self.assertEqual(sorted(os.listdir(root)), ["workspace"])  # nothing made


if __name__ == "__main__":
    unittest.main()
