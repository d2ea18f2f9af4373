"""Dockerfile workloads built by the real buildah, FROM the Debian test image
(scripts/build-debian-image.sh) served by Debian's docker-registry on loopback: the image
builds without a network, runs, is rebuilt when its context changes, and a broken Dockerfile
puts the workload in Error with buildah's message."""

import os
import shutil
import tempfile
import unittest

from bh import SOURCE, Daemon, wait_for
from test_registry import debian_base_registry

BUILD_TIMEOUT = 300  # a first build pulls the Debian base from the registry


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="bh-it-dockerfile-")
        cls.reg = None
        cls.d = None
        try:
            cls.reg, cls.base = debian_base_registry(cls.tmp)
            cls.wdir = os.path.join(cls.tmp, "workloads")
            os.makedirs(cls.wdir)
            cls.d = Daemon(extra_env={"BOILERHOUSE_WORKLOADS_DIR": cls.wdir})
            cls.d.start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.d:
            cls.d.cleanup()
            cls.d = None
        if cls.reg:
            cls.reg.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def apply(self, name, dockerfile):
        status, body = self.d.request("POST", "/api/v1/workloads", {
            "name": name,
            "spec": {"version": "1", "image": {"dockerfile": dockerfile},
                     "resources": {"vcpus": 0.5, "memoryMb": 128, "diskGb": 1},
                     "network": {"access": "none"},
                     "entrypoint": {"cmd": "sleep", "args": ["infinity"]}}})
        self.assertEqual(status, 201, body)

    def exec_in(self, tenant, workload, command):
        status, claim = self.d.claim(tenant, workload)
        self.assertEqual((status, claim.get("phase")), (201, "Active"), claim)
        status, out = self.d.request("POST", "/api/v1/instances/%s/exec" % claim["instanceId"],
                                     {"command": command})
        self.assertEqual(status, 200, out)
        self.assertEqual(self.d.release(tenant, workload)[0], 200)
        return out["stdout"]

    def test_builds_runs_and_rebuilds_when_its_context_changes(self):
        write(os.path.join(self.wdir, "app/Dockerfile"),
              f"FROM {self.base}\n"
              "COPY greeting.txt /greeting.txt\n"
              # What the RUN step saw of the network: only lo without a network of its own.
              "RUN python3 -c 'import socket; print(sorted(n for _, n in "
              "socket.if_nameindex()))' > /build-ifaces.txt\n")
        write(os.path.join(self.wdir, "app/greeting.txt"), "hello v1\n")
        self.apply("app", "app/Dockerfile")
        ready = self.d.wait_workload("app", "Ready", BUILD_TIMEOUT)
        self.assertIn("build log", ready["status"]["detail"])
        self.assertEqual(ready["status"]["imageRef"], "localhost/boilerhouse/app:1")
        first = ready["status"]["imageDigest"]
        status, log = self.d.request("GET", "/api/v1/workloads/app/logs")
        self.assertEqual(status, 200)
        self.assertIn("COPY greeting.txt /greeting.txt", log)
        self.assertEqual(self.exec_in("t1", "app", ["cat", "/greeting.txt", "/build-ifaces.txt"]),
                         "hello v1\n['lo']")

        write(os.path.join(self.wdir, "app/greeting.txt"), "hello v2\n")
        wait_for(lambda: self.d.request("GET", "/api/v1/workloads/app")[1]["status"]
                 .get("imageDigest") not in (None, first), BUILD_TIMEOUT, "a rebuild")
        self.d.wait_workload("app", "Ready")
        self.assertEqual(self.exec_in("t2", "app", ["cat", "/greeting.txt"]), "hello v2")

    def test_a_rebuild_replaces_the_warm_pool(self):
        """Pool members of the old image are drained once the rebuild is Ready, and the next
        claim from the pool runs the new image (the tag stays boilerhouse/<name>:<version>)."""
        write(os.path.join(self.wdir, "pooled/Dockerfile"),
              f"FROM {self.base}\nCOPY v.txt /v.txt\n")
        write(os.path.join(self.wdir, "pooled/v.txt"), "old\n")
        self.apply("pooled", "pooled/Dockerfile")
        first = self.d.wait_workload("pooled", "Ready", BUILD_TIMEOUT)["status"]["imageDigest"]
        status, body = self.d.request("POST", "/api/v1/pools",
                                      {"name": "pooled-pool",
                                       "spec": {"workloadRef": "pooled", "size": 1}})
        self.assertEqual(status, 201, body)
        self.addCleanup(self.d.request, "DELETE", "/api/v1/pools/pooled-pool")
        old = wait_for(lambda: self.warm("pooled"), 120, "a warm instance of the first build")
        self.assertEqual(old[0]["imageDigest"], first)

        write(os.path.join(self.wdir, "pooled/v.txt"), "new\n")
        second = wait_for(lambda: self.d.request("GET", "/api/v1/workloads/pooled")[1]["status"]
                          .get("imageDigest") not in (None, first) and
                          self.d.request("GET", "/api/v1/workloads/pooled")[1]["status"]
                          ["imageDigest"], BUILD_TIMEOUT, "a rebuild")
        fresh = wait_for(lambda: [i for i in self.warm("pooled")
                                  if i["imageDigest"] == second and i["id"] != old[0]["id"]],
                         120, "a warm instance of the rebuilt image")
        wait_for(lambda: [i["id"] for i in self.warm("pooled")] == [fresh[0]["id"]], 60,
                 "the old member drained")
        self.assertNotIn("bh-" + old[0]["id"], self.d.containers())
        status, claim = self.d.claim("t6", "pooled")
        self.assertEqual((status, claim.get("source")), (201, "pool"), claim)
        self.assertEqual(claim["instanceId"], fresh[0]["id"])
        out = self.d.request("POST", "/api/v1/instances/%s/exec" % claim["instanceId"],
                             {"command": ["cat", "/v.txt"]})[1]
        self.assertEqual(out["stdout"], "new")
        self.assertEqual(self.d.release("t6", "pooled")[0], 200)

    def warm(self, workload):
        """The workload's unclaimed running instances: [{id, imageDigest}]."""
        return [{"id": i["id"], "imageDigest": i.get("imageDigest")}
                for i in self.d.request("GET", "/api/v1/instances")[1]
                if i["workloadRef"] == workload and "tenantId" not in i
                and i.get("phase") == "Running"]

    def test_broken_dockerfile_puts_the_workload_in_error_with_the_build_message(self):
        write(os.path.join(self.wdir, "broken/Dockerfile"),
              f"FROM {self.base}\nRUN echo about to fail && exit 7\n")
        self.apply("broken", "broken/Dockerfile")
        failed = self.d.wait_workload("broken", "Error", BUILD_TIMEOUT)
        detail = failed["status"]["detail"]
        self.assertIn("buildah bud failed", detail)
        self.assertIn("exit status 7", detail)
        log = self.d.request("GET", "/api/v1/workloads/broken/logs")[1]
        self.assertIn("about to fail", log)
        # Retried after a back-off, not in a loop woken by its own status writes.
        self.assertLessEqual(self.d.log(tail=None).count("workload broken: build"), 2)
        self.assertNotEqual(self.d.claim("t3", "broken")[0], 201)

    def test_the_example_workloads_build_and_run(self):
        """workloads/examples/{minimal,httpserver}, their base swapped for the registry's."""
        for name in ("minimal", "httpserver"):
            src = os.path.join(SOURCE, "workloads/examples", name)
            shutil.copytree(src, os.path.join(self.wdir, name))
            path = os.path.join(self.wdir, name, "Dockerfile")
            with open(path) as f:
                text = f.read().replace("docker.io/library/debian:12-slim", self.base)
            write(path, text)
            with open(os.path.join(SOURCE, "workloads/examples", name + ".yaml")) as f:
                self.d.apply_workload(f.read(), timeout=BUILD_TIMEOUT)
        self.assertEqual(self.exec_in("t4", "minimal", ["cat", "/etc/boilerhouse-minimal"]),
                         "built by buildah for boilerhouse")
        # Active means its health check (GET / on 8080) passed: http.server serves.
        self.assertIn("python3 http.server",
                      self.exec_in("t5", "httpserver", ["cat", "/srv/www/index.html"]))

    def test_dockerfile_outside_the_workloads_dir_is_refused(self):
        outside = os.path.join(self.tmp, "outside")
        write(os.path.join(outside, "Dockerfile"), f"FROM {self.base}\n")
        os.symlink(outside, os.path.join(self.wdir, "escape"))
        self.apply("escape", "escape/Dockerfile")
        failed = self.d.wait_workload("escape", "Error")
        self.assertIn("not a file inside the workloads directory", failed["status"]["detail"])
        self.assertFalse(os.path.exists(os.path.join(self.d.state, "builds/escape/build.log")))
        status, body = self.d.request("GET", "/api/v1/workloads/nothing/logs")
        self.assertEqual(status, 404, body)


if __name__ == "__main__":
    unittest.main()
