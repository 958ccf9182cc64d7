"""What the comparison measures on a trained run: size, cost, accuracy and speed.

- parameters of the whole detector; GFLOPs (fvcore multiply-adds, as the paper's Table 1, through
  detectron2's ``FlopCountAnalysis``) on the first test image at the test size;
- AP / AP50 / AP75 and the per-class figures from the run's own ``eval_results.json``;
- latency per image on this machine: the median over N test images (already decoded, after a
  warm-up) of the PyTorch ``Predictor`` and of ``OnnxDetector`` for every runtime and
  precision that :func:`resnet_det.deploy.runtime_choices` offers for the run's export.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from detectron2.data import DatasetCatalog
from detectron2.utils.analysis import FlopCountAnalysis

from resnet_det.config import ConfigError
from resnet_det.data.datasets import register_all_datasets
from resnet_det.deploy import DeployError, OnnxDetector, runtime_choices
from resnet_det.engine.detection import RESULTS_FILE
from resnet_det.engine.launch import cpu_model
from resnet_det.engine.predictor import Predictor
from resnet_det.export.exporter import export_from_config
from resnet_det.export.quantize import INT8_FILE, quantize_export

__all__ = ["PYTORCH", "accuracy", "export", "machine", "size_and_cost", "test_images", "time_latency"]

logger = logging.getLogger(__name__)
PYTORCH = "pytorch"  # the latency key of the PyTorch predictor; runtimes are "<runtime>-<precision>"
EXPORT_DIR = "export"


def machine(threads: int) -> dict:
    """The CPU model, core count, threads used and load average: what the timings depend on."""
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M")}


def accuracy(cfg, folder) -> dict:
    """``{"dataset", "AP", "AP50", "AP75", "per_class": {"AP50-<class>": ...}}`` of the first
    DATASETS.TEST in the run's eval_results.json."""
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: not found; the run did not finish (train it on with train_det --resume)")
    results = json.loads(path.read_text())
    dataset = cfg.DATASETS.TEST[0]
    bbox = results.get(dataset, {}).get("bbox")
    if bbox is None:
        raise ConfigError(f"{path} holds no bbox results for {dataset} (it has {sorted(results)})")
    per_class = {k: v for k, v in bbox.items() if k.startswith(("AP-", "AP50-"))}
    return {"dataset": dataset, **{k: bbox.get(k) for k in ("AP", "AP50", "AP75")}, "per_class": per_class}


def test_images(cfg, count: int) -> list[str]:
    """The files of the first ``count`` images of the first DATASETS.TEST."""
    register_all_datasets(cfg)
    return [r["file_name"] for r in DatasetCatalog.get(cfg.DATASETS.TEST[0])[:count]]


def _model_inputs(predictor, image):
    """What ``DefaultPredictor`` feeds the model for an RGB image (test-time resize, CHW float)."""
    cfg = predictor.cfg
    original = image if cfg.INPUT.FORMAT == "RGB" else image[:, :, ::-1]
    resized = predictor.predictor.aug.get_transform(original).apply_image(original)
    tensor = torch.as_tensor(resized.astype("float32").transpose(2, 0, 1))
    return [{"image": tensor, "height": image.shape[0], "width": image.shape[1]}]


def size_and_cost(predictor, image) -> dict:
    """Parameters of the detector and its GFLOPs (multiply-adds) on ``image`` at the test size."""
    params = sum(p.numel() for p in predictor.model.parameters())
    inputs = _model_inputs(predictor, image)
    with torch.no_grad():
        flops = FlopCountAnalysis(predictor.model, inputs)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = flops.total()
    return {"params": params, "gflops": total / 1e9, "test_size": list(inputs[0]["image"].shape[1:])}


def export(cfg, weights, folder, calibration_images: int = 0) -> Path:
    """``folder/export/model.onnx`` of the run, exported again only when older than ``weights``;
    with ``calibration_images`` > 0 and NNCF installed, also its int8 model (calibrated on that
    many images of the first DATASETS.TRAIN), quantized again only when older than the export."""
    onnx = Path(folder) / EXPORT_DIR / "model.onnx"
    if not onnx.is_file() or onnx.stat().st_mtime < Path(weights).stat().st_mtime:
        export_from_config(cfg, str(weights), onnx.parent)
    int8 = onnx.parent / INT8_FILE
    if calibration_images > 0 and (not int8.is_file() or int8.stat().st_mtime < onnx.stat().st_mtime):
        if importlib.util.find_spec("nncf") is None:
            logger.warning("no int8 rows: NNCF is not installed (pip install -e '.[train]')")
        else:
            quantize_export(cfg, onnx.parent, cfg.DATASETS.TRAIN[0], calibration_images)
    return onnx


def _median_ms(fn, images, warmup: int) -> float:
    for _ in range(warmup):
        fn(images[0])
    times = []
    for image in images:
        start = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def time_latency(predictor, onnx, images, threads: int, warmup: int = 2) -> dict:
    """Median milliseconds per image: ``{"pytorch": ms, "<runtime>-<precision>": ms or None}``
    (None with a note in ``"errors"`` where a runtime could not load the export), and the load
    average before and after (other work on the machine slows every figure)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    load_before = os.getloadavg()[0]
    try:
        with torch.no_grad():
            latency = {PYTORCH: _median_ms(predictor, images, warmup)}
    finally:
        torch.set_num_threads(previous)
    errors = {}
    for runtime, precision in runtime_choices(onnx):
        key = f"{runtime}-{precision}"
        try:
            detector = OnnxDetector(onnx, runtime=runtime, precision=precision, threads=threads)
        except DeployError as e:  # e.g. a precision this export cannot run in: a gap, not a stop
            latency[key], errors[key] = None, str(e)
            continue
        try:
            latency[key] = _median_ms(detector, images, warmup)
        except Exception as e:  # a runtime failing on an image is a gap in the table, not a stop
            latency[key], errors[key] = None, f"{type(e).__name__}: {str(e).strip()[:300]}"
    return {"latency_ms": latency, "latency_errors": errors, "images": len(images), "warmup": warmup,
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def load_predictor(cfg, weights) -> Predictor:
    """The run's PyTorch detector (its trained weights) on the CPU."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    return Predictor(cfg, str(weights))
