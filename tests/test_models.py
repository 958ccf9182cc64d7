"""The ResNet family and VGG-16: Table 1 shapes, parameters, FLOPs, options and bad input."""
import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis

from resnet_det.models import build_model, build_resnet, build_vgg16
from resnet_det.models.resnet import ZeroPadShortcut

DEPTHS = (18, 34, 50, 101, 152)
# Table 1 of the paper, multiply-adds at 224x224 (MSRA placement: stride in the first 1x1).
TABLE1_GFLOPS = {18: 1.8, 34: 3.6, 50: 3.8, 101: 7.6, 152: 11.3}

FEATURE_STRIDES = {"stem": 4, "res2": 4, "res3": 8, "res4": 16, "res5": 32}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def gflops(model, size=224):
    flops = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, size, size))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    return flops.total() / 1e9


@pytest.mark.parametrize("depth", DEPTHS)
def test_param_count_equals_torchvision(depth):
    tv = getattr(torchvision.models, f"resnet{depth}")()
    for stride_in_1x1 in (True, False):  # placement moves the stride, never a parameter
        assert n_params(build_resnet(depth, stride_in_1x1=stride_in_1x1)) == n_params(tv)


@pytest.mark.parametrize("depth", DEPTHS)
def test_flops_match_table1(depth):
    measured = gflops(build_resnet(depth, stride_in_1x1=True))
    assert abs(measured - TABLE1_GFLOPS[depth]) / TABLE1_GFLOPS[depth] < 0.03, measured


def test_torchvision_placement_costs_more_on_bottlenecks():
    # torchvision v1.5 strides the 3x3: ~4.1 GFLOPs for ResNet-50 instead of Table 1's 3.8.
    assert gflops(build_resnet(50, stride_in_1x1=False)) == pytest.approx(4.1, rel=0.03)
    assert gflops(build_resnet(18, stride_in_1x1=False)) == pytest.approx(1.8, rel=0.03)


@pytest.mark.parametrize("depth", (18, 50))
def test_feature_strides_and_logits(depth):
    model = build_resnet(depth, num_classes=7).eval()
    x = torch.randn(2, 3, 96, 128)
    feats = model.forward_features(x)
    assert list(feats) == ["stem", "res2", "res3", "res4", "res5"]
    for name, f in feats.items():
        assert f.shape[-2:] == (96 // FEATURE_STRIDES[name], 128 // FEATURE_STRIDES[name])
    expansion = 4 if depth >= 50 else 1
    assert feats["res5"].shape[1] == 512 * expansion
    assert model(x).shape == (2, 7)


def test_no_classifier_gives_pooled_features():
    model = build_resnet(18, num_classes=0).eval()
    assert not hasattr(model, "linear")
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 512)


@pytest.mark.parametrize("depth", DEPTHS)
def test_shortcut_options_parameters(depth):
    plain = n_params(build_resnet(depth, plain=True))
    a = n_params(build_resnet(depth, shortcut="A"))
    b = n_params(build_resnet(depth, shortcut="B"))
    c = n_params(build_resnet(depth, shortcut="C"))
    assert a == plain  # zero padding is parameter free
    assert plain < b < c


def test_option_a_pads_with_zeros_and_subsamples():
    sc = ZeroPadShortcut(2, 5, stride=2)
    x = torch.arange(2 * 4 * 4, dtype=torch.float).view(1, 2, 4, 4)
    y = sc(x)
    assert y.shape == (1, 5, 2, 2)
    assert torch.equal(y[:, :2], x[:, :, ::2, ::2])
    assert not y[:, 2:].any()


def test_plain_net_has_no_shortcut_path():
    # A plain block's output depends on its input only through its convolutions: zeroing
    # the last norm's scale and shift makes the block output exactly zero (relu(0)).
    model = build_resnet(18, plain=True, num_classes=0).eval()
    block = model.res3[1]
    with torch.no_grad():
        block.conv2.norm.weight.zero_()
        block.conv2.norm.bias.zero_()
    out = block(torch.randn(1, 128, 8, 8))
    assert not out.any()
    residual = build_resnet(18, num_classes=0).eval().res3[1]
    with torch.no_grad():
        residual.conv2.norm.weight.zero_()
        residual.conv2.norm.bias.zero_()
    x = torch.randn(1, 128, 8, 8)
    assert torch.equal(residual(x), torch.relu(x))  # identity shortcut survives


@pytest.mark.parametrize("norm", ["BN", "FrozenBN", "SyncBN", "GN"])
def test_norm_options(norm):
    model = build_resnet(18, norm=norm, num_classes=3)
    expected = {
        "BN": torch.nn.BatchNorm2d,
        "FrozenBN": __import__("detectron2.layers", fromlist=["x"]).FrozenBatchNorm2d,
        "SyncBN": torch.nn.SyncBatchNorm,
        "GN": torch.nn.GroupNorm,
    }[norm]
    assert isinstance(model.res2[0].conv1.norm, expected)
    if norm != "SyncBN":  # SyncBN's forward needs a process group in training mode
        model.train()
        model(torch.randn(2, 3, 64, 64)).sum().backward()


