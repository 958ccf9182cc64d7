"""The ResNet family of He et al. (CVPR 2016), table-driven by depth as in the paper's Table 1.

Module names follow detectron2 (``stem``, ``res2``..``res5``, ``conv1..conv3`` each carrying its
``norm``, ``shortcut``), so detectron2 checkpoints load unchanged and the classifier trained by
``tools/pretrain_cls.py`` is the detector's backbone with only the ``linear`` head dropped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.layers import CNNBlockBase, Conv2d, get_norm
from detectron2.modeling.backbone.resnet import BasicBlock as _D2BasicBlock
from detectron2.modeling.backbone.resnet import BasicStem
from detectron2.modeling.backbone.resnet import BottleneckBlock as _D2BottleneckBlock
from detectron2.modeling.backbone.resnet import ResNet as _D2ResNet
from fvcore.nn import weight_init
from torch import nn

__all__ = ["RESNET_SPECS", "SHORTCUTS", "NORMS", "STAGE_NAMES", "ZeroPadShortcut", "BasicBlock", "BottleneckBlock",
           "ResNet", "build_resnet", "build_resnet_stem_and_stages", "make_resnet_stage"]

# Table 1: block type and number of blocks in conv2_x .. conv5_x.
RESNET_SPECS = {18: ("basic", (2, 2, 2, 2)),
                34: ("basic", (3, 4, 6, 3)),
                50: ("bottleneck", (3, 4, 6, 3)),
                101: ("bottleneck", (3, 4, 23, 3)),
                152: ("bottleneck", (3, 8, 36, 3))}
SHORTCUTS = ("A", "B", "C")
NORMS = ("BN", "FrozenBN", "SyncBN", "GN")
STAGE_NAMES = ("res2", "res3", "res4", "res5")
# The paper's width: the stem's output channels, and res2's (res3..res5 double it stage by
# stage; bottlenecks expand it 4x). ``width`` scales the whole network (half: a quarter of the
# parameters); a multiple of 32, so that GroupNorm's 32 groups divide every layer.
STEM_CHANNELS = 64
WIDTH_MULTIPLE = 32


def valid_width(width) -> bool:
    """Whether ``width`` can be a ResNet's (its config keys' rule too)."""
    return type(width) is int and width >= WIDTH_MULTIPLE and width % WIDTH_MULTIPLE == 0


def _check_width(width):
    if not valid_width(width):
        raise ValueError(f"width must be a positive multiple of {WIDTH_MULTIPLE} (the paper's: "
                         f"{STEM_CHANNELS}), got {width!r}")


def _check_choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values: {', '.join(map(repr, valid))}")


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: identity, subsampled by ``stride``, with zero channels appended for
    increased dimensions. Parameter free."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option A cannot reduce channels ({in_channels} -> {out_channels})")
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x


def _make_shortcut(in_channels, out_channels, stride, shortcut, plain, norm):
    """The shortcut module for one block (None means identity, or no shortcut when ``plain``)."""
    if plain:
        return None
    changes_shape = in_channels != out_channels or stride != 1
    if shortcut == "A" and changes_shape:
        return ZeroPadShortcut(in_channels, out_channels, stride)
    if shortcut == "C" or (shortcut == "B" and changes_shape):
        conv = Conv2d(in_channels,
                      out_channels,
                      kernel_size=1,
                      stride=stride,
                      bias=False,
                      norm=get_norm(norm, out_channels))
        weight_init.c2_msra_fill(conv)
        return conv
    return None


class _ResidualMixin:
    """What both block types share: the shortcut options, and adding the shortcut (unless plain)
    before the last ReLU. The forwards are written out per block so that TorchScript compiles them."""

    def _set_shortcut(self, in_channels, out_channels, stride, shortcut, plain, norm):
        _check_choice("shortcut", shortcut, SHORTCUTS)
        self.plain = plain
        self.shortcut = _make_shortcut(in_channels, out_channels, stride, shortcut, plain, norm)

    def last_conv(self):
        """The residual branch's last convolution (with its norm)."""
        return getattr(self, "conv3", None) or self.conv2

    def _merge(self, out, x):
        if not self.plain:
            if self.shortcut is not None:
                out += self.shortcut(x)
            else:
                out += x
        return F.relu_(out)


class BasicBlock(_ResidualMixin, _D2BasicBlock):
    """Two 3x3 convolutions (ResNet-18/34), detectron2's block with shortcut options A/B/C and
    the paper's plain (no shortcut) variant."""

    def __init__(self, in_channels, out_channels, *, stride=1, norm="BN", shortcut="B", plain=False):
        _D2BasicBlock.__init__(self, in_channels, out_channels, stride=stride, norm=norm)
        self._set_shortcut(in_channels, out_channels, stride, shortcut, plain, norm)

    def forward(self, x):
        return self._merge(self.conv2(F.relu_(self.conv1(x))), x)


