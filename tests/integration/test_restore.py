"""Image snapshots (docs/snapshot-format.md, image-v1) on real containers: what a tenant sees
after release + claim equals what it left, for random trees (modes, owners, xattrs, hard
links, symlinks, sparse and empty files, deep paths, a whited-out image file) on every path:
the hot tier (rename + mount), the archive (hot copy evicted), encrypted, S3, and a snapshot
of the old tar format. Then the lifecycle: GC of unreferenced objects, the DELETE route, and
kill -9 at every crash point of the new hibernate and restore paths."""
import glob
import hashlib
import os
import random
import stat
import unittest

from bh import BUILD, Daemon, require, wait_for

WORKLOAD = """
apiVersion: boilerhouse.dev/v1alpha1
kind: BoilerhouseWorkload
metadata:
  name: notes
spec:
  version: "%(version)s"
  image:
    ref: localhost/busybox:latest
  resources: {vcpus: 0.5, memoryMb: 64, diskGb: %(disk)d}
  network: {access: none}
  filesystem:
    overlayDirs: %(dirs)s
    encryptOverlays: %(encrypt)s
  idle:
    timeoutSeconds: 0
    action: hibernate
  entrypoint:
    cmd: sh
    args: ["-c", "mkdir -p /workspace && exec sleep 2147483647"]
"""

HIBERNATE_POINTS = ("hibernate.after-archive", "hibernate.after-put", "hibernate.after-record",
                    "hibernate.after-shared-record", "hibernate.before-park",
                    "hibernate.after-park")


def workload(version="1", disk=1, encrypt="false", dirs='["/workspace", "/www"]'):
    return WORKLOAD % {"version": version, "disk": disk, "encrypt": encrypt, "dirs": dirs}


def make_tree(rootfs, seed, full=True, www=True):
    """A random tree under /workspace/t and a change to /www (an image dir), written through
    the instance's merged rootfs from the host, as the tenant would. full=False leaves out
    what the old tar format never kept (xattrs, hard links)."""
    rnd = random.Random(seed)
    base = os.stat(os.path.join(rootfs, "bin/busybox")).st_uid
    owners = [base, base + 1000, base + 1234, base + 65533]
    top = os.path.join(rootfs, "workspace", "t")
    os.mkdir(top)
    os.chown(top, base, base)  # what the tenant makes is owned by ids it maps
    dirs = [top]
    deep = top
    for i in range(40):  # a path of ~900 characters
        deep = os.path.join(deep, "level-%02d-%s" % (i, "d" * 12))
        os.mkdir(deep)
        os.chown(deep, base, base)
    dirs.append(deep)
    for i in range(12):
        d = os.path.join(rnd.choice(dirs), "dir%d" % i)
        os.mkdir(d)
        os.chmod(d, rnd.choice([0o755, 0o700, 0o1777, 0o750]))
        os.chown(d, rnd.choice(owners), rnd.choice(owners))
        dirs.append(d)
    files = []
    for i in range(80):
        p = os.path.join(rnd.choice(dirs), "f%d.bin" % i)
        size = rnd.choice([0, 0, 1, 100, 4096, 5000, 70000])
        with open(p, "wb") as f:
            f.write(rnd.randbytes(size))
        os.chown(p, rnd.choice(owners), rnd.choice(owners))
        os.chmod(p, rnd.choice([0o644, 0o600, 0o755, 0o400, 0o2755]))
        os.utime(p, ns=(rnd.randrange(1 << 40) * 1000 + 7, rnd.randrange(1 << 40) * 1000 + 7))
        files.append(p)
    sparse = os.path.join(top, "sparse.img")
    with open(sparse, "wb") as f:
        f.truncate(64 << 20)
        f.seek(32 << 20)
        f.write(b"middle of nowhere")
    os.chown(sparse, base, base)
    for i, target in enumerate(["../f0.bin", "/etc/passwd", "nowhere/at/all", "dir0"]):
        p = os.path.join(rnd.choice(dirs), "link%d" % i)
        os.symlink(target, p)
        os.lchown(p, rnd.choice(owners), rnd.choice(owners))
    if full:
        for i in range(3):
            os.link(files[i], os.path.join(rnd.choice(dirs), "hard%d" % i))
        for p in rnd.sample(files, 10) + rnd.sample(dirs, 3):
            os.setxattr(p, "user.bh.k%d" % rnd.randrange(5), rnd.randbytes(rnd.randrange(1, 200)))
    if not www:
        return
    # A file of the image whited out, and one added beside it.
    os.unlink(os.path.join(rootfs, "www", "index.html"))
    with open(os.path.join(rootfs, "www", "new.html"), "w") as f:
        f.write("<p>%d</p>" % seed)
    os.chown(os.path.join(rootfs, "www", "new.html"), base, base)


