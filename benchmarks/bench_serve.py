"""Load test of tools/serve.py on loopback, beside the runner called in-process.

    python benchmarks/bench_serve.py [--onnx DIR/model.onnx] [--images DIR] [--clients 4]
                                     [--requests 200] [--threads 1] [--time-limit 900]

``--clients`` threads each send ``--requests`` raw-body POSTs to /v1/detect over a keep-alive
connection; the server runs as ``tools/serve.py`` in its own process, as on a serving machine
(torch and detectron2 cannot be imported there), with --max-concurrency 1. The baseline is the
same work without HTTP in this process: as many threads, each decoding the same bytes with the
project's reader and calling ``OnnxDetector`` in one worker thread, first come first served (the
server's gate). Both run in alternating rounds (``--rounds``), so that a change in the machine's
load hits both; first one client alone (``--single`` requests: latency without queueing), then
the load. Printed: p50/p99 latency and throughput of each, failed requests and why, the server's
p50 overhead, and its resident memory after the first 10% of the load requests and at the end.

Images: ``--images DIR`` (JPEGs, e.g. ../shared/data/kangaroo/images), else 16 toy images of
800x1067 made by resnet_det.data.toy (real-size photos' pixel count). Model: ``--onnx``, else the
toy R18-FPN (configs/toy/faster_rcnn_r18_fpn_coco.yaml, random weights, its 192/256 test size)
exported once into ``--work`` (needs torch and detectron2 for the export only).
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TRAINING_STACK = ("torch", "torchvision", "detectron2", "fvcore")


def export_toy(out: str) -> None:
    """The toy R18-FPN detector with random weights, exported to ``out``."""
    import torch
    from detectron2.modeling import build_model

    from resnet_det.config import load_config
    from resnet_det.export.exporter import export_model

    cfg = load_config(str(REPO / "configs/toy/faster_rcnn_r18_fpn_coco.yaml"), ["MODEL.DEVICE", "cpu"])
    torch.manual_seed(0)
    export_model(build_model(cfg).eval(), cfg, out, class_names=["circle", "square", "triangle", "cross", "ring"])


def toy_model(work: Path) -> Path:
    """The toy detector, exported once into ``work`` by a child process: this one, like the
    server, runs without torch."""
    onnx = work / "toy_r18_fpn" / "model.onnx"
    if not onnx.exists():
        subprocess.run([sys.executable, __file__, "--export-toy", str(onnx.parent)], check=True)
    return onnx


def images(folder, work: Path) -> list[bytes]:
    """The JPEG files of ``folder``, or 16 toy images of 800x1067 written once into ``work``."""
    if folder is None:
        folder = work / "toy_800x1067"
        if not folder.exists():
            from projects.toy_data import make_coco

            make_coco(work / "toy_coco", num_train=0, num_val=16, size=(800, 1067))
            (work / "toy_coco" / "val2017").rename(folder)
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        sys.exit(f"error: no .jpg files in {folder}")
    return [p.read_bytes() for p in files]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def start_server(onnx: Path, threads: int, work: Path):
    """tools/serve.py in a process that cannot import the training stack; (process, port)."""
    hidden = work / "no_training_stack"
    for name in TRAINING_STACK:
        (hidden / name).mkdir(parents=True, exist_ok=True)
        (hidden / name / "__init__.py").write_text(f"raise ImportError('serving machine', name={name!r})\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hidden), str(REPO)]))
    proc = subprocess.Popen([sys.executable, str(REPO / "tools/serve.py"), "--onnx", str(onnx), "--port", "0",
                             "--threads", str(threads), "--max-concurrency", "1", "--max-queue", "64"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if found := re.search(r"Uvicorn running on http://[\d.]+:(\d+)", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # drain its log
            return proc, int(found.group(1))
    sys.exit("error: the server did not start")


def run_clients(call, clients: int, requests: int, deadline: float, on_done=None):
    """``clients`` threads calling ``call(client, i)`` ``requests`` times each (until ``deadline``);
    ``call`` returns None or why it failed. Returns (latencies in s, failure reasons, wall s)."""
    latencies, failures, lock = [], Counter(), threading.Lock()

    def client(c):
        for i in range(requests):
            if time.monotonic() > deadline:
                return
            t0 = time.perf_counter()
            failed = call(c, i)
            with lock:
                latencies.append(time.perf_counter() - t0)
                failures.update([failed] if failed else [])
                if on_done:
                    on_done()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures, time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", help="model.onnx to serve (default: the toy R18-FPN, exported once)")
    p.add_argument("--images", help="folder of JPEG photos (default: 16 toy images of 800x1067)")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=200, help="per client, over all rounds")
    p.add_argument("--single", type=int, default=40, help="requests of one client alone first (0: none)")
    p.add_argument("--rounds", type=int, default=4, help="alternations of baseline and server")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (both)")
    p.add_argument("--time-limit", type=float, default=900, help="seconds for each contender and phase")
    p.add_argument("--work", default="output/bench_serve", help="folder for the exported model and images")
    p.add_argument("--export-toy", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.export_toy:
        return export_toy(args.export_toy)
    for name in TRAINING_STACK:  # the baseline runs as the server does, without torch
        sys.modules.setdefault(name, None)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    onnx = Path(args.onnx) if args.onnx else toy_model(work)
    data = images(args.images, work)

    from resnet_det.deploy import OnnxDetector
    from resnet_det.utils.image import load_image

    detector = OnnxDetector(onnx, threads=args.threads)
    # One inference at a time, first come first served: the server's gate without HTTP.
    slot = ThreadPoolExecutor(1)

    def work_on(c, i):
        image = np.asarray(load_image(io.BytesIO(data[(c * 7 + i) % len(data)])))
        return len(detector(image)["boxes"]) >= 0

    def in_process(c, i):
        return None if slot.submit(work_on, c, i).result() else "no result"

    proc, port = start_server(onnx, args.threads, work)
    conns, outside = {}, []  # outside: client latency minus the server's own timing_ms.total

    def served(c, i):
        conn = conns.setdefault(c, http.client.HTTPConnection("127.0.0.1", port, timeout=120))
        try:
            t0 = time.perf_counter()
            conn.request("POST", "/v1/detect", body=data[(c * 7 + i) % len(data)],
                         headers={"Content-Type": "image/jpeg"})
            response = conn.getresponse()
            result = json.loads(response.read())
            if response.status != 200 or "boxes" not in result:
                return f"HTTP {response.status}"
            outside.append(time.perf_counter() - t0 - result["timing_ms"]["total"] / 1e3)
            return None
        except (OSError, http.client.HTTPException, ValueError) as e:
            conns.pop(c).close()
            return type(e).__name__

    phases = [("1 client", 1, args.single)] if args.single else []
    phases.append((f"{args.clients} clients", args.clients, args.requests))
    load_total, done, rss = args.clients * args.requests, [0], {}

    def count_load():
        done[0] += 1
        if done[0] == max(1, load_total // 10):
            rss["first"] = rss_mib(proc.pid)

    results = {}
    try:
        for _ in range(50):  # the server up, and both contenders warm
            if served(0, 0) is None:
                break
            time.sleep(0.2)
        in_process(0, 0)
        for phase, clients, requests in phases:
            for _ in range(args.rounds):
                for name, call in (("in-process runner", in_process), ("HTTP server", served)):
                    for conn in conns.values():  # uvicorn closes keep-alive connections idle for 5 s
                        conn.close()
                    end = time.monotonic() + args.time_limit / args.rounds
                    lat, failed, wall = run_clients(call, clients, max(1, requests // args.rounds), end,
                                                    count_load if call is served and clients > 1 else None)
                    prev = results.get((phase, name), ([], Counter(), 0.0))
                    results[(phase, name)] = (prev[0] + lat, prev[1] + failed, prev[2] + wall)
        rss["end"] = rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
        slot.shutdown()

    sizes = [len(d) for d in data]
    print(f"bench_serve: {len(data)} JPEGs ({_image_size(data[0])}, {min(sizes) // 1024}-{max(sizes) // 1024} KiB), "
          f"model {onnx}, ONNX Runtime threads {args.threads}, one inference at a time, "
          f"{args.rounds} alternating rounds, loopback")
    print(f"{'':10s} {'':18s} {'requests':>8s} {'failed':>6s} {'p50 ms':>8s} {'p99 ms':>8s} {'req/s':>7s}")
    p50 = {}
    for (phase, name), (lat, failed, wall) in results.items():
        ms = np.array(lat) * 1e3
        p50[phase, name] = np.percentile(ms, 50)
        print(f"{phase:10s} {name:18s} {len(ms):8d} {sum(failed.values()):6d} {p50[phase, name]:8.1f} "
              f"{np.percentile(ms, 99):8.1f} {len(ms) / wall:7.2f}" + (f"  {dict(failed)}" if failed else ""))
    for phase, _, _ in phases:
        overhead = p50[phase, "HTTP server"] / p50[phase, "in-process runner"] - 1
        print(f"{phase}: server overhead at p50 {100 * overhead:+.1f}% (goal: at most +10%)")
    print(f"HTTP, JSON and the client outside the server's handler: p50 {1e3 * np.median(outside):.1f} ms "
          "a request")
    growth = rss["end"] / rss["first"] - 1
    print(f"server RSS: {rss['first']:.1f} MiB after the first 10% of the {load_total} load requests, "
          f"{rss['end']:.1f} MiB at the end ({100 * growth:+.1f}%; goal: at most +5%)")


def _image_size(jpeg: bytes) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as im:
        return f"{im.width}x{im.height}"


if __name__ == "__main__":
    main()