def test_stride_placement():
    msra = build_resnet(50, stride_in_1x1=True)
    tv = build_resnet(50, stride_in_1x1=False)
    assert msra.res3[0].conv1.stride == (2, 2) and msra.res3[0].conv2.stride == (1, 1)
    assert tv.res3[0].conv1.stride == (1, 1) and tv.res3[0].conv2.stride == (2, 2)


def test_zero_init_residual():
    model = build_resnet(50, zero_init_residual=True)
    for stage in (model.res2, model.res5):
        for block in stage:
            assert not block.conv3.norm.weight.any()
            assert block.conv2.norm.weight.all()
    basic = build_resnet(18, zero_init_residual=True)
    assert not basic.res4[1].conv2.norm.weight.any()


def test_kaiming_init():
    model = build_resnet(50)
    w = model.res4[0].conv2.weight  # 3x3, 256 -> 256: fan_out = 256 * 9
    assert w.std().item() == pytest.approx((2.0 / (256 * 9)) ** 0.5, rel=0.05)


@pytest.mark.parametrize("freeze_at", range(6))
def test_freeze_at(freeze_at):
    model = build_resnet(18, freeze_at=freeze_at)
    names = ["stem", "res2", "res3", "res4", "res5"]
    for i, name in enumerate(names, start=1):
        frozen = i <= freeze_at
        params = list(getattr(model, name).parameters())
        assert all(p.requires_grad != frozen for p in params), name
    assert all(p.requires_grad for p in model.linear.parameters())


def test_frozen_stage_is_constant_in_training():
    model = build_resnet(18, freeze_at=2, num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("stem", "res2"))}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    opt.step()
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # incl. BN statistics


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(depth=77), ["depth", "77", "18", "152"]),
        (dict(depth=50, shortcut="D"), ["shortcut", "'D'", "'A'", "'C'"]),
        (dict(depth=50, norm="LN"), ["norm", "'LN'", "'FrozenBN'", "'GN'"]),
        (dict(depth=18, freeze_at=6), ["freeze_at", "6"]),
        (dict(depth=18, width=48), ["width", "multiple of 32", "48"]),
    ],
)
def test_bad_options_name_the_value(kwargs, words):
    with pytest.raises(ValueError) as err:
        build_resnet(**kwargs)
    for w in words:
        assert w in str(err.value)


@pytest.mark.parametrize("depth, expansion", [(18, 1), (50, 4)])
def test_width_scales_every_stage(depth, expansion):
    half, full = build_resnet(depth, num_classes=0, width=32), build_resnet(depth, num_classes=0)
    x = torch.randn(1, 3, 64, 64)
    for name, f_half in half.forward_features(x).items():
        f_full = full.forward_features(x)[name]
        assert f_half.shape[1] * 2 == f_full.shape[1]  # every stage at half the channels
        assert f_half.shape[2:] == f_full.shape[2:]
    assert half.forward_features(x)["res5"].shape[1] == 32 * 8 * expansion
    # Convolutions hold C_in * C_out weights: a quarter of the parameters (+ the RGB stem's).
    ratio = sum(p.numel() for p in half.parameters()) / sum(p.numel() for p in full.parameters())
    assert 0.24 < ratio < 0.26
    # The width is part of the record a backbone file is rebuilt from.
    assert half.arch["width"] == 32 and full.arch["width"] == 64
    rebuilt = build_model(half.arch)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in half.state_dict().items()}


def test_vgg16_shapes():
    model = build_vgg16(num_classes=10).eval()
    assert n_params(model) == n_params(torchvision.models.vgg16(num_classes=10))
    x = torch.randn(1, 3, 128, 96)
    assert model.forward_features(x).shape == (1, 512, 8, 6)  # conv5_3 at stride 16
    assert model(x).shape == (1, 10)
    assert gflops(build_vgg16()) == pytest.approx(15.5, rel=0.03)


@pytest.mark.parametrize(
    "depth, norm, choice, nhwc",
    [
        (50, "BN", None, True),  # bottleneck on CPU: NHWC by default
        (18, "BN", None, False),  # basic blocks on CPU: NCHW by default
        (18, "GN", True, True),
        (50, "FrozenBN", False, False),
    ],
)
def test_channels_last_choice_keeps_values(depth, norm, choice, nhwc):
    torch.manual_seed(0)
    model = build_resnet(depth, 10, norm=norm, channels_last=choice).eval()
    nchw = build_resnet(depth, 10, norm=norm, channels_last=False).eval()
    nchw.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats, ref = model.forward_features(x), nchw.forward_features(x)
        logits = model(x)
    assert feats["res5"].is_contiguous(memory_format=torch.channels_last) is nhwc
    assert feats["res5"].is_contiguous() is not nhwc
    for name in ("stem", "res5"):  # same values up to float summation order
        scale = ref[name].abs().max()
        assert (feats[name] - ref[name]).abs().max() <= 1e-5 * scale
    assert torch.allclose(logits, nchw(x), rtol=1e-4, atol=1e-5 * nchw(x).abs().max().item())
    assert "channels_last" not in model.arch  # a run-time choice: exported files do not carry it
