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


@pytest.mark.slow
def test_int8_detector_keeps_the_fp32_ap_on_both_runtimes(tmp_path):
    """NNCF int8 of a toy-trained R18-FPN, calibrated on its training images: COCO AP and AP50
    within 1.0 point of the fp32 export's on 100 toy val images, on ONNX Runtime and OpenVINO."""
    root = tmp_path / "data"  # 100 val images: on the 8 of the module's set AP moves by points
    make_toy_data(root, seed=1, kinds=["coco"], num_det_train=64, num_det_val=100, det_size=(96, 128))
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT))
    config = ROOT / "configs" / "toy" / "faster_rcnn_r18_fpn_coco.yaml"
    opts = SMALL + ["SOLVER.MAX_ITER", "300", *dataset_opts(root)]
    _tool(env, "train_det.py", "--config", config, *opts, "OUTPUT_DIR", tmp_path / "train")
    _tool(env, "export_model.py", "--config", config, "--weights", tmp_path / "train" / "model_final.pth",
          "--output", tmp_path / "onnx", "--int8", "--calibration", "toy_coco_train", *opts)
    meta = json.loads((tmp_path / "onnx" / "model.json").read_text())
    assert meta["int8"]["calibration"] == {"kind": "dataset", "source": "toy_coco_train", "images": 64, "skipped": 0}

    cfg = load_config(str(config), opts)
    fp32 = evaluate_onnx(cfg, tmp_path / "onnx", threads=2)["toy_coco_val"]["bbox"]
    # A quantization that broke the detector would score near 0: the bound must be able to see it.
    assert fp32["AP"] >= 2 and fp32["AP50"] >= 5, f"the fp32 detector is too weak for the bound: {fp32}"
    for runtime in ("onnxruntime", "openvino"):
        int8 = evaluate_onnx(cfg, tmp_path / "onnx", threads=2, runtime=runtime, precision="int8")
        int8 = int8["toy_coco_val"]["bbox"]
        print(f"\nfp32 AP {fp32['AP']:.2f} AP50 {fp32['AP50']:.2f}; int8 on {runtime}: "
              f"AP {int8['AP']:.2f} AP50 {int8['AP50']:.2f}")
        assert abs(int8["AP"] - fp32["AP"]) <= 1.0 and abs(int8["AP50"] - fp32["AP50"]) <= 1.0