def manifest(rootfs, tops=("workspace", "www")):
    """What the tenant sees in its overlay dirs: per path, kind, mode, owner (relative to the
    uid base), content digest, mtime of files, link target, xattrs, and hard-link groups."""
    base = os.stat(os.path.join(rootfs, "bin/busybox")).st_uid
    out, first = {}, {}
    for top in tops:
        for d, subdirs, files in os.walk(os.path.join(rootfs, top)):
            subdirs.sort()
            for name in [""] + sorted(subdirs + files):
                p = os.path.join(d, name) if name else d
                if not name and d != os.path.join(rootfs, top):
                    continue  # dirs are listed by their parent
                st = os.lstat(p)
                rel = os.path.relpath(p, rootfs)
                e = {"mode": oct(st.st_mode), "uid": st.st_uid - base, "gid": st.st_gid - base}
                if stat.S_ISLNK(st.st_mode):
                    e["target"] = os.readlink(p)
                else:
                    e["xattrs"] = {k: os.getxattr(p, k, follow_symlinks=False).hex()
                                   for k in sorted(os.listxattr(p, follow_symlinks=False))
                                   if k.startswith("user.")}
                if stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        e["sha"] = hashlib.sha256(f.read()).hexdigest()
                    e["size"], e["mtime"] = st.st_size, st.st_mtime_ns
                    e["links"] = st.st_nlink
                    e["same_as"] = first.setdefault(st.st_ino, rel)
                out[rel] = e
    return out


class Base(unittest.TestCase):
    def setUp(self):
        require(os.path.exists("/dev/loop-control"), "no /dev/loop-control")

    def daemon(self, **env):
        d = Daemon(extra_env={k: str(v) for k, v in env.items()})
        self.addCleanup(d.cleanup)
        d.start()
        return d

    def rootfs(self, d, iid):
        return os.path.join(d.state, "instances", iid, "rootfs")

    def claim(self, d, tenant="ana"):
        code, body = d.claim(tenant, "notes")
        self.assertIn(code, (200, 201), (body, d.log()))
        self.assertEqual(body.get("phase"), "Active", body)
        ws = os.path.join(self.rootfs(d, body["instanceId"]), "workspace")
        wait_for(lambda: os.path.isdir(ws), what="the entrypoint made /workspace")
        return body

    def release(self, d, tenant="ana"):
        code, body = d.release(tenant, "notes")
        self.assertEqual(code, 200, (body, d.log()))
        wait_for(lambda: d.loops() == [], what="the disk released")

    def record(self, d, tenant="ana"):
        snaps = [s for s in d.request("GET", "/api/v1/snapshots")[1] if s["tenantId"] == tenant]
        return snaps[0] if snaps else None

    def hot(self, d):
        return sorted(os.listdir(os.path.join(d.state, "hot"))) \
            if os.path.isdir(os.path.join(d.state, "hot")) else []

    def objects(self, d):
        """Keys of the local storage plugin's objects."""
        found = []
        for p in glob.glob(os.path.join(d.state, "**", "*.snap"), recursive=True):
            if "/instances/" not in p and "/hot/" not in p:
                found.append("/".join(p.split("/")[-3:]))
        return sorted(found)

    def restored_from(self, d, tier):
        return d.log(tail=0).count("from the %s tier" % tier)

    def round_trip(self, d, tier, tenant="ana", full=True, seed=1):
        """Claim, write a random tree, release, claim: the tree comes back via tier."""
        c = self.claim(d, tenant)
        make_tree(self.rootfs(d, c["instanceId"]), seed, full)
        want = manifest(self.rootfs(d, c["instanceId"]))
        self.release(d, tenant)
        before = self.restored_from(d, tier)
        c = self.claim(d, tenant)
        self.assertEqual(self.restored_from(d, tier), before + 1, d.log())
        got = manifest(self.rootfs(d, c["instanceId"]))
        self.assertEqual(sorted(got), sorted(want))
        for k in want:
            self.assertEqual(got[k], want[k], k)
        self.assertNotIn("www/index.html", got)
        return c, want


