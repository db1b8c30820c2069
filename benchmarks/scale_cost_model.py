"""The inputs of the scale cost model (docs/results/scale-cost-model.md), measured on this machine.

1. **Per-photo CPU time** of the folder job (decode, Grad-CAM, overlay PNG, JSON record, resume record, index)
   with one torch thread, photos and outputs on local disk, and the same photos read from and written to an
   S3 API (moto's server on 127.0.0.1): CPU seconds of this process per photo and images/s. One torch
   thread per actor is the Ray engine's default, so 1 / (CPU s per photo) is the per-actor throughput.
2. **Requests per photo**: every HTTP request the S3 run sent, by method (counted at moto's server), per
   photo, for a first run and for a rerun that finds everything up to date.
3. **Store request rate and bandwidth**: small-object GET and PUT requests/s (16 threads) and large-object
   GET/PUT MB/s, against moto's server and against local disk through the same functions
   (:mod:`gradcam.storage`).
4. **Driver memory while listing**: tracemalloc peak while :func:`gradcam.storage.list_items` streams
   ``--keys`` synthetic S3 keys (ListObjectsV2 pages of 1,000, tests/listing_fakes.py), and the memory of the
   job's list of photos (one :class:`gradcam.io.Item` per key) held afterwards.

Usage (needs s3fs and moto[server], the ``test`` extra)::

    python benchmarks/scale_cost_model.py [--copies 1 | --folder SAMPLE] [--keys 1000000]

writes ``benchmarks/results/scale_cost_model.json``; ``--render`` prints the page's prediction table from it
(:func:`predict`: the model; :data:`ASSUMED`: what is assumed, not measured).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)

from distributed import make_folder  # noqa: E402


class Requests(logging.Handler):
    """Counts moto's request log lines by HTTP method."""

    def __init__(self):
        super().__init__()
        self.counts: Counter = Counter()

    def emit(self, record):
        import re

        msg = re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage())  # werkzeug colours non-200 statuses
        for m in ("GET", "PUT", "HEAD", "DELETE", "POST"):
            if f'"{m} ' in msg:
                self.counts[m] += 1


def start_s3():
    from moto.server import ThreadedMotoServer
    from storage_fixtures import CREDENTIALS, free_port

    os.environ.update(CREDENTIALS)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing"}


def timed_run(paths, out, options, force=True):
    from gradcam.distributed import explain_dataset

    t0, c0 = time.perf_counter(), time.process_time()
    s = explain_dataset(paths, out=out, force=force, batch_size=8, storage_options=options)
    return time.perf_counter() - t0, time.process_time() - c0, s


def per_photo(folder, n, so, counter):
    """CPU and wall per photo, disk and S3; requests per photo (first run, up-to-date rerun)."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **so)
    fs.mkdir("bench")
    for root, _, files in os.walk(folder):
        for f in files:
            fs.pipe_file(
                f"bench/in/{os.path.relpath(os.path.join(root, f), folder)}",
                open(os.path.join(root, f), "rb").read(),
            )
    in_bytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs_ in os.walk(folder) for f in fs_)
    out_disk = tempfile.mkdtemp()
    timed_run(folder, out_disk, None)  # warm-up: model load, first-call costs
    disk = [timed_run(folder, out_disk, None) for _ in range(2)]
    counter.counts.clear()
    s3 = [timed_run("s3://bench/in", "s3://bench/out", so, force=False)]  # a fresh prefix: a first run
    first = dict(counter.counts)
    counter.counts.clear()
    _, _, again = timed_run("s3://bench/in", "s3://bench/out", so, force=False)
    rerun = dict(counter.counts)
    assert again.explained == 0 and again.skipped == n, again
    out_bytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs_ in os.walk(out_disk) for f in fs_)
    best = lambda runs: min(runs, key=lambda r: r[1])  # noqa: E731 - the least disturbed run
    return {
        "photos": n,
        "input_bytes_per_photo": in_bytes / n,
        "output_bytes_per_photo": out_bytes / n,
        "disk": {"wall_s_per_photo": best(disk)[0] / n, "cpu_s_per_photo": best(disk)[1] / n},
        "s3": {"wall_s_per_photo": best(s3)[0] / n, "cpu_s_per_photo": best(s3)[1] / n},
        "requests_per_photo_first_run": {k: v / n for k, v in sorted(first.items())},
        "requests_per_photo_rerun": {k: v / n for k, v in sorted(rerun.items())},
    }


def store_rates(so, threads=16, small=300, big_mb=8, big=4):
    """Requests/s of 1 kB GETs and PUTs, MB/s of big objects, for moto's S3 and local disk."""
    from gradcam import storage

    out = {}
    for name, base, opts in (
        ("s3 (moto, 127.0.0.1)", "s3://bench/rates", so),
        ("local disk", tempfile.mkdtemp(), None),
    ):
        keys = [storage.join(base, f"small/{i:05d}") for i in range(small)]
        data = os.urandom(1024)
        pool = ThreadPoolExecutor(threads)
        t = time.perf_counter()
        list(pool.map(lambda k, d=data, o=opts: storage.write_bytes(k, d, o), keys))
        put = small / (time.perf_counter() - t)
        t = time.perf_counter()
        list(pool.map(lambda k, o=opts: storage.read_bytes(k, o), keys))
        get = small / (time.perf_counter() - t)
        blob = os.urandom(big_mb << 20)
        bkeys = [storage.join(base, f"big/{i}") for i in range(big)]
        t = time.perf_counter()
        for k in bkeys:
            storage.write_bytes(k, blob, opts)
        put_mb = big * big_mb / (time.perf_counter() - t)
        t = time.perf_counter()
        for k in bkeys:
            storage.read_bytes(k, opts)
        get_mb = big * big_mb / (time.perf_counter() - t)
        out[name] = {
            "put_per_s": put,
            "get_per_s": get,
            "put_mb_s": put_mb,
            "get_mb_s": get_mb,
            "threads": threads,
        }
    return out


