"""HTTP serving of an exported detector: Starlette on uvicorn, metrics by prometheus_client.

The stack does what it can: uvicorn parses HTTP, closes idle connections, refuses connections
beyond ``limit_concurrency`` and, on SIGTERM/SIGINT, stops accepting and lets the requests in
flight finish (``timeout_graceful_shutdown``); Starlette routes and parses multipart bodies;
prometheus_client keeps and formats the metrics. Written here is only what they lack: the
inference gate (bounded concurrency and queue, 503 beyond), a deadline for receiving the body
(408), the body limit (413, see :class:`_Edge`) and decoding through the project's image reader.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import time
from importlib import resources

import anyio
import anyio.to_thread
import numpy as np
import prometheus_client as prom
import uvicorn
from prometheus_client import multiprocess
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from resnet_det.deploy import ImageError, OnnxDetector
from resnet_det.utils.image import MAX_PIXELS, load_image

__all__ = ["Refused", "create_app", "load_detector", "serve", "app_from_env"]

SETTINGS_ENV = "RESNET_DET_SERVE"  # the settings that each worker process of --workers N reads
ROUTES = ("/", "/v1/detect", "/v1/model", "/healthz", "/metrics")  # metric labels; others: "other"


class Refused(HTTPException):
    """A request refused with ``status`` and a message naming the problem; ``kind`` labels it in
    the ``resnet_det_errors_total`` metric."""

    def __init__(self, status: int, kind: str, message: str, headers: dict | None = None):
        super().__init__(status, message, headers)
        self.kind = kind


def load_detector(path, *, threads=None, runtime="onnxruntime", precision="fp32", max_pixels=MAX_PIXELS):
    """The :class:`OnnxDetector` served (a :class:`DeployError` names a bad file or flag)."""
    return OnnxDetector(path, threads=threads, runtime=runtime, precision=precision, max_pixels=max_pixels)


class _Upload(io.BytesIO):
    def __repr__(self):  # Pillow's messages show a file object's repr: show the upload's name
        return repr(self.name)


class _Metrics:
    def __init__(self):
        self.registry = prom.CollectorRegistry()
        kw = {"namespace": "resnet_det", "registry": self.registry}
        self.requests = prom.Counter("requests", "HTTP requests by route and status", ["route", "status"], **kw)
        self.latency = prom.Histogram("request_seconds", "HTTP request latency", ["route"], **kw,
                                      buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.errors = prom.Counter("errors", "refused or failed requests by kind", ["kind"], **kw)
        # livesum: with --workers N, the sum over the live worker processes.
        self.queued = prom.Gauge("queue_depth", "requests waiting for an inference slot", **kw,
                                 multiprocess_mode="livesum")
        self.running = prom.Gauge("inferences_running", "inferences in progress", **kw,
                                  multiprocess_mode="livesum")

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
            return prom.generate_latest(self.registry)
        registry = prom.CollectorRegistry()  # every worker's values, from the shared folder
        multiprocess.MultiProcessCollector(registry)
        return prom.generate_latest(registry)


class _Gate:
    """At most ``concurrency`` inferences at a time in worker threads (off the event loop) and at
    most ``queue`` requests waiting for one; beyond that, 503 with a Retry-After estimated from
    the recent inference time. anyio's CapacityLimiter bounds the threads but not its own queue."""

    def __init__(self, concurrency: int, queue: int, metrics: _Metrics):
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.capacity, self.admitted, self.metrics = concurrency + queue, 0, metrics
        self.mean_s = 0.0  # moving average of a slot's hold time

    async def run(self, fn, *args):
        if self.admitted >= self.capacity:
            wait = math.ceil(self.mean_s * self.admitted / self.limiter.total_tokens)
            raise Refused(503, "busy", f"{self.admitted} requests are in progress or queued, the "
                          "most this server takes (--max-concurrency + --max-queue); retry later",
                          {"Retry-After": str(max(1, wait))})
        self.admitted += 1
        self.metrics.queued.inc()
        started = []

        def slot():
            started.append(time.perf_counter())
            self.metrics.queued.dec()
            self.metrics.running.inc()
            try:
                return fn(*args)
            finally:
                self.metrics.running.dec()
                self.mean_s = 0.8 * self.mean_s + 0.2 * (time.perf_counter() - started[0])

        try:
            return await anyio.to_thread.run_sync(slot, limiter=self.limiter), started[0]
        finally:
            self.admitted -= 1
            if not started:  # cancelled while queued
                self.metrics.queued.dec()


