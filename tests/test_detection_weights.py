"""MODEL.WEIGHTS: backbone files, torchvision checkpoints and detector checkpoints, loaded
safely and checked against the config; checkpoints saved atomically."""
import os
import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from detectron2.modeling import build_model

import resnet_det  # noqa: F401
from resnet_det.checkpoint import UnsafeWeightsError, save_backbone
from resnet_det.checkpoint.detection import (
    ResNetDetCheckpointer,
    WeightsMismatchError,
    backbone_key_targets,
)
from resnet_det.config import load_config
from resnet_det.models import build_resnet, build_vgg16

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
C4 = CONFIGS / "faster_rcnn_r101_coco.yaml"
FPN = CONFIGS / "faster_rcnn_r101_fpn_coco.yaml"
VGG = CONFIGS / "faster_rcnn_vgg16_coco.yaml"
R18 = ["MODEL.RESNETS.DEPTH", "18"]


def _model(path, *opts):
    return build_model(load_config(str(path), ["MODEL.DEVICE", "cpu", *opts]))


def _groups(keys):
    return {".".join(k.split(".")[:2]) for k in keys}


@pytest.fixture(scope="module")
def r18_file(tmp_path_factory):
    torch.manual_seed(0)
    net = build_resnet(18)
    path = save_backbone(net, tmp_path_factory.mktemp("w") / "r18.safetensors")
    return path, net.state_dict()


@pytest.mark.parametrize(
    "config, heads, prefix_of",
    [
        (
            C4,
            {"proposal_generator.rpn_head", "roi_heads.box_predictor"},
            lambda k: "roi_heads." if k.startswith("res5") else "backbone.",
        ),
        (
            FPN,
            {"proposal_generator.rpn_head", "roi_heads.box_predictor", "roi_heads.box_head"}
            | {f"backbone.fpn_{kind}{i}" for kind in ("lateral", "output") for i in range(2, 6)},
            lambda k: "backbone.bottom_up.",
        ),
    ],
    ids=["C4", "FPN"],
)
def test_backbone_file_fills_everything_but_the_heads(r18_file, config, heads, prefix_of):
    path, source = r18_file
    model = _model(config, *R18)
    checkpointer = ResNetDetCheckpointer(model)
    checkpointer.load(str(path))
    incompatible = checkpointer.incompatible_keys
    # The only randomly initialised parts are the detection heads.
    assert _groups(incompatible.missing_keys) == heads
    state = model.state_dict()
    for key, value in source.items():
        if key.startswith("linear."):
            continue
        target = prefix_of(key) + key
        if target in state:  # FrozenBN has no num_batches_tracked
            assert torch.equal(state[target], value), key
        else:
            assert key.endswith("num_batches_tracked"), key


def test_vgg16_keys_map_to_backbone_and_box_head():
    model = _model(VGG)
    vgg = build_vgg16(num_classes=0).state_dict()
    mapped, unmatched = backbone_key_targets(vgg, model.state_dict())
    assert unmatched == []
    assert mapped.keys() == {f"backbone.{k}" for k in vgg if k.startswith("conv")} | {
        f"roi_heads.box_head.{k}" for k in vgg if k.startswith("fc")
    }
    missing = set(model.state_dict()) - set(mapped)
    assert _groups(missing) == {"proposal_generator.rpn_head", "roi_heads.box_predictor"}


