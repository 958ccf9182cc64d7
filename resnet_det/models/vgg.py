"""VGG-16 (Simonyan & Zisserman, 2015), the paper's baseline detector backbone.

Layers carry the paper's names (``conv1_1``..``conv5_3``, ``fc6``, ``fc7``, ``fc8``) so the
detector reuses conv1_1..conv5_3 as its stride-16 backbone and fc6/fc7 as its box head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VGG16_STAGES", "VGG16", "build_vgg16"]

# Output channels of the convolutions of each of the five stages (configuration D).
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
CONV_NAMES = tuple(f"conv{s + 1}_{i + 1}" for s, widths in enumerate(VGG16_STAGES) for i in range(len(widths)))
FC_DIM = 4096
POOLED_SIZE = 7


class VGG16(nn.Module):
    """VGG-16: ``model(x)`` gives logits; ``forward_features(x, pool5=False)`` gives conv5_3 at
    stride 16 (the detector's feature map) or, with ``pool5=True``, at stride 32."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        channels = in_channels
        for name, width in zip(CONV_NAMES, (w for stage in VGG16_STAGES for w in stage)):
            self.add_module(name, nn.Conv2d(channels, width, kernel_size=3, padding=1))
            channels = width
        self.out_channels = channels
        self.fc6 = nn.Linear(channels * POOLED_SIZE * POOLED_SIZE, FC_DIM)
        self.fc7 = nn.Linear(FC_DIM, FC_DIM)
        self.dropout = nn.Dropout(dropout)
        self.num_classes = num_classes or 0
        self.fc8 = nn.Linear(FC_DIM, num_classes) if num_classes else None
        self.arch = dict(name="vgg16", num_classes=self.num_classes, in_channels=in_channels)
        self._init_weights()

    def _init_weights(self):
        # torchvision's VGG initialisation (He init for convs, N(0, 0.01) for the fc layers).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x, pool5: bool = False) -> torch.Tensor:
        """conv5_3 after ReLU: stride 16 (no pool5, as Faster R-CNN uses it) or 32 with pool5."""
        if x.dim() != 4:
            raise ValueError(f"expected an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
        for name in CONV_NAMES:
            if name.endswith("_1") and name != "conv1_1":
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            x = F.relu(getattr(self, name)(x), inplace=True)
        if pool5:
            x = F.max_pool2d(x, kernel_size=2, stride=2)
        return x

    def forward(self, x):
        """Class logits (N, num_classes); the fc7 features when built with no classifier."""
        x = torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x, pool5=True), POOLED_SIZE), 1)
        x = self.dropout(F.relu(self.fc7(self.dropout(F.relu(self.fc6(x), inplace=True))), inplace=True))
        return x if self.fc8 is None else self.fc8(x)


def build_vgg16(num_classes: int = 1000, *, in_channels: int = 3, dropout: float = 0.5) -> VGG16:
    """VGG-16 (configuration D) with ``num_classes`` outputs (0: no fc8)."""
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    return VGG16(num_classes=num_classes, in_channels=in_channels, dropout=dropout)