def _on_loop(respond):
    async def endpoint(request):  # async: runs on the event loop, where Starlette sends a def to a thread
        return respond()
    return endpoint


def _threshold(text: str) -> float:
    with contextlib.suppress(ValueError):
        if 0.0 <= (value := float(text)) <= 1.0:
            return value
    raise Refused(400, "bad_request", f"score_threshold must be a number in [0, 1], got {text!r}")


def create_app(detector, *, max_concurrency=1, max_queue=16, max_body_mb=20.0, body_timeout=30.0,
               max_pixels=MAX_PIXELS) -> Starlette:
    """The ASGI app serving ``detector`` (an :class:`OnnxDetector`, or any callable with its
    output and a ``meta`` dict); the limits are those of ``tools/serve.py`` (docs/deploy.md)."""
    metrics = _Metrics()
    gate = _Gate(max_concurrency, max_queue, metrics)
    page = (resources.files(__package__) / "static" / "index.html").read_text(encoding="utf-8")
    names = list(detector.meta["class_names"])

    def infer(data: bytes, name: str, threshold: float) -> dict:
        t0 = time.perf_counter()
        upload = _Upload(data)
        upload.name = name
        image = np.asarray(load_image(upload, max_pixels=max_pixels, limit_key="--max-pixels"))
        t1 = time.perf_counter()
        out = detector(image)
        keep = out["scores"] >= threshold
        classes = out["classes"][keep].tolist()
        return {"boxes": out["boxes"][keep].astype(float).round(2).tolist(),
                "scores": out["scores"][keep].astype(float).round(4).tolist(),
                "classes": classes, "class_names": [names[c] for c in classes],
                "image": {"width": image.shape[1], "height": image.shape[0]},
                "timing_ms": {"decode": 1e3 * (t1 - t0), "inference": 1e3 * (time.perf_counter() - t1)}}

    async def detect(request):
        t0 = time.perf_counter()
        threshold = _threshold(request.query_params.get("score_threshold", "0"))
        kind = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
        try:
            with anyio.fail_after(body_timeout):
                if kind == "multipart/form-data":
                    async with request.form(max_files=1, max_fields=8) as form:
                        upload = next((v for v in form.values() if not isinstance(v, str)), None)
                        if upload is None:
                            raise Refused(400, "no_file", "the multipart body has no file part; send the "
                                          "image as a file field (curl -F image=@photo.jpg)")
                        data, name = await upload.read(), upload.filename or "upload"
                elif kind == "application/octet-stream" or kind.startswith("image/"):
                    data, name = await request.body(), "request body"
                else:
                    raise Refused(415, "content_type", f"Content-Type {kind!r} is not accepted: send the image "
                                  "as image/*, application/octet-stream or multipart/form-data")
        except TimeoutError:
            # Connection: close, or uvicorn would keep reading a stalled connection.
            raise Refused(408, "timeout", f"the request body did not arrive within --body-timeout "
                          f"{body_timeout:g} s", {"Connection": "close"}) from None
        if not data:
            raise Refused(400, "empty", f"{name} is empty (0 bytes): send the image's bytes")
        t1 = time.perf_counter()
        result, started = await gate.run(infer, data, name, threshold)
        timing = dict(result["timing_ms"], receive=1e3 * (t1 - t0), queue=1e3 * (started - t1),
                      total=1e3 * (time.perf_counter() - t0))
        return JSONResponse(dict(result, timing_ms={k: round(v, 2) for k, v in timing.items()}))

    async def refused(request, exc):
        status = getattr(exc, "status_code", 400)  # ImageError: the upload is not a usable image
        kind = getattr(exc, "kind", "bad_image" if isinstance(exc, ImageError) else f"http_{status}")
        message = str(exc) if isinstance(exc, ImageError) else exc.detail
        metrics.errors.labels(kind).inc()
        return JSONResponse({"error": message, "status": status}, status, getattr(exc, "headers", None))

    async def failed(request, exc):
        metrics.errors.labels("internal").inc()
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the server log",
                             "status": 500}, 500)

    routes = [
        Route("/", _on_loop(lambda: HTMLResponse(page))),
        Route("/v1/detect", detect, methods=["POST"]),
        Route("/v1/model", _on_loop(lambda: JSONResponse(detector.meta))),
        Route("/healthz", _on_loop(lambda: JSONResponse({"status": "ok"}))),
        Route("/metrics", _on_loop(lambda: Response(metrics.exposition(), media_type=prom.CONTENT_TYPE_LATEST))),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: refused, ImageError: refused,
                                                      Exception: failed})
    return _Edge(app, metrics, max_body_mb)


