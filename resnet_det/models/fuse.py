"""Inference-time folding of frozen batch norms into the preceding convolution."""
from __future__ import annotations

import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = ["fuse_conv_bn", "optimize_for_inference"]


@torch.no_grad()
def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every ``FrozenBatchNorm2d`` (and eval-mode ``BatchNorm2d``) that follows a detectron2
    ``Conv2d`` into the convolution's weight and bias, in place; returns ``model``.

    The result computes the same function with one elementwise pass less per convolution. Only
    for inference: after folding, the statistics cannot be trained any more.
    """
    for conv in model.modules():
        if not isinstance(conv, Conv2d) or conv.norm is None:
            continue
        norm = conv.norm
        if isinstance(norm, nn.BatchNorm2d) and norm.training:
            raise ValueError("fuse_conv_bn needs eval-mode BatchNorm2d; call model.eval() first")
        if not isinstance(norm, (FrozenBatchNorm2d, nn.BatchNorm2d)):
            continue  # GroupNorm etc. depend on the input's statistics: nothing to fold
        weight, bias = fuse_conv_bn_weights(conv.weight,
                                            conv.bias,
                                            norm.running_mean,
                                            norm.running_var,
                                            norm.eps,
                                            norm.weight,
                                            norm.bias)
        conv.weight = nn.Parameter(weight, requires_grad=False)
        conv.bias = nn.Parameter(bias, requires_grad=False)
        conv.norm = None
    return model


def optimize_for_inference(model: nn.Module, *, channels_last: bool = True) -> nn.Module:
    """Put ``model`` in eval mode, fold its batch norms (:func:`fuse_conv_bn`) and, with
    ``channels_last``, store its convolution weights NHWC; in place, returns ``model``.

    channels_last lets oneDNN (CPU) and cuDNN (GPU) skip layout conversions around each
    convolution; ``benchmarks/bench_detector.py`` measures each step separately.
    """
    fuse_conv_bn(model.eval())
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model
