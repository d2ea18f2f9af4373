"""The egress sidecar of a `restricted` Pod (Kubernetes mode), with this host playing the Pod.

`boilerhouse kube render` makes the Pod and the CA Secret of a restricted workload; the test
then does what the kubelet would with them, and nothing the Pod spec does not say:

 - a network namespace is the Pod's, joined by a veth to a second one, the fake internet
   (fakenet.py: the recording web server, HTTPS for the names of test_restricted.py from a
   test CA), and routed to it;
 - the init container's command (`nft` with the rendered ruleset) runs in the Pod's namespace;
 - the sidecar container's command (`boilerhouse egress-proxy`, the build tree's) runs there as
   the container's runAsUser, with the container's env, each secretKeyRef resolved from the
   test's Secrets, and the CA Secret's files as its volume mounts them (mode included). One
   liberty: the key volume is mounted at a fixed path under /etc, which the test cannot create
   on this host, so caDir in the config is pointed at the test's copy after checking that it
   equals that volume's mountPath;
 - the sidecar resolves upstream names through the namespace's /etc/hosts (`ip netns exec`
   mounts /etc/netns/<ns>/hosts there) and trusts the fake internet's CA by SSL_CERT_FILE,
   which OpenSSL's default verify paths read: the production code path, no test switch.

Then a client (pod_client.py) runs in the Pod's namespace as another uid, as the main
container would, and the test checks what the sidecar enforces: DNS, HTTP by Host, HTTPS by
SNI with interception and credential injection for a credentials domain, and the drop of
everything else; and its control port, where the daemon pushes a claim's tenant secret (with
the agent token, which the test's "daemon" has and the workload's uid does not): nothing is
injected before the push, the upstream sees the tenant's value after it, and every bad
request is refused and changes nothing. A second class checks the sidecar's start and stop:
SIGTERM ends it with status 0; a bad config, CA or token, or a control port already taken,
ends it at once with an error naming what is wrong."""
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

import fakenet
from bh import BINARY, assert_no_sanitizer_report, net_slot, require, run_checked, wait_for
from fakenet import sh
from test_restricted import ALLOW, NAMES, SECRET, credential, workload

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_UID = 4242  # the workload's: neither root nor the sidecar's
SECRETS = {("upstream", "apikey"): SECRET}  # the cluster's Secrets the Pod refers to
# The namespace's boilerhouse-agent Secret (the daemon makes it): the control port's token.
AGENT_TOKEN = "9c41d7e2b0a85f3c6e19d4a7b2f08c5e3a6d9b1f4c7e0a2d5b8f1c4e7a0d3b6f"
TENANT_VALUES = ("tenant-one-7f3a9c2e5b", "tenant-two-d41b8e6a0c")
TENANT_HEADER = {"name": "x-tenant-key", "valueFrom": {
    "tenantSecretKeyRef": {"name": "tenantkey", "key": "k"}}}
SANITIZER_ENV = ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")


def named(items, name):
    return next(x for x in items if x.get("name") == name)


def pod_namespace(add_cleanup, ns):
    add_cleanup(subprocess.run, ["ip", "netns", "del", ns], capture_output=True)
    sh("ip", "netns", "add", ns)
    sh("ip", "-n", ns, "link", "set", "dev", "lo", "up")


def as_uid(ns, uid):
    """The argv prefix of a process in namespace ns as uid (a container's user), no groups."""
    return ["ip", "netns", "exec", ns, "setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
            "--clear-groups"]


def pod_client(ns, *args, uid=CLIENT_UID, stdin=b""):
    """pod_client.py in namespace ns as uid (the workload's by default): its JSON answer."""
    res = run_checked(as_uid(ns, uid) + ["--", sys.executable,
                                         os.path.join(HERE, "pod_client.py")]
                      + [str(a) for a in args],
                      check=True, input=stdin, env={"PATH": os.environ["PATH"]})
    return json.loads(res.stdout)


