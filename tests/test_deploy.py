"""resnet_det.deploy: ONNX export of the whole detector, the ONNX Runtime detector (numpy,
Pillow and onnxruntime only), tools/demo.py --onnx, and bad model files and images."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from deploy_helpers import compare_with_pytorch, pytorch_detections
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from PIL import Image

from resnet_det.config import load_config
from resnet_det.deploy import DeployError, OnnxDetector, read_image, resize_shortest_edge
from resnet_det.deploy.compare import match_detections
from resnet_det.export.exporter import export_model
from resnet_det.utils.image import ImageError, read_image_checked

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "configs" / "toy"
# Small test images; threshold 0 keeps an untrained detector's 100 detections per image.
SMALL = ["MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128",
         "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]


def _images(seed, sizes):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for hw in sizes]


def _export(tmp, config, opts=()):
    cfg = load_config(str(config), SMALL + list(opts))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    info = export_model(model, cfg, tmp, class_names=[f"c{i}" for i in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES)])
    return cfg, model, info


@pytest.fixture(scope="module")
def c4(tmp_path_factory):
    return _export(tmp_path_factory.mktemp("c4"), TOY / "faster_rcnn_r18_c4_coco.yaml")


# A bottleneck res5 (stride-2 1x1 conv1 and shortcut) reads only the even RoIAlign bins: the
# export pools just those (one 1x1 RoI per bin).
R50_C4 = ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES2_OUT_CHANNELS", "256"]


@pytest.mark.parametrize("name", ["r18_c4", "r18_fpn", "r50_c4"])
def test_exported_detector_equals_pytorch_at_two_sizes(name, c4, tmp_path):
    # An untrained detector, every detection kept: the stricter case (near-tied low scores).
    if name == "r18_c4":
        cfg, model, info = c4
    elif name == "r50_c4":
        cfg, model, info = _export(tmp_path, TOY / "faster_rcnn_r18_c4_coco.yaml", R50_C4)
        import onnx

        aligns = [n for n in onnx.load(info["onnx"], load_external_data=False).graph.node if n.op_type == "RoiAlign"]
        sizes = [[a.i for a in n.attribute if a.name in ("output_height", "output_width")] for n in aligns]
        assert sizes == [[1, 1]]  # the even-bin pooling, not 6x6
    else:
        cfg, model, info = _export(tmp_path, TOY / f"faster_rcnn_{name}_coco.yaml")
    det = OnnxDetector(info["onnx"], threads=2)
    # 96x128 as is; 80x128 (FPN pads it to 96x128); 150x200 resized down to 96x128 by both.
    got = compare_with_pytorch(model, cfg, det, _images(1, [(96, 128), (80, 128), (150, 200)]))
    assert got["sizes"] == [(80, 128), (96, 128)]
    assert got["pytorch"] == got["onnx"] == 300
    assert got["matched"] >= 0.99 * 300
    assert got["max_score_diff"] <= 1e-4 and got["max_box_diff_px"] <= 1e-2


def test_graph_holds_the_whole_detector(c4):
    import onnx

    graph = onnx.load(c4[2]["onnx"], load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert {"Conv", "TopK", "NonMaxSuppression", "RoiAlign", "Softmax", "Gemm"} <= ops
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["height", "width", 3]
    meta = json.loads(Path(c4[2]["json"]).read_text())
    assert meta["min_size_test"] == 96 and meta["class_names"] == ["c0", "c1", "c2", "c3", "c4"]
    assert meta["pixel_mean"] == [123.675, 116.28, 103.53] and meta["model_input_format"] == "RGB"


@pytest.mark.parametrize("hw", [(96, 128), (128, 96), (40, 300), (300, 40), (500, 700), (96, 97)])
def test_resize_is_detectron2s(hw):
    image = _images(2, [hw])[0]
    ours = resize_shortest_edge(image, 96, 128)
    theirs = T.ResizeShortestEdge([96, 96], 128).get_transform(image).apply_image(image)
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)


def test_runner_runs_without_torch_and_detectron2(c4):
    # A serving machine: importing torch, torchvision or detectron2 fails there.
    code = (
        "import sys, json, numpy as np\n"
        "for m in ('torch', 'torchvision', 'detectron2', 'fvcore'): sys.modules[m] = None\n"
        "import resnet_det\n"
        "from resnet_det.deploy import OnnxDetector\n"
        "assert not resnet_det.HAS_DETECTRON2\n"
        "det = OnnxDetector(sys.argv[1], threads=1)\n"
        "out = det(np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8))\n"
        "print(json.dumps({k: np.asarray(v).tolist() for k, v in out.items()}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, c4[2]["onnx"]], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    here = OnnxDetector(c4[2]["onnx"], threads=1)(_images(3, [(96, 128)])[0])
    assert served["class_names"] == here["class_names"]
    assert len(served["boxes"]) == 100 and np.allclose(served["boxes"], here["boxes"], atol=1e-4)


def _copy_export(c4, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    for f in ("onnx", "json"):
        shutil.copy(c4[2][f], out / Path(c4[2][f]).name)
    return out / "model.onnx", out / "model.json"


def test_bad_model_files_are_refused_naming_the_file(c4, tmp_path):
    onnx_path, json_path = _copy_export(c4, tmp_path)
    with pytest.raises(DeployError, match="no such ONNX model file"):
        OnnxDetector(tmp_path / "nowhere.onnx")
    data = onnx_path.read_bytes()
    onnx_path.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(DeployError, match=f"{onnx_path}: ONNX Runtime cannot load it"):
        OnnxDetector(onnx_path)
    with pytest.raises(DeployError, match=f"{onnx_path}: OpenVINO cannot load it"):
        OnnxDetector(onnx_path, runtime="openvino")
    onnx_path.write_text("not a model\n")
    for runtime in ("onnxruntime", "openvino"):
        with pytest.raises(DeployError, match="cannot load it"):
            OnnxDetector(onnx_path, runtime=runtime)
    onnx_path.write_bytes(data)
    meta = json.loads(json_path.read_text())
    json_path.write_text(json.dumps({**meta, "graph": {**meta["graph"], "export_id": "another"}}))
    for runtime in ("onnxruntime", "openvino"):
        with pytest.raises(DeployError, match=f"{json_path} does not belong to {onnx_path}"):
            OnnxDetector(onnx_path, runtime=runtime)
    json_path.write_text(json.dumps({**meta, "class_names": ["a", "b"]}))
    with pytest.raises(DeployError, match="2 class_names for a graph with 5 classes"):
        OnnxDetector(onnx_path)
    json_path.write_text("{")
    with pytest.raises(DeployError, match=f"{json_path}: not a readable model.json"):
        OnnxDetector(onnx_path)
    json_path.unlink()
    with pytest.raises(DeployError, match=f"{json_path}: not found"):
        OnnxDetector(onnx_path)
    # An ONNX file that is not an exported detector (a model with other inputs/outputs).
    import onnx
    from onnx import TensorProto, helper

    other = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])]))
    onnx.save(other, str(onnx_path))
    json_path.write_text(json.dumps(meta))
    with pytest.raises(DeployError, match="are not those of a detector exported"):
        OnnxDetector(onnx_path)


def test_images_are_read_like_the_pytorch_demo(c4, tmp_path):
    det = OnnxDetector(c4[2]["onnx"], threads=2)
    rgb = _images(4, [(90, 120)])[0]
    files = {}
    Image.fromarray(rgb).convert("L").save(files.setdefault("gray", tmp_path / "gray.png"))
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(
        files.setdefault("rgba", tmp_path / "rgba.png"))
    wide = (rgb[:, :, 0].astype(np.uint16) * 257)  # 16-bit: 255 -> 65535
    Image.fromarray(wide).save(files.setdefault("16bit", tmp_path / "16bit.png"))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated by 90 degrees
    Image.fromarray(rgb).save(files.setdefault("exif", tmp_path / "exif.jpg"), exif=exif, quality=95)
    for kind, path in files.items():
        image = read_image(path)
        # The PyTorch demo reads BGR with the same reader; the runner gets the same pixels.
        assert np.array_equal(image, read_image_checked(str(path), "BGR")[:, :, ::-1]), kind
        assert image.dtype == np.uint8 and image.shape[2] == 3, kind
        out = det(path)  # a path is read with read_image
        assert np.array_equal(out["boxes"], det(image)["boxes"]), kind
        assert (out["boxes"][:, 2] <= image.shape[1]).all() and (out["boxes"][:, 3] <= image.shape[0]).all()
    assert read_image(files["exif"]).shape[:2] == (120, 90)  # rotated as displayed
    assert read_image(files["16bit"]).max() == rgb[:, :, 0].max()  # scaled, not clipped at 255
    assert np.array_equal(read_image(files["gray"])[:, :, 0], read_image(files["gray"])[:, :, 2])
    # Arrays: grayscale and RGBA converted like the files; other dtypes refused.
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.array_equal(det(gray)["boxes"], det(np.dstack([gray] * 3))["boxes"])
    assert np.array_equal(det(np.dstack([rgb, rgb[:, :, :1]]))["boxes"], det(rgb)["boxes"])
    with pytest.raises(DeployError, match="must be uint8"):
        det(wide)
    with pytest.raises(DeployError, match="must be HxWx3"):
        det(np.zeros((4, 5, 2), np.uint8))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes((tmp_path / "exif.jpg").read_bytes()[:200])
    with pytest.raises(ImageError, match=f"{bad}: cannot decode image"):
        det(bad)


def test_match_detections_pairs_one_to_one():
    ref = {"boxes": np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
           "scores": np.array([0.9, 0.8], np.float32), "classes": np.array([1, 2])}
    other = {"boxes": ref["boxes"][::-1] + np.float32(0.01), "scores": ref["scores"][::-1] - 0.001,
             "classes": ref["classes"][::-1]}
    m = match_detections(ref, other)
    assert m["matched"] == 2 and m["max_box_diff_px"] == pytest.approx(0.01, abs=1e-5)
    assert m["max_score_diff"] == pytest.approx(0.001, abs=1e-6)
    assert match_detections(ref, {**other, "classes": other["classes"] + 1})["matched"] == 0
    assert match_detections(ref, {**other, "boxes": other["boxes"] + 1})["matched"] == 0  # IoU < 0.99


def test_demo_onnx_draws_and_reports_errors(c4, tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    for i, image in enumerate(_images(5, [(96, 128), (120, 90)])):
        Image.fromarray(image).save(images / f"{i}.png")
    out = tmp_path / "out"
    demo_tool = _tool_module("demo")  # tools/demo.py, in this process: no second torch import
    assert demo_tool.main(["--onnx", c4[2]["onnx"], "--input", str(images), "--output", str(out),
                           "--confidence-threshold", "0"]) == 0
    records = json.loads((out / "detections.json").read_text())
    det = OnnxDetector(c4[2]["onnx"])
    for rec in records:
        expected = det(rec["file"])
        assert len(rec["detections"]) == len(expected["boxes"]) == 100
        assert np.allclose([d["bbox_xyxy"] for d in rec["detections"]], expected["boxes"], atol=0.01)
        drawn = np.asarray(Image.open(rec["output"]))
        assert drawn.shape == read_image(rec["file"]).shape and (drawn != read_image(rec["file"])).any()
    assert demo_tool.main(["--onnx", str(tmp_path / "missing.onnx"), "--input", str(images),
                           "--output", str(out)]) == 2
    assert "missing.onnx: no such ONNX model file" in capsys.readouterr().err


def test_pytorch_reference_is_the_models_own_inference(c4):
    # The reference the equality tests use is GeneralizedRCNN's inference, not the export's code.
    cfg, model, _ = c4
    image = _images(6, [(96, 128)])[0]
    ref = pytorch_detections(model, cfg, image)
    with torch.no_grad():
        inst = model([{"image": torch.as_tensor(image.transpose(2, 0, 1).copy()), "height": 96,
                       "width": 128}])[0]["instances"]
    assert np.array_equal(ref["boxes"], inst.pred_boxes.tensor.numpy())


def _tool_module(name):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def test_export_tool_reports_bad_inputs_without_a_traceback(tmp_path, capsys):
    from resnet_det.export.exporter import command_line as export_tool

    config = str(TOY / "faster_rcnn_r18_c4_coco.yaml")
    missing = tmp_path / "missing.pth"
    assert export_tool(["--config", config, "--weights", str(missing), "--output", str(tmp_path)]) == 2
    assert f"{missing}: no such weights file" in capsys.readouterr().err
    assert export_tool(["--config", config, "--weights", str(missing), "--output", str(tmp_path),
                        "MODEL.RESNETS.DEPTH", "77"]) == 2
    assert "MODEL.RESNETS.DEPTH = 77" in capsys.readouterr().err
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize("name, config, opts", [
    ("r18_c4", "faster_rcnn_r18_c4_coco.yaml", []),
    ("r50_c4_shortcut_a", "faster_rcnn_r18_c4_coco.yaml", ["MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.SHORTCUT", "A"]),
    ("r18_fpn", "faster_rcnn_r18_fpn_coco.yaml", []),
    ("vgg16", "faster_rcnn_vgg16_coco.yaml", []),
])
def test_backbones_and_box_heads_compile_with_torchscript(name, config, opts):
    # detectron2's scripting export path: importing detectron2.export lets its ResNet and FPN
    # script (their stages become ModuleLists); our blocks, VGG-16 and the heads must too.
    import detectron2.export  # noqa: F401

    cfg = load_config(str(TOY / config), SMALL + opts)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        eager = model.backbone(x)
        scripted = torch.jit.script(model.backbone)(x)
        assert eager.keys() == scripted.keys()
        for key in eager:
            assert torch.allclose(eager[key], scripted[key], atol=1e-5), key
        heads, size = model.roi_heads, cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        if hasattr(heads, "res5"):  # C4: res5 on the RoIs pooled from res4
            head, channels = heads.res5, heads.res5[0].conv1.in_channels
        else:
            head, channels = heads.box_head, 512 if name == "vgg16" else cfg.MODEL.FPN.OUT_CHANNELS
        pooled = torch.randn(3, channels, size, size)
        assert torch.allclose(head(pooled), torch.jit.script(head)(pooled), atol=1e-5)


def _big_png(path, width, height):
    # A bilevel PNG: the size a header states, in a small file (the limit is checked first).
    Image.new("1", (width, height), 1).save(path)
    return path


def test_the_runner_applies_the_readers_pixel_limit_and_refuses_empty_arrays(c4, tmp_path):
    det = OnnxDetector(c4[2]["onnx"], threads=2)
    big = _big_png(tmp_path / "100mpx.png", 10000, 10000)
    for read in (det, read_image, det.read):
        with pytest.raises(ImageError, match=r"100mpx.png: 10000x10000 = 100000000 pixels is above "
                                             r"max_pixels=89478485; .* raise max_pixels"):
            read(big)
    strict = OnnxDetector(c4[2]["onnx"], threads=2, max_pixels=1000)
    with pytest.raises(DeployError, match=r"image of 40x30 = 1200 pixels is above max_pixels=1000"):
        strict(np.zeros((30, 40, 3), np.uint8))
    assert len(strict(np.zeros((25, 40, 3), np.uint8))["boxes"]) >= 0  # 1000 pixels: allowed
    for shape in [(0, 0, 3), (0, 10, 3), (10, 0), (0, 0)]:
        with pytest.raises(DeployError, match="has no pixels"):
            det(np.zeros(shape, np.uint8))


def test_demo_folder_run_skips_unreadable_files_and_writes_what_it_did(c4, tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    good = _images(7, [(96, 128), (1200, 1600)])
    for i, image in enumerate(good):
        Image.fromarray(image).save(images / f"good{i}.jpg", quality=95)
    (images / "broken.jpg").write_bytes((images / "good0.jpg").read_bytes()[:300])
    _big_png(images / "huge.png", 2000, 1500)
    out = tmp_path / "out"
    demo_tool = _tool_module("demo")
    # 3 000 000 pixels allowed: huge.png (3 Mpx) passes, the 1.9 Mpx photo too; broken.jpg fails.
    args = ["--onnx", c4[2]["onnx"], "--input", str(images), "--output", str(out), "--confidence-threshold", "0"]
    assert demo_tool.main(args + ["--max-pixels", "3000000"]) == 1
    records = json.loads((out / "detections.json").read_text())
    failed = {Path(r["file"]).name: r["error"] for r in records if "error" in r}
    assert list(failed) == ["broken.jpg"] and "cannot decode image" in failed["broken.jpg"]
    assert sorted(Path(r["file"]).name for r in records if "error" not in r) == ["good0.jpg", "good1.jpg", "huge.png"]
    assert "1 image(s) could not be read" in capsys.readouterr().err
    # The drawing at a viewable size: the 1600 px default, or the image's own with --max-size 0.
    assert Image.open(out / "good1.png").size == (1600, 1200) and Image.open(out / "huge.png").size == (1600, 1200)
    # The reader's limit (default: Pillow's 89.5 Mpx) names the flag that raises it.
    assert demo_tool.main(args + ["--max-pixels", "1000000", "--max-size", "0"]) == 1
    records = json.loads((out / "detections.json").read_text())
    assert "huge.png: 2000x1500 = 3000000 pixels is above max_pixels=1000000" in {
        Path(r["file"]).name: r.get("error", "") for r in records}["huge.png"]
    assert Image.open(out / "good0.png").size == (128, 96)


@pytest.mark.slow
def test_console_command_of_a_serving_install_runs_without_torch(c4, tmp_path):
    """`pip install .` in a clean virtual environment: numpy, Pillow, onnxruntime and the
    resnet-det-detect command, no torch; its detections are the runner's in this environment."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(ROOT)],
                         capture_output=True, text=True, timeout=1200)
    assert pip.returncode == 0, pip.stderr[-3000:]
    no_torch = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(_images(9, [(96, 128)])[0]).save(images / "a.png")
    (images / "b.jpg").write_text("not an image")
    run = subprocess.run([str(venv / "bin" / "resnet-det-detect"), "--onnx", c4[2]["onnx"], "--input", str(images),
                          "--output", str(tmp_path / "out"), "--confidence-threshold", "0"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]  # 1: one of the images could not be read
    assert "b.jpg" in run.stderr and "Traceback" not in run.stderr
    good, bad = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert Path(bad["file"]).name == "b.jpg" and "cannot decode image" in bad["error"]
    expected = OnnxDetector(c4[2]["onnx"])(images / "a.png")
    assert np.allclose([d["bbox_xyxy"] for d in good["detections"]], expected["boxes"], atol=0.01)


def test_openvino_runs_the_exported_graph_as_onnx_runtime_does(c4, tmp_path, monkeypatch):
    from resnet_det.deploy import runtime_choices

    onnx_path = c4[2]["onnx"]
    ort, ov = OnnxDetector(onnx_path, threads=2), OnnxDetector(onnx_path, runtime="openvino", threads=2)
    for image in _images(11, [(96, 128), (80, 128), (150, 200)]):
        ref, got = ort(image), ov(image)
        m = match_detections(ref, got)
        assert m["count"] == [100, 100] and m["matched"] >= 98, m  # every detection kept: near-tied scores
        assert m["max_score_diff"] <= 1e-4 and m["max_box_diff_px"] <= 1e-2
    assert ("onnxruntime", "fp32") in runtime_choices() and ("openvino", "fp32") in runtime_choices(onnx_path)
    assert ("onnxruntime", "int8") not in runtime_choices(onnx_path)  # this export has no int8 model
    with pytest.raises(DeployError, match="precision 'bf16' runs on OpenVINO: runtime='openvino'"):
        OnnxDetector(onnx_path, precision="bf16")
    with pytest.raises(DeployError, match="records no int8 model: export with tools/export_model.py .* --int8"):
        OnnxDetector(onnx_path, runtime="openvino", precision="int8")
    from resnet_det.deploy import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "_cpu_has", lambda precision: False)  # a CPU without bf16 units
    with pytest.raises(DeployError, match="this CPU has no native bf16 .*; use precision 'fp32'"):
        OnnxDetector(onnx_path, runtime="openvino", precision="bf16")
    assert ("openvino", "bf16") not in runtime_choices(onnx_path)
    monkeypatch.setitem(sys.modules, "openvino", None)  # not installed: import fails
    with pytest.raises(DeployError, match=r"runtime 'openvino' is not installed: pip install 'resnet_det\[openvino\]'"):
        OnnxDetector(onnx_path, runtime="openvino")
    assert runtime_choices(onnx_path) == [("onnxruntime", "fp32")]


