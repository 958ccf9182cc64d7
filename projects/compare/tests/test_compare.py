"""tools/compare_backbones.py on toy data: two backbones trained for a few iterations, the table's
figures checked against each run's own files, reuse, --runs, and the refusals."""
import csv
import json
import shutil
from pathlib import Path

import pytest
from detectron2.modeling import build_model

from projects.compare import compare_backbones, main, parse_spec, run_overrides
from projects.compare.backbones import anchor_sizes
from projects.compare.runs import RECORD, _divergence, run_state
from projects.toy_data import dataset_opts, make_toy_data
from resnet_det.config import ConfigError, load_config
from resnet_det.deploy import runtime_choices
from resnet_det.utils.cli import run_cli

REPO = Path(__file__).resolve().parents[3]
BASE = str(REPO / "configs/toy/faster_rcnn_r18_c4_voc.yaml")
# The toy config at the size of the tiny test data (96x128 images), for 3 iterations.
SMALL = ["INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "96",
         "INPUT.MAX_SIZE_TEST", "128", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1",
         "SOLVER.STEPS", "()", "SOLVER.CHECKPOINT_PERIOD", "3", "DATALOADER.NUM_WORKERS", "0",
         "MODEL.RESNETS.STEM_OUT_CHANNELS", "32", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64"]
BACKBONES = ["r18", "r18-fpn"]
TIMING = dict(threads=1, latency_images=2, warmup=1)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """The comparison of BACKBONES on tiny toy VOC data, and its overrides."""
    root = tmp_path_factory.mktemp("compare")
    make_toy_data(root / "data", kinds=["voc"], num_det_train=8, num_det_val=4, det_size=(96, 128))
    opts = SMALL + dataset_opts(root / "data")
    result = compare_backbones(BASE, BACKBONES, root / "out", opts, **TIMING)
    return root / "out", opts, result


def _csv_rows(path):
    with open(path) as f:
        return {row["label"]: row for row in csv.DictReader(f)}


def test_each_backbone_is_a_train_det_run_with_its_own_design(compared):
    out, _, result = compared
    assert [r["label"] for r in result["runs"]] == BACKBONES
    c4, fpn = (load_config(str(out / label / "config.yaml")) for label in BACKBONES)
    assert (c4.MODEL.BACKBONE.NAME, c4.MODEL.ROI_HEADS.NAME) == ("build_resnet_det_backbone", "ResNetDetRes5ROIHeads")
    assert (fpn.MODEL.BACKBONE.NAME, fpn.MODEL.ROI_HEADS.NAME) == ("build_resnet_det_fpn_backbone", "StandardROIHeads")
    assert c4.MODEL.RESNETS.DEPTH == fpn.MODEL.RESNETS.DEPTH == 18
    # One set of anchor sizes, laid out per design (the toy base: 16..128 in one level).
    assert c4.MODEL.ANCHOR_GENERATOR.SIZES == [[16, 32, 64, 128]]
    assert fpn.MODEL.ANCHOR_GENERATOR.SIZES == [[16], [32], [64], [128], [256]]
    # The shared schedule and data are the same in both.
    for key in ("MAX_ITER", "BASE_LR", "IMS_PER_BATCH"):
        assert c4.SOLVER[key] == fpn.SOLVER[key]
    assert c4.DATASETS.TRAIN == fpn.DATASETS.TRAIN == ("toy_voc_trainval",)
    for label in BACKBONES:
        assert (out / label / "model_final.pth").is_file() and (out / label / "export" / "model.onnx").is_file()


def test_table_figures_are_the_runs_own(compared):
    out, _, result = compared
    table = _csv_rows(out / "comparison.csv")
    written = json.loads((out / "comparison.json").read_text())
    assert written["runs"] == json.loads(json.dumps(result["runs"]))
    assert written["machine"]["threads"] == 1 and written["machine"]["cpu"]
    for run in result["runs"]:
        folder = out / run["label"]
        bbox = json.loads((folder / "eval_results.json").read_text())["toy_voc_test"]["bbox"]
        assert {k: run["accuracy"][k] for k in ("AP", "AP50", "AP75")} == {k: bbox[k] for k in ("AP", "AP50", "AP75")}
        assert run["accuracy"]["per_class"] == {k: v for k, v in bbox.items() if k.startswith("AP50-")}
        assert len(run["accuracy"]["per_class"]) == 5
        row = table[run["label"]]
        assert row["AP"] == f"{bbox['AP']:.1f}" and row["AP50-circle"] == f"{bbox['AP50-circle']:.1f}"
        # Parameters: the detector its config.yaml builds.
        model = build_model(load_config(str(folder / "config.yaml"), ["MODEL.DEVICE", "cpu"]))
        assert run["params"] == sum(p.numel() for p in model.parameters())
        assert row["params (M)"] == f"{run['params'] / 1e6:.1f}"
        assert 0 < run["gflops"] < 10 and run["test_size"][0] == 96
        # Training time and memory: the comparison's record of the child process.
        record = json.loads((folder / RECORD).read_text())
        assert record["status"] == "finished" and len(record["segments"]) == 1
        assert run["train"]["wall_s"] == record["train_wall_s"] > 0
        assert run["train"]["peak_rss_bytes"] == record["peak_rss_bytes"] > 200 * 2**20
        assert run["train"]["cpu_s"] == record["train_cpu_s"] > 1
        assert row["train CPU (min)"] == f"{record['train_cpu_s'] / 60:.1f}"
        # PyTorch and every installed runtime/precision, each timed.
        expected = {"pytorch"} | {f"{r}-{p}" for r, p in runtime_choices(folder / "export" / "model.onnx")}
        assert set(run["latency_ms"]) == expected and all(v > 0 for v in run["latency_ms"].values())
        assert row["pytorch (ms)"] == f"{run['latency_ms']['pytorch']:.1f}"
    # A C4 head on every RoI costs more than FPN's two small fc layers at the same depth.
    c4, fpn = result["runs"]
    assert c4["gflops"] > fpn["gflops"]
    md = (out / "comparison.md").read_text()
    assert md.count("\n| r18") == 2 and "toy_voc_test" in md
    assert (out / "comparison.png").stat().st_size > 10_000


def test_finished_runs_are_reused_and_another_config_is_refused(compared, capsys):
    out, opts, result = compared
    again = compare_backbones(BASE, BACKBONES, out, opts, **TIMING)
    printed = capsys.readouterr().out
    assert printed.count("reused (finished)") == 2 and "starting" not in printed
    for before, after in zip(result["runs"], again["runs"]):
        assert after["accuracy"] == before["accuracy"] and after["train"] == before["train"]
        assert len(json.loads((out / before["label"] / RECORD).read_text())["segments"]) == 1
    # The same folders with another learning rate: refused before anything runs, naming the key.
    with pytest.raises(ConfigError, match=r"r18 holds a run of another config(.|\n)*SOLVER.BASE_LR"):
        compare_backbones(BASE, BACKBONES, out, opts + ["SOLVER.BASE_LR", "0.01"], **TIMING)


def test_an_interrupted_run_is_resumed(compared, tmp_path):
    out, opts, _ = compared
    folder = tmp_path / "r18"
    shutil.copytree(out / "r18", folder)
    cfg = load_config(str(out / "r18" / "config.yaml"))
    assert run_state(cfg, folder) == "finished"
    (folder / "eval_results.json").unlink()
    assert run_state(cfg, folder) == "unfinished"
    assert run_state(cfg, tmp_path / "nothing") == "new"


def test_runs_builds_the_same_table_from_folders(compared, tmp_path, capsys):
    out, _, result = compared
    assert run_cli(main, ["--runs", str(out / "r18"), str(out / "r18-fpn"), "--output", str(tmp_path),
                          "--threads", "1", "--latency-images", "2", "--warmup", "1", "--int8-calibration", "2"]) == 0
    assert "measure" in capsys.readouterr().out
    again = json.loads((tmp_path / "comparison.json").read_text())
    # The int8 rows: each export quantized on 2 training images, then timed on every runtime.
    for run in again["runs"]:
        export = out / run["label"] / "export"
        assert json.loads((export / "model.json").read_text())["int8"]["calibration"]["images"] == 2
        int8_keys = {f"{r}-int8" for r, p in runtime_choices(export) if p == "int8"}
        assert "onnxruntime-int8" in int8_keys and int8_keys <= {k for k, v in run["latency_ms"].items() if v}
    for before, after in zip(result["runs"], again["runs"]):
        assert (after["label"], after["name"], after["init"], after["seed"]) == (before["label"], before["name"],
                                                                                   "random", 0)
        for key in ("accuracy", "params", "gflops", "train"):
            assert after[key] == before[key]
    assert _csv_rows(tmp_path / "comparison.csv")["r18-fpn"]["AP"] == _csv_rows(out / "comparison.csv")["r18-fpn"]["AP"]
    # A folder that is not a finished train_det run is named.
    assert run_cli(main, ["--runs", str(tmp_path), "--output", str(tmp_path / "x")]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_specs_and_overrides():
    cfg = load_config(BASE, ["MODEL.RESNETS.STEM_OUT_CHANNELS", "32"])
    spec = parse_spec("r50:seed=3")
    assert (spec.label, spec.design, spec.depth, spec.seed, spec.kind) == ("r50-seed3", "c4", 50, 3, "random")
    # A bottleneck ResNet at half width: res2's channels filled in, WIDTH_PER_GROUP = the width.
    r50 = load_config(BASE, ["MODEL.RESNETS.STEM_OUT_CHANNELS", "32"] + run_overrides(cfg, spec))
    assert (r50.MODEL.RESNETS.DEPTH, r50.MODEL.RESNETS.RES2_OUT_CHANNELS, r50.MODEL.RESNETS.WIDTH_PER_GROUP,
            r50.SEED) == (50, 128, 32, 3)
    vgg = load_config(BASE, run_overrides(cfg, parse_spec("vgg16")))
    assert (vgg.MODEL.BACKBONE.NAME, vgg.MODEL.ROI_BOX_HEAD.NAME, vgg.MODEL.RPN.IN_FEATURES) == (
        "build_vgg16_backbone", "VGG16BoxHead", ["conv5_3"])
    assert anchor_sizes([[32], [64], [128], [256], [512]], "c4", 1) == [[32, 64, 128, 256, 512]]
    assert anchor_sizes([[16, 32, 64, 128]], "fpn", 5) == [[16], [32], [64], [128], [256]]
    assert parse_spec("r18:label=mine").label == "mine"
    for bad, message in (("r19", "unknown backbone 'r19'"), ("r18:lr=1", "'lr=1' is not one of"),
                         ("r18:seed=x", "seed must be an integer"), ("SOLVER.MAX_ITER", "after --output")):
        with pytest.raises(ConfigError, match=message):
            parse_spec(bad)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        parse_spec("r18:weights=nowhere.pth")


def test_weights_files_are_told_apart_and_set_their_initialisation(tmp_path):
    import torch
    import torchvision

    from resnet_det.checkpoint.backbone_file import save_backbone
    from resnet_det.models import build_resnet

    cfg = load_config(BASE)
    backbone = save_backbone(build_resnet(18, 2, norm="GN"), tmp_path / "backbone.safetensors")
    spec = parse_spec(f"r18:weights={backbone}")
    assert (spec.kind, spec.label) == ("backbone", "r18-pretrained")
    opts = dict(zip(*[iter(run_overrides(cfg, spec))] * 2))
    # Only the weights change: norm, frozen stages and schedule stay the base config's.
    assert opts["MODEL.WEIGHTS"] == str(backbone) and "MODEL.RESNETS.NORM" not in opts
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "tv.pth")
    spec = parse_spec(f"r50:weights={tmp_path / 'tv.pth'}:seed=2")
    assert (spec.kind, spec.label) == ("torchvision", "r50-torchvision-seed2")
    r50 = load_config(BASE, run_overrides(cfg, spec))
    assert (r50.MODEL.RESNETS.NORM, r50.MODEL.RESNETS.STRIDE_IN_1X1, r50.MODEL.BACKBONE.FREEZE_AT) == (
        "FrozenBN", False, 2)
    torch.save({"model": {"backbone.res2.0.conv1.weight": torch.zeros(1)}}, tmp_path / "det.pth")
    assert parse_spec(f"r18:weights={tmp_path / 'det.pth'}").kind == "detector"
    torch.save({"linear.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="other.pth: neither a backbone file"):
        parse_spec(f"r18:weights={tmp_path / 'other.pth'}")


def test_a_diverged_training_is_recognised_by_its_message():
    text = ("...\nerror: Loss became infinite or NaN at iteration=7!\nTraining diverged at iteration 7; loss "
            "terms last recorded: loss_cls=1e9. Lower SOLVER.BASE_LR.\n(set RESNET_DET_DEBUG=1 or pass --debug "
            "for the traceback)\n")
    assert _divergence(text).startswith("Loss became infinite") and "(set" not in _divergence(text)
    assert _divergence("error: MODEL.WEIGHTS does not fit the config") is None


def test_a_diverged_run_is_recorded_and_left_out_of_the_measurements(compared, tmp_path):
    _, opts, _ = compared
    result = compare_backbones(BASE, ["r18:label=blowup"], tmp_path, opts + ["SOLVER.BASE_LR", "1e30"], **TIMING)
    (run,) = result["runs"]
    assert run["status"] == "diverged" and "diverged at iteration" in run["message"]
    assert "latency_ms" not in run and "accuracy" not in run
    assert json.loads((tmp_path / "blowup" / RECORD).read_text())["status"] == "diverged"
    assert "| blowup | r18 | random | 0 | diverged |" in (tmp_path / "comparison.md").read_text()
    # Asked again, it is not trained again.
    again = compare_backbones(BASE, ["r18:label=blowup"], tmp_path, opts + ["SOLVER.BASE_LR", "1e30"], **TIMING)
    assert again["runs"][0]["status"] == "diverged"
    assert len(json.loads((tmp_path / "blowup" / RECORD).read_text())["segments"]) == 1
