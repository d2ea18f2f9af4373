"""A real Kubernetes control plane for the Kubernetes-mode tests, as controller-runtime's envtest
runs one: Debian's etcd and a kube-apiserver built from Debian's source package
(scripts/build-kube-apiserver.sh), on loopback ports, token authentication, RBAC, no kubelet
(tests play its part by writing Pod status). Everything lives in one temporary directory and
both processes are stopped, and the directory removed, by stop() whatever happened."""
import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from bh import require, slot_port, take_slot

KUBECTL = shutil.which("kubectl") or "kubectl"

APISERVER = os.environ.get("BH_KUBE_APISERVER", "/var/cache/boilerhouse-test/kube/kube-apiserver")
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ADMIN_TOKEN = "bh-test-admin-token"
CRDS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "crds"))
KINDS = ["boilerhouseworkloads", "boilerhousepools", "boilerhouseclaims", "boilerhousetriggers"]


class KubeEnv:
    def __init__(self):
        require(os.access(APISERVER, os.X_OK),
                "kube-apiserver not built: run scripts/build-kube-apiserver.sh")
        require(os.access(ETCD, os.X_OK), "etcd not installed (Debian etcd-server)")
        self.dir = tempfile.mkdtemp(prefix="bh-kube-")
        self.procs = []
        self.logs = []
        # Ports of a slot of our own: the API server restarts on its port (restart_apiserver),
        # which no parallel test's client connection may take meanwhile (bh.slot_port).
        self.slot, self.slot_fd = take_slot()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    # ---- processes ----

    def _spawn(self, name, argv):
        log = open(os.path.join(self.dir, name + ".log"), "wb")
        self.logs.append(log)
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def _start(self):
        self.etcd_port = slot_port(self.slot, 1)
        peer_port = slot_port(self.slot, 2)
        etcd_url = "http://127.0.0.1:%d" % self.etcd_port
        self._spawn("etcd", [
            ETCD, "--data-dir", os.path.join(self.dir, "etcd"),
            "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
            "--listen-peer-urls", "http://127.0.0.1:%d" % peer_port,
            "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peer_port,
            "--initial-cluster", "default=http://127.0.0.1:%d" % peer_port,
            "--unsafe-no-fsync"])
        sa_key = os.path.join(self.dir, "sa.key")
        subprocess.run(["openssl", "genrsa", "-out", sa_key, "2048"], check=True,
                       capture_output=True)
        tokens = os.path.join(self.dir, "tokens.csv")
        with open(tokens, "w") as f:
            f.write('%s,admin,admin,"system:masters"\n' % ADMIN_TOKEN)
        self.port = slot_port(self.slot, 0)
        self.cert_dir = os.path.join(self.dir, "pki")
        self.apiserver_argv = [
            APISERVER, "--etcd-servers", etcd_url,
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port), "--insecure-port", "0",
            "--cert-dir", self.cert_dir, "--token-auth-file", tokens,
            "--authorization-mode", "RBAC",
            "--service-account-key-file", sa_key,
            "--service-account-signing-key-file", sa_key,
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-cluster-ip-range", "10.96.0.0/16",
            "--disable-admission-plugins", "ServiceAccount",
            "--allow-privileged=true"]
        self.apiserver = self._spawn("kube-apiserver", self.apiserver_argv)
        self._wait_ready()
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            json.dump(self._kubeconfig(), f)

    def _wait_ready(self, deadline_s=180):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the serving cert is read from cert_dir once it exists
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            for p in self.procs:
                if p.poll() is not None:
                    raise AssertionError("%s exited %d:\n%s" % (p.args[0], p.returncode,
                                                                self.log_tail()))
            try:
                req = urllib.request.Request("https://127.0.0.1:%d/readyz" % self.port)
                req.add_header("Authorization", "Bearer " + ADMIN_TOKEN)
                with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError) as e:
                last = e
            time.sleep(0.2)
        raise AssertionError("kube-apiserver not ready after %ds (%s):\n%s"
                             % (deadline_s, last, self.log_tail()))

    def _kubeconfig(self):
        with open(os.path.join(self.cert_dir, "apiserver.crt"), "rb") as f:
            ca = base64.b64encode(f.read()).decode()
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "envtest",
            "clusters": [{"name": "envtest", "cluster": {
                "server": "https://127.0.0.1:%d" % self.port,
                "certificate-authority-data": ca}}],
            "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
            "contexts": [{"name": "envtest", "context": {
                "cluster": "envtest", "user": "admin", "namespace": "default"}}],
        }

    def install_crds(self):
        """Applies crds/ and waits until the four kinds are served. Kubernetes 1.20 predates
        CEL validation rules (x-kubernetes-validations, >= 1.25): kubectl's client-side
        validation refuses those CRDs, the server accepts them."""
        self.kubectl("apply", "--validate=false", "-f", CRDS)
        for k in KINDS:
            self.wait_established(k)

    def wait_established(self, plural):
        """kubectl wait until CRD <plural>.boilerhouse.dev is served. kubectl 1.20's wait fails
        at once instead of waiting when a CRD applied a moment before has no status.conditions
        yet (seen in fresh CI runs): that answer is asked again until a deadline."""
        crd = "crd/%s.boilerhouse.dev" % plural
        deadline = time.monotonic() + 120
        while True:
            res = self.kubectl("wait", "--for=condition=established", "--timeout=120s", crd,
                               check=False)
            if res.returncode == 0:
                return res
            if "accessor error: <nil>" not in res.stderr or time.monotonic() > deadline:
                raise AssertionError("kubectl wait for %s exited %d:\n%s%s" % (
                    crd, res.returncode, res.stdout, res.stderr))
            time.sleep(0.5)

    def restart_apiserver(self):
        """Stops the API server (etcd keeps the data) and starts it again on the same port,
        as an upgrade or a crash of the control plane does to the clients' watches."""
        p = self.apiserver
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        self.procs.remove(p)
        self.apiserver = self._spawn("kube-apiserver", self.apiserver_argv)
        self._wait_ready()

    def kubeconfig_for(self, namespace):
        """A kubeconfig like the admin one whose context's namespace is namespace (created)."""
        self.kubectl("create", "namespace", namespace)
        cfg = self._kubeconfig()
        cfg["contexts"][0]["context"]["namespace"] = namespace
        path = os.path.join(self.dir, "kubeconfig-" + namespace)
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def log_tail(self, n=40):
        out = []
        for name in ("etcd", "kube-apiserver"):
            path = os.path.join(self.dir, name + ".log")
            if os.path.exists(path):
                with open(path, "rb") as f:
                    lines = f.read().decode(errors="replace").splitlines()[-n:]
                out.append("--- %s ---\n%s" % (name, "\n".join(lines)))
        return "\n".join(out)

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in self.logs:
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.slot_fd is not None:
            os.close(self.slot_fd)
            self.slot_fd = None

    # ---- clients ----

    def kubectl(self, *args, check=True, input=None):
        return kubectl(self.kubeconfig, *args, check=check, input=input)


