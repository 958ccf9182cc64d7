"""torchvision weights map exactly onto our models, and back."""
import pytest
import torch
import torchvision

from resnet_det.checkpoint import from_torchvision, load_state_dict_checked, to_torchvision
from resnet_det.models import build_resnet, build_vgg16


def _randomize_bn(model):
    # Fresh BN layers are identities; random statistics make the comparison meaningful.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


@pytest.mark.parametrize("depth", [18, 50, 101])
def test_resnet_logits_equal_torchvision(depth):
    tv = _randomize_bn(getattr(torchvision.models, f"resnet{depth}")()).eval()
    # NCHW as torchvision: the comparison is of the weights, not of summation order.
    ours = build_resnet(depth, stride_in_1x1=False, channels_last=False).eval()
    load_state_dict_checked(ours, from_torchvision(tv.state_dict()))
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        diff = (ours(x) - tv(x)).abs().max().item()
    assert diff < 1e-4


def test_vgg16_logits_equal_torchvision():
    tv = torchvision.models.vgg16().eval()
    ours = build_vgg16().eval()
    load_state_dict_checked(ours, from_torchvision(tv.state_dict()))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - tv(x)).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet152", "vgg16"])
def test_round_trip_is_identity(name):
    sd = getattr(torchvision.models, name)().state_dict()
    back = to_torchvision(from_torchvision(sd))
    assert list(back) == list(sd)
    assert all(back[k] is sd[k] for k in sd)


def test_wrong_depth_lists_keys():
    sd = from_torchvision(torchvision.models.resnet34().state_dict())
    with pytest.raises(ValueError, match=r"unexpected keys: .*res2\.2\.conv1\.weight"):
        load_state_dict_checked(build_resnet(18), sd)
    with pytest.raises(ValueError, match=r"missing keys: .*res2\.0\.conv3\.weight"):
        load_state_dict_checked(build_resnet(50), sd)


def test_wrong_architecture_is_refused():
    with pytest.raises(ValueError, match="not part of a torchvision vgg16"):
        from_torchvision(torchvision.models.vgg16_bn().state_dict())
    with pytest.raises(ValueError, match="not a torchvision ResNet or VGG-16"):
        from_torchvision(torchvision.models.mobilenet_v2().state_dict())
    sd = from_torchvision(torchvision.models.resnet18(num_classes=10).state_dict())
    with pytest.raises(ValueError, match=r"shape mismatches: linear\.weight"):
        load_state_dict_checked(build_resnet(18, num_classes=1000), sd)
