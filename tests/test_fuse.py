"""Inference-time transforms keep the function: BN folded into convolutions, and the detector's
deploy step (folding, channels_last, faster post-processing, jit) keeps its detections."""
import copy
from pathlib import Path

import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d

from resnet_det.models import build_resnet
from resnet_det.models.fuse import fuse_conv_bn


def _random_stats(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if hasattr(m, "running_var") and m.running_var is not None:
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model


@pytest.mark.parametrize("norm", ["FrozenBN", "BN"])
def test_fused_model_matches(norm):
    model = _random_stats(build_resnet(50, norm=norm, num_classes=10)).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        expected = model.forward_features(x)
        fuse_conv_bn(model)
        got = model.forward_features(x)
    assert all(m.norm is None for m in model.modules() if hasattr(m, "norm"))
    for k in expected:
        assert (got[k] - expected[k]).abs().max().item() < 1e-4 * expected[k].abs().max().item()


def test_training_bn_is_refused_and_gn_is_kept():
    with pytest.raises(ValueError, match="eval"):
        fuse_conv_bn(build_resnet(18).train())
    gn = fuse_conv_bn(build_resnet(18, norm="GN").eval())
    assert isinstance(gn.res2[0].conv1.norm, torch.nn.GroupNorm)


def test_batched_nms_matches_torchvision():
    from torchvision.ops import batched_nms as tv_batched_nms

    from resnet_det.detection.fast_inference import batched_nms

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(3000, 2, generator=g) * 200
    boxes = torch.cat([xy, xy + 5 + torch.rand(3000, 2, generator=g) * 60], 1)
    scores = torch.rand(3000, generator=g).round(decimals=2)  # ties, as in low-confidence outputs
    idxs = torch.randint(0, 20, (3000,), generator=g)
    for thresh in (0.3, 0.5, 0.7):
        assert torch.equal(batched_nms(boxes, scores, idxs, thresh), tv_batched_nms(boxes, scores, idxs, thresh))


def _toy_detector(name):
    from detectron2.modeling import build_model

    from resnet_det.config import load_config

    path = Path(__file__).resolve().parents[1] / "configs" / "toy" / f"faster_rcnn_r18_{name}_coco.yaml"
    cfg = load_config(str(path), ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.NORM", "FrozenBN",
                                  "MODEL.FPN.NORM", "", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    torch.manual_seed(0)
    model = _random_stats(build_model(cfg)).eval()
    with torch.no_grad():  # spread the classifier's logits: at init every score is ~1/81, tied
        model.roi_heads.box_predictor.cls_score.weight.mul_(50)
    return model


@pytest.mark.parametrize("name", ["c4", "fpn"])
@pytest.mark.parametrize(
    "options",
    [{}, {"jit": True}, pytest.param({"compile": True}, marks=pytest.mark.slow)],
    ids=["eager", "jit", "compile"],
)
def test_detector_deploy_step_keeps_detections(name, options):
    from resnet_det.detection.fast_inference import optimize_detector_for_inference

    model = _toy_detector(name)
    image = torch.randint(0, 256, (3, 160, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    inputs = [{"image": image, "height": 160, "width": 224}]
    with torch.inference_mode():
        expected = model(inputs)[0]["instances"]
        fast = optimize_detector_for_inference(copy.deepcopy(model), **options)
        got = fast(inputs)[0]["instances"]
        got_again = fast(inputs)[0]["instances"]  # after the first (tracing) call too
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in fast.modules())
    assert len(expected) >= 50
    for out in (got, got_again):
        assert torch.equal(out.pred_classes, expected.pred_classes)
        assert (out.pred_boxes.tensor - expected.pred_boxes.tensor).abs().max() < 1e-3
        assert (out.scores - expected.scores).abs().max() < 1e-4