class BottleneckBlock(_ResidualMixin, _D2BottleneckBlock):
    """1x1-3x3-1x1 bottleneck (ResNet-50/101/152). ``stride_in_1x1`` puts the stride on the first
    1x1 (MSRA/Caffe, the paper) instead of the 3x3 (torchvision v1.5)."""

    def __init__(
        self,
        in_channels,
        out_channels,
        *,
        bottleneck_channels,
        stride=1,
        norm="BN",
        stride_in_1x1=True,
        dilation=1,
        shortcut="B",
        plain=False,
    ):
        _D2BottleneckBlock.__init__(self,
                                    in_channels,
                                    out_channels,
                                    bottleneck_channels=bottleneck_channels,
                                    stride=stride,
                                    norm=norm,
                                    stride_in_1x1=stride_in_1x1,
                                    dilation=dilation)
        self._set_shortcut(in_channels, out_channels, stride, shortcut, plain, norm)

    def forward(self, x):
        return self._merge(self.conv3(F.relu_(self.conv2(F.relu_(self.conv1(x))))), x)


def make_resnet_stage(
    depth: int,
    stage: str,
    *,
    in_channels: int | None = None,
    first_stride: int | None = None,
    norm: str = "BN",
    shortcut: str = "B",
    plain: bool = False,
    stride_in_1x1: bool = True,
    dilation: int = 1,
    width: int = STEM_CHANNELS,
) -> list[CNNBlockBase]:
    """The blocks of one stage (``'res2'``..``'res5'``) of a ResNet of the given depth and
    ``width`` (res2's; each later stage doubles it).

    ``in_channels``/``first_stride`` default to the values the stage has inside the full network;
    the C4 detector's RoI head passes them explicitly when it runs ``res5`` on pooled features.
    """
    _check_choice("depth", depth, tuple(RESNET_SPECS))
    _check_width(width)
    _check_choice("stage", stage, STAGE_NAMES)
    _check_choice("norm", norm, NORMS)
    kind, counts = RESNET_SPECS[depth]
    idx = STAGE_NAMES.index(stage)
    expansion = 1 if kind == "basic" else 4
    stage_width = width * 2**idx
    out_channels = stage_width * expansion
    if in_channels is None:
        in_channels = width if idx == 0 else stage_width // 2 * expansion
    if first_stride is None:
        first_stride = 1 if idx == 0 or dilation > 1 else 2
    options = dict(norm=norm, shortcut=shortcut, plain=plain)
    if kind == "basic":
        if dilation != 1:
            raise ValueError(f"dilation={dilation} needs a bottleneck ResNet (depth 50/101/152)")
        block_class = BasicBlock
    else:
        block_class = BottleneckBlock
        options.update(bottleneck_channels=stage_width, stride_in_1x1=stride_in_1x1, dilation=dilation)
    return _D2ResNet.make_stage(block_class,
                                counts[idx],
                                stride_per_block=[first_stride] + [1] * (counts[idx] - 1),
                                in_channels=in_channels,
                                out_channels=out_channels,
                                **options)


def build_resnet_stem_and_stages(
    depth: int,
    *,
    stages=STAGE_NAMES,
    in_channels: int = 3,
    norm: str = "BN",
    shortcut: str = "B",
    plain: bool = False,
    stride_in_1x1: bool = True,
    zero_init_residual: bool = False,
    width: int = STEM_CHANNELS,
):
    """The stem and the list of stages (lists of blocks) named in ``stages``, all built alike."""
    _check_choice("depth", depth, tuple(RESNET_SPECS))
    _check_choice("norm", norm, NORMS)
    _check_choice("shortcut", shortcut, SHORTCUTS)
    _check_width(width)
    if list(stages) != list(STAGE_NAMES[: len(stages)]):
        raise ValueError(f"stages must be a prefix of {STAGE_NAMES}, got {tuple(stages)}")
    stem = BasicStem(in_channels, width, norm=norm)
    built = [
        make_resnet_stage(
            depth, s, norm=norm, shortcut=shortcut, plain=plain, stride_in_1x1=stride_in_1x1, width=width
        )
        for s in stages
    ]
    if zero_init_residual:
        for blocks in built:
            for block in blocks:
                zero_init_last_norm(block)
    return stem, built


def zero_init_last_norm(block) -> None:
    """Start a residual branch at zero: its last norm's scale is 0 (Goyal et al., 2017)."""
    norm = block.last_conv().norm
    if not hasattr(norm, "weight") or norm.weight is None:
        raise ValueError(f"zero_init_residual needs a norm with a scale, got {type(norm).__name__}")
    with torch.no_grad():
        norm.weight.zero_()


# Where NHWC activations pay (oneDNN and cuDNN skip the layout reorders around NCHW ones):
# bottleneck nets on a CPU and every BN-family net on CUDA (docs/benchmarks.md#backbone).
CHANNELS_LAST_DEVICES = ("cpu", "cuda")


def _channels_last_pays(device_type: str, block: str, norm: str) -> bool:
    if device_type == "cuda":
        return norm != "GN"
    return device_type == "cpu" and block == "bottleneck"