def kubectl(kubeconfig, *args, check=True, input=None):
    """Runs kubectl against kubeconfig; with check, a non-zero exit fails with its output."""
    res = subprocess.run([KUBECTL, "--kubeconfig", kubeconfig, *args], capture_output=True,
                         text=True, input=input, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError("kubectl %s exited %d:\n%s%s" % (
            " ".join(args), res.returncode, res.stdout, res.stderr))
    return res


class KubeTestCase(unittest.TestCase):
    """Tests on one KubeEnv per class with the CRDs installed; each test works in a namespace
    of its own (NS_PREFIX and the test's name) through self.kc, a kubeconfig whose context
    names it."""
    NS_PREFIX = "t-"

    @classmethod
    def setUpClass(cls):
        cls.kube = KubeEnv()
        cls.addClassCleanup(cls.kube.stop)
        cls.kube.install_crds()

    def setUp(self):
        self.ns = self.NS_PREFIX + self._testMethodName.replace("_", "-")[5:40].strip("-")
        self.kc = self.kube.kubeconfig_for(self.ns)

    def kubectl(self, *args, **kw):
        return self.kube.kubectl("-n", self.ns, *args, **kw)

    def get(self, kind, name):
        """The cluster's object as JSON, or None if absent."""
        res = self.kubectl("get", kind, name, "-o", "json", check=False)
        if res.returncode != 0:
            self.assertIn("NotFound", res.stderr)
            return None
        return json.loads(res.stdout)
