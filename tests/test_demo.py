"""The demos' drawing: a detector's boxes on a folder of images with their json
(resnet_det.deploy.detect with the PyTorch predictor)."""
import json

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from PIL import Image

from projects.toy_data import TOY_CLASSES, dataset_opts
from resnet_det.config import load_config
from resnet_det.deploy.detect import detect_folder
from resnet_det.engine.predictor import Predictor

CONFIG = "configs/toy/faster_rcnn_r18_c4_coco.yaml"


def test_demo_draws_boxes_where_detections_are(tmp_path, toy):
    cfg = load_config(CONFIG, ["MODEL.DEVICE", "cpu", *dataset_opts(toy)])
    torch.manual_seed(0)
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_final")
    out = tmp_path / "demo"
    # An untrained detector scores low: threshold 0 keeps its detections so they can be drawn.
    predictor = Predictor(cfg, str(tmp_path / "model_final.pth"), 0.0)
    records, failures = detect_folder(predictor, toy / "coco/val2017", out, score_threshold=0.0)
    assert failures == []
    assert len(records) == 2
    saved = json.loads((out / "detections.json").read_text())
    assert saved == records
    for rec in records:
        assert rec["detections"], "threshold 0 must keep the detector's boxes"
        drawn = np.asarray(Image.open(rec["output"]).convert("RGB")).astype(int)
        original = np.asarray(Image.open(rec["file"]).convert("RGB")).astype(int)
        assert drawn.shape == original.shape
        changed = np.abs(drawn - original).sum(-1) > 60
        edges = []
        for det in rec["detections"]:
            assert det["class_name"] in TOY_CLASSES
            x0, y0, x1, y1 = (int(round(v)) for v in det["bbox_xyxy"])
            x1, y1 = min(x1, drawn.shape[1] - 1), min(y1, drawn.shape[0] - 1)
            edge = np.concatenate([changed[y0, x0:x1], changed[y1, x0:x1],
                                   changed[y0:y1, x0], changed[y0:y1, x1]])
            if edge.size:  # the box outline is painted over the image (other boxes' labels on top)
                assert edge.any()
                edges.append(edge)
        assert np.concatenate(edges).mean() > 0.8
        # Far from all boxes the image is untouched (JPEG vs PNG: compare coarsely).
        mask = np.ones(changed.shape, bool)
        for det in rec["detections"]:
            x0, y0, x1, y1 = (int(v) for v in det["bbox_xyxy"])
            mask[max(y0 - 20, 0):y1 + 20, max(x0 - 5, 0):x1 + 60] = False
        assert not changed[mask].any()


def test_demo_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        detect_folder(None, tmp_path / "nowhere", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        detect_folder(None, tmp_path / "empty", tmp_path / "o")


