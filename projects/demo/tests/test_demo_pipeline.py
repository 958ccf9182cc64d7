"""tools/demo_pipeline.py: toy data -> pretraining -> detection from the exported backbone ->
COCO evaluation -> drawn detections, and the GN hand-off it relies on."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from detectron2.modeling import build_model
from PIL import Image

from projects.demo.grid import LEGEND_HEIGHT
from resnet_det.checkpoint import load_state_dict_file, read_safetensors_metadata
from resnet_det.checkpoint.backbone_file import save_backbone
from resnet_det.checkpoint.detection import ResNetDetCheckpointer, WeightsMismatchError
from resnet_det.config import load_config, load_pretrain_cfg
from resnet_det.models import build_resnet

REPO = Path(__file__).resolve().parents[3]
DETECT_CONFIG = str(REPO / "configs/toy/faster_rcnn_r18_fpn_coco.yaml")
COCO_KEYS = {"AP", "AP50", "AP75", "APs", "APm", "APl"}


def _load_tool():
    spec = importlib.util.spec_from_file_location("demo_pipeline", REPO / "tools/demo_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _detector(*opts):
    cfg = load_config(DETECT_CONFIG, ["MODEL.DEVICE", "cpu", *opts])
    return build_model(cfg)


def test_gn_backbone_file_fills_the_gn_detector_and_is_refused_by_a_bn_one(tmp_path):
    classifier = build_resnet(18, 5, norm="GN")
    with torch.no_grad():  # GN's affine parameters start at 1 and 0: make them tell apart
        for p in classifier.parameters():
            p.normal_()
    path = save_backbone(classifier, tmp_path / "backbone.safetensors")
    state, meta = load_state_dict_file(path), read_safetensors_metadata(path)
    assert meta["arch"]["norm"] == "GN" and not any(k.startswith("linear") for k in state)

    detector = _detector()  # the toy FPN config: ResNet-18 with GN
    ResNetDetCheckpointer(detector).load(str(path))
    loaded = detector.backbone.bottom_up.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    x = torch.randn(1, 3, 64, 64)
    detector.eval()
    with torch.no_grad():
        assert torch.allclose(
            detector.backbone.bottom_up(x)["res5"], classifier.forward_features(x)["res5"], atol=1e-5
        )

    with pytest.raises(WeightsMismatchError, match="MODEL.RESNETS.NORM is 'FrozenBN'") as info:
        ResNetDetCheckpointer(_detector("MODEL.RESNETS.NORM", "FrozenBN")).load(str(path))
    assert str(path) in str(info.value)


def test_bad_arguments_are_refused(capsys):
    tool = _load_tool()
    with pytest.raises(SystemExit) as info:
        tool.main(["--threads", "0"])
    assert info.value.code == 2
    assert "--threads must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--no-such-flag"])


def test_a_failing_stage_is_named(tmp_path, capsys):
    tool = _load_tool()
    # A file where the data folder should be: the data stage cannot write there.
    (tmp_path / "data").write_text("not a folder")
    assert tool.main(["--out", str(tmp_path), "--quick"]) == 1
    err = capsys.readouterr().err
    assert f"stage 'data' ({tmp_path / 'data'}) failed" in err


def test_data_made_with_other_settings_is_not_reused(tmp_path, capsys):
    tool = _load_tool()
    (tmp_path / "data").mkdir()
    from projects.demo.pipeline import DATA_STAMP, DEMO_DATA

    (tmp_path / "data" / DATA_STAMP).write_text(json.dumps(DEMO_DATA))
    assert tool.main(["--out", str(tmp_path), "--quick"]) == 1  # quick needs the small data
    err = capsys.readouterr().err
    assert "stage 'data'" in err and "holds toy data made with" in err
    assert not (tmp_path / "pretrain").exists()


@pytest.mark.slow
def test_quick_pipeline_writes_every_stage(tmp_path):
    tool = _load_tool()
    out = tmp_path / "demo"
    assert tool.main(["--out", str(out), "--quick", "--threads", "1", "--baseline", "--seed", "3"]) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] is True and summary["seed"] == 3 and summary["threads"] == 1
    assert "SEED: 3" in (out / "pretrain" / "config.yaml").read_text()
    # pretraining: errors are percentages and the backbone file loads
    assert 0 <= summary["pretrain"]["val_top1_err"] <= 100
    backbone = out / "pretrain" / "backbone.safetensors"
    state, meta = load_state_dict_file(backbone), read_safetensors_metadata(backbone)
    assert meta["arch"]["depth"] == 18 and meta["arch"]["norm"] == "GN"
    # the demo's half-width network, and its detector built at the same width
    from projects.demo.pipeline import PRETRAIN_CONFIG

    DEMO_WIDTH = load_pretrain_cfg(str(PRETRAIN_CONFIG)).MODEL.STEM_OUT_CHANNELS
    assert meta["arch"]["width"] == DEMO_WIDTH == state["stem.conv1.weight"].shape[0]
    assert load_config(str(out / "detect" / "config.yaml")).MODEL.RESNETS.STEM_OUT_CHANNELS == DEMO_WIDTH
    assert "stem.conv1.weight" in state and not any(k.startswith("linear") for k in state)
    # detection: COCO metrics from COCOEvaluator, in the summary and in eval_results.json
    results = json.loads((out / "detect" / "eval_results.json").read_text())
    bbox = results["toy_coco_val"]["bbox"]
    assert COCO_KEYS <= bbox.keys()
    assert bbox["AP"] == pytest.approx(summary["detect"]["AP"], nan_ok=True)
    assert all(math.isnan(v) or 0 <= v <= 100 for k, v in bbox.items() if k in COCO_KEYS)
    # the detector started from the pretrained backbone: its log says so
    log = (out / "detect" / "log.txt").read_text()
    assert "backbone.safetensors: loaded" in log
    # the drawings: one grid of the val images (3 with --quick) per detector, enlarged twice,
    # ground truth drawn
    for name in ("detections_grid.png", "detections_grid_random_init.png"):
        png = Path(summary["visualisation"][name])
        assert png == out / "vis" / name
        drawn = json.loads(png.with_suffix(".json").read_text())
        assert len(drawn["images"]) == 3 and all(r["ground_truth"] for r in drawn["images"])
        assert Image.open(png).size == (4 + 4 * (2 * 256 + 4), LEGEND_HEIGHT + 4 + 2 * 192 + 4)
    assert "detect_scratch" in summary
    # the time of each stage, and no range verdict for --quick (the ranges are the demo's)
    assert set(summary["time"]["stages"]) == {"data", "pretrain", "detect", "baseline", "visualise"}
    assert summary["time"]["cpu_s"] > 0
    assert summary["in_expected_range"] is None
    # a second run reuses the data instead of refusing the non-empty folders
    first = sorted(p.name for p in (out / "data/imagenet/train/circle").iterdir())
    assert tool.main(["--out", str(out), "--quick", "--threads", "1"]) == 0
    assert "detect_scratch" not in json.loads((out / "summary.json").read_text())
    assert sorted(p.name for p in (out / "data/imagenet/train/circle").iterdir()) == first


def test_pretraining_leaves_a_core_to_each_loader_worker(tmp_path, monkeypatch):
    import projects.demo.pipeline as pipeline

    seen = []

    def fake_train(cfg):
        seen.append((torch.get_num_threads(), cfg.DATA.NUM_WORKERS))
        return {"val_top1_err": 50.0}

    monkeypatch.setattr(pipeline, "train", fake_train)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        metrics = pipeline.pretrain(tmp_path, tmp_path / "pretrain", False, 0)  # the config's 1 worker
        assert seen == [(2, 1)] and metrics["threads"] == 2
        assert torch.get_num_threads() == 3  # the detector gets every thread back
        torch.set_num_threads(1)
        assert pipeline.pretrain(tmp_path, tmp_path / "pretrain", False, 0)["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_a_run_is_checked_against_the_expected_ranges():
    from projects.demo.pipeline import EXPECTED, check_expected

    expected = {"pretrain.val_top1_err": (10.0, 20.0), "detect.AP": (30.0, 34.0)}
    checks = check_expected({"pretrain": {"val_top1_err": 20.4}, "detect": {"AP": 30.0}}, expected)
    assert checks == {"pretrain.val_top1_err": {"value": 20.4, "range": [10.0, 20.0], "in_range": False},
                      "detect.AP": {"value": 30.0, "range": [30.0, 34.0], "in_range": True}}
    assert check_expected({"detect": {"AP": 31.0}}, expected).keys() == {"detect.AP"}
    # every default range names a figure the pipeline writes, and is a proper interval
    assert {k.split(".")[0] for k in EXPECTED} <= {"pretrain", "detect"}
    assert all(lo < hi for lo, hi in EXPECTED.values())


def test_the_readme_states_the_ranges_the_pipeline_checks():
    from projects.demo.pipeline import EXPECTED

    readme = (REPO / "projects" / "demo" / "README.md").read_text()
    for key, (lo, hi) in EXPECTED.items():
        assert f"`{key}` {lo:g}-{hi:g}" in readme, f"projects/demo/README.md does not state {key} {lo:g}-{hi:g}"
