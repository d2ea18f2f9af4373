"""`boilerhouse image pull` against Debian's docker-registry on loopback (anonymous and
htpasswd basic auth). Needs docker-registry, skopeo and umoci; htpasswd (apache2-utils) for
the basic-auth case."""

import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

from bh import assert_no_sanitizer_report, require

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


def debian_base_registry(workdir):
    """For Dockerfile builds: a registry serving the Debian test image
    (scripts/build-debian-image.sh) as <host>/test/debian:12. Returns (registry, base ref);
    the caller stops the registry. Requires buildah, docker-registry, skopeo and the image."""
    from bh import DEBIAN_LAYOUT
    for tool in ("buildah", "docker-registry", "skopeo"):
        require(shutil.which(tool), f"{tool} not installed (scripts/install-deps.sh)")
    require(os.path.exists(os.path.join(DEBIAN_LAYOUT, "index.json")),
            "no Debian test image at %s (scripts/build-debian-image.sh)" % DEBIAN_LAYOUT)
    reg = Registry(workdir)
    try:
        reg.wait_ready()
        base = f"{reg.host}/test/debian:12"
        subprocess.run(["skopeo", "copy", "--dest-tls-verify=false",
                        f"oci:{DEBIAN_LAYOUT}:latest", f"docker://{base}"],
                       check=True, capture_output=True)
    except Exception:
        reg.stop()
        raise
    return reg, base


class TokenRegistry(http.server.ThreadingHTTPServer):
    """A minimal registry in-process: Bearer challenge, a token service that wants Basic
    credentials, an image index for the tag, and blobs from an OCI layout. tamper=True
    serves a corrupted layer."""

    TOKEN = "good-token"
    CREDS = "Basic " + base64.b64encode(b"alice:s3cret").decode()

    def __init__(self, layout, tamper=False):
        super().__init__(("127.0.0.1", 0), TokenHandler)
        self.layout, self.tamper = layout, tamper
        self.host = f"127.0.0.1:{self.server_address[1]}"
        self.token_queries = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def blob(self, digest):
        path = os.path.join(self.layout, "blobs/sha256", digest.split(":", 1)[1])
        with open(path, "rb") as f:
            return f.read()

    def index(self):
        with open(os.path.join(self.layout, "index.json")) as f:
            desc = json.load(f)["manifests"][0]
        desc = dict(desc, platform={"os": "linux", "architecture": "amd64"})
        # Picking arm64 would ask for a manifest that does not exist.
        arm = dict(desc, platform={"os": "linux", "architecture": "arm64"},
                   digest="sha256:" + "0" * 64)
        return json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [arm, desc]}
        ).encode()

    def stop(self):
        self.shutdown()
        self.server_close()


class TokenHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        srv = self.server
        if self.path.startswith("/token?"):
            srv.token_queries.append(self.path)
            if self.headers.get("Authorization") != srv.CREDS:
                return self.reply(401)
            return self.reply(200, json.dumps({"token": srv.TOKEN}).encode())
        if self.headers.get("Authorization") != "Bearer " + srv.TOKEN:
            challenge = (f'Bearer realm="http://{srv.host}/token",service="fake",'
                         'scope="repository:test/busybox:pull"')
            return self.reply(401, b"{}", [("WWW-Authenticate", challenge)])
        what, ref = self.path.split("/")[-2:]
        if what == "manifests" and ref == "1":
            return self.reply(200, srv.index())
        if what in ("manifests", "blobs") and ref.startswith("sha256:"):
            body = srv.blob(ref)
            if srv.tamper and what == "blobs" and body[:2] == b"\x1f\x8b":
                body = body + b"tampered"
            return self.reply(200, body)
        return self.reply(404)


class RegistryPullTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("docker-registry", "skopeo", "umoci"):
            require(shutil.which(tool), f"{tool} not installed")
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

    def start_token_registry(self, tamper=False):
        reg = TokenRegistry(self.layout, tamper)
        self.addCleanup(reg.stop)
        return reg

    def write_creds(self, host):
        cfg = os.path.join(self.tmp, "registries.json")
        with open(cfg, "w") as f:
            json.dump({"auths": {host: {"username": "alice", "password": "s3cret"}}}, f)
        return cfg

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
        assert_no_sanitizer_report(res.stderr, f"boilerhouse image {' '.join(args)}")
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

    def test_workload_pulls_its_image_ref_and_runs(self):
        from bh import Daemon

        reg = self.start_registry()
        self.push(reg, "apps/busybox:2")
        d = Daemon()
        self.addCleanup(d.cleanup)
        d.start()
        manifest = {
            "name": "pulled",
            "spec": {
                "version": "1",
                "image": {"ref": f"{reg.host}/apps/busybox:2"},
                "resources": {"vcpus": 0.5, "memoryMb": 64, "diskGb": 1},
                "entrypoint": {"cmd": "sleep", "args": ["1000"]},
            },
        }
        status, body = d.request("POST", "/api/v1/workloads", manifest)
        self.assertEqual(status, 201, body)
        ready = d.wait_workload("pulled", "Ready")
        with open(os.path.join(self.layout, "index.json")) as f:
            digest = json.load(f)["manifests"][0]["digest"]
        self.assertEqual(ready["status"]["imageDigest"], digest)
        status, claim = d.claim("pat", "pulled")
        self.assertEqual((status, claim["phase"]), (201, "Active"), claim)
        status, out = d.request("POST", "/api/v1/instances/%s/exec" % claim["instanceId"],
                                {"command": ["cat", "/www/index.html"]})
        self.assertIn("boilerhouse busybox httpd", out["stdout"])
        # A ref the registry does not have: the workload says so.
        manifest["name"] = "missing"
        manifest["spec"]["image"]["ref"] = f"{reg.host}/apps/nothing:1"
        self.assertEqual(d.request("POST", "/api/v1/workloads", manifest)[0], 201)
        failed = d.wait_workload("missing", "Error")
        self.assertIn("apps/nothing", failed["status"]["detail"])

    def test_basic_auth_pull(self):
        require(shutil.which("htpasswd"), "htpasswd (apache2-utils) not installed; bcrypt needs it")
        line = subprocess.run(
            ["htpasswd", "-Bbn", "alice", "s3cret"], check=True, capture_output=True, text=True
        ).stdout
        reg = self.start_registry(htpasswd=line)
        self.push(reg, "test/busybox:1", creds="alice:s3cret")
        ref = f"{reg.host}/test/busybox:1"
        denied = self.bh("pull", ref, check=False)
        self.assertNotEqual(denied.returncode, 0)
        self.assertIn("requires credentials", denied.stderr)
        self.bh("pull", ref, "--registry-config", self.write_creds(reg.host))
        self.assert_pulled(ref)

    def test_bearer_token_and_index(self):
        reg = self.start_token_registry()
        ref = f"{reg.host}/test/busybox:1"
        self.bh("pull", ref, "--registry-config", self.write_creds(reg.host))
        self.assert_pulled(ref)  # the amd64 manifest of the index, not the arm64 one
        self.assertIn("service=fake", reg.token_queries[0])
        self.assertIn("scope=repository%3Atest%2Fbusybox%3Apull", reg.token_queries[0])

    def test_tampered_layer_refused(self):
        reg = self.start_token_registry(tamper=True)
        ref = f"{reg.host}/test/busybox:1"
        res = self.bh("pull", ref, "--registry-config", self.write_creds(reg.host), check=False)
        self.assertNotEqual(res.returncode, 0)
        self.assertIn("corrupt or tampered", res.stderr)
        with open(os.path.join(self.layout, "index.json")) as f:
            manifest = json.loads(reg.blob(json.load(f)["manifests"][0]["digest"]))
        self.assertIn(manifest["layers"][0]["digest"], res.stderr)
        self.assertNotIn(ref, self.bh("ls").stdout)


if __name__ == "__main__":
    unittest.main()