class RestorePathsTest(Base):
    def test_hot_tier_restores_the_same_tree_by_rename(self):
        d = self.daemon()
        d.apply_workload(workload())
        c, want = self.round_trip(d, "hot")
        self.assertEqual(self.hot(d), [])  # taken by the restore, not copied
        sparse = os.stat(os.path.join(self.rootfs(d, c["instanceId"]), "workspace/t/sparse.img"))
        self.assertLess(sparse.st_blocks * 512, 1 << 20)  # still sparse
        # The restored disk keeps only the overlay dirs: a write elsewhere does not survive.
        with open(os.path.join(self.rootfs(d, c["instanceId"]), "etc", "stray"), "w") as f:
            f.write("x")
        self.release(d)
        self.assertEqual(len(self.hot(d)), 1)
        self.assertEqual(self.objects(d), [self.record(d)["key"]])
        c = self.claim(d)
        self.assertFalse(os.path.exists(os.path.join(self.rootfs(d, c["instanceId"]), "etc/stray")))
        self.assertEqual(manifest(self.rootfs(d, c["instanceId"])), want)
        self.release(d)

    def test_archive_after_eviction_restores_the_same_tree(self):
        d = self.daemon(BOILERHOUSE_SNAPSHOT_HOT_BYTES=1)  # every parked disk is evicted
        d.apply_workload(workload())
        c = self.claim(d)
        make_tree(self.rootfs(d, c["instanceId"]), 2)
        want = manifest(self.rootfs(d, c["instanceId"]))
        self.release(d)
        self.assertIn("hot tier: evicted", d.log(tail=0))
        self.assertEqual(self.hot(d), [])
        self.assertEqual(self.objects(d), [self.record(d)["key"]])  # the durable copy stays
        c = self.claim(d)
        self.assertEqual(self.restored_from(d, "archive"), 1, d.log())
        self.assertEqual(manifest(self.rootfs(d, c["instanceId"])), want)
        self.release(d)

    def test_encrypted_restores_the_same_tree_and_never_parks_plaintext(self):
        d = self.daemon()
        d.apply_workload(workload(encrypt="true"))
        c = self.claim(d)
        marker = b"plaintext-marker-" + os.urandom(8).hex().encode()
        make_tree(self.rootfs(d, c["instanceId"]), 3)
        with open(os.path.join(self.rootfs(d, c["instanceId"]), "workspace", "secret"), "wb") as f:
            f.write(marker * 100)
        want = manifest(self.rootfs(d, c["instanceId"]))
        self.release(d)
        rec = self.record(d)
        self.assertTrue(rec["encrypted"])
        self.assertEqual(rec["format"], "image-v1")
        self.assertEqual(self.hot(d), [])  # a parked image would be plaintext
        for p in glob.glob(os.path.join(d.state, "**", "*"), recursive=True):
            if os.path.isfile(p) and not p.endswith(".log"):
                with open(p, "rb") as f:
                    self.assertNotIn(marker, f.read(), p)
        c = self.claim(d)
        self.assertEqual(self.restored_from(d, "archive"), 1)
        self.assertEqual(manifest(self.rootfs(d, c["instanceId"])), want)
        self.release(d)

    def test_old_tar_snapshot_still_restores_and_upgrades(self):
        # Only /workspace: the tar path cannot restore an overlay dir that is also an image
        # dir (an overlayfs rename of a lower dir fails with EXDEV); images have no such limit.
        d = self.daemon()
        dirs = '["/workspace"]'
        d.apply_workload(workload(disk=0, dirs=dirs))  # no disk image: the tar format
        c = self.claim(d)
        make_tree(self.rootfs(d, c["instanceId"]), 4, full=False, www=False)
        want = manifest(self.rootfs(d, c["instanceId"]), ("workspace",))
        self.release(d)
        self.assertNotIn("format", self.record(d))
        status, body = d.request("PUT", "/api/v1/workloads/notes",
                                 raw=workload(version="2", disk=1, dirs=dirs))
        self.assertEqual(status, 200, body)
        wait_for(lambda: d.request("GET", "/api/v1/workloads/notes")[1].get("status", {})
                 .get("phase") == "Ready", what="workload v2 ready")
        c = self.claim(d)
        self.assertEqual(self.restored_from(d, "hot") + self.restored_from(d, "archive"), 0)
        self.assertEqual(manifest(self.rootfs(d, c["instanceId"]), ("workspace",)), want)
        self.release(d)  # saved again: now an image
        self.assertEqual(self.record(d)["format"], "image-v1")
        c = self.claim(d)
        self.assertEqual(self.restored_from(d, "hot"), 1)
        self.assertEqual(manifest(self.rootfs(d, c["instanceId"]), ("workspace",)), want)
        self.release(d)


