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

    from resnet_det.modeling.postprocess import batched_nms

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

    # "c4-r50": bottleneck res5 head, the MSRA stride placement (c4_skip_odd_bins applies).
    design, _, depth = name.partition("-r")
    path = Path(__file__).resolve().parents[1] / "configs" / "toy" / f"faster_rcnn_r18_{design}_coco.yaml"
    cfg = load_config(str(path), ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.NORM", "FrozenBN",
                                  "MODEL.FPN.NORM", "", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"]
                      + (["MODEL.RESNETS.DEPTH", depth, "MODEL.RESNETS.RES2_OUT_CHANNELS", "256"] if depth else []))
    torch.manual_seed(0)
    model = _random_stats(build_model(cfg)).eval()
    if depth:  # 50 layers of random statistics saturate every score: normalise each layer instead
        _calibrate_frozen_bn(model)
    with torch.no_grad():  # spread the classifier's logits: at init every score is ~1/81, tied
        model.roi_heads.box_predictor.cls_score.weight.mul_(50)
    return model


def _calibrate_frozen_bn(model):
    """Each FrozenBN takes the mean/variance of what it sees on one image, as trained ones do."""
    def hook(module, inputs):
        module.running_mean.copy_(inputs[0].mean(dim=(0, 2, 3)))
        module.running_var.copy_(inputs[0].var(dim=(0, 2, 3)) + module.eps)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    image = torch.randint(0, 256, (3, 160, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        model([{"image": image, "height": 160, "width": 224}])
    for h in handles:
        h.remove()


@pytest.mark.parametrize("name", ["c4", "fpn"])
@pytest.mark.parametrize(
    "options",
    [{}, {"jit": True}, {"onnxruntime": True}, pytest.param({"compile": True}, marks=pytest.mark.slow)],
    ids=["eager", "jit", "onnxruntime", "compile"],
)
def test_detector_deploy_step_keeps_detections(name, options):
    from resnet_det.modeling.inference import optimize_detector_for_inference

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


@pytest.mark.parametrize("every", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_chunked_roi_align_is_bit_identical(every, channels_last):
    from torchvision.ops import roi_align

    from resnet_det.modeling.inference import roi_align_chunked

    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 20, 24, generator=g)
    if channels_last:  # as a channels_last backbone hands it over
        features = features.contiguous(memory_format=torch.channels_last)
    xy = torch.rand(70, 2, generator=g) * 300
    rois = torch.cat([torch.randint(0, 2, (70, 1), generator=g).float(), xy,
                      xy + 1 + torch.rand(70, 2, generator=g) * 200], 1)
    expected = roi_align(features, rois, (14, 14), 1 / 16, 0, True)[:, :, ::every, ::every]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # chunks of 16 RoIs on two threads
    try:
        with torch.inference_mode():  # the workers run under the caller's inference mode
            got = roi_align_chunked(features, rois, (14, 14), 1 / 16, 0, True, every=every,
                                    memory_format=torch.channels_last)
        serial = roi_align_chunked(features, rois, (14, 14), 1 / 16, 0, True, every=every, parallel=False)
    finally:
        torch.set_num_threads(threads)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, expected) and torch.equal(serial, expected)
    empty = roi_align_chunked(features, rois[:0], (14, 14), 1 / 16, 0, True, every=every)
    assert empty.shape == (0, 8, 14 // every, 14 // every)


def test_c4_head_pools_only_the_bins_res5_reads():
    from resnet_det.modeling.inference import optimize_detector_for_inference

    model = _toy_detector("c4-r50")
    block = model.roi_heads.res5[0]
    assert block.conv1.stride == (2, 2) and block.shortcut.stride == (2, 2)
    features = {"res4": torch.randn(1, 1024, 10, 14)}
    from detectron2.structures import Boxes

    boxes = [Boxes(torch.tensor([[0.0, 0.0, 100.0, 80.0], [30.0, 20.0, 200.0, 150.0]]))]
    with torch.no_grad():
        full = model.roi_heads.pooler([features["res4"]], boxes)
        head = model.roi_heads.res5(full)
        optimize_detector_for_inference(model, fold_bn=False, channels_last=False, fast_postprocess=False)
        kept = model.roi_heads.pooler([features["res4"]], boxes)
        head_after = model.roi_heads.res5(kept)
    assert kept.shape[-1] < full.shape[-1] and torch.equal(kept, full[:, :, ::2, ::2])
    assert block.conv1.stride == (1, 1) and block.shortcut.stride == (1, 1)
    assert head_after.shape == head.shape
    assert (head_after - head).abs().max() <= 1e-5 * head.abs().max()

    # End to end, the RoI pooling steps alone (no folding, NCHW) keep every bit.
    model = _toy_detector("c4-r50")
    image = torch.randint(0, 256, (3, 160, 224), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    inputs = [{"image": image, "height": 160, "width": 224}]
    with torch.inference_mode():
        expected = model(inputs)[0]["instances"]
        got = optimize_detector_for_inference(model, fold_bn=False, channels_last=False)(inputs)[0]["instances"]
    assert model.roi_heads.pooler.level_poolers[0].every == 2 and len(expected) == 100
    assert torch.equal(got.pred_classes, expected.pred_classes)
    assert torch.equal(got.pred_boxes.tensor, expected.pred_boxes.tensor) and torch.equal(got.scores, expected.scores)

    # torchvision's stride placement (3x3 conv2 strided) reads odd bins too: left alone.
    other = _toy_detector("c4-r50")
    other.roi_heads.res5[0].conv1.stride, other.roi_heads.res5[0].conv2.stride = (1, 1), (2, 2)
    optimize_detector_for_inference(other, fold_bn=False, channels_last=False)
    assert other.roi_heads.pooler.level_poolers[0].every == 1
