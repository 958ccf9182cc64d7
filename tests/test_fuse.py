"""Folding frozen BN into convolutions keeps the function and drops the norm layers."""
import pytest
import torch

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
