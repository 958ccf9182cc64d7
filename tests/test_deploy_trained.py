"""Exported toy-trained detectors (C4, FPN, VGG-16) against PyTorch: detections matched one to
one on the toy val images at two graph sizes, and COCO AP of the exported model through the
same evaluator (slow: three short trainings on a CPU)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from deploy_helpers import compare_with_pytorch
from detectron2.modeling import build_model
from PIL import Image

from projects.toy_data import dataset_opts, make_toy_data
from resnet_det.checkpoint.detection import ResNetDetCheckpointer
from resnet_det.config import load_config
from resnet_det.deploy import OnnxDetector, read_image
from resnet_det.export.onnx_evaluation import evaluate_onnx

ROOT = Path(__file__).resolve().parents[1]
# The toy configs at the small test data's size (96x128), short schedules. Score threshold
# 0.001, as for mAP evaluation, so that briefly trained detectors report detections.
SMALL = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
         "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2",
         "SOLVER.WARMUP_ITERS", "5", "SOLVER.STEPS", "()", "DATALOADER.NUM_WORKERS", "0",
         "SOLVER.CHECKPOINT_PERIOD", "1000", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.001"]
ITERS = {"r18_c4": 60, "r18_fpn": 40, "vgg16": 10}  # VGG-16: 5-20 s per iteration on 2 cores


@pytest.fixture(scope="module")
def toy_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_data(root, seed=0, kinds=["coco"], num_det_train=16, num_det_val=8, det_size=(96, 128))
    return dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT)), root


def _tool(env, name, *args):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / name), *map(str, args)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{name} {args} failed:\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ITERS))
def test_trained_detector_exports_with_the_same_detections_and_ap(arch, toy_env, tmp_path):
    env, root = toy_env
    config = ROOT / "configs" / "toy" / f"faster_rcnn_{arch}_coco.yaml"
    opts = SMALL + ["SOLVER.MAX_ITER", str(ITERS[arch]), *dataset_opts(root)]
    _tool(env, "train_det.py", "--config", config, *opts, "OUTPUT_DIR", tmp_path / "train")
    weights = tmp_path / "train" / "model_final.pth"
    _tool(env, "export_model.py", "--config", config, "--weights", weights, "--output", tmp_path / "onnx", *opts)

    cfg = load_config(str(config), opts)
    model = build_model(cfg).eval()
    ResNetDetCheckpointer(model).load(str(weights))
    detector = OnnxDetector(tmp_path / "onnx" / "model.onnx", threads=2)
    val = [read_image(p) for p in sorted((root / "coco" / "val2017").iterdir())]
    # Two graph sizes: the val images as they are (96x128) and cropped to 80x128 (FPN pads
    # that to 96x128); and upscaled 150x200, which both sides resize back to 96x128.
    images = val + [v[8:88] for v in val] + [np.asarray(Image.fromarray(v).resize((200, 150))) for v in val]
    got = compare_with_pytorch(model, cfg, detector, images)
    print(f"\n{arch}: {got}")
    assert got["sizes"] == [(80, 128), (96, 128)]
    assert got["pytorch"] > 0 and got["onnx"] == got["pytorch"]
    assert got["matched"] >= 0.99 * got["pytorch"]
    assert got["max_score_diff"] <= 1e-3

    ap_torch = json.loads((tmp_path / "train" / "eval_results.json").read_text())["toy_coco_val"]["bbox"]["AP"]
    ap_onnx = evaluate_onnx(cfg, tmp_path / "onnx" / "model.onnx", threads=2)["toy_coco_val"]["bbox"]["AP"]
    print(f"{arch}: COCO AP PyTorch {ap_torch:.3f}, ONNX Runtime {ap_onnx:.3f}")
    assert np.isfinite(ap_torch) and abs(ap_onnx - ap_torch) <= 0.1