class ResNet(_D2ResNet):
    """A ResNet classifier: ``model(x)`` gives logits, ``model.forward_features(x)`` the dict of
    stage outputs ``stem, res2..res5``. Built by :func:`build_resnet`.

    ``channels_last``: ``True`` moves the input to the channels_last memory format on CPU and
    CUDA, so every activation is NHWC; values and shapes are unchanged (up to float summation
    order), and the feature maps come back channels_last (use ``reshape``, not ``view``, to
    flatten them). ``None`` (the default) does so where it runs faster: on CUDA (BN family
    norms) and, on CPU, for the bottleneck depths 50/101/152. ``False`` never. The
    weights keep their format; ``model.to(memory_format=torch.channels_last)`` stores them NHWC
    too (SOLVER.CHANNELS_LAST in pretraining).
    """

    def __init__(self, stem, stages, num_classes=1000, freeze_at=0, channels_last=None, **arch):
        super().__init__(stem,
                         stages,
                         num_classes=num_classes or None,
                         freeze_at=freeze_at)
        self.channels_last = channels_last
        # Every option needed to rebuild this network, recorded with exported weights.
        self.arch = dict(name="resnet", **arch, num_classes=num_classes or 0)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        if self.channels_last is None:
            block = RESNET_SPECS.get(self.arch.get("depth"), ("basic",))[0]
            nhwc = _channels_last_pays(x.device.type, block, self.arch.get("norm", "BN"))
        else:
            nhwc = self.channels_last and x.device.type in CHANNELS_LAST_DEVICES
        return x.contiguous(memory_format=torch.channels_last) if nhwc else x

    def forward_features(self, x) -> dict[str, torch.Tensor]:
        """Outputs of the stem and every stage (strides 4, 4, 8, 16, 32)."""
        x = self._layout(x)
        x = self.stem(x)
        outputs = {"stem": x}
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(x)
            outputs[name] = x
        return outputs

    def forward(self, x):
        """Class logits (N, num_classes); the pooled features when built with no classifier."""
        if self.num_classes is None:
            last = self.forward_features(x)[self.stage_names[-1]]
            return torch.flatten(F.adaptive_avg_pool2d(last, 1), 1)
        return super().forward(self._layout(x))["linear"]


def build_resnet(
    depth: int,
    num_classes: int = 1000,
    *,
    shortcut: str = "B",
    plain: bool = False,
    norm: str = "BN",
    stride_in_1x1: bool = True,
    zero_init_residual: bool = False,
    freeze_at: int = 0,
    in_channels: int = 3,
    channels_last: bool | None = None,
    width: int = STEM_CHANNELS,
) -> ResNet:
    """ResNet-``depth`` (18/34/50/101/152) of the paper's Table 1.

    ``shortcut``: 'A' zero-padding, 'B' projection when dimensions change (default), 'C'
    projection everywhere; ``plain=True`` drops all shortcuts. ``norm``: 'BN', 'FrozenBN',
    'SyncBN' or 'GN'. ``stride_in_1x1=True`` is the paper's (MSRA) placement, False
    torchvision's. ``freeze_at`` (0..5) freezes the stem and stages up to res{freeze_at}, as
    detectron2's ``MODEL.BACKBONE.FREEZE_AT``. ``num_classes=0`` builds no classifier head.
    ``width``: the stem's and res2's channels (the paper's 64; a multiple of 32), each later
    stage twice the one before.
    ``channels_last`` (None: where it runs faster; True; False) runs the activations NHWC (see
    :class:`ResNet`); a run-time choice, not part of the architecture, so not in ``arch``.
    """
    if not 0 <= freeze_at <= 5:
        raise ValueError(f"freeze_at must be in 0..5, got {freeze_at}")
    arch = resnet_arch(depth, shortcut=shortcut, plain=plain, norm=norm, stride_in_1x1=stride_in_1x1,
                       zero_init_residual=zero_init_residual, in_channels=in_channels, width=width)
    del arch["name"], arch["num_classes"]  # ResNet records them itself
    stem, stages = build_resnet_stem_and_stages(**arch)
    return ResNet(stem, stages, num_classes=num_classes, freeze_at=freeze_at,
                  channels_last=channels_last, **arch)


def resnet_arch(depth: int, *, shortcut="B", plain=False, norm="BN", stride_in_1x1=True,
                zero_init_residual=False, in_channels=3, num_classes=0, width=STEM_CHANNELS) -> dict:
    """The architecture record of a ResNet (``model.arch``, and ``arch`` in a weights file's
    metadata): every option :func:`build_resnet` needs to rebuild it (``build_model``). Files
    written before ``width`` existed lack it: they hold the paper's width, 64."""
    return dict(name="resnet", depth=depth, shortcut=shortcut, plain=plain, norm=norm,
                stride_in_1x1=stride_in_1x1, zero_init_residual=zero_init_residual,
                in_channels=in_channels, num_classes=num_classes, width=width)
