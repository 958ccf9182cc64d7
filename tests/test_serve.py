"""resnet_det.serve: the HTTP server of an exported detector (tools/serve.py, docs/deploy.md):
endpoints, hostile uploads and their documented statuses, the inference gate (503), the body
limit (413) and deadline (408), metrics, --workers, and graceful shutdown."""
import contextlib
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="the serving tests need the dev extra (httpx)")
for _module in ("starlette", "prometheus_client"):
    pytest.importorskip(_module, reason='the serving extra is not installed: pip install ".[serve]"')
uvicorn = pytest.importorskip("uvicorn", reason='the serving extra is not installed: pip install ".[serve]"')
from PIL import Image  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from resnet_det.deploy import OnnxDetector, read_image  # noqa: E402
from resnet_det.serve import create_app  # noqa: E402
from resnet_det.serve.app import main as serve_main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Small inputs; threshold 0 keeps an untrained detector's detections (as tests/test_deploy.py).
SMALL = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128",
         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
TRAINING_STACK = ("torch", "torchvision", "detectron2", "fvcore")


def export_tiny(out) -> Path:
    """A random-weights R18-C4 detector exported to ``out/model.onnx`` (96-128 px inputs)."""
    import torch
    from detectron2.modeling import build_model

    from resnet_det.config import load_config
    from resnet_det.export.exporter import export_model

    cfg = load_config(str(ROOT / "configs/toy/faster_rcnn_r18_c4_coco.yaml"), SMALL)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    names = ["circle", "square", "triangle", "cross", "ring"]
    return Path(export_model(model, cfg, out, class_names=names)["onnx"])


