#!/usr/bin/env python3
"""Operator mode at scale (issue 15, docs/benchmarks.md): N BoilerhouseWorkloads in a real
kube-apiserver (tests/integration/kube_env.py), one operator-mode daemon mirroring them.

For each N it measures, from one daemon start:
  mirrored   start -> the daemon's REST lists all N (the initial list, each object through the
             daemon's own checks into the store)
  statuses   start -> all N show status.phase Ready in the cluster (the controllers' status
             writes sent back through the mirror's writer, one /status PUT each)
  event p50  a spec change patched with kubectl -> visible through the daemon's REST, 20
             times (watch delivery and the per-event bookkeeping at that size)

Usage: scripts/bench-mirror.py [--sizes 200,2000] [--baseline-build DIR] (root; build first;
the kube-apiserver is built by scripts/build-kube-apiserver.sh). With --baseline-build, each
size runs that build's daemon first, then this build's: the baseline from the same run."""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
import bh  # noqa: E402
from bh import Daemon, wait_for  # noqa: E402
from kube_env import KubeEnv  # noqa: E402


def workload(i):
    return {"apiVersion": "boilerhouse.dev/v1alpha1", "kind": "BoilerhouseWorkload",
            "metadata": {"name": "w%05d" % i},
            "spec": {"version": "1", "image": {"ref": "localhost/busybox:latest"},
                     "resources": {"vcpus": 0.5, "memoryMb": 64, "diskGb": 1},
                     "network": {"access": "none"},
                     "entrypoint": {"cmd": "sh", "args": ["-c", "exec sleep 2147483647"]}}}


def create_all(kube, ns, n):
    doc = {"apiVersion": "v1", "kind": "List", "items": [workload(i) for i in range(n)]}
    kube.kubectl("-n", ns, "create", "--validate=false", "-f", "-", input=json.dumps(doc))


def rest_count(d):
    code, body = d.request("GET", "/api/v1/workloads")
    return len(body) if code == 200 else -1


def cluster_ready(kube, ns):
    out = kube.kubectl("-n", ns, "get", "bhw", "-o", "json").stdout
    return sum(1 for o in json.loads(out)["items"]
               if o.get("status", {}).get("phase") == "Ready")


def event_latencies(kube, ns, d, rounds=20):
    lat = []
    for r in range(rounds):
        name = "w%05d" % r
        kube.kubectl("-n", ns, "patch", "bhw", name, "--type=merge",
                     "-p", json.dumps({"spec": {"version": "r%d" % r}}))
        t1 = time.monotonic()  # kubectl has its answer: the cluster holds the change

        def seen():
            code, body = d.request("GET", "/api/v1/workloads/" + name)
            return code == 200 and body["spec"]["version"] == "r%d" % r
        wait_for(seen, 120, "version r%d of %s" % (r, name), step=0.005)
        lat.append((time.monotonic() - t1) * 1000)
    return lat


def run(kube, n, label):
    ns = "bench-mirror-%s-%d" % (label, n)
    kube.kubectl("create", "namespace", ns)
    create_all(kube, ns, n)
    kc = kube.kubeconfig_for(ns)
    d = Daemon(log_level="info", extra_args=["--kubeconfig", kc, "--operator-id", "bench"])
    try:
        t0 = time.monotonic()
        d.start(timeout=600)
        wait_for(lambda: rest_count(d) == n, 900, "%d workloads mirrored" % n, step=0.05)
        mirrored = time.monotonic() - t0
        wait_for(lambda: cluster_ready(kube, ns) == n, 1800, "%d statuses" % n, step=0.5)
        statuses = time.monotonic() - t0
        lat = event_latencies(kube, ns, d)
    finally:
        d.cleanup()
        kube.kubectl("delete", "namespace", ns, "--wait=false")
    return mirrored, statuses, lat


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="200,2000")
    ap.add_argument("--baseline-build", help="a build dir of the code to compare with")
    args = ap.parse_args()
    builds = [("this", bh.BINARY)]
    if args.baseline_build:
        builds.insert(0, ("baseline", os.path.join(args.baseline_build, "boilerhouse")))
    kube = KubeEnv()
    try:
        kube.install_crds()
        print("%8s | %6s | %10s | %10s | %12s | %12s" % ("build", "N", "mirrored s", "statuses s",
                                                        "event p50 ms", "event max ms"))
        for n in (int(x) for x in args.sizes.split(",")):
            for label, binary in builds:
                bh.BINARY = binary  # Daemon() takes the binary it runs from here
                mirrored, statuses, lat = run(kube, n, label)
                print("%8s | %6d | %10.2f | %10.2f | %12.1f | %12.1f" % (
                    label, n, mirrored, statuses, statistics.median(lat), max(lat)), flush=True)
    finally:
        kube.stop()


if __name__ == "__main__":
    main()
