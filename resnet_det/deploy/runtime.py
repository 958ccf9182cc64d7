"""Run an exported detector without torch: numpy, Pillow, and ONNX Runtime or OpenVINO.

:class:`OnnxDetector` reproduces detectron2's test-time path around the graph written by
``resnet_det.export.exporter``: ``ResizeShortestEdge`` (Pillow bilinear on the uint8 image, as
detectron2's ``ResizeTransform``), the graph (normalisation, backbone, RPN, RoI heads, NMS), then
``detector_postprocess`` (boxes scaled back to the input image, clipped, empty ones dropped). The
graph runs on ONNX Runtime in fp32 or on OpenVINO in fp32 or bf16 (the same ``model.onnx``), or,
quantized to int8 by ``tools/export_model.py --int8`` (``model.int8.onnx``, a QDQ graph), on
either.
"""
from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from resnet_det.utils.image import MAX_PIXELS, read_image_checked

__all__ = ["DeployError", "OnnxDetector", "PRECISIONS", "RUNTIMES", "resize_shortest_edge", "read_image",
           "runtime_choices", "load_model_json", "FORMAT_VERSION"]

FORMAT_VERSION = 1  # of model.json
INPUT_NAME = "image"
OUTPUT_NAMES = ("boxes", "scores", "classes")
METADATA_KEY = "resnet_det"  # the graph's metadata_props entry that model.json must match


class DeployError(ValueError):
    """An exported model cannot be used (missing, truncated or foreign file, model.json that does
    not belong to the graph, unsupported input); the message names the file and the fix."""


def read_image(path, max_pixels=MAX_PIXELS) -> np.ndarray:
    """An image file as HxWx3 uint8 RGB, read as the PyTorch demo and evaluation read it
    (EXIF rotation applied, 16-bit scaled to 8 bits, grayscale/RGBA converted), refused above
    ``max_pixels``; raises :class:`~resnet_det.utils.image.ImageError` naming the file."""
    return read_image_checked(str(path), format="RGB", max_pixels=max_pixels, limit_key="max_pixels")


def resize_shortest_edge(image: np.ndarray, short_edge: int, max_size: int) -> np.ndarray:
    """detectron2's test-time ``ResizeShortestEdge(short_edge, max_size)`` on a uint8 HxWx3 image:
    the same output size (``get_output_shape``) and pixels (Pillow bilinear, as ``ResizeTransform``)."""
    h, w = image.shape[:2]
    if short_edge == 0:
        return image
    scale = short_edge * 1.0 / min(h, w)
    newh, neww = (short_edge * 1.0, scale * w) if h < w else (scale * h, short_edge * 1.0)
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh, neww = newh * scale, neww * scale
    newh, neww = int(newh + 0.5), int(neww + 0.5)
    if (newh, neww) == (h, w):
        return image
    return np.asarray(Image.fromarray(image).resize((neww, newh), Image.BILINEAR))


def _as_rgb_uint8(image, max_pixels=MAX_PIXELS) -> np.ndarray:
    """``image`` as a contiguous HxWx3 uint8 RGB array: HxWx3 as given; HxW, HxWx1 and HxWx4
    (RGBA) converted as Pillow converts them to RGB (the readers' policy); the readers' pixel
    limit applies to arrays too."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image, max_pixels)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise DeployError(f"image must be uint8 (0..255), got {array.dtype}; read files with "
                          "resnet_det.deploy.read_image, which scales 16-bit images")
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))):
        raise DeployError(f"image must be HxWx3 RGB (or HxW, HxWx1, HxWx4), got shape {array.shape}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise DeployError(f"image has no pixels (shape {array.shape})")
    if max_pixels and height * width > max_pixels:
        raise DeployError(f"image of {width}x{height} = {width * height} pixels is above max_pixels="
                          f"{max_pixels}; downscale it or raise max_pixels (--max-pixels) if it is trusted")
    if array.ndim == 3 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    return np.asarray(Image.fromarray(array).convert("RGB"))


def load_model_json(path: Path) -> dict:
    """The model.json at ``path``, checked: a DeployError names what is wrong with it."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise DeployError(f"{path}: not found; tools/export_model.py writes it next to model.onnx") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DeployError(f"{path}: not a readable model.json ({e}); export the model again") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise DeployError(f"{path}: format_version {meta.get('format_version') if isinstance(meta, dict) else None}"
                          f" is not {FORMAT_VERSION}; export the model again with this version")
    missing = [k for k in ("graph", "class_names", "min_size_test", "max_size_test") if k not in meta]
    if missing:
        raise DeployError(f"{path}: keys {missing} missing; export the model again")
    return meta


