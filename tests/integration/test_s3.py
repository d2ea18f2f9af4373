"""The S3 storage plugin (bh-storage-s3.so) against an S3-compatible server on loopback
(s3rver from npm, installed by scripts/install-deps.sh): hibernate and restore through it, a
crash in the middle of a multipart upload, and a restore by a daemon with a state dir of its
own."""
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import unittest

from bh import BUILD, Daemon, free_port, require, run_checked, wait_for, BINARY
from test_pools import notes

S3RVER = os.environ.get("BH_S3RVER",
                        "/var/cache/boilerhouse/s3rver/node_modules/.bin/s3rver")
BUCKET = "bh-snaps"
PART_MB = 5  # S3's minimum: a 12 MB snapshot goes in three parts


class S3Server:
    """One s3rver process on 127.0.0.1 with a bucket, its data in a temp dir."""

    def __init__(self):
        require(os.access(S3RVER, os.X_OK) and shutil.which("node"),
                "s3rver not installed (scripts/install-deps.sh)")
        self.dir = tempfile.mkdtemp(prefix="bh-s3-")
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "s3rver.log"), "w")
        self.proc = subprocess.Popen(
            [S3RVER, "-d", os.path.join(self.dir, "data"), "-a", "127.0.0.1", "-p",
             str(self.port), "--service-endpoint", "localhost", "--configure-bucket", BUCKET], stdout=self.log, stderr=self.log)
        wait_for(self.listening, timeout=30, what="s3rver listening")

    def listening(self):
        if self.proc.poll() is not None:
            raise AssertionError("s3rver exited %d" % self.proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def objects(self):
        """Keys of the complete objects in the bucket."""
        root = os.path.join(self.dir, "data", BUCKET)
        found = []
        for d, _, files in os.walk(root):
            for f in files:
                if f.endswith("._S3rver_object"):
                    found.append(os.path.relpath(os.path.join(d, f), root)[:-15])
        return sorted(found)

    def snapshots(self):
        """Keys of the snapshot objects (not the records stored beside them)."""
        return [k for k in self.objects() if k.endswith(".snap")]

    def object_path(self, key):
        return os.path.join(self.dir, "data", BUCKET, key + "._S3rver_object")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def s3_daemon(server, prefix="it/", addressing="path", endpoint=None):
    """A daemon storing snapshots in server's bucket, with the s3rver's credentials in its
    secret store."""
    cfg = {"endpoint": endpoint or "http://127.0.0.1:%d" % server.port, "bucket": BUCKET, "prefix": prefix,
           "addressing": addressing, "part_size_mb": PART_MB, "credentials_secret": "s3"}
    # No hot tier: every restore reads the bucket (docs/snapshot-format.md, image-v1).
    d = Daemon(extra_env={"BOILERHOUSE_STORAGE": "s3", "BOILERHOUSE_SNAPSHOT_HOT_BYTES": "0"},
               plugin_configs={"storage/s3": cfg})
    for key in ("access_key_id", "secret_access_key"):
        run_checked([BINARY, "secret", "set", "s3", key, "--state-dir", d.state],
                    input=b"S3RVER", check=True)
    return d


class S3Test(unittest.TestCase):
    def setUp(self):
        require(os.path.exists(os.path.join(BUILD, "plugins", "bh-storage-s3.so")),
                "bh-storage-s3.so not built")
        self.s3 = S3Server()
        self.addCleanup(self.s3.stop)
        self.d = s3_daemon(self.s3)
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.d.apply_workload(notes())

    def exec(self, d, iid, script):
        status, out = d.request("POST", "/api/v1/instances/%s/exec" % iid,
                                {"command": ["sh", "-c", script]})
        self.assertEqual(status, 200, out)
        return out

    def claim(self, d, tenant):
        code, body = d.claim(tenant, "notes")
        self.assertIn(code, (200, 201), (body, d.log()))
        return body

    def snapshot(self, d, tenant):
        return [s for s in d.request("GET", "/api/v1/snapshots")[1] if s["tenantId"] == tenant][0]

    def save(self, d, tenant, script):
        c = self.claim(d, tenant)
        self.exec(d, c["instanceId"], script)
        status, body = d.release(tenant, "notes")
        self.assertEqual(status, 200, (body, d.log()))
        return self.snapshot(d, tenant)

    def test_hibernate_and_restore_through_s3(self):
        snap = self.save(self.d, "ana", "echo hello > /workspace/note.txt; "
                         "head -c 12000000 /dev/urandom > /workspace/big; md5sum /workspace/big "
                         "> /workspace/big.md5")
        self.assertEqual(self.s3.snapshots(), ["it/" + snap["key"]])
        c = self.claim(self.d, "ana")
        out = self.exec(self.d, c["instanceId"], "cat /workspace/note.txt; "
                        "md5sum -c /workspace/big.md5 >/dev/null && echo intact")["stdout"]
        self.assertEqual(out.split(), ["hello", "intact"])
        self.assertEqual(self.d.release("ana", "notes")[0], 200)
        # The replaced object is gone from the bucket: one object per tenant.
        self.assertEqual(self.s3.snapshots(), ["it/" + self.snapshot(self.d, "ana")["key"]])

    def test_crash_mid_upload_keeps_the_previous_object(self):
        old = self.save(self.d, "bo", "echo old > /workspace/note.txt")
        c = self.claim(self.d, "bo")
        self.exec(self.d, c["instanceId"], "echo new > /workspace/note.txt; "
                  "head -c 12000000 /dev/urandom > /workspace/big")
        self.d.stop()
        self.d.extra_env["BOILERHOUSE_CRASH_AT"] = "s3.put.after-part"
        self.d.start()
        try:
            self.d.release("bo", "notes")
        except OSError:
            pass  # killed between two parts, as asked
        self.d.proc.wait(timeout=60)
        self.assertEqual(self.d.proc.returncode, -9, self.d.log())
        # Only the old object is in the bucket, byte for byte what the record names.
        self.assertEqual(self.s3.snapshots(), ["it/" + old["key"]])
        with open(self.s3.object_path("it/" + old["key"]), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), old["digest"])
        del self.d.extra_env["BOILERHOUSE_CRASH_AT"]
        self.d.start()
        # The release resumes, uploads afresh and converges on the new data.
        wait_for(lambda: self.d.request("GET", "/api/v1/tenants/bo")[0] == 404,
                 what="release finished after restart")
        new = self.snapshot(self.d, "bo")
        self.assertNotEqual(new["key"], old["key"])
        self.assertEqual(self.s3.snapshots(), ["it/" + new["key"]])
        c = self.claim(self.d, "bo")
        self.assertEqual(self.exec(self.d, c["instanceId"],
                                   "cat /workspace/note.txt")["stdout"], "new")
        self.assertEqual(self.d.release("bo", "notes")[0], 200)

    def test_virtual_host_addressing(self):
        # s3rver serves <bucket>.s3.localhost as the bucket (its service endpoint is
        # localhost); curl resolves *.localhost to loopback without asking DNS.
        d2 = s3_daemon(self.s3, prefix="vh/", addressing="virtual",
                       endpoint="http://s3.localhost:%d" % self.s3.port)
        self.addCleanup(d2.cleanup)
        d2.start()
        d2.apply_workload(notes())
        snap = self.save(d2, "cy", "echo virtual > /workspace/note.txt")
        self.assertIn("vh/" + snap["key"], self.s3.snapshots())
        c = self.claim(d2, "cy")
        self.assertEqual(self.exec(d2, c["instanceId"], "cat /workspace/note.txt")["stdout"],
                         "virtual")
        self.assertEqual(d2.release("cy", "notes")[0], 200)

    def test_resume_false_starts_clean_and_keeps_the_snapshot(self):
        snap = self.save(self.d, "di", "echo kept > /workspace/note.txt")
        status, c = self.d.request("POST", "/api/v1/tenants/di/claim",
                                   {"workload": "notes", "resume": False})
        self.assertIn(status, (200, 201), c)
        out = self.exec(self.d, c["instanceId"], "cat /workspace/note.txt 2>&1 || echo none")
        self.assertIn("none", out["stdout"])
        self.assertEqual(self.snapshot(self.d, "di")["key"], snap["key"])
        self.assertEqual(self.s3.snapshots(), ["it/" + snap["key"]])
        status, body = self.d.request("POST", "/api/v1/tenants/di/release/force",
                                      {"workload": "notes"})
        self.assertEqual(status, 200, body)
        c = self.claim(self.d, "di")  # resume unset: the snapshot comes back
        self.assertEqual(self.exec(self.d, c["instanceId"],
                                   "cat /workspace/note.txt")["stdout"], "kept")
        self.assertEqual(self.d.release("di", "notes")[0], 200)