def test_torchvision_resnet_matches_torchvision_features(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet50().eval()
    with torch.no_grad():  # random BN statistics, so that the norm mapping matters
        for m in tv.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "resnet50.pth"
    torch.save(tv.state_dict(), path)
    # torchvision puts the stride in the 3x3: a config with the MSRA placement is refused
    with pytest.raises(
        WeightsMismatchError,
        match=r"MODEL.RESNETS.STRIDE_IN_1X1 is True, the file was trained with False",
    ):
        ResNetDetCheckpointer(_model(FPN, "MODEL.RESNETS.DEPTH", "50")).load(str(path))
    model = _model(FPN, "MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.STRIDE_IN_1X1", "False").eval()
    ResNetDetCheckpointer(model).load(str(path))
    x = torch.randn(1, 3, 128, 160)
    with torch.no_grad():
        ours = model.backbone.bottom_up(x)["res5"]
        t = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        theirs = tv.layer4(tv.layer3(tv.layer2(tv.layer1(t))))
    assert (ours - theirs).abs().max() < 1e-4


@pytest.mark.parametrize(
    "opts, words",
    [
        (
            ["MODEL.RESNETS.DEPTH", "34"],
            ["MODEL.RESNETS.DEPTH is 34, the file was trained with 18"],
        ),
        (R18 + ["INPUT.FORMAT", "BGR"], ["INPUT.FORMAT is 'BGR', the file expects 'RGB'"]),
        (
            R18 + ["MODEL.PIXEL_STD", "[1.0, 1.0, 1.0]"],
            ["MODEL.PIXEL_STD is [1.0, 1.0, 1.0]", "57.375"],
        ),
        (R18 + ["MODEL.RESNETS.NORM", "GN"], ["MODEL.RESNETS.NORM is 'GN'"]),
        (
            R18 + ["MODEL.RESNETS.SHORTCUT", "C"],
            ["MODEL.RESNETS.SHORTCUT is 'C', the file was trained with 'B'"],
        ),
        (
            R18 + ["MODEL.RESNETS.STEM_OUT_CHANNELS", "32"],
            ["MODEL.RESNETS.STEM_OUT_CHANNELS is 32, the file was trained with 64"],
        ),
    ],
)
def test_file_of_another_architecture_names_the_key(r18_file, opts, words):
    path, _ = r18_file
    model = _model(C4, *opts)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as info:
        ResNetDetCheckpointer(model).load(str(path))
    for word in words:
        assert word in str(info.value)
    assert str(path) in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched


def test_half_width_backbone_file_fills_a_half_width_detector(tmp_path):
    torch.manual_seed(0)
    net = build_resnet(18, width=32)
    path = save_backbone(net, tmp_path / "r18_w32.safetensors")
    model = _model(FPN, *R18, "MODEL.RESNETS.STEM_OUT_CHANNELS", "32")
    ResNetDetCheckpointer(model).load(str(path))
    state = model.state_dict()
    for key, value in net.state_dict().items():
        if not key.startswith("linear") and not key.endswith("num_batches_tracked"):  # FrozenBN has none
            assert torch.equal(state["backbone.bottom_up." + key], value), key
    # The record names the key for a paper-width detector; a file without it, the shapes and the key.
    with pytest.raises(WeightsMismatchError,
                       match="MODEL.RESNETS.STEM_OUT_CHANNELS is 64, the file was trained with 32"):
        ResNetDetCheckpointer(_model(FPN, *R18)).load(str(path))
    bare = tmp_path / "r18_w32.pth"
    torch.save({k: v for k, v in net.state_dict().items() if not k.startswith("linear")}, bare)
    with pytest.raises(WeightsMismatchError, match=r"(?s)stem.conv1.weight: file \(32, 3, 7, 7\) vs model "
                                                   r"\(64, 3, 7, 7\).*STEM_OUT_CHANNELS"):
        ResNetDetCheckpointer(_model(FPN, *R18)).load(str(bare))


def test_vgg_file_into_resnet_config_names_backbone(tmp_path):
    path = tmp_path / "vgg.pth"
    torch.save(
        {"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}, path
    )
    with pytest.raises(
        WeightsMismatchError,
        match="MODEL.BACKBONE.NAME builds a resnet backbone, the file holds vgg16",
    ):
        ResNetDetCheckpointer(_model(C4, *R18)).load(str(path))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("suffix", [".pkl", ".pth"])
def test_pickles_are_refused_without_running_them(tmp_path, suffix):
    marker = tmp_path / "code_ran"
    path = tmp_path / f"evil{suffix}"
    if suffix == ".pkl":
        path.write_bytes(pickle.dumps({"model": _RunsCode(marker)}))
    else:
        torch.save({"model": {"x": _RunsCode(marker)}}, path)
    with pytest.raises(UnsafeWeightsError, match=r"tools/convert_weights.py --allow-pickle"):
        ResNetDetCheckpointer(_model(C4, *R18)).load(str(path))
    assert not marker.exists()


def test_urls_are_not_downloaded():
    with pytest.raises(ValueError, match="does not download"):
        ResNetDetCheckpointer(_model(C4, *R18)).load(
            "detectron2://ImageNetPretrained/MSRA/R-101.pkl"
        )


def test_detector_checkpoint_round_trip_and_atomic_save(tmp_path):
    torch.manual_seed(0)
    model = _model(C4, *R18)
    ckpt = ResNetDetCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000009", iteration=9)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]  # no temp files
    # detectron2's format, readable without unpickling code
    data = torch.load(tmp_path / "model_0000009.pth", weights_only=True)
    assert data["iteration"] == 9
    other = _model(C4, *R18)
    checkpointer = ResNetDetCheckpointer(other)
    checkpointer.load(str(tmp_path / "model_0000009.pth"))
    incompatible = checkpointer.incompatible_keys
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key

    # a NaN in the weights: nothing is written, the last good checkpoint stays
    good = (tmp_path / "model_0000009.pth").read_bytes()
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="roi_heads.box_predictor.cls_score.weight"):
        ckpt.save("model_0000019", iteration=19)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]
    assert (tmp_path / "model_0000009.pth").read_bytes() == good
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"


@pytest.mark.slow
def test_vgg16_backbone_file_fills_backbone_and_box_head(tmp_path):
    """The pretraining export of VGG-16 (conv1_1..fc7, 0.5 GB) into the paper's VGG-16 detector."""
    torch.manual_seed(0)
    vgg = build_vgg16(num_classes=10)
    path = save_backbone(vgg, tmp_path / "vgg16.safetensors")
    model = _model(VGG)
    checkpointer = ResNetDetCheckpointer(model)
    checkpointer.load(str(path))
    assert _groups(checkpointer.incompatible_keys.missing_keys) == {
        "proposal_generator.rpn_head",
        "roi_heads.box_predictor",
    }
    assert torch.equal(model.backbone.conv5_3.weight, vgg.conv5_3.weight)
    assert torch.equal(model.roi_heads.box_head.fc6.weight, vgg.fc6.weight)
    assert torch.equal(model.roi_heads.box_head.fc7.bias, vgg.fc7.bias)
    # ResNet weights into the VGG config: refused, naming the key
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(
        WeightsMismatchError,
        match="MODEL.BACKBONE.NAME builds a vgg16 backbone, the file holds resnet",
    ):
        ResNetDetCheckpointer(model).load(str(tmp_path / "r18.pth"))