class _Edge:
    """ASGI wrapper: counts and times every response by route and status, and refuses a request
    body above ``max_body_mb`` (declared or received) with 413 before reading more of it.
    Starlette's own ``max_body_size`` is not used: it replaces the app's JSON error with a
    plain-text one when the declared size is too large."""

    def __init__(self, app, metrics: _Metrics, max_body_mb: float):
        self.app, self.metrics, self.max_body_mb = app, metrics, max_body_mb
        self.max_bytes = int(max_body_mb * 2**20)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        t0, status, received = time.perf_counter(), [500], [0]
        declared = dict(scope["headers"]).get(b"content-length", b"0")

        def check(size):
            if size > self.max_bytes:
                raise Refused(413, "too_large", f"the request body is above --max-body-mb "
                              f"{self.max_body_mb:g} ({self.max_bytes} bytes)")

        async def limited():
            check(max(int(declared) if declared.isdigit() else 0, received[0]))
            message = await receive()
            received[0] += len(message.get("body", b""))
            check(received[0])
            return message

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, limited, send_status)
        finally:
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


def app_from_env():
    """The app of one worker process of ``--workers N``: settings from :data:`SETTINGS_ENV`."""
    settings = json.loads(os.environ[SETTINGS_ENV])
    detector = load_detector(settings.pop("onnx"), **settings.pop("runner"))
    return create_app(detector, **settings)


def serve(onnx, *, host="127.0.0.1", port=8000, workers=1, threads=None, runtime="onnxruntime",
          precision="fp32", shutdown_timeout=30.0, log_level="info", **limits) -> None:
    """Load ``onnx`` (a one-line :class:`DeployError` if it cannot be) and serve it until SIGTERM or
    SIGINT; ``limits``: :func:`create_app`'s keywords."""
    runner = {"threads": threads, "runtime": runtime, "precision": precision,
              "max_pixels": limits.get("max_pixels", MAX_PIXELS)}
    detector = load_detector(onnx, **runner)  # a bad path or flag: one-line error before serving
    # Connections beyond this get uvicorn's own 503: it bounds the bodies held in memory.
    options = dict(host=host, port=port, log_level=log_level, timeout_graceful_shutdown=shutdown_timeout,
                   limit_concurrency=max(64, 4 * (limits.get("max_concurrency", 1) + limits.get("max_queue", 16))))
    if workers == 1:
        uvicorn.run(create_app(detector, **limits), **options)
        return
    del detector  # each worker process loads its own copy; their metrics meet in a shared folder
    metrics_dir = tempfile.mkdtemp(prefix="resnet_det_metrics_")
    os.environ.update({SETTINGS_ENV: json.dumps({"onnx": str(onnx), "runner": runner, **limits}),
                       "PROMETHEUS_MULTIPROC_DIR": metrics_dir})
    try:
        uvicorn.run(f"{__name__}:app_from_env", factory=True, workers=workers, **options)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def main(argv=None) -> int:
    """``tools/serve.py`` and the ``resnet-det-serve`` command: exit status 0, or 2 with a one-line
    message for a bad flag or model file."""
    import argparse

    from resnet_det.utils.cli import add_debug_argument, run_cli

    p = argparse.ArgumentParser(description="Serve an exported detector over HTTP (docs/deploy.md).")
    p.add_argument("--onnx", required=True, help="model.onnx from tools/export_model.py (model.json beside it)")
    p.add_argument("--runtime", default="onnxruntime", help="inference runtime (default: onnxruntime)")
    p.add_argument("--precision", default="fp32", help="inference precision (default: fp32)")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads per inference (default: its own)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="server processes, each with its own model copy")
    p.add_argument("--max-concurrency", type=int, default=1, help="inferences at a time per process")
    p.add_argument("--max-queue", type=int, default=16, help="requests waiting for an inference; beyond: 503")
    p.add_argument("--max-body-mb", type=float, default=20.0, help="request body limit; beyond: 413")
    p.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="image pixel limit; beyond: 400")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds to receive a body; beyond: 408")
    p.add_argument("--shutdown-timeout", type=float, default=30.0,
                   help="seconds that requests in flight get to finish after SIGTERM/SIGINT")
    add_debug_argument(p)
    args = vars(p.parse_args(argv))
    args.pop("debug")
    for flag, low in (("workers", 1), ("max_concurrency", 1), ("max_queue", 0)):
        if args[flag] < low:
            p.error(f"--{flag.replace('_', '-')} must be at least {low}")
    return run_cli(serve, **args)
