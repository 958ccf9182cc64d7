"""Run a detector over an image or a folder: one drawing and one ``detections.json`` record per
image (numpy and Pillow only). Both demos use it: ``tools/demo.py --onnx`` (and the console
command ``resnet-det-detect``) with :class:`~resnet_det.deploy.OnnxDetector`, ``tools/demo.py
--config --weights`` with the PyTorch predictor of :mod:`resnet_det.engine.predictor`.

A file that cannot be read is skipped with a warning naming it; the others go on, and
``detections.json`` is written (atomically) with what was done, also when the run is
interrupted. Exit status of the command: 0, 1 when some images failed, 2 for a bad model or input
path (an expected error)."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from PIL import Image

from resnet_det.deploy.runtime import PRECISIONS, RUNTIMES, OnnxDetector
from resnet_det.utils.cli import add_debug_argument, run_cli
from resnet_det.utils.draw import MAX_SIDE, class_color, class_name, draw_boxes
from resnet_det.utils.files import write_json
from resnet_det.utils.image import MAX_PIXELS, ImageError, list_images

__all__ = ["EXIT_SOME_FAILED", "add_detect_arguments", "add_runtime_arguments", "detect_folder", "detection_records",
           "main", "report"]

logger = logging.getLogger(__name__)
EXIT_SOME_FAILED = 1


def detection_records(dets: dict, score_threshold: float = 0.0) -> list[dict]:
    """The json records of a detector's output (``boxes``, ``scores``, ``classes``,
    ``class_names``) scoring at least ``score_threshold``."""
    return [{"bbox_xyxy": [round(float(v), 2) for v in box], "score": round(float(score), 4),
             "class_id": int(c), "class_name": class_name(dets.get("class_names"), c)}
            for box, score, c in zip(dets["boxes"], dets["scores"], dets["classes"]) if score >= score_threshold]


def detect_folder(detector, inputs, output_dir, *, score_threshold=0.5, max_side=MAX_SIDE, read=None,
                  progress=True) -> tuple[list[dict], list[dict]]:
    """Detect with ``detector`` (image HxWx3 uint8 RGB -> detections dict) on ``inputs`` (a file
    or a folder), keep detections scoring at least ``score_threshold``, write ``<stem>.png``
    (at most ``max_side`` pixels long; 0: full size) and ``detections.json`` to ``output_dir``.
    ``read(path)`` reads an image (default: ``detector.read``). Returns ``(records, failures)``."""
    images = list_images(inputs)
    read = read or detector.read
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    records, failures = [], []
    try:
        for n, path in enumerate(images, 1):
            try:
                image = read(path)
            except ImageError as e:
                failures.append({"file": str(path), "error": str(e)})
                logger.warning("skipped (%d failed so far): %s", len(failures), e)
                continue
            dets = detection_records(detector(image), score_threshold)
            target = out / f"{path.stem}.png"
            drawn = draw_boxes(image, [d["bbox_xyxy"] for d in dets],
                               [f"{d['class_name']} {d['score'] * 100:.0f}%" for d in dets],
                               [class_color(d["class_id"]) for d in dets], max_side=max_side)
            Image.fromarray(drawn).save(target)
            records.append({"file": str(path), "output": str(target), "detections": dets})
            if progress:
                logger.info("[%d/%d] %s: %d detections -> %s", n, len(images), path.name, len(dets), target)
    finally:
        write_json(out / "detections.json", records + failures)
    return records, failures


def main(argv=None) -> int:
    """``resnet-det-detect``: an exported model's detections drawn on images (no torch)."""
    return run_cli(_detect, argv)


def add_detect_arguments(parser) -> None:
    """The flags both demos share: input, output, threshold, drawing size, pixel limit."""
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="folder for the drawings and detections.json")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="keep detections scoring at least this (default 0.5)")
    parser.add_argument("--max-size", type=int, default=MAX_SIDE,
                        help=f"long side of the drawings in pixels (default {MAX_SIDE}; 0: the image's size)")
    parser.add_argument("--max-pixels", type=int, default=MAX_PIXELS,
                        help=f"refuse images with more pixels (default {MAX_PIXELS}, Pillow's bomb limit)")


def add_runtime_arguments(parser) -> None:
    """``--runtime``, ``--precision`` and ``--threads`` of the exported model's runner."""
    parser.add_argument("--runtime", default="onnxruntime", choices=RUNTIMES, help="default: onnxruntime")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 (default), bf16 (OpenVINO, where the CPU has it), int8 (export --int8)")
    parser.add_argument("--threads", type=int, help="runtime threads (default: the runtime's choice)")


def report(records, failures, output) -> int:
    """Print the run's summary; the exit status (0, or :data:`EXIT_SOME_FAILED`)."""
    total = sum(len(r["detections"]) for r in records)
    print(f"{len(records)} image(s), {total} detection(s) -> {output}")
    if failures:
        print(f"{len(failures)} image(s) could not be read: "
              + ", ".join(f["file"] for f in failures[:5]) + (" ..." if len(failures) > 5 else ""), file=sys.stderr)
        return EXIT_SOME_FAILED
    return 0


def _detect(argv=None) -> int:
    p = argparse.ArgumentParser(prog="resnet-det-detect", description=main.__doc__)
    p.add_argument("--onnx", required=True, help="model.onnx written by tools/export_model.py")
    add_detect_arguments(p)
    add_runtime_arguments(p)
    add_debug_argument(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    detector = OnnxDetector(args.onnx, runtime=args.runtime, precision=args.precision, threads=args.threads,
                            max_pixels=args.max_pixels)
    return report(*detect_folder(detector, args.input, args.output, score_threshold=args.confidence_threshold,
                                 max_side=args.max_size), args.output)


if __name__ == "__main__":
    sys.exit(main())