class S3RestoreTest(Base):
    def setUp(self):
        super().setUp()
        require(os.path.exists(os.path.join(BUILD, "plugins", "bh-storage-s3.so")),
                "bh-storage-s3.so not built")
        from test_s3 import S3Server, s3_daemon
        self.s3_daemon = s3_daemon
        self.s3 = S3Server()
        self.addCleanup(self.s3.stop)

    def daemon_on_s3(self, **env):
        d = self.s3_daemon(self.s3)
        d.extra_env.update({k: str(v) for k, v in env.items()})
        self.addCleanup(d.cleanup)
        d.start()
        d.apply_workload(workload())
        return d

    def test_s3_restores_the_same_tree_on_this_and_another_daemon(self):
        s3 = self.s3
        d = self.daemon_on_s3(BOILERHOUSE_SNAPSHOT_HOT_BYTES=0)
        c, want = self.round_trip(d, "archive", seed=5)
        self.release(d)
        key = self.record(d)["key"]
        record = "it/" + key.rsplit("/", 1)[0] + "/record.json"
        self.assertEqual(s3.objects(), sorted(["it/" + key, record]))
        # Another machine: its own state dir, the same bucket, no record of its own. The record
        # stored beside the object tells it where the snapshot is and what its digest is.
        d2 = self.daemon_on_s3(BOILERHOUSE_SNAPSHOT_HOT_BYTES=0, BOILERHOUSE_SNAPSHOT_SHARED=1)
        self.assertIsNone(self.record(d2))
        c = self.claim(d2)
        self.assertEqual(self.restored_from(d2, "archive"), 1, d2.log())
        self.assertEqual(manifest(self.rootfs(d2, c["instanceId"])), want)
        self.assertEqual(self.record(d2)["key"], key)  # imported
        self.release(d2)
        # d2's hibernate replaced the object and the stored record; d's old object is gone.
        key2 = self.record(d2)["key"]
        self.assertEqual(s3.objects(), sorted(["it/" + key2, record]))
        status, body = d2.request("DELETE", "/api/v1/tenants/ana/snapshots/notes")
        self.assertEqual(status, 200, body)
        self.assertEqual(s3.objects(), [])


    def test_s3_gc_removes_the_object_of_a_crash_before_the_record_switch(self):
        s3 = self.s3
        d = self.daemon_on_s3()
        c = self.claim(d)
        make_tree(self.rootfs(d, c["instanceId"]), 10)
        self.release(d)
        first = self.record(d)["key"]
        c = self.claim(d)
        with open(os.path.join(self.rootfs(d, c["instanceId"]), "workspace", "more"), "w") as f:
            f.write("more")
        d.stop()
        d.extra_env["BOILERHOUSE_CRASH_AT"] = "hibernate.after-put"
        d.start()
        try:
            d.release("ana", "notes")
        except OSError:
            pass
        d.proc.wait(timeout=60)
        self.assertEqual(d.proc.returncode, -9)
        self.assertEqual(len([o for o in s3.objects() if o.endswith(".snap")]), 2)  # an orphan
        del d.extra_env["BOILERHOUSE_CRASH_AT"]
        d.start()  # the startup GC lists the bucket and removes it; the release then resumes
        wait_for(lambda: d.request("GET", "/api/v1/tenants/ana")[0] == 404 and d.loops() == [],
                 what="release finished after restart")
        key = self.record(d)["key"]
        self.assertNotEqual(key, first)
        self.assertEqual(s3.objects(), sorted(["it/" + key,
                                               "it/" + key.rsplit("/", 1)[0] + "/record.json"]))
        self.assertIn("that no record names", d.log(tail=0))