RUNTIMES = ("onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
_INSTALL = {"onnxruntime": "pip install onnxruntime", "openvino": "pip install 'resnet_det[openvino]'"}
_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def _import(runtime):
    try:
        return importlib.import_module(runtime)
    except ImportError:
        raise DeployError(f"runtime {runtime!r} is not installed: {_INSTALL[runtime]}") from None


def _cpu_has(precision) -> bool:
    """Whether this CPU runs ``precision`` natively, by OpenVINO's account of it."""
    caps = _import("openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return {"fp32": "FP32", "bf16": "BF16", "int8": "INT8"}[precision] in caps


def _check_choice(runtime, precision, int8, json_path) -> None:
    """A :class:`DeployError` saying what to do when ``runtime`` cannot run ``precision`` here."""
    for name, value, known in (("runtime", runtime, RUNTIMES), ("precision", precision, PRECISIONS)):
        if value not in known:
            raise DeployError(f"unknown {name} {value!r}; choose from {', '.join(known)}")
    _import(runtime)
    if precision == "bf16" and runtime != "openvino":
        raise DeployError("precision 'bf16' runs on OpenVINO: runtime='openvino' (--runtime openvino)")
    if precision == "int8" and not int8:
        raise DeployError(f"{json_path} records no int8 model: export with tools/export_model.py ... --int8 "
                          "--calibration DATA")
    if runtime == "openvino" and precision != "fp32" and not _cpu_has(precision):
        raise DeployError(f"this CPU has no native {precision} (OpenVINO's CPU capabilities); use precision 'fp32'")


def _model_paths(path) -> tuple[Path, Path]:
    path = Path(path)
    path = path / "model.onnx" if path.is_dir() else path
    return path, path.with_name("model.json")


def runtime_choices(path=None) -> list[tuple[str, str]]:
    """The ``(runtime, precision)`` pairs this machine runs; int8 only where the export at
    ``path`` (a folder or its model.onnx) has an int8 model."""
    json_path = _model_paths(path)[1] if path else None
    int8 = load_model_json(json_path).get("int8") if json_path else None
    choices = []
    for runtime in RUNTIMES:
        for precision in PRECISIONS:
            try:
                _check_choice(runtime, precision, int8, json_path)
                choices.append((runtime, precision))
            except DeployError:
                pass
    return choices


def _onnxruntime(path, precision, threads, providers):
    ort = _import("onnxruntime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    if providers is None:
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    session = ort.InferenceSession(str(path), options, providers=providers)
    stored = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    return (lambda image: session.run(list(OUTPUT_NAMES), {INPUT_NAME: image})), stored, names


def _openvino(path, precision, threads, providers):
    ov = _import("openvino")
    core = ov.Core()
    model = core.read_model(str(path))
    try:  # an ONNX file's metadata_props, as OpenVINO's ONNX frontend keeps them
        stored = model.get_rt_info(["framework", METADATA_KEY]).astype(str)
    except RuntimeError:
        stored = None
    names = [i.get_any_name() for i in model.inputs], [o.get_any_name() for o in model.outputs]
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    request = core.compile_model(model, "CPU", config).create_infer_request()

    def infer(image):
        outputs = request.infer({INPUT_NAME: image})
        return [outputs[name] for name in OUTPUT_NAMES]

    return infer, stored, names


class OnnxDetector:
    """An exported Faster R-CNN. ``det(image)``: ``image`` HxWx3 uint8 RGB (or a file path) ->
    ``{"boxes": (N, 4) float32 xyxy in the image's pixels, "scores": (N,) float32, "classes":
    (N,) int64, "class_names": [...]}``, by decreasing score.

    ``path`` is ``model.onnx`` (``model.json`` beside it) or the folder holding both; ``runtime``
    "onnxruntime" (default) or "openvino", ``precision`` "fp32", "bf16" (OpenVINO) or "int8" (the
    export's int8 model); ``threads``: the runtime's threads; ``providers``: ONNX Runtime's
    (default: CUDA when it has it, else CPU); images above ``max_pixels`` pixels are refused.
    """

    def __init__(self, path, *, runtime: str = "onnxruntime", precision: str = "fp32", threads: int | None = None,
                 providers=None, max_pixels: int = MAX_PIXELS):
        self.path, self.json_path = _model_paths(path)
        if not self.path.is_file():
            raise DeployError(f"{self.path}: no such ONNX model file; write one with tools/export_model.py")
        self.meta = load_model_json(self.json_path)
        _check_choice(runtime, precision, self.meta.get("int8"), self.json_path)
        graph = self.meta["graph"]
        if precision == "int8":
            self.path, graph = self.json_path.parent / self.meta["int8"]["file"], self.meta["int8"]["graph"]
            if not self.path.is_file():
                raise DeployError(f"{self.path}: no such file, which {self.json_path} records as the int8 model; "
                                  "export again with --int8")
        self.runtime, self.precision, self.max_pixels = runtime, precision, max_pixels
        try:
            self._infer, stored, names = (_onnxruntime if runtime == "onnxruntime" else _openvino)(
                self.path, precision, threads, providers)
        except Exception as e:  # each runtime's own exception types (InvalidProtobuf, Fail, RuntimeError...)
            raise DeployError(f"{self.path}: {_NAMES[runtime]} cannot load it ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]}); the file is truncated or not an exported "
                              "detector: export it again") from None
        self._check_graph(stored, names, graph)
        self.class_names = list(self.meta["class_names"])
        self.min_size, self.max_size = int(self.meta["min_size_test"]), int(self.meta["max_size_test"])

    def read(self, path) -> np.ndarray:
        """An image file read under this detector's pixel limit (:func:`read_image`)."""
        return read_image(path, self.max_pixels)

    def _check_graph(self, stored, names, expected):
        try:
            graph = json.loads(stored) if stored else None
        except json.JSONDecodeError:
            graph = None
        if names != ([INPUT_NAME], list(OUTPUT_NAMES)) or graph is None:
            raise DeployError(f"{self.path}: inputs {names[0]}, outputs {names[1]} and metadata are not "
                              "those of a detector exported by tools/export_model.py")
        if graph != expected:
            raise DeployError(f"{self.json_path} does not belong to {self.path}: the graph was exported "
                              f"as {graph}, model.json describes {expected}; keep the files of one export together")
        if len(self.meta["class_names"]) != graph["num_classes"]:
            raise DeployError(f"{self.json_path}: {len(self.meta['class_names'])} class_names for a "
                              f"graph with {graph['num_classes']} classes")

    def resize(self, image: np.ndarray) -> np.ndarray:
        """The image as the graph takes it (detectron2's test-time resize)."""
        return resize_shortest_edge(image, self.min_size, self.max_size)

    def __call__(self, image) -> dict:
        """Detections on one image; see the class docstring."""
        image = _as_rgb_uint8(image, self.max_pixels)
        height, width = image.shape[:2]
        resized = self.resize(image)
        boxes, scores, classes = self._infer(resized)
        # detector_postprocess: scale to the input size (float32, as torch multiplies), clip,
        # drop empty boxes.
        rh, rw = resized.shape[:2]
        boxes = boxes.astype(np.float32, copy=True)
        boxes[:, 0::2] *= np.float32(width / rw)
        boxes[:, 1::2] *= np.float32(height / rh)
        np.clip(boxes[:, 0::2], 0, np.float32(width), out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, np.float32(height), out=boxes[:, 1::2])
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return {"boxes": boxes[keep], "scores": scores[keep].astype(np.float32),
                "classes": classes[keep].astype(np.int64), "class_names": self.class_names}
