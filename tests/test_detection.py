"""Faster R-CNN with our backbones: registration, configs, training step and inference on CPU."""
import difflib
import importlib
from pathlib import Path

import pytest
import torch
from detectron2.modeling import BACKBONE_REGISTRY, ROI_BOX_HEAD_REGISTRY, ROI_HEADS_REGISTRY, build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

import resnet_det
from resnet_det.config import ConfigError, ConfigKeyError, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TOY_CONFIGS = sorted(p for p in (CONFIGS / "toy").glob("*.yaml") if not p.name.startswith("Base-"))
FULL_CONFIGS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("Base-"))


def _cfg(path, *opts):
    return load_config(str(path), ["MODEL.DEVICE", "cpu", *opts])


def _images(n, height, width, num_classes):
    g = torch.Generator().manual_seed(0)
    batch = []
    for _ in range(n):
        inst = Instances((height, width))
        inst.gt_boxes = Boxes(
            torch.tensor([[10.0, 20.0, 70.0, 90.0], [width / 2, height / 3, width - 5, height - 8]])
        )
        inst.gt_classes = torch.tensor([0, num_classes - 1])
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
        batch.append({"image": image, "instances": inst, "height": height, "width": width})
    return batch


def _first_trainable(model):
    """Name of the first backbone parameter that trains (after FREEZE_AT)."""
    return next(
        n for n, p in model.named_parameters() if n.startswith("backbone") and p.requires_grad
    )


def _train_step(model, cfg, height, width, n=2):
    model.train()
    with EventStorage():
        losses = model(_images(n, height, width, cfg.MODEL.ROI_HEADS.NUM_CLASSES))
    total = sum(losses.values())
    total.backward()
    return losses


def test_registration_is_idempotent():
    assert "build_resnet_det_backbone" in BACKBONE_REGISTRY
    assert "build_resnet_det_fpn_backbone" in BACKBONE_REGISTRY
    assert "build_vgg16_backbone" in BACKBONE_REGISTRY
    assert "ResNetDetRes5ROIHeads" in ROI_HEADS_REGISTRY
    assert "VGG16BoxHead" in ROI_BOX_HEAD_REGISTRY
    # Re-running the modules (as a second import under another name would) must not raise.
    for module in ("backbone", "roi_heads", ""):
        importlib.reload(
            importlib.import_module("resnet_det.modeling" + (f".{module}" if module else ""))
        )
    importlib.reload(resnet_det)


def _r101_with_resnets_key(tmp_path, line):
    """A yaml on top of faster_rcnn_r101_coco.yaml setting one MODEL.RESNETS line."""
    path = tmp_path / "override.yaml"
    base = CONFIGS / "faster_rcnn_r101_coco.yaml"
    path.write_text(f'_BASE_: "{base}"\nMODEL:\n  RESNETS:\n    {line}\n')
    return str(path)


def test_unknown_key_fails_like_detectron2(tmp_path):
    with pytest.raises(KeyError, match="Non-existent config key: MODEL.RESNETS.DEPTHH"):
        load_config(_r101_with_resnets_key(tmp_path, "DEPTHH: 50"))
    # On the command line yacs asserts; load_config raises the same KeyError (a ConfigError).
    with pytest.raises(ConfigKeyError, match="Non-existent config key: MODEL.RESNETS.DEPTHH"):
        load_config(None, ["MODEL.RESNETS.DEPTHH", "101"])


@pytest.mark.parametrize(
    "opts, words",
    [
        (["MODEL.RESNETS.DEPTH", "77"], ["MODEL.RESNETS.DEPTH = 77", "18, 34, 50, 101, 152"]),
        (["SOLVER.BASE_LR", "-0.01"], ["SOLVER.BASE_LR = -0.01", "> 0"]),
        (["MODEL.RESNETS.SHORTCUT", "D"], ["MODEL.RESNETS.SHORTCUT = 'D'", "A, B, C"]),
        (["MODEL.RESNETS.NORM", "LN"], ["MODEL.RESNETS.NORM = 'LN'", "BN, FrozenBN, SyncBN, GN"]),
        (["MODEL.BACKBONE.FREEZE_AT", "9"], ["MODEL.BACKBONE.FREEZE_AT = 9", "0..5"]),
        (["INPUT.FORMAT", "YUV"], ["INPUT.FORMAT", "RGB, BGR"]),
        (["DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler"], ["TrainingSampler"]),
        # a wrong type: yacs names the key, we add what it may be
        (["MODEL.RESNETS.DEPTH", "deep"], ["MODEL.RESNETS.DEPTH", "18, 34, 50, 101, 152"]),
    ],
)
def test_bad_values_name_the_key_and_allowed_values(opts, words):
    with pytest.raises(ConfigError) as info:
        load_config(str(CONFIGS / "faster_rcnn_r101_coco.yaml"), opts)
    for word in words:
        assert word in str(info.value)


def test_bad_yaml_value_fails_on_load(tmp_path):
    with pytest.raises(ConfigError, match="MODEL.RESNETS.DEPTH = 77"):
        load_config(_r101_with_resnets_key(tmp_path, "DEPTH: 77"))


