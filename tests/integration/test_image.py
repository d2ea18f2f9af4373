"""The deployment image (deploy/Containerfile), built from this checkout and then run.

scripts/build-image.sh builds it with the real buildah FROM the Debian test image
(scripts/build-debian-image.sh, both base-image build args), with apt and npm from the
network as a user's build would (their downloads are kept in a cache under
/var/cache/boilerhouse-test, never the build's result). The layout it writes is unpacked with
umoci and its containers are run with runc the way the image and the Pod builder say:

 - the image's own config (User 65532:65532, ENTRYPOINT boilerhouse): `boilerhouse version`
   as uid 65532, with the plugins and the dashboard installed where the binary looks;
 - the containers `boilerhouse kube render` puts in a restricted workload's Pod, each with its
   command, env, runAsUser and capabilities, a read-only root and its volumes, all in one
   network namespace (the Pod's): the init container loads its nft rules (NET_ADMIN only), the
   egress sidecar (`boilerhouse egress-proxy`, which execs
   /usr/libexec/boilerhouse/bh-egress) starts and answers what the rules redirect to it, and
   the snapshot agent (`boilerhouse snapshot-agent`) serves /healthz and wants its token;
 - the operator's container of deploy/kubernetes/20-deployment.yaml, with the Deployment's
   env, user, read-only root and emptyDir volumes, against a real kube-apiserver (kube_env.py):
   it answers its probes' path and takes the leader Lease.

Slow (it compiles the project inside the build): the normal pass of the suite runs it, the
sanitizer passes do not (label image-build; scripts/test.sh)."""
import base64
import copy
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from bh import DEBIAN_LAYOUT, SOURCE, require, slot_port, take_slot, wait_for
from fakenet import sh
from kube_env import ADMIN_TOKEN, KubeEnv
from test_egress_sidecar import named, render

CACHE = os.environ.get("BH_IMAGE_BUILD_CACHE", "/var/cache/boilerhouse-test/image-build")
BUILD_TIMEOUT = 1500  # seconds; a cold cache downloads ~120 MB of .debs and the npm packages
IMAGE_UID = 65532
AGENT_TOKEN = "t" * 40
API_KEY = "k" * 40
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEPLOYMENT = os.path.join(SOURCE, "deploy/kubernetes/20-deployment.yaml")
SIDECAR_HTTP_PORT = 15080  # BH_KUBE_PROXY_HTTP_PORT (core/kube/objects.h)
AGENT_PORT = 15090  # BH_KUBE_AGENT_PORT
# The Pod's other route (in its own network namespace, so no other test's): a veth pair, so
# traffic to its subnet leaves by a device other than lo and meets the init container's
# redirect.
POD_DEV_NET = "10.253.0.2/24"
OUTSIDE = "10.253.0.9"

WORKLOAD = json.dumps({
    "apiVersion": "boilerhouse.dev/v1alpha1", "kind": "BoilerhouseWorkload",
    "metadata": {"name": "imaged"},
    "spec": {"version": "0.1.0", "image": {"ref": "localhost/app:1"},
             "resources": {"vcpus": 0.5, "memoryMb": 64, "diskGb": 1},
             "network": {"access": "restricted", "allowlist": ["allowed.test"]},
             "filesystem": {"overlayDirs": ["/data"]},
             "idle": {"timeoutSeconds": 300, "action": "hibernate"},
             "entrypoint": {"cmd": "sleep", "args": ["1000"]}}})


def ca_bundle():
    """What this host's TLS clients trust, for the build's npm: the host may reach the npm
    registry through a TLS-intercepting proxy whose CA only its own trust store has."""
    path = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    return path if os.path.isfile(path) else None