def test_int8_export_runs_on_both_runtimes_and_bad_inputs_are_named(c4, tmp_path):
    from resnet_det.export.quantize import INT8_FILE, calibration_files, calibration_images, quantize_int8

    onnx_path, json_path = _copy_export(c4, tmp_path)
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for i, image in enumerate(_images(12, [(96, 128), (120, 90), (150, 200)])):
        Image.fromarray(image).save(photos / "sub" / f"{i}.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    files, source = calibration_files(photos)
    assert len(files) == 4 and source["kind"] == "folder"
    images, skipped = calibration_images(files, 10, 96, 128)
    assert len(images) == 3 and skipped == 1 and max(max(im.shape[:2]) for im in images) <= 128
    record = quantize_int8(tmp_path / "m", images, dict(source, skipped=skipped))
    meta = json.loads(json_path.read_text())
    assert meta["int8"] == record and record["calibration"]["images"] == 3 and record["file"] == INT8_FILE
    image = _images(13, [(96, 128)])[0]
    fp32 = OnnxDetector(onnx_path)(image)
    for runtime in ("onnxruntime", "openvino"):
        int8 = OnnxDetector(onnx_path, runtime=runtime, precision="int8", threads=2)
        assert int8.path.name == INT8_FILE and len(int8(image)["boxes"]) == len(fp32["boxes"])
    # Bad inputs: a folder with no readable image, a model.json of another quantization, a truncated file.
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photos")
    with pytest.raises(DeployError, match=f"--calibration {empty}: no image files"):
        calibration_files(empty)
    (empty / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DeployError, match=r"no readable calibration image among 1 files \(first: .*a.jpg"):
        calibration_images(*calibration_files(empty)[:1], 5, 96, 128)
    json_path.write_text(json.dumps({**meta, "int8": {**record, "graph": {**record["graph"], "quantization_id": "x"}}}))
    with pytest.raises(DeployError, match=f"{json_path} does not belong to .*{INT8_FILE}"):
        OnnxDetector(onnx_path, precision="int8")
    json_path.write_text(json.dumps(meta))
    quantized = tmp_path / "m" / INT8_FILE
    quantized.write_bytes(quantized.read_bytes()[:1000])
    for runtime in ("onnxruntime", "openvino"):
        with pytest.raises(DeployError, match=f"{quantized}: .* cannot load it"):
            OnnxDetector(onnx_path, runtime=runtime, precision="int8")
    quantized.unlink()
    with pytest.raises(DeployError, match=f"{quantized}: no such file, which .* records as the int8 model"):
        OnnxDetector(onnx_path, precision="int8")