def fake_internet(add_cleanup, tmp, ns, inet_ns, pod_ip, inet_ip, http="80"):
    """The fake internet of Pod namespace ns (made here): a namespace inet_ns behind it
    (pod_ip <-> inet_ip, the Pod's default route) with the recording web server, and the
    Pod's /etc/hosts (ip netns exec mounts it) naming NAMES there, for the sidecar's
    resolver. Returns the fake internet's CA file and the server's record."""
    inet = os.path.join(tmp, "inet")
    os.mkdir(inet)
    ca = fakenet.make_ca(inet, NAMES, "Boilerhouse Test Root")
    os.chmod(inet, 0o755)
    os.chmod(ca, 0o644)
    record = os.path.join(tmp, "requests.jsonl")
    pod_namespace(add_cleanup, ns)
    fakenet.netns(add_cleanup, inet_ns, "eth0", "inet0", pod_ip, inet_ip, host_ns=ns)
    fakenet.upstream(add_cleanup, inet_ns, inet_ip, record, inet, http=http)
    d = os.path.join("/etc/netns", ns)
    add_cleanup(shutil.rmtree, d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n")
        f.write("".join("%s %s\n" % (inet_ip, name) for name in NAMES))
    return ca, record


def render(tmp, manifest):
    """The Pod and the CA Secret `boilerhouse kube render` makes for manifest, with a workload
    CA made here (what the daemon keeps per workload)."""
    ca_dir = os.path.join(tmp, "workload-ca")
    os.mkdir(ca_dir)
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-subj", "/CN=egress CA of the test", "-days", "1",
       "-keyout", os.path.join(ca_dir, "ca.key"), "-out", os.path.join(ca_dir, "ca.crt"))
    path = os.path.join(tmp, "workload.json")
    with open(path, "w") as f:
        f.write(manifest)
    res = run_checked([BINARY, "kube", "render", "--workload", path, "--kind", "all",
                       "--ca-dir", ca_dir, "--output", "json"], check=True, text=True)
    items = json.loads(res.stdout)["items"]
    return (next(x for x in items if x["kind"] == "Pod"),
            next(x for x in items if x["kind"] == "Secret"))