def listing(keys):
    """tracemalloc peak while streaming ``keys`` synthetic S3 keys, and the job's held list of them."""
    from listing_fakes import FakeS3

    from gradcam import storage

    fake = FakeS3(keys)
    real = storage.filesystem
    storage.filesystem = lambda url, so=None: (fake, "bucket/in")
    try:
        gc.collect()
        tracemalloc.start()
        t = time.perf_counter()
        n = sum(1 for _ in storage.list_items("s3://bucket/in", ["s3://bucket/out"], (".jpg",)))
        streamed_s = time.perf_counter() - t
        streamed_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        gc.collect()
        tracemalloc.start()
        fake.produced = 0
        held = list(storage.list_items("s3://bucket/in", ["s3://bucket/out"], (".jpg",)))
        held_now, held_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        storage.filesystem = real
    assert n == len(held) == keys
    return {
        "keys": keys,
        "streamed_peak_mb": streamed_peak / 1e6,
        "streamed_s_traced": streamed_s,
        "held_items_mb": held_now / 1e6,
        "held_peak_mb": held_peak / 1e6,
        "held_bytes_per_key": held_now / keys,
    }


ASSUMED = {
    # Assumptions, not measurements (replace them with your own): a c6i.8xlarge-like node, AWS list prices
    # (us-east-1, on demand), S3's documented per-prefix request rates, a ListObjectsV2 round trip.
    "node_vcpus": 32,
    "node_usd_per_hour": 1.36,
    "node_network_mb_s": 1250.0,  # 10 Gbit/s sustained
    "put_usd_per_1000": 0.005,
    "get_usd_per_1000": 0.0004,
    "list_usd_per_1000": 0.005,
    "s3_put_per_s_per_prefix": 3500,
    "s3_get_per_s_per_prefix": 5500,
    "list_page_s": 0.1,  # one ListObjectsV2 page (1,000 keys)
    "cpu_scale": 1.0,  # a node's vCPU against this machine's logical CPU
}


