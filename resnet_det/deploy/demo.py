"""tools/demo.py --onnx: detections of an exported model drawn on images (numpy, Pillow,
onnxruntime only). Same outputs as the PyTorch demo (:func:`resnet_det.detection.demo.run_demo`):
one ``<name>.png`` per image with boxes, class names and scores, and ``detections.json``."""
from __future__ import annotations

import colorsys
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..common.image import list_images
from .runtime import OnnxDetector, read_image

__all__ = ["draw_detections", "run_onnx_demo"]

logger = logging.getLogger(__name__)


def _color(class_id: int) -> tuple:
    # Well-separated hues by class (golden-ratio steps), bright enough for white text.
    r, g, b = colorsys.hsv_to_rgb((class_id * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: np.ndarray, dets: dict) -> np.ndarray:
    """``image`` (HxWx3 uint8 RGB) with each detection's box outlined and labelled
    ``"<class> <score>%"``, as detectron2's ``Visualizer`` labels them."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(max(image.shape[:2]) / 400))
    names = dets["class_names"]
    for box, score, c in zip(dets["boxes"], dets["scores"], dets["classes"]):
        color = _color(int(c))
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=color, width=width)
        label = f"{names[int(c)] if names else int(c)} {score * 100:.0f}%"
        left, top, right, bottom = draw.textbbox((x0, y0), label)
        ty = y0 - (bottom - top) - 2 if y0 - (bottom - top) - 2 >= 0 else y1 + 1
        draw.rectangle((x0, ty, x0 + right - left + 2, ty + bottom - top + 2), fill=color)
        draw.text((x0 + 1, ty), label, fill=(255, 255, 255))
    return np.asarray(canvas)


def run_onnx_demo(onnx_path, inputs, output_dir, confidence_threshold=0.5, threads=None) -> list[dict]:
    """Detect objects in ``inputs`` (file or directory) with the exported model, keep those
    scoring at least ``confidence_threshold``, write the drawings and ``detections.json``;
    returns the json records (the PyTorch demo's format)."""
    images = list_images(inputs)
    detector = OnnxDetector(onnx_path, threads=threads)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for path in images:
        image = read_image(path)
        dets = detector(image)
        keep = dets["scores"] >= confidence_threshold
        dets = {**{k: dets[k][keep] for k in ("boxes", "scores", "classes")}, "class_names": dets["class_names"]}
        target = out / f"{path.stem}.png"
        Image.fromarray(draw_detections(image, dets)).save(target)
        names = dets["class_names"]
        records.append({"file": str(path), "output": str(target), "detections": [
            {"bbox_xyxy": [round(float(v), 2) for v in box], "score": round(float(score), 4),
             "class_id": int(c), "class_name": names[int(c)] if names else str(int(c))}
            for box, score, c in zip(dets["boxes"], dets["scores"], dets["classes"])]})
        logger.info("%s: %d detections -> %s", path.name, len(records[-1]["detections"]), target)
    (out / "detections.json").write_text(json.dumps(records, indent=2))
    return records
