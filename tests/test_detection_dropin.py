"""Exact drop-in: our C4 ResNet-101 and R50-FPN Faster R-CNN are detectron2's built-in models,
key for key and number for number, when given the same weights."""
from pathlib import Path

import pytest
import torch
from detectron2 import model_zoo
from detectron2.config import get_cfg as d2_get_cfg
from detectron2.layers import FrozenBatchNorm2d
from detectron2.modeling import build_model

import resnet_det  # noqa: F401  (registers our backbones)
from resnet_det.config import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# Test-time knobs set alike in both models: keep 100 proposals (res5 runs once per proposal,
# 1000 would cost seconds per image on a CPU) and report every detection (random weights
# give low scores).
SHARED = [
    "MODEL.DEVICE",
    "cpu",
    "MODEL.RPN.POST_NMS_TOPK_TEST",
    "100",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "0.0",
]
# What our configs set differently from detectron2's on purpose: the backbone and head
# builders (ours), the input normalisation (torchvision's RGB statistics, which our
# pretraining uses) and the weights file; everything else of MODEL must be detectron2's.
INTENDED = {
    "MODEL.BACKBONE.NAME",
    "MODEL.ROI_HEADS.NAME",
    "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD",
    "MODEL.WEIGHTS",
    "MODEL.RESNETS.SHORTCUT",
    "MODEL.RESNETS.PLAIN",
    "MODEL.RESNETS.ZERO_INIT_RESIDUAL",
    "MODEL.VGG.DROPOUT",
}


def _flatten(node, prefix="MODEL"):
    out = {}
    for key, value in node.items():
        if hasattr(value, "items"):
            out.update(_flatten(value, f"{prefix}.{key}"))
        else:
            out[f"{prefix}.{key}"] = value
    return out


def _randomize_norms(model):
    # Fresh FrozenBN layers are identities; random statistics make the comparison meaningful.
    # Small scales keep 100+ layers of random weights from overflowing to inf.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) * 0.3 + 0.1)
            m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


@pytest.mark.parametrize(
    "ours_file, ours_opts, d2_file",
    [
        ("faster_rcnn_r101_coco.yaml", [], "COCO-Detection/faster_rcnn_R_101_C4_3x.yaml"),
        (
            "faster_rcnn_r101_fpn_coco.yaml",
            ["MODEL.RESNETS.DEPTH", "50"],
            "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
        ),
    ],
    ids=["R101-C4", "R50-FPN"],
)
def test_same_weights_same_detections(ours_file, ours_opts, d2_file):
    d2_cfg = d2_get_cfg()
    d2_cfg.merge_from_file(model_zoo.get_config_file(d2_file))
    d2_cfg.merge_from_list(SHARED)
    # Our model with detectron2's input normalisation (the one intended difference that
    # changes numbers); everything else comes from our config file.
    norm = [
        "INPUT.FORMAT",
        d2_cfg.INPUT.FORMAT,
        "MODEL.PIXEL_MEAN",
        str(list(d2_cfg.MODEL.PIXEL_MEAN)),
        "MODEL.PIXEL_STD",
        str(list(d2_cfg.MODEL.PIXEL_STD)),
    ]
    ours_cfg = load_config(str(CONFIGS / ours_file), ours_opts + SHARED + norm)

    ours_flat, d2_flat = _flatten(ours_cfg.MODEL), _flatten(d2_cfg.MODEL)
    differing = {k for k in ours_flat.keys() | d2_flat.keys() if ours_flat.get(k) != d2_flat.get(k)}
    # Mask-head settings do nothing with MASK_ON False (both configs): not carried over.
    assert not ours_cfg.MODEL.MASK_ON and not d2_cfg.MODEL.MASK_ON
    differing = {k for k in differing if not k.startswith("MODEL.ROI_MASK_HEAD.")}
    assert differing <= INTENDED, differing - INTENDED

    torch.manual_seed(0)
    d2_model = build_model(d2_cfg).eval()
    _randomize_norms(d2_model)
    ours = build_model(ours_cfg).eval()
    ours.load_state_dict(d2_model.state_dict(), strict=True)  # same keys, same shapes
    d2_model.load_state_dict(ours.state_dict(), strict=True)

    image = torch.randint(
        0, 256, (3, 320, 427), dtype=torch.uint8, generator=torch.Generator().manual_seed(2)
    )
    inputs = [{"image": image, "height": 320, "width": 427}]
    with torch.no_grad():
        x = ours.preprocess_image(inputs).tensor
        f_ours, f_d2 = ours.backbone(x), d2_model.backbone(x)
        assert f_ours.keys() == f_d2.keys()
        for name in f_ours:
            assert (f_ours[name] - f_d2[name]).abs().max().item() < 1e-4, name
        out_ours = ours(inputs)[0]["instances"]
        out_d2 = d2_model(inputs)[0]["instances"]
    assert torch.isfinite(f_ours[name]).all() and f_ours[name].abs().max() > 1e-3
    assert len(out_ours) == len(out_d2) > 0
    assert torch.equal(out_ours.pred_classes, out_d2.pred_classes)
    assert torch.allclose(out_ours.pred_boxes.tensor, out_d2.pred_boxes.tensor, atol=1e-3)
    assert torch.allclose(out_ours.scores, out_d2.scores, atol=1e-5)