def predict(result, photos, nodes, prefixes=1, a=ASSUMED):
    """Images/s, hours and USD of ``photos`` on ``nodes`` nodes, from the measured ``result`` and ``a``.

    Per node: (vCPUs - 0.5) CPUs of model actors and decode tasks (the Ray pool leaves half a CPU), each
    photo costing ``cpu_s_per_photo`` (S3 run: client CPU included); the cluster: the smallest of N nodes'
    rate, the store's PUT and GET rates over the requests per photo (one output prefix), and the network.
    The listing runs before the work: photos / 1,000 pages of ``list_page_s``.
    """
    pp = result["per_photo"]
    cpu = pp["s3"]["cpu_s_per_photo"] * a["cpu_scale"]
    per_node = (a["node_vcpus"] - 0.5) / cpu
    req = pp["requests_per_photo_first_run"]
    writes = req.get("PUT", 0) + req.get("DELETE", 0) + req.get("POST", 0)  # S3's write-class rate
    puts = req.get("PUT", 0) + req.get("POST", 0)  # charged (DELETE is free)
    gets = req.get("GET", 0) + req.get("HEAD", 0)
    mb = (pp["input_bytes_per_photo"] + pp["output_bytes_per_photo"]) / 1e6
    limits = {
        "CPU": nodes * per_node,
        "S3 PUT rate": prefixes * a["s3_put_per_s_per_prefix"] / writes,
        "S3 GET rate": prefixes * a["s3_get_per_s_per_prefix"] / gets,
        "network": nodes * a["node_network_mb_s"] / mb,
    }
    bound = min(limits, key=limits.get)
    rate = limits[bound]
    list_s = photos / 1000 * a["list_page_s"]
    hours = (photos / rate + list_s) / 3600
    usd_nodes = hours * nodes * a["node_usd_per_hour"]
    usd_requests = photos * (puts * a["put_usd_per_1000"] + gets * a["get_usd_per_1000"]) / 1000
    usd_requests += photos / 1000 * a["list_usd_per_1000"] / 1000
    return {
        "photos": photos,
        "nodes": nodes,
        "images_per_s": rate,
        "bound_by": bound,
        "listing_h": list_s / 3600,
        "hours": hours,
        "usd_nodes": usd_nodes,
        "usd_requests": usd_requests,
        "usd": usd_nodes + usd_requests,
    }


def render(result, prefixes=1):
    """The prediction table (Markdown) of a measured ``result`` with ``prefixes`` output key prefixes."""
    rows = [
        f"| photos | nodes | images/s ({prefixes} prefix{'es' if prefixes > 1 else ''}) | bound by | listing (h) | total (h) | nodes (USD) | requests (USD) | total (USD) |"
    ]
    rows.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for photos in (10**6, 10**8):
        for nodes in (1, 8, 64):
            p = predict(result, photos, nodes, prefixes)
            rows.append(
                f"| 10^{len(str(photos)) - 1} | {nodes} | {p['images_per_s']:,.0f} | {p['bound_by']} | "
                f"{p['listing_h']:.2f} | {p['hours']:,.2f} | {p['usd_nodes']:,.0f} | {p['usd_requests']:,.0f} | "
                f"{p['usd']:,.0f} |"
            )
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--copies", type=int, default=1, help="copies of the 24 benchmark photos (default 1)")
    p.add_argument(
        "--folder", help="measure on these photos (a sample of yours) instead of the benchmark's 24"
    )
    p.add_argument("--keys", type=int, default=1_000_000, help="synthetic keys listed (default 1,000,000)")
    p.add_argument("--skip-listing", action="store_true")
    p.add_argument("--render", action="store_true", help="print the prediction table of the saved results")
    a = p.parse_args(argv)
    path = os.path.join(HERE, "results", "scale_cost_model.json")
    if a.render:
        with open(path) as f:
            result = json.load(f)
        print(render(result) + "\n\n" + render(result, 100))
        return
    import torch

    from gradcam.io import find_images

    torch.set_num_threads(1)
    counter = Requests()
    wz = logging.getLogger("werkzeug")
    wz.setLevel(logging.INFO)
    wz.propagate = False
    wz.addHandler(counter)
    server, so = start_s3()
    try:
        if a.folder:
            folder, n = a.folder, len(find_images([a.folder]))
        else:
            folder = tempfile.mkdtemp()
            n = make_folder(folder, a.copies)
        result = {
            "machine": f"{os.cpu_count()} logical CPUs, {platform.machine()}, torch {torch.__version__}, 1 torch thread",
            "load_before": os.getloadavg(),
            "per_photo": per_photo(folder, n, so, counter),
            "store": store_rates(so),
        }
    finally:
        server.stop()
    if not a.skip_listing:
        result["listing"] = listing(a.keys)
    elif os.path.exists(path):  # keep the last listing measurement
        with open(path) as f:
            result["listing"] = json.load(f).get("listing")
    result["load_after"] = os.getloadavg()
    result["written"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