@contextlib.contextmanager
def running(app):
    """``app`` served by uvicorn on a free loopback port in a thread; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=10))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def jpeg(rgb, **kwargs) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=90, **kwargs)
    return out.getvalue()


def _png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width, height, rows) -> bytes:
    """A grayscale PNG of ``width`` x ``height`` whose pixels are all zero, compressed ``rows`` at
    a time (a decompression bomb when large: 10000 x 10000 is about 100 KB)."""
    packer = zlib.compressobj(9)
    block = packer.compress(bytes((width + 1) * rows)) if width else b""
    idat = b"".join(block for _ in range(height // rows)) + packer.flush() if width else zlib.compress(b"")
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


def without_torch(folder) -> dict:
    """Environment of a process that cannot import the training stack, as on a serving machine
    (worker processes that tools/serve.py spawns included): packages in ``folder`` that fail."""
    for name in TRAINING_STACK:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(f"raise ImportError('not on a serving machine', name={name!r})\n")
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]), RESNET_DET_DEBUG="0")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("serve_model"))


@pytest.fixture(scope="module")
def detector(model):
    return OnnxDetector(model, threads=2)


@pytest.fixture(scope="module")
def server(detector):
    """The limits tests run against: 1 MiB bodies, 1 s to receive one, default pixel limit."""
    with running(create_app(detector, max_concurrency=1, max_queue=2, max_body_mb=1, body_timeout=1.0)) as url:
        yield url


@pytest.fixture(scope="module")
def photo():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)


def _metrics(url) -> dict:
    text = httpx.get(f"{url}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _healthy(url):
    response = httpx.get(f"{url}/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def _expected(detector, image_bytes, tmp_path, threshold=0.0):
    """The runner's detections on the file as the project's reader reads it."""
    path = tmp_path / "expected"
    path.write_bytes(image_bytes)
    out = detector(read_image(path))
    keep = out["scores"] >= threshold
    return out["boxes"][keep], out["scores"][keep], out["classes"][keep]


def test_detect_raw_and_multipart_give_the_runners_detections(server, detector, photo, tmp_path):
    data = jpeg(photo)
    raw = httpx.post(f"{server}/v1/detect", content=data, headers={"Content-Type": "image/jpeg"})
    form = httpx.post(f"{server}/v1/detect", files={"image": ("photo.jpg", data, "image/jpeg")})
    boxes, scores, classes = _expected(detector, data, tmp_path)
    assert len(boxes) > 10
    for response in (raw, form):
        assert response.status_code == 200, response.text
        got = response.json()
        assert got["image"] == {"width": 160, "height": 120}
        np.testing.assert_allclose(got["boxes"], boxes, atol=0.006)
        np.testing.assert_allclose(got["scores"], scores, atol=6e-5)
        assert got["classes"] == classes.tolist()
        assert got["class_names"] == [detector.class_names[c] for c in classes]
        assert set(got["timing_ms"]) == {"receive", "queue", "decode", "inference", "total"}
    # The threshold keeps the detections at or above it, the same as filtering the runner's.
    cut = float(np.median(scores))
    some = httpx.post(f"{server}/v1/detect?score_threshold={cut}", content=data).json()
    assert 0 < len(some["scores"]) < len(scores)
    assert len(some["scores"]) == int((scores >= cut).sum())
    assert min(some["scores"]) >= round(cut, 4) - 1e-4


def test_model_health_page_and_metrics_endpoints(server, model):
    assert httpx.get(f"{server}/v1/model").json() == json.loads(model.with_suffix(".json").read_text())
    _healthy(server)
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="threshold"' in page.text and "<canvas" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # nothing fetched from elsewhere
    response = httpx.get(f"{server}/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"resnet_det_requests", "resnet_det_request_seconds", "resnet_det_errors",
            "resnet_det_queue_depth", "resnet_det_inferences_running"} <= families
    before = _metrics(server)
    httpx.get(f"{server}/v1/model")
    httpx.get(f"{server}/no/such/page")
    after = _metrics(server)
    key = ("resnet_det_requests_total", (("route", "/v1/model"), ("status", "200")))
    assert after[key] == before[key] + 1
    other = ("resnet_det_requests_total", (("route", "other"), ("status", "404")))
    assert after[other] == before.get(other, 0) + 1


def _cmyk_jpeg():
    out = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (100, 140, 4), dtype=np.uint8), "CMYK").save(out, "JPEG")
    return out.getvalue()


def _png16():
    out = io.BytesIO()
    Image.fromarray(np.arange(100 * 140, dtype=np.uint16).reshape(100, 140) * 4).save(out, "PNG")
    return out.getvalue()


# (name, body, Content-Type, status, the message's pattern): the table of docs/deploy.md#serve.
HOSTILE = [
    ("empty body", b"", "image/jpeg", 400, r"request body is empty \(0 bytes\)"),
    ("text", b"hello, this is not an image\n", "image/png", 400, r"cannot decode image \(UnidentifiedImageError"),
    ("truncated JPEG", "truncated", "image/jpeg", 400, r"cannot decode image \(OSError: image file is truncated"),
    ("16-bit PNG", "png16", "image/png", 200, None),
    ("CMYK JPEG", "cmyk", "image/jpeg", 200, None),
    ("decompression bomb", "bomb", "image/png", 400, r"10000x10000 = 100000000 pixels is above --max-pixels=89478485"),
    ("0x0 image", "empty png", "image/png", 400, r"cannot decode image \(UnidentifiedImageError"),
    ("wrong content type", "jpeg", "text/plain", 415, r"Content-Type 'text/plain' is not accepted"),
    ("form-urlencoded (curl -d)", "jpeg", "application/x-www-form-urlencoded", 415, r"is not accepted"),
    ("over-size body", "big", "image/jpeg", 413, r"above --max-body-mb 1 \(1048576 bytes\)"),
    ("bad threshold", "jpeg?score_threshold=2", "image/jpeg", 400, r"score_threshold must be a number in \[0, 1\]"),
]


@pytest.mark.parametrize("name,body,content_type,status,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_upload_gets_its_documented_status_and_the_server_keeps_serving(
        server, detector, photo, tmp_path, name, body, content_type, status, message):
    query = ""
    if isinstance(body, str):
        body, _, query = body.partition("?")
        body = {"truncated": jpeg(photo)[:1500], "png16": _png16(), "cmyk": _cmyk_jpeg(), "jpeg": jpeg(photo),
                "bomb": png_header_only(10000, 10000, 1000), "empty png": png_header_only(0, 0, 1),
                "big": np.random.default_rng(2).bytes(3 * 2**20)}[body]
    response = httpx.post(f"{server}/v1/detect?{query}", content=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    if status == 200:
        # Served as the project's reader reads the file (16-bit scaled, CMYK converted).
        boxes, scores, _ = _expected(detector, body, tmp_path)
        assert response.json()["image"] == {"width": 140, "height": 100}
        np.testing.assert_allclose(response.json()["boxes"], boxes, atol=0.006)
    else:
        assert response.headers["content-type"] == "application/json"
        assert re.search(message, response.json()["error"]), response.json()
    _healthy(server)


def test_multipart_without_a_file_or_with_two_files_is_a_400(server, photo):
    field_only = b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b--\r\n'
    no_file = httpx.post(f"{server}/v1/detect", content=field_only,
                         headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert no_file.status_code == 400 and "no file part" in no_file.json()["error"]
    two = httpx.post(f"{server}/v1/detect", files=[("a", ("1.jpg", jpeg(photo))), ("b", ("2.jpg", jpeg(photo)))])
    assert two.status_code == 400 and "Too many files" in two.json()["error"]
    _healthy(server)


def _post_slowly(url, chunks, pause, stop_after=None):
    """Headers announcing 100 kB, then ``chunks`` of 10 bytes ``pause`` s apart (stopping after
    ``stop_after`` of them, or until the server answers); returns the raw response."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                  b"Content-Length: 100000\r\n\r\n")
        s.settimeout(pause)
        response = b""
        for i in range(chunks):
            if stop_after is not None and i >= stop_after:
                break
            try:
                s.sendall(b"\xff" * 10)
                response += s.recv(65536)
                break  # the server answered
            except TimeoutError:
                continue
            except OSError:  # the server closed the connection while we were sending
                break
        s.settimeout(30)
        return (response + _read_to_end(s)).decode()