class LifecycleTest(Base):
    def test_delete_route_removes_the_data_everywhere(self):
        d = self.daemon()
        d.apply_workload(workload())
        c = self.claim(d)
        make_tree(self.rootfs(d, c["instanceId"]), 6)
        path = "/api/v1/tenants/ana/snapshots/notes"
        status, body = d.request("DELETE", path)
        self.assertEqual(status, 409, body)  # the claim is Active
        self.release(d)
        self.assertEqual(len(self.hot(d)), 1)
        self.assertEqual(len(self.objects(d)), 1)
        self.assertEqual(d.request("DELETE", "/api/v1/tenants/%s/snapshots/notes" % ("x" * 70))[0], 400)
        status, body = d.request("DELETE", path)
        self.assertEqual(status, 200, body)
        self.assertEqual((self.hot(d), self.objects(d), self.record(d)), ([], [], None))
        self.assertEqual(d.request("DELETE", path)[0], 404)
        audit = d.request("GET", "/api/v1/audit?tenant=ana")[1]
        rows = [a for a in audit if a["action"] == "snapshot.delete"]
        self.assertEqual([(a["target"], a["status"]) for a in rows],
                         [("notes", 404), ("notes", 200), ("notes", 409)], audit)
        c = self.claim(d)  # starts clean
        self.assertFalse(os.path.exists(os.path.join(self.rootfs(d, c["instanceId"]), "workspace/t")))
        self.release(d)

    def test_gc_removes_what_no_record_names_on_startup(self):
        d = self.daemon()
        d.apply_workload(workload())
        c = self.claim(d)
        make_tree(self.rootfs(d, c["instanceId"]), 7)
        self.release(d)
        keep_hot, keep_obj = self.hot(d), self.objects(d)
        store = os.path.dirname(os.path.dirname(glob.glob(
            os.path.join(d.state, "**", keep_obj[0].split("/")[-1]), recursive=True)[0]))
        stray_obj = os.path.join(store, "notes-ana-ffffffffffffffffffffffffffffffff",
                                 "0123456789abcdef.snap")
        foreign = os.path.join(store, "not-ours.txt")
        stray_hot = os.path.join(d.state, "hot", "notes-ana-0123456789abcdef.img")
        for p in (stray_obj, foreign, stray_hot):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "w") as f:
                f.write("left by a crash")
        d.stop()
        d.start()
        self.assertEqual(self.hot(d), keep_hot)
        self.assertEqual(self.objects(d), keep_obj)
        self.assertTrue(os.path.exists(foreign))  # not a name this daemon makes: kept
        c = self.claim(d)
        self.assertEqual(self.restored_from(d, "hot"), 1)
        self.release(d)


class CrashTest(Base):
    def converged(self, d, tenant="ana"):
        """Nothing orphaned: one object and at most one hot image, both the record's; no temp
        file, container or disk left."""
        rec = self.record(d, tenant)
        self.assertEqual(self.objects(d), [rec["key"]])
        self.assertIn(self.hot(d), ([], ["%s-%s.img" % (rec["key"].split("/")[1],
                                                       rec["digest"][:16])]))
        self.assertEqual(os.listdir(os.path.join(d.state, "tmp")), [])
        self.assertEqual(d.containers(), [])
        self.assertEqual(d.loops(), [])

    def crash(self, d, point, action):
        d.stop()
        d.extra_env["BOILERHOUSE_CRASH_AT"] = point
        d.start()
        try:
            action()
        except OSError:
            pass  # the daemon died mid-request, as asked
        d.proc.wait(timeout=60)
        self.assertEqual(d.proc.returncode, -9, (point, d.log()))
        del d.extra_env["BOILERHOUSE_CRASH_AT"]
        d.start()

    def test_kill9_in_image_hibernate_loses_nothing_and_orphans_nothing(self):
        d = self.daemon()
        d.apply_workload(workload())
        c = self.claim(d)
        make_tree(self.rootfs(d, c["instanceId"]), 8)
        self.release(d)
        for point in HIBERNATE_POINTS:
            c = self.claim(d)
            with open(os.path.join(self.rootfs(d, c["instanceId"]), "workspace", "note"), "w") as f:
                f.write(point)
            want = manifest(self.rootfs(d, c["instanceId"]))
            self.crash(d, point, lambda: d.release("ana", "notes"))
            wait_for(lambda: d.request("GET", "/api/v1/tenants/ana")[0] == 404
                     and d.loops() == [], what="release finished after restart (%s)" % point)
            d.stop()  # a restart runs the GC: what the crash left is collected
            d.start()
            self.converged(d)
            c = self.claim(d)
            self.assertEqual(manifest(self.rootfs(d, c["instanceId"])), want, point)
            self.release(d)

    def test_kill9_in_image_restore_loses_nothing_and_orphans_nothing(self):
        d = self.daemon()
        d.apply_workload(workload())
        c = self.claim(d)
        make_tree(self.rootfs(d, c["instanceId"]), 9)
        want = manifest(self.rootfs(d, c["instanceId"]))
        self.release(d)
        for point, hot_bytes in (("restore.before-take", None), ("restore.after-fetch", "1")):
            if hot_bytes:  # evict, so that the restore takes the archive path
                d.extra_env["BOILERHOUSE_SNAPSHOT_HOT_BYTES"] = hot_bytes
                d.stop()
                d.start()
                self.assertEqual(self.hot(d), [])
            self.crash(d, point, lambda: d.claim("ana", "notes"))
            c = wait_for(lambda: (lambda r: r[1].get("phase") == "Active" and r[1])(
                d.claim("ana", "notes")), what="claim active after the crash (%s)" % point)
            self.assertEqual(manifest(self.rootfs(d, c["instanceId"])), want, point)
            self.release(d)
            d.stop()
            d.start()
            self.converged(d)


if __name__ == "__main__":
    unittest.main()
