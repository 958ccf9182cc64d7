"""int8 post-training quantization of an exported detector with NNCF (``tools/export_model.py --int8``).

The result is a QDQ ONNX graph, ``model.int8.onnx`` beside ``model.onnx``, which ONNX Runtime and
OpenVINO both run. Only the network's own layers are quantized (backbone, RPN head, box head,
box predictor); the arithmetic the exporter writes around them (normalisation, anchors, box
decoding, top-k, RoIAlign, NMS) stays fp32. Calibration images go through the runner's own
preprocessing, so the statistics are those of the tensors the graph sees when it serves.
"""
from __future__ import annotations

import json
import logging
import random
import uuid
from pathlib import Path

from resnet_det.deploy.runtime import METADATA_KEY, DeployError, load_model_json, read_image, resize_shortest_edge
from resnet_det.utils.files import write_json
from resnet_det.utils.image import IMAGE_SUFFIXES, ImageError

__all__ = ["INT8_FILE", "calibration_files", "calibration_images", "quantize_export", "quantize_int8"]

logger = logging.getLogger(__name__)
INT8_FILE = "model.int8.onnx"
_NETWORK = ("backbone/", "rpn_head/", "res5/", "box_head/", "box_predictor/")  # the exporter's module names
IGNORED_SCOPE = [r"^/(?!" + "|".join(_NETWORK) + r").*"]  # every node outside them


def calibration_files(source, cfg=None) -> tuple[list, dict]:
    """The image files of ``source``: a folder of images, or a dataset the config registers
    (its files, as the training loader lists them); and a description for model.json."""
    folder = Path(source)
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DeployError(f"--calibration {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return files, {"kind": "folder", "source": str(folder.resolve())}
    from detectron2.data import DatasetCatalog

    from resnet_det.data.datasets import register_all_datasets

    register_all_datasets(cfg)
    if source not in DatasetCatalog.list():
        raise DeployError(f"--calibration {source}: neither a folder nor a dataset the config registers "
                          "(DATASETS.COCO_JSON_REGISTER / VOC_REGISTER, or a detectron2 builtin name)")
    return [d["file_name"] for d in DatasetCatalog.get(source)], {"kind": "dataset", "source": source}


def calibration_images(files, count, min_size, max_size, seed=0) -> tuple[list, int]:
    """Up to ``count`` of ``files`` drawn with ``seed``, read and resized as the runner does;
    unreadable ones are skipped (``(images, skipped)``); none readable is a DeployError."""
    order, images, errors = list(files), [], []
    random.Random(seed).shuffle(order)
    for path in order:
        if len(images) == count:
            break
        try:
            images.append(resize_shortest_edge(read_image(path), min_size, max_size))
        except ImageError as e:
            errors.append(str(e))
    if not images:
        raise DeployError(f"no readable calibration image among {len(files)} files"
                          + (f" (first: {errors[0]})" if errors else ""))
    return images, len(errors)


def quantize_int8(export_dir, images, calibration: dict) -> dict:
    """NNCF's post-training int8 quantization of ``export_dir/model.onnx`` calibrated on
    ``images`` (the graph's inputs); writes ``model.int8.onnx`` and records it, with
    ``calibration``, under ``int8`` in model.json (each written whole). Returns the record."""
    import nncf
    import onnx

    export_dir = Path(export_dir)
    meta = load_model_json(export_dir / "model.json")
    model = onnx.load(str(export_dir / "model.onnx"))
    del model.metadata_props[:]
    nncf.set_log_level(logging.WARNING)  # not a line per node left in fp32; the progress bars stay
    quantized = nncf.quantize(model, nncf.Dataset(images, lambda image: {"image": image}), subset_size=len(images),
                              target_device=nncf.TargetDevice.CPU,
                              ignored_scope=nncf.IgnoredScope(patterns=IGNORED_SCOPE, validate=False))
    graph = {**meta["graph"], "precision": "int8", "quantization_id": uuid.uuid4().hex}
    entry = quantized.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(graph, sort_keys=True)
    tmp = export_dir / (INT8_FILE + ".tmp")
    onnx.save(quantized, str(tmp))
    tmp.replace(export_dir / INT8_FILE)
    meta["int8"] = {"file": INT8_FILE, "graph": graph, "calibration": {**calibration, "images": len(images)},
                    "quantizer": {"tool": "nncf", "version": nncf.__version__, "ignored_scope": IGNORED_SCOPE}}
    write_json(export_dir / "model.json", meta)
    return meta["int8"]


def quantize_export(cfg, export_dir, source, count: int) -> dict:
    """Quantize the export in ``export_dir`` on ``count`` images of ``source`` (a folder or a
    dataset ``cfg`` registers), read at ``cfg``'s test size; returns the int8 record."""
    files, calibration = calibration_files(source, cfg)
    images, skipped = calibration_images(files, count, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST,
                                         seed=max(cfg.SEED, 0))
    logger.info("quantizing to int8 on %d calibration images of %s (%d unreadable skipped)", len(images),
                source, skipped)
    return quantize_int8(export_dir, images, dict(calibration, skipped=skipped))
