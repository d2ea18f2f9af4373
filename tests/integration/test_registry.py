"""`boilerhouse image pull` against Debian's docker-registry on loopback (anonymous and
htpasswd basic auth). Needs docker-registry, skopeo and umoci; htpasswd (apache2-utils) for
the basic-auth case."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

BUILD = os.environ.get("BH_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SOURCE = os.environ.get("BH_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
BINARY = os.path.join(BUILD, "boilerhouse")
UID_BASE = 200000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A docker-registry process with its storage and config in a temp dir."""

    def __init__(self, workdir, htpasswd=None):
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        root = os.path.join(workdir, f"registry-{self.port}")
        os.makedirs(root)
        auth = ""
        if htpasswd:
            path = os.path.join(root, "htpasswd")
            with open(path, "w") as f:
                f.write(htpasswd)
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {path}\n"
        config = os.path.join(root, "config.yml")
        with open(config, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: warn\n"
                f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                f"http:\n  addr: {self.host}\n" + auth
            )
        self.log = open(os.path.join(root, "log"), "w")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", config], stdout=self.log, stderr=self.log
        )

    def wait_ready(self):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401 from an auth-protected registry: it is serving
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"registry on {self.host} did not start")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


class RegistryPullTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("docker-registry", "skopeo", "umoci"):
            if not shutil.which(tool):
                raise unittest.SkipTest(f"{tool} not installed")
        cls.layout_dir = tempfile.mkdtemp(prefix="bh-it-layout-")
        cls.layout = os.path.join(cls.layout_dir, "busybox")
        subprocess.run(
            [os.path.join(SOURCE, "scripts/build-busybox-image.sh"), cls.layout, "latest"],
            check=True,
        )

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.layout_dir, ignore_errors=True)

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bh-it-registry-")
        self.registries = []
        self.env = dict(os.environ, BOILERHOUSE_UID_BASE=str(UID_BASE))

    def tearDown(self):
        for reg in self.registries:
            reg.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_registry(self, htpasswd=None):
        reg = Registry(self.tmp, htpasswd)
        self.registries.append(reg)  # before waiting, so tearDown stops it either way
        reg.wait_ready()
        return reg

    def push(self, reg, ref, creds=None):
        cmd = ["skopeo", "copy", "--dest-tls-verify=false"]
        if creds:
            cmd += ["--dest-creds", creds]
        cmd += [f"oci:{self.layout}:latest", f"docker://{reg.host}/{ref}"]
        subprocess.run(cmd, check=True, capture_output=True)

    def bh(self, *args, check=True):
        state = os.path.join(self.tmp, "state")
        res = subprocess.run(
            [BINARY, "image", *args, "--state-dir", state],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        if check and res.returncode != 0:
            self.fail(f"boilerhouse image {' '.join(args)}: {res.stderr}")
        return res

    def assert_pulled(self, ref):
        ls = self.bh("ls").stdout.split("\n")
        line = [l for l in ls if l.startswith(ref + " ")]
        self.assertEqual(len(line), 1, ls)
        digest = line[0].split()[1]
        self.assertTrue(digest.startswith("sha256:"))
        with open(os.path.join(self.layout, "index.json")) as f:
            self.assertEqual(json.load(f)["manifests"][0]["digest"], digest)
        layers = os.path.join(self.tmp, "state/images/layers", str(UID_BASE))
        found = [d for d in os.listdir(layers) if not d.startswith(".")]
        self.assertEqual(len(found), 1)
        st = os.stat(os.path.join(layers, found[0], "bin/busybox"))
        self.assertEqual(st.st_uid, UID_BASE)

    def test_anonymous_pull(self):
        reg = self.start_registry()
        self.push(reg, "test/busybox:1")
        ref = f"{reg.host}/test/busybox:1"
        out = self.bh("pull", ref).stdout
        self.assertIn(ref, out)
        self.assert_pulled(ref)
        missing = self.bh("pull", f"{reg.host}/test/missing:1", check=False)
        self.assertNotEqual(missing.returncode, 0)
        self.assertIn("test/missing", missing.stderr)

    def test_basic_auth_pull(self):
        if not shutil.which("htpasswd"):
            self.skipTest("htpasswd (apache2-utils) not installed; bcrypt needs it")
        line = subprocess.run(
            ["htpasswd", "-Bbn", "alice", "s3cret"], check=True, capture_output=True, text=True
        ).stdout
        reg = self.start_registry(htpasswd=line)
        self.push(reg, "test/busybox:1", creds="alice:s3cret")
        ref = f"{reg.host}/test/busybox:1"
        denied = self.bh("pull", ref, check=False)
        self.assertNotEqual(denied.returncode, 0)
        self.assertIn("requires credentials", denied.stderr)
        cfg = os.path.join(self.tmp, "registries.json")
        with open(cfg, "w") as f:
            json.dump({"auths": {reg.host: {"username": "alice", "password": "s3cret"}}}, f)
        self.bh("pull", ref, "--registry-config", cfg)
        self.assert_pulled(ref)


if __name__ == "__main__":
    unittest.main()