def _read_to_end(s) -> bytes:
    data = b""
    # A chunk sent after the server closed makes it reset the connection: the reset follows the
    # response, which stays readable.
    with contextlib.suppress(ConnectionResetError):
        while chunk := s.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("stop_after", [3, None], ids=["sent slowly then stopped", "dripping without end"])
def test_slow_or_stalled_upload_times_out_with_408_and_the_connection_closes(server, stop_after):
    # The deadline (--body-timeout, 1 s here) covers the whole body, not each read: a client
    # sending 10 bytes every 0.2 s forever is cut off as surely as one that stops.
    response = _post_slowly(server, 500, 0.2, stop_after)
    assert response.startswith("HTTP/1.1 408 "), response
    assert "connection: close" in response.lower(), response
    assert "did not arrive within --body-timeout 1 s" in response, response
    _healthy(server)


class _Held:
    """The detector, holding each inference until ``release`` is set."""

    def __init__(self, detector):
        self.detector, self.meta = detector, detector.meta
        self.release, self.entered = threading.Event(), threading.Semaphore(0)

    def __call__(self, image):
        self.entered.release()
        self.release.wait(60)
        return self.detector(image)


def test_full_queue_gets_503_with_retry_after_and_the_loop_stays_free(detector, photo):
    held = _Held(detector)
    with running(create_app(held, max_concurrency=1, max_queue=2)) as url:
        data = jpeg(photo)
        results = []
        clients = [threading.Thread(target=lambda: results.append(httpx.post(
            f"{url}/v1/detect", content=data, timeout=60).status_code)) for _ in range(3)]
        for c in clients:
            c.start()
        assert held.entered.acquire(timeout=60)  # one inference running ...
        for _ in range(600):  # ... and two waiting for it
            if _metrics(url)[("resnet_det_queue_depth", ())] == 2:
                break
            time.sleep(0.05)
        metrics = _metrics(url)
        assert metrics[("resnet_det_queue_depth", ())] == 2
        assert metrics[("resnet_det_inferences_running", ())] == 1
        busy = httpx.post(f"{url}/v1/detect", content=data)
        assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
        assert "--max-concurrency + --max-queue" in busy.json()["error"]
        _healthy(url)  # answered while the inference thread is held: it is off the event loop
        held.release.set()
        for c in clients:
            c.join(60)
        assert results == [200, 200, 200]
        metrics = _metrics(url)
        assert metrics[("resnet_det_errors_total", (("kind", "busy"),))] == 1
        assert metrics[("resnet_det_queue_depth", ())] == 0
        assert httpx.post(f"{url}/v1/detect", content=data).status_code == 200