def test_yaml_may_not_construct_python_objects(tmp_path):
    evil = tmp_path / "evil.yaml"
    marker = tmp_path / "ran"
    evil.write_text(f"SEED: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="evil.yaml: not a valid config yaml"):
        load_config(str(evil))
    assert not marker.exists()


@pytest.mark.parametrize("dataset", ["coco", "voc"])
def test_vgg16_and_r101_configs_differ_in_one_line_and_both_build(dataset):
    r101 = (CONFIGS / f"faster_rcnn_r101_{dataset}.yaml").read_text().splitlines()
    vgg = (CONFIGS / f"faster_rcnn_vgg16_{dataset}.yaml").read_text().splitlines()
    changed = [line for line in difflib.unified_diff(r101, vgg, lineterm="", n=0)
               if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == ['-_BASE_: "Base-R101-C4.yaml"', '+_BASE_: "Base-VGG16.yaml"']
    models = {}
    for name in ("r101", "vgg16"):
        cfg = _cfg(CONFIGS / f"faster_rcnn_{name}_{dataset}.yaml")
        models[name] = build_model(cfg)
    assert type(models["r101"].backbone).__name__ == "ResNet"
    assert type(models["vgg16"].backbone).__name__ == "VGG16Backbone"
    assert type(models["r101"].roi_heads).__name__ == "ResNetDetRes5ROIHeads"
    assert type(models["vgg16"].roi_heads.box_head).__name__ == "VGG16BoxHead"
    # the same detection task in both
    num_classes = 80 if dataset == "coco" else 20
    for model in models.values():
        assert model.roi_heads.box_predictor.cls_score.out_features == num_classes + 1


def test_full_configs_build_with_detectron2_keys():
    """Each full config builds with detectron2's module keys (exact check: the drop-in tests)."""
    expected = {
        "faster_rcnn_r101_coco": (
            "backbone.res4.22.conv3.norm.running_var",
            "roi_heads.res5.2.conv3.weight",
        ),
        "faster_rcnn_r101_voc": ("backbone.stem.conv1.weight", "roi_heads.res5.0.shortcut.weight"),
        "faster_rcnn_r101_fpn_coco": (
            "backbone.bottom_up.res5.2.conv3.weight",
            "backbone.fpn_lateral2.weight",
        ),
        "faster_rcnn_vgg16_coco": ("backbone.conv5_3.weight", "roi_heads.box_head.fc7.weight"),
        "faster_rcnn_vgg16_voc": ("backbone.conv1_1.weight", "roi_heads.box_head.fc6.weight"),
    }
    assert {p.stem for p in FULL_CONFIGS} == set(expected)
    for path in FULL_CONFIGS:
        cfg = _cfg(path)
        assert cfg.INPUT.FORMAT == "RGB" and cfg.MODEL.RESNETS.NORM == "FrozenBN"
        state = build_model(cfg).state_dict()
        for key in expected[path.stem]:
            assert key in state, (path.name, key)


@pytest.mark.parametrize("path", TOY_CONFIGS, ids=lambda p: p.stem)
def test_toy_config_trains_a_step_and_infers_on_a_real_sized_image(path):
    cfg = _cfg(path)
    model = build_model(cfg)
    losses = _train_step(model, cfg, 192, 256, n=2)
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) for v in losses.values())
    # from scratch: nothing frozen, gradients reach the stem and res2 (VGG-16: conv1_1, conv2_1)
    grads = dict(model.named_parameters())
    stem = grads.get(
        "backbone.stem.conv1.weight",
        grads.get("backbone.bottom_up.stem.conv1.weight", grads.get("backbone.conv1_1.weight")),
    )
    res2 = grads.get(
        "backbone.res2.0.conv1.weight",
        grads.get("backbone.bottom_up.res2.0.conv1.weight", grads.get("backbone.conv2_1.weight")),
    )
    for p in (stem, res2):
        assert p.grad is not None and p.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(
            [
                {
                    "image": torch.randint(0, 256, (3, 480, 640), dtype=torch.uint8),
                    "height": 480,
                    "width": 640,
                }
            ]
        )
    inst = out[0]["instances"]
    assert inst.image_size == (480, 640) and torch.isfinite(inst.pred_boxes.tensor).all()


def _check_frozen_and_trainable(model, frozen_prefix, trainable_prefix):
    params = dict(model.named_parameters())
    assert not params[frozen_prefix].requires_grad
    first = _first_trainable(model)
    assert first == trainable_prefix
    grad = params[first].grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, frozen, trainable",
    [
        (
            "faster_rcnn_r101_coco",
            "backbone.res2.2.conv3.weight",
            "backbone.res3.0.shortcut.weight",
        ),
        (
            "faster_rcnn_r101_fpn_coco",
            "backbone.bottom_up.res2.2.conv3.weight",
            "backbone.fpn_lateral2.weight",
        ),
        ("faster_rcnn_vgg16_coco", "backbone.conv2_2.weight", "backbone.conv3_1.weight"),
    ],
)
def test_full_config_train_step_and_full_size_inference(name, frozen, trainable):
    """The full configs as they are (FREEZE_AT 2: stem/res2 or conv1-2 fixed), one training
    step on two images and inference on an 800x1067 image."""
    cfg = _cfg(CONFIGS / f"{name}.yaml")
    model = build_model(cfg)
    losses = _train_step(model, cfg, 320, 427, n=1)
    assert all(torch.isfinite(v) for v in losses.values())
    _check_frozen_and_trainable(model, frozen, trainable)
    if name == "faster_rcnn_r101_fpn_coco":  # the FPN trains res3 too
        assert model.backbone.bottom_up.res3[0].conv1.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model([{"image": torch.randint(0, 256, (3, 800, 1067), dtype=torch.uint8)}])
    assert out[0]["instances"].image_size == (800, 1067)