def build_image(tmp, out):
    """Runs scripts/build-image.sh into out; returns the seconds it took. A timeout ends the
    script with SIGTERM (its trap removes buildah's storage), then SIGKILL."""
    base = "oci:%s:latest" % DEBIAN_LAYOUT
    argv = [os.path.join(SOURCE, "scripts/build-image.sh"), "--cache", CACHE,
            "--build-arg", "BUILD_IMAGE=" + base, "--build-arg", "RUNTIME_IMAGE=" + base]
    if ca_bundle():
        argv += ["--ca-file", ca_bundle()]
    log_path = os.path.join(tmp, "build.log")
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv + [out], stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, TMPDIR=tmp), start_new_session=True)
    try:
        rc = proc.wait(timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        rc = "timeout after %ds" % BUILD_TIMEOUT
    if rc != 0:
        with open(log_path, errors="replace") as f:
            raise AssertionError("scripts/build-image.sh: %s:\n%s" % (rc, f.read()[-6000:]))
    return time.monotonic() - start


class Runc:
    """Containers of the unpacked image, run by runc under a root of the test's own."""

    def __init__(self, tmp, bundle):
        self.tmp = tmp
        self.root = os.path.join(tmp, "runc")
        self.rootfs = os.path.join(bundle, "rootfs")
        with open(os.path.join(bundle, "config.json")) as f:
            self.base = json.load(f)  # umoci's: the image config's user, env and command
        self.procs = {}

    def config(self, args=None, uid=None, caps=(), env=(), mounts=(), netns=None,
               host_network=False):
        """The image's runtime config with a Pod container's settings over it: read-only root,
        no terminal, the capabilities given and none else (Kubernetes' drop ALL + add)."""
        c = copy.deepcopy(self.base)
        p = c["process"]
        p["terminal"] = False
        if args is not None:
            p["args"] = list(args)
        if uid is not None:
            p["user"] = {"uid": uid, "gid": uid}
        p["env"] = p["env"] + ["%s=%s" % kv for kv in env]
        names = ["CAP_" + x for x in caps]
        p["capabilities"] = {k: names for k in ("bounding", "effective", "permitted")}
        p["noNewPrivileges"] = True
        c["root"] = {"path": self.rootfs, "readonly": True}
        for src, dst, ro in mounts:
            c["mounts"].append({"destination": dst, "type": "bind", "source": src,
                                "options": ["rbind", "ro" if ro else "rw", "nosuid", "nodev"]})
        if host_network:
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"]
                                        if n["type"] != "network"]
        elif netns:
            c["linux"]["namespaces"] = [
                {"type": "network", "path": "/var/run/netns/" + netns} if n["type"] == "network"
                else n for n in c["linux"]["namespaces"]]
        return c

    def start(self, name, config):
        """Starts container name (runc run in the foreground of a child process)."""
        bundle = os.path.join(self.tmp, "bundle-" + name)
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(config, f)
        cid = "bhit-image-%d-%s" % (os.getpid(), name)
        with open(self.log_path(name), "wb") as log:
            self.procs[name] = (cid, subprocess.Popen(
                ["runc", "--root", self.root, "run", "--bundle", bundle, cid],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))

    def run(self, name, config, timeout=60):
        """Runs container name to its end: (exit status, output)."""
        self.start(name, config)
        try:
            rc = self.procs[name][1].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("container %s still running after %ds:\n%s"
                                 % (name, timeout, self.log(name)))
        return rc, self.log(name)

    def log_path(self, name):
        return os.path.join(self.tmp, "container-%s.log" % name)

    def log(self, name):
        with open(self.log_path(name), errors="replace") as f:
            return f.read()

    def wait_log(self, name, text, timeout=30):
        proc = self.procs[name][1]
        wait_for(lambda: proc.poll() is not None or text in self.log(name), timeout,
                 "%r from container %s" % (text, name))
        if proc.poll() is not None:
            raise AssertionError("container %s exited %d:\n%s" % (name, proc.returncode,
                                                                 self.log(name)))

    def stop(self, name, timeout=30):
        """SIGTERM to the container's process; its exit status."""
        cid, proc = self.procs[name]
        subprocess.run(["runc", "--root", self.root, "kill", cid, "TERM"], capture_output=True)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("container %s did not stop on SIGTERM:\n%s"
                                 % (name, self.log(name)))

    def cleanup(self):
        for cid, proc in self.procs.values():
            subprocess.run(["runc", "--root", self.root, "delete", "--force", cid],
                           capture_output=True)
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.procs = {}


class ImageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("buildah", "umoci", "runc", "unshare", "openssl", "curl", "ip"):
            require(shutil.which(tool), tool + " not installed (scripts/install-deps.sh)")
        require(os.path.exists(os.path.join(DEBIAN_LAYOUT, "index.json")),
                "no Debian test image at %s (scripts/build-debian-image.sh)" % DEBIAN_LAYOUT)
        cls.tmp = tempfile.mkdtemp(prefix="bh-it-image-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        layout = os.path.join(cls.tmp, "layout")
        seconds = build_image(cls.tmp, layout)
        print("\nscripts/build-image.sh took %.0fs" % seconds, flush=True)
        bundle = os.path.join(cls.tmp, "bundle")
        sh("umoci", "unpack", "--image", layout + ":latest", bundle)
        with open(os.path.join(layout, "index.json")) as f:
            manifest = json.load(f)["manifests"][0]["digest"]
        cls.image_config = cls.blob(layout, cls.blob(layout, manifest)["config"]["digest"])
        cls.runc = Runc(cls.tmp, bundle)
        cls.addClassCleanup(cls.runc.cleanup)

    @staticmethod
    def blob(layout, digest):
        with open(os.path.join(layout, "blobs", *digest.split(":"))) as f:
            return json.load(f)

    def test_image_config_runs_boilerhouse_as_65532(self):
        cfg = self.image_config["config"]
        self.assertEqual(cfg["User"], "%d:%d" % (IMAGE_UID, IMAGE_UID))
        self.assertEqual((cfg["Entrypoint"], cfg["Cmd"]), (["boilerhouse"], ["serve"]))
        self.assertIn("BOILERHOUSE_STATE_DIR=/var/lib/boilerhouse", cfg["Env"])
        # The image's own process (umoci keeps its user), told to print the version.
        rc, out = self.runc.run("version", self.runc.config(args=["boilerhouse", "version"]))
        self.assertEqual((rc, out.split()[:1]), (0, ["boilerhouse"]), out)
        rc, out = self.runc.run("id", self.runc.config(args=["id", "-u"]))
        self.assertEqual((rc, out.strip()), (0, str(IMAGE_UID)), out)
        # What the installed binary looks for: plugins, the dashboard, the sidecar.
        rc, out = self.runc.run("files", self.runc.config(args=[
            "sh", "-c", "ls /usr/lib/*/boilerhouse/plugins /usr/share/boilerhouse/ui "
            "/usr/libexec/boilerhouse; stat -c %u /var/lib/boilerhouse"]))
        self.assertEqual(rc, 0, out)
        for name in ("bh-network-restricted.so", "bh-storage-s3.so", "index.html", "bh-egress",
                     str(IMAGE_UID)):
            self.assertIn(name, out.split())
        rc, out = self.runc.run("nft-version", self.runc.config(args=["nft", "--version"]))
        self.assertEqual((rc, out.split()[:1]), (0, ["nftables"]), out)

    def test_sidecar_refuses_a_missing_config_naming_it(self):
        rc, out = self.runc.run("egress-bad", self.runc.config(
            args=["boilerhouse", "egress-proxy"], uid=15532))
        self.assertEqual(rc, 1, out)
        self.assertIn("BOILERHOUSE_EGRESS_CONFIG", out)
        self.assertNotIn("cannot run", out)  # the exec of /usr/libexec/boilerhouse/bh-egress

    def test_the_pods_containers_run_from_it(self):
        """Init container, egress sidecar and snapshot agent of a restricted workload's Pod,
        as rendered, in the Pod's network namespace."""
        pod, secret = render(self.tmp, WORKLOAD)
        spec = pod["spec"]
        ns = "bhit-image-%d" % os.getpid()
        self.addCleanup(subprocess.run, ["ip", "netns", "del", ns], capture_output=True)
        self.addCleanup(self.runc.cleanup)  # first: the containers, then their namespace
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "pod0", "type", "veth", "peer", "name", "pod1")
        sh("ip", "-n", ns, "addr", "add", POD_DEV_NET, "dev", "pod0")
        for dev in ("pod0", "pod1"):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        volumes = self.volumes(spec, secret)

        init = named(spec["initContainers"], "egress-init")
        rc, out = self.runc.run("egress-init", self.container(init, volumes, ns))
        self.assertEqual(rc, 0, out)
        sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "boilerhouse_egress")

        proxy = named(spec["containers"], "egress-proxy")
        self.runc.start("egress-proxy", self.container(proxy, volumes, ns))
        self.runc.wait_log("egress-proxy", " ready")
        # A request to anywhere on port 80 is redirected to the sidecar, which refuses a host
        # off the allowlist.
        res = sh("ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w",
                 "%{http_code}", "-H", "Host: denied.test", "http://%s/" % OUTSIDE,
                 text=True)
        self.assertEqual(res.stdout, "403")

        agent = named(spec["containers"], "snapshot-agent")
        self.runc.start("snapshot-agent", self.container(agent, volumes, ns))
        self.runc.wait_log("snapshot-agent", "serving 1 overlay directory")
        url = "http://127.0.0.1:%d" % AGENT_PORT
        self.assertEqual(self.curl(ns, url + "/healthz"), "200")
        self.assertEqual(self.curl(ns, url + "/v1/snapshot"), "401")
        self.assertEqual(self.curl(ns, url + "/v1/snapshot", "-H",
                                   "Authorization: Bearer " + AGENT_TOKEN), "200")

        for name in ("snapshot-agent", "egress-proxy"):
            self.assertEqual(self.runc.stop(name), 0, self.runc.log(name))

    def test_the_deployment_serves_from_it(self):
        """The operator's container of deploy/kubernetes/20-deployment.yaml, as the kubelet
        would run it (the Pod's user, read-only root, its emptyDir volumes, its env with the
        API key Secret and the Pod's name, the service account's files) against a real
        kube-apiserver: it answers its readiness probe's path and takes the leader Lease. One
        liberty: it shares this host's network (the API server is on its loopback), so it
        listens on loopback at a port of the test's slot instead of 0.0.0.0:3000, with TLS
        on as it is there."""
        kube = KubeEnv()
        self.addCleanup(kube.stop)
        kube.install_crds()
        kube.kubectl("create", "namespace", "boilerhouse")
        deployment = json.loads(kube.kubectl("create", "--dry-run=client", "-o", "json", "-f",
                                             DEPLOYMENT).stdout)
        spec = deployment["spec"]["template"]["spec"]
        c = named(spec["containers"], "boilerhouse")
        self.assertEqual(c["args"], ["serve"])  # the image's CMD, and its ENTRYPOINT
        n, fd = take_slot()
        self.addCleanup(os.close, fd)
        port, pod_name = slot_port(n, 0), "boilerhouse-7d4b9c-x2x9z"
        env = []
        for e in c["env"]:
            ref = e.get("valueFrom", {})
            value = (e["value"] if "value" in e else
                     API_KEY if ref.get("secretKeyRef", {}).get("name") == "boilerhouse-api-key"
                     else pod_name if ref.get("fieldRef", {}).get("fieldPath") == "metadata.name"
                     else self.fail("env %s: a source the test does not provide" % e))
            env.append((e["name"], value))
        # On loopback TLS would be off by default (--tls auto): on, as on the Pod's 0.0.0.0.
        env = dict(env, BOILERHOUSE_LISTEN_HOST="127.0.0.1", BOILERHOUSE_PORT=str(port),
                   BOILERHOUSE_TLS="on", KUBERNETES_SERVICE_HOST="127.0.0.1",
                   KUBERNETES_SERVICE_PORT=str(kube.port))
        sa = os.path.join(self.tmp, "serviceaccount")
        os.makedirs(sa)
        shutil.copy(os.path.join(kube.cert_dir, "apiserver.crt"), os.path.join(sa, "ca.crt"))
        for name, text in (("token", ADMIN_TOKEN), ("namespace", "boilerhouse")):
            with open(os.path.join(sa, name), "w") as f:
                f.write(text)
        self.addCleanup(self.runc.cleanup)
        self.runc.start("operator", self.container(
            c, self.volumes(spec, None), pod_sc=spec["securityContext"], env=env.items(),
            mounts=[(sa, SA_DIR, True)], host_network=True))

        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # the daemon's own certificate

        last = []

        def health():
            self.assertIsNone(self.runc.procs["operator"][1].poll(), self.runc.log("operator"))
            try:
                with urllib.request.urlopen("https://127.0.0.1:%d/api/v1/health" % port,
                                            context=insecure, timeout=5) as r:
                    return r.status == 200
            except urllib.error.HTTPError as e:
                e.close()
                last[:] = ["HTTP %d" % e.code]
            except (urllib.error.URLError, OSError) as e:
                last[:] = [str(e)]
            return False
        try:
            wait_for(health, 60, "the operator's /api/v1/health")
        except AssertionError as e:
            self.fail("%s, last: %s\n%s" % (e, last, self.runc.log("operator")))

        def holder():
            res = kube.kubectl("-n", "boilerhouse", "get", "lease", "boilerhouse-operator",
                               "-o", "json", check=False)
            return res.returncode == 0 and json.loads(res.stdout)["spec"].get("holderIdentity")
        self.assertEqual(wait_for(holder, 60, "the leader Lease"), pod_name)
        self.assertEqual(self.runc.stop("operator"), 0, self.runc.log("operator"))

    def curl(self, ns, url, *args):
        return sh("ip", "netns", "exec", ns, "curl", "-s", "-o", "/dev/null", "-w",
                  "%{http_code}", *args, url, text=True).stdout

    def volumes(self, spec, secret):
        """Each volume of the Pod as a root-owned directory, as the kubelet makes them:
        emptyDirs empty with mode 0777, Secrets' keys as files with the volume's mode."""
        secrets = {"boilerhouse-agent": {"token": base64.b64encode(AGENT_TOKEN.encode())}}
        if secret:
            secrets[secret["metadata"]["name"]] = secret["data"]
        out = {}
        for v in spec["volumes"]:
            d = tempfile.mkdtemp(prefix="volume-%s-" % v["name"], dir=self.tmp)
            out[v["name"]] = d
            os.chmod(d, 0o777 if "emptyDir" in v else 0o755)
            if "emptyDir" in v:
                continue
            data = secrets[v["secret"]["secretName"]]
            items = v["secret"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                p = os.path.join(d, item["path"])
                with open(p, "wb") as f:
                    f.write(base64.b64decode(data[item["key"]]))
                os.chmod(p, v["secret"]["defaultMode"])
        return out

    def container(self, c, volumes, ns=None, pod_sc=None, env=None, mounts=(), **kw):
        """The runtime config of Pod container c: command (else the image's), env (given, else
        c's literal values), user (c's, else the Pod's), capabilities, volume mounts."""
        sc = c["securityContext"]
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertTrue(sc["readOnlyRootFilesystem"])
        uid = sc.get("runAsUser", (pod_sc or {}).get("runAsUser"))
        if env is None:
            env = [(e["name"], kubelet_value(e)) for e in c.get("env", [])]
        mounts = [(volumes[m["name"]], m["mountPath"], m.get("readOnly", False))
                  for m in c.get("volumeMounts", [])] + list(mounts)
        # the kubelet expands $(VAR) in a command from the container's env
        args = c.get("command") and [re.sub(r"\$\((\w+)\)", lambda m: dict(env)[m.group(1)], a)
                                     for a in c["command"]]
        return self.runc.config(args=args, uid=uid,
                                caps=sc["capabilities"].get("add", []), env=env, mounts=mounts,
                                netns=ns, **kw)


def kubelet_value(e):
    """An env entry's value as the kubelet gives it: literal, or from the downward API (the
    node's address: a documentation address stands for it)."""
    if "value" in e:
        return e["value"]
    return {"status.hostIP": "192.0.2.1"}[e["valueFrom"]["fieldRef"]["fieldPath"]]


if __name__ == "__main__":
    unittest.main()