class Sidecar:
    """The sidecar container of pod, started in namespace ns the way the kubelet would, with
    the CA Secret secret and the agent token token (test_kube_pods.py uses it too)."""

    def __init__(self, add_cleanup, tmp, ns, pod, secret, extra_env=None, token=AGENT_TOKEN):
        self.tmp, self.ns = tmp, ns
        spec = pod["spec"]
        self.container = named(spec["containers"], "egress-proxy")
        self.uid = self.container["securityContext"]["runAsUser"]
        self.ca_dir = self.mount_volume(spec, "egress-ca-key", secret["metadata"]["name"],
                                        secret["data"])
        self.token_dir = None
        if any(v["name"] == "egress-token" for v in spec["volumes"]):
            self.token_dir = self.mount_volume(spec, "egress-token", "boilerhouse-agent", {
                "token": base64.b64encode(token.encode()).decode()})
        self.env = self.container_env(extra_env or {})
        self.log_path = os.path.join(tmp, "sidecar-%s.log" % ns)
        self.proc = None
        add_cleanup(self.stop)

    def mount_volume(self, spec, name, secret_name, data):
        """A Secret volume: every key of the Secret a file, with the volume's defaultMode."""
        volume = named(spec["volumes"], name)["secret"]
        assert volume["secretName"] == secret_name, volume
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        for key, value in data.items():
            p = os.path.join(d, key)
            with open(p, "wb") as f:
                f.write(base64.b64decode(value))
            os.chmod(p, volume["defaultMode"])
        return d

    def container_env(self, extra):
        env = {"PATH": os.environ["PATH"]}
        env.update({k: os.environ[k] for k in SANITIZER_ENV if k in os.environ})
        for e in self.container["env"]:
            if "value" in e:
                env[e["name"]] = e["value"]
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = SECRETS[(ref["name"], ref["key"])]
        config = json.loads(env["BOILERHOUSE_EGRESS_CONFIG"])
        mount = named(self.container["volumeMounts"], "egress-ca-key")
        assert config["caDir"] == mount["mountPath"], (config["caDir"], mount)
        config["caDir"] = self.ca_dir
        if "control" in config:  # the token where the volume's mountPath puts it
            mount = named(self.container["volumeMounts"], "egress-token")
            assert config["control"]["tokenFile"] == mount["mountPath"] + "/token", config
            config["control"]["tokenFile"] = os.path.join(self.token_dir, "token")
        env["BOILERHOUSE_EGRESS_CONFIG"] = json.dumps(config)
        env.update(extra)
        return env

    def argv(self):
        cmd = self.container["command"]
        assert cmd[0] == "boilerhouse", cmd
        return as_uid(self.ns, self.uid) + ["--inh-caps=-all", "--", BINARY] + cmd[1:]

    def start(self):
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(self.argv(), env=self.env, stdout=log, stderr=log)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_ready(self):
        wait_for(lambda: self.proc.poll() is not None or " ready" in self.log(), timeout=30,
                 what="the sidecar to start")
        if self.proc.poll() is not None:
            raise AssertionError("the sidecar exited %d:\n%s" % (self.proc.returncode,
                                                                  self.log()))

    def wait_exit(self, timeout=30):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the sidecar did not exit:\n" + self.log())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class EgressSidecarTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("nft", "setpriv", "openssl"):
            require(shutil.which(tool) is not None, tool + " not installed")
        n = net_slot(cls.addClassCleanup)
        cls.tmp = tempfile.mkdtemp(prefix="bh-it-eg-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        os.chmod(cls.tmp, 0o755)  # the sidecar's uid reads its key volume in here
        cls.ns, cls.inet_ns = "bhit-egpod-%d" % n, "bhit-eginet-%d" % n
        cls.pod_ip, cls.inet_ip = "10.253.%d.2" % n, "10.253.%d.1" % n
        creds = credential("secretKeyRef", "upstream", "apikey")
        creds[0]["headers"].append(TENANT_HEADER)  # pushed per claim through the control port
        manifest = workload("egbox", {"access": "restricted", "allowlist": ALLOW,
                                      "credentials": creds})
        cls.pod, cls.secret = render(cls.tmp, manifest)
        cls.inet_ca, cls.record = fake_internet(cls.addClassCleanup, cls.tmp, cls.ns,
                                                cls.inet_ns, cls.pod_ip, cls.inet_ip,
                                                http="80,8080")
        cls.init_container()
        cls.sidecar = Sidecar(cls.addClassCleanup, cls.tmp, cls.ns, cls.pod, cls.secret,
                              {"SSL_CERT_FILE": cls.inet_ca})
        cls.sidecar.start()
        cls.sidecar.wait_ready()

    @classmethod
    def tearDownClass(cls):
        # The sidecar's stop, and what it printed, are part of what is tested.
        s = getattr(cls, "sidecar", None)
        if s and s.proc:
            s.stop()
            assert_no_sanitizer_report(s.log(), "bh-egress")

    @classmethod
    def init_container(cls):
        init = named(cls.pod["spec"]["initContainers"], "egress-init")
        assert init["securityContext"]["capabilities"]["add"] == ["NET_ADMIN"]
        sh("ip", "netns", "exec", cls.ns, *init["command"])

    # ---- helpers ----

    def client(self, *args, uid=CLIENT_UID, stdin=b""):
        return pod_client(self.ns, *args, uid=uid, stdin=stdin)

    def main_ca(self):
        """The certificate the main container trusts: the Secret's key its volume names."""
        volume = named(self.pod["spec"]["volumes"], "egress-ca-cert")["secret"]
        item = volume["items"][0]
        path = os.path.join(self.tmp, item["path"])
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.secret["data"][item["key"]]))
        os.chmod(path, 0o644)
        return path

    def recorded(self, path):
        try:
            with open(self.record) as f:
                recs = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [r for r in recs if r["path"] == path]

    def mark(self):
        self._n = getattr(self, "_n", 0) + 1
        return "/%s-%d" % (self._testMethodName, self._n)

    # ---- what the sidecar enforces ----

    def test_dns_answers_allowed_names_only(self):
        # any resolver address: the rules send port 53 to the sidecar
        for server in ("10.96.0.10", self.inet_ip):
            out = self.client("dns", server, "api.example.test")
            self.assertEqual(out, {"rcode": 0, "answers": [self.inet_ip]})
            out = self.client("dns", server, "a.allowed.test")
            self.assertEqual(out["answers"], [self.inet_ip])
            self.assertEqual(self.client("dns", server, "blocked.test")["rcode"], 3)  # NXDOMAIN
            self.assertEqual(self.client("dns", server, "example.com")["rcode"], 3)

    def test_http_by_host(self):
        path = self.mark()
        out = self.client("http", self.inet_ip, "allowed.test", path)
        self.assertEqual(out["status"], 200, out)
        self.assertEqual(out["body"], "hello allowed.test\n")
        self.assertEqual(len(self.recorded(path)), 1)
        path = self.mark()
        out = self.client("http", self.inet_ip, "blocked.test", path)
        self.assertEqual(out["status"], 403, out)
        self.assertIn("blocked.test", out["body"])
        out = self.client("http", self.inet_ip, self.inet_ip, path)  # an IP literal
        self.assertEqual(out["status"], 403, out)
        self.assertEqual(self.recorded(path), [])

    def test_https_intercepted_with_the_secrets_ca_and_key_injected(self):
        path = self.mark()
        out = self.client("https", self.inet_ip, "api.example.test", path, self.main_ca())
        self.assertEqual(out.get("status"), 200, out)
        self.assertEqual(out["issuer"], "egress CA of the test")  # the Secret's CA, not a new one
        rec = self.recorded(path)
        self.assertEqual(len(rec), 1)
        self.assertEqual(rec[0]["headers"].get("x-api-key"), SECRET)
        self.assertNotIn(SECRET, json.dumps(out))
        # the workload never holds the key: not in the main container's spec, and the Pod
        # names the Secret only in the sidecar's env
        main = named(self.pod["spec"]["containers"], "main")
        self.assertNotIn("secretKeyRef", json.dumps(main))
        self.assertNotIn(SECRET, json.dumps(self.pod))
        self.assertNotIn(SECRET, self.sidecar.log())

    def test_https_passthrough_and_refusal_by_sni(self):
        path = self.mark()
        out = self.client("https", self.inet_ip, "allowed.test", path, self.inet_ca)
        self.assertEqual(out.get("status"), 200, out)
        self.assertEqual(out["issuer"], "Boilerhouse Test Root")  # the upstream's own
        self.assertNotIn("x-api-key", self.recorded(path)[0]["headers"])
        path = self.mark()
        out = self.client("https", self.inet_ip, "blocked.test", path, self.inet_ca)
        self.assertIn("error", out)
        self.assertEqual(self.recorded(path), [])

    # ---- the control port: a claim's tenant secret ----

    def control(self, method, path, body=b"", token=AGENT_TOKEN, ip="127.0.0.1", uid=CLIENT_UID,
                headers=b""):
        """One request to the sidecar's control port from inside the Pod: by default from the
        workload's uid on localhost, which is what a workload could try."""
        port = json.loads(self.sidecar.env["BOILERHOUSE_EGRESS_CONFIG"])["control"]["port"]
        req = b"%s %s HTTP/1.1\r\nHost: pod\r\n" % (method.encode(), path.encode())
        if token is not None:
            req += b"Authorization: Bearer %s\r\n" % token.encode()
        if method == "PUT" and b"Content-Length" not in headers:
            req += b"Content-Length: %d\r\n" % len(body)
        return self.client("raw", ip, port, uid=uid,
                           stdin=req + headers + b"Content-Type: application/json\r\n\r\n" + body)

    @staticmethod
    def push_body(value, name="x-tenant-key", domain="api.example.test", **extra):
        entry = dict({"domain": domain, "name": name, "value": value}, **extra)
        return json.dumps({"headers": [entry]}).encode()

    def injected(self):
        """What the upstream saw of the two credential headers on one intercepted request."""
        path = self.mark()
        out = self.client("https", self.inet_ip, "api.example.test", path, self.main_ca())
        self.assertEqual(out.get("status"), 200, out)
        for v in TENANT_VALUES:
            self.assertNotIn(v, json.dumps(out))  # the client never sees it
        rec = self.recorded(path)
        self.assertEqual(len(rec), 1)
        return rec[0]["headers"].get("x-api-key"), rec[0]["headers"].get("x-tenant-key")

    def test_tenant_secret_pushed_through_the_control_port(self):
        # before any push (a warm Pod): the workload's own secret only, the tenant's not
        self.assertEqual(self.injected(), (SECRET, None))
        out = self.control("GET", "/v1/credentials", ip=self.pod_ip, uid=0)
        self.assertEqual(out["status"], 200, out)
        self.assertEqual(json.loads(out["body"]), {"set": False, "headers": [
            {"domain": "api.example.test", "name": "x-tenant-key"}]})
        self.assertEqual(self.control("GET", "/healthz", token=None)["status"], 200)
        # bad requests, from the workload's side of the namespace: refused, saying why
        good = self.push_body(TENANT_VALUES[0])
        refused = [
            (self.control("PUT", "/v1/credentials", good, token=None), 401, "bearer token"),
            (self.control("PUT", "/v1/credentials", good, token="x" * 64), 401, "bearer token"),
            (self.control("PUT", "/v1/credentials", good, token=AGENT_TOKEN[:-1]), 401,
             "bearer token"),
            (self.control("GET", "/v1/credentials", token="x"), 401, "bearer token"),
            (self.control("PUT", "/v1/credentials", b'{"headers": [', ip=self.pod_ip), 422,
             "must be a JSON object"),
            (self.control("PUT", "/v1/credentials", b'{"headers": [], "tenant": "t"}'), 422,
             "tenant: unknown field"),
            (self.control("PUT", "/v1/credentials", self.push_body("v", extra=1)), 422,
             "headers[0].extra: unknown field"),
            (self.control("PUT", "/v1/credentials", self.push_body("v", "x-tenant-key\r\nx-evil")),
             422, "a control character in the domain or name"),
            (self.control("PUT", "/v1/credentials", self.push_body("v\r\nx-evil: 1")), 422,
             "a control character in the value"),
            (self.control("PUT", "/v1/credentials", self.push_body("v", "x-api-key")), 422,
             "x-api-key is not a tenantSecretKeyRef header"),
            (self.control("PUT", "/v1/credentials", b'{"headers": []}'), 422,
             "api.example.test x-tenant-key is missing"),
            (self.control("PUT", "/v1/credentials", good,
                          headers=b"Transfer-Encoding: chunked\r\n"), 411, "Content-Length"),
            (self.control("PUT", "/v1/credentials", b"{}" + b" " * 70000), 413, "64 KiB"),
            (self.control("PUT", "/v1/other", good), 404, "no such path"),
            (self.control("DELETE", "/v1/credentials"), 405, "GET or PUT"),
            (self.control("PUT", "/v1/credentials", good, headers=b"Bad header\r\n"), 400,
             "malformed"),
        ]
        for i, (out, status, why) in enumerate(refused):
            self.assertEqual(out.get("status"), status, (i, out))
            self.assertIn(why, out["body"])
        # ... and none changed anything
        self.assertEqual(self.injected(), (SECRET, None))
        out = self.control("GET", "/v1/credentials", uid=0)
        self.assertFalse(json.loads(out["body"])["set"])
        # the daemon's push, at the Pod's IP with the token: the upstream gets the tenant's value
        out = self.control("PUT", "/v1/credentials", good, ip=self.pod_ip, uid=0)
        self.assertEqual(out["status"], 204, out)
        self.assertEqual(self.injected(), (SECRET, TENANT_VALUES[0]))
        self.assertTrue(json.loads(self.control("GET", "/v1/credentials")["body"])["set"])
        # a second push replaces the values whole; a refused one after it leaves them
        out = self.control("PUT", "/v1/credentials", self.push_body(TENANT_VALUES[1]),
                           ip=self.pod_ip, uid=0)
        self.assertEqual(out["status"], 204, out)
        out = self.control("PUT", "/v1/credentials", self.push_body("v\nx"), ip=self.pod_ip)
        self.assertEqual(out["status"], 422, out)
        self.assertEqual(self.injected(), (SECRET, TENANT_VALUES[1]))
        # values and token never in the sidecar's log, nor anywhere in the Pod spec
        log = self.sidecar.log()
        for s in TENANT_VALUES + (AGENT_TOKEN,):
            self.assertNotIn(s, log)
            self.assertNotIn(s, json.dumps(self.pod))
        self.assertIn("control: refused (401)", log)
        self.assertIn("control: the tenant's 1 credential headers are set", log)

    def test_other_traffic_dropped(self):
        out = self.client("connect", self.inet_ip, 8080, 2)
        self.assertFalse(out["connected"], out)
        self.assertIn("timed out", out["error"])  # dropped, not refused
        # the same connection from the sidecar's uid passes: the rules, not the network
        out = self.client("connect", self.inet_ip, 8080, 10, uid=self.sidecar.uid)
        self.assertTrue(out["connected"], out)
        # the rules are the rendered ones, loaded as the init container loads them
        rules = subprocess.run(["ip", "netns", "exec", self.ns, "nft", "list", "table", "inet",
                                "boilerhouse_egress"], capture_output=True, text=True)
        self.assertEqual(rules.returncode, 0, rules.stderr)
        self.assertIn("meta skuid %d" % self.sidecar.uid, rules.stdout)


