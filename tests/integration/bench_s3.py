"""Benchmark (not a test): hibernate and restore of ~100 MB through bh-storage-s3 against s3rver
on loopback, beside curl uploading and downloading the same bytes to the same server in the
same run. Run under the integration lock:
    cd build && flock /tmp/bh-integration.lock python3 ../tests/integration/bench_s3.py"""
import os
import re
import subprocess
import time

from test_pools import notes
from test_s3 import BUCKET, S3Server, s3_daemon

MB = 100


def log_ms(d, pattern):
    return int(re.findall(pattern, d.log(tail=None))[-1])


def curl_ms(argv):
    t0 = time.monotonic()
    subprocess.run(["curl", "-sf", "-o", "/dev/null"] + argv, check=True)
    return (time.monotonic() - t0) * 1000


def main():
    s3 = S3Server()
    d = s3_daemon(s3)
    try:
        d.start()
        d.apply_workload(notes())
        c = d.claim("bench", "notes")[1]
        d.request("POST", "/api/v1/instances/%s/exec" % c["instanceId"],
                  {"command": ["sh", "-c", "head -c %d /dev/urandom > /workspace/data" %
                               (MB << 20)]})
        assert d.release("bench", "notes")[0] == 200
        hib = log_ms(d, r"saved \d+ bytes \(\d+ files\) in (\d+) ms")
        assert d.claim("bench", "notes")[0] in (200, 201)
        res = log_ms(d, r"restored \S+ in (\d+) ms")
        snap = d.request("GET", "/api/v1/snapshots")[1][0]
        path = s3.object_path("it/" + snap["key"])
        size = os.path.getsize(path)
        url = "http://127.0.0.1:%d/%s/curl-copy" % (s3.port, BUCKET)
        up = curl_ms(["-T", path, url])
        down = curl_ms([url])
        mbs = lambda ms: size / (1 << 20) / (ms / 1000)
        print("object %.1f MB" % (size / (1 << 20)))
        print("| hibernate %d MB via S3 plugin | %d ms (%.0f MB/s) | curl upload %d ms (%.0f MB/s) |"
              % (MB, hib, mbs(hib), up, mbs(up)))
        print("| restore %d MB via S3 plugin | %d ms (%.0f MB/s) | curl download %d ms (%.0f MB/s) |"
              % (MB, res, mbs(res), down, mbs(down)))
        d.release("bench", "notes")
    finally:
        d.cleanup()
        s3.stop()


if __name__ == "__main__":
    main()