def test_errors_are_counted_by_kind(server):
    before = _metrics(server)
    httpx.post(f"{server}/v1/detect", content=b"", headers={"Content-Type": "image/jpeg"})
    httpx.post(f"{server}/v1/detect", content=b"not an image", headers={"Content-Type": "image/jpeg"})
    httpx.post(f"{server}/v1/detect", content=b"x", headers={"Content-Type": "text/plain"})
    after = _metrics(server)
    for kind in ("empty", "bad_image", "content_type"):
        key = ("resnet_det_errors_total", (("kind", kind),))
        assert after[key] == before.get(key, 0) + 1, kind
    assert not any(k[0] == "resnet_det_errors_total" and k[1] == (("kind", "internal"),) for k in after)


def test_cli_errors_are_one_line(tmp_path, model, capsys):
    assert serve_main(["--onnx", str(tmp_path / "nowhere" / "model.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'nowhere' / 'model.onnx'}: no such ONNX model file")
    assert "Traceback" not in err
    assert serve_main(["--onnx", str(model), "--runtime", "tensorrt"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown runtime 'tensorrt'; choose from onnxruntime, openvino")
    assert serve_main(["--onnx", str(model), "--precision", "int4"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown precision 'int4'; choose from fp32, bf16, int8")


def _start(model, tmp_path, *args):
    """tools/serve.py without torch on a free port; returns (process, url, its log lines)."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools/serve.py"), "--onnx", str(model), "--port", "0", *args],
                            stderr=subprocess.PIPE, text=True, env=without_torch(tmp_path / "no_torch"))
    log = []
    for line in proc.stderr:
        log.append(line)
        found = re.search(r"Uvicorn running on (http://\S+)", line)
        if found:
            threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
            return proc, found.group(1), log
    raise AssertionError("server did not start:\n" + "".join(log))


def test_sigterm_finishes_the_request_in_flight(model, photo, tmp_path):
    proc, url, log = _start(model, tmp_path)
    try:
        _healthy(url)
        data = jpeg(photo)
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                      + f"Content-Length: {len(data)}\r\n\r\n".encode() + data[:1000])
            proc.send_signal(signal.SIGTERM)
            for _ in range(600):  # the server stops accepting new connections ...
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=5).close()
                    time.sleep(0.05)
                except ConnectionRefusedError:
                    break
            s.sendall(data[1000:])  # ... and still answers the request it had begun
            response = _read_to_end(s)
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        assert len(json.loads(body)["boxes"]) > 0
        # uvicorn re-raises the signal once it has shut down: the exit status says "terminated".
        assert proc.wait(60) == -signal.SIGTERM
        assert any("Finished server process" in line for line in log)
    finally:
        proc.kill()
        proc.wait()


def test_workers_share_their_metrics(model, photo, tmp_path):
    proc, url, log = _start(model, tmp_path, "--workers", "2")
    try:
        for _ in range(1200):  # both workers have loaded the model
            if sum("Application startup complete" in line for line in log) == 2:
                break
            time.sleep(0.1)
        data = jpeg(photo)
        for _ in range(6):  # a new connection each, so both workers may answer
            assert httpx.post(f"{url}/v1/detect", content=data).status_code == 200
        key = ("resnet_det_requests_total", (("route", "/v1/detect"), ("status", "200")))
        assert _metrics(url)[key] == 6  # whichever worker answers the scrape, the sum of both
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            proc.kill()