class SidecarLifecycleTest(unittest.TestCase):
    """Start and stop, in a Pod namespace of their own (no fake internet needed)."""

    def setUp(self):
        n = net_slot(self.addCleanup)
        self.tmp = tempfile.mkdtemp(prefix="bh-it-egl-")
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)
        os.chmod(self.tmp, 0o755)
        self.ns = "bhit-eglife-%d" % n
        pod_namespace(self.addCleanup, self.ns)
        creds = credential("secretKeyRef", "upstream", "apikey")
        creds[0]["headers"].append(TENANT_HEADER)
        manifest = workload("egbox", {"access": "restricted", "allowlist": ALLOW,
                                      "credentials": creds})
        self.pod, self.secret = render(self.tmp, manifest)

    def sidecar(self, extra_env=None):
        return Sidecar(self.addCleanup, self.tmp, self.ns, self.pod, self.secret, extra_env)

    def test_sigterm_stops_it_cleanly(self):
        s = self.sidecar()
        s.start()
        s.wait_ready()
        # a tenant's secret comes through the control port, once a claim has the Pod: said
        self.assertIn("control on 0.0.0.0:15091: 1 tenantSecretKeyRef headers, not injected "
                      "until the daemon sends their values", s.log())
        s.proc.send_signal(signal.SIGTERM)
        self.assertEqual(s.wait_exit(), 0, s.log())
        self.assertIn("stopping", s.log())
        assert_no_sanitizer_report(s.log(), "bh-egress")

    def test_bad_config_exits_naming_the_field(self):
        s = self.sidecar()
        del s.env["BOILERHOUSE_EGRESS_CRED_0"]  # the Secret's value did not arrive
        s.start()
        self.assertEqual(s.wait_exit(), 1)
        self.assertIn("credentials[0].headers[0].env: BOILERHOUSE_EGRESS_CRED_0 is not set",
                      s.log())
        s = self.sidecar()
        s.env["BOILERHOUSE_EGRESS_CONFIG"] = s.env["BOILERHOUSE_EGRESS_CONFIG"].replace(
            '"ports"', '"port"')
        s.start()
        self.assertEqual(s.wait_exit(), 1)
        self.assertIn("port: unknown field", s.log())

    def exits_saying(self, s, text):
        """s, started, ends at once with status 1 and an error holding text."""
        s.start()
        self.assertEqual(s.wait_exit(), 1)
        self.assertIn(text, s.log())
        assert_no_sanitizer_report(s.log(), "bh-egress")

    def test_bad_token_exits(self):
        s = self.sidecar()
        os.unlink(os.path.join(s.token_dir, "token"))  # the Secret did not arrive
        self.exits_saying(s, "control token %s/token: No such file" % s.token_dir)
        s = self.sidecar()
        with open(os.path.join(s.token_dir, "token"), "w") as f:
            f.write("short\n")
        self.exits_saying(s, "expected 32 to 4096 characters without whitespace")

    def test_control_port_taken_exits(self):
        """The workload shares the namespace and could start first: a sidecar that cannot
        have the port fails (the Pod fails) instead of letting the daemon talk to whoever
        holds it."""
        holder = subprocess.Popen(
            as_uid(self.ns, CLIENT_UID) + [
                "--", sys.executable, "-c",
                "import socket, sys\n"
                "s = socket.socket(); s.bind(('0.0.0.0', 15091)); s.listen()\n"
                "print('ready', flush=True); sys.stdin.read()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: (holder.kill(), holder.wait(), holder.stdout.close(),
                                 holder.stdin.close()))
        self.assertEqual(holder.stdout.readline().strip(), "ready")
        self.exits_saying(self.sidecar(),
                          "control: listen on 0.0.0.0:15091: Address already in use")

    def test_wrong_ca_exits(self):
        s = self.sidecar()
        with open(os.path.join(s.ca_dir, "tls.key"), "w") as f:
            f.write("not a key\n")
        self.exits_saying(s, "not a PEM certificate and its private key")


if __name__ == "__main__":
    unittest.main()
