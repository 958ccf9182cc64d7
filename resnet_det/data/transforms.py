"""Train/eval transforms (torchvision.transforms.v2), batch mixing and batch normalisation.

Samples stay uint8 from the decoder to the device (a quarter of float32's bytes between
processes); :class:`NormalizeBatch` converts whole batches where the model runs. ImageNet's
mean/std in [0, 1] equal the 0..255 ``PIXEL_MEAN``/``PIXEL_STD`` of the exported backbone file,
so the detector sees the input statistics pretraining saw."""
from __future__ import annotations

import torch
from torch.utils.data import default_collate
from torchvision.transforms import v2

from resnet_det.checkpoint.backbone_file import PIXEL_MEAN_RGB, PIXEL_STD_RGB
from resnet_det.data.samplers import derived_seed, seeded_rngs

__all__ = ["MEAN", "STD", "build_train_transform", "build_eval_transform", "NormalizeBatch", "MixCollate"]

MEAN = tuple(m / 255.0 for m in PIXEL_MEAN_RGB)  # (0.485, 0.456, 0.406)
STD = tuple(s / 255.0 for s in PIXEL_STD_RGB)  # (0.229, 0.224, 0.225)


def build_train_transform(recipe="paper", crop_size=224, resize_range=(256, 480), color_jitter=0.4):
    """PIL image -> augmented uint8 CHW tensor (normalise batches with :class:`NormalizeBatch`).

    ``paper`` (He et al. 2016, Sec. 3.4): short side resized to a random size in
    ``resize_range``, random ``crop_size`` crop, horizontal flip, colour augmentation. The
    paper's PCA lighting noise (Krizhevsky et al.) is approximated by ``ColorJitter``.
    ``modern``: ``RandomResizedCrop(crop_size)`` and flip (jitter only if ``color_jitter``).
    """
    if recipe == "paper":
        lo, hi = resize_range
        geometric = [v2.RandomResize(lo, hi + 1, antialias=True), v2.RandomCrop(crop_size)]
    elif recipe == "modern":
        geometric = [v2.RandomResizedCrop(crop_size, antialias=True)]
    else:
        raise ValueError(f"unknown DATA.RECIPE {recipe!r}; valid: 'paper', 'modern'")
    colour = [v2.ColorJitter(color_jitter, color_jitter, color_jitter)] if color_jitter > 0 else []
    # Everything runs on uint8 tensors: torch's uint8 antialiased resize is faster than PIL's,
    # and the float conversion is left to the device, batched.
    return v2.Compose([v2.ToImage(), *geometric, v2.RandomHorizontalFlip(), *colour])


def build_eval_transform(crop_size=224, resize=256, ten_crop=False):
    """Short side to ``resize``, then the centre ``crop_size`` crop (uint8 CHW) or the paper's 10
    crops (corners + centre, and their flips; uint8 ``10xCHW``)."""
    crop = [v2.TenCrop(crop_size), torch.stack] if ten_crop else [v2.CenterCrop(crop_size)]
    return v2.Compose([v2.ToImage(), v2.Resize(resize, antialias=True), *crop])


class NormalizeBatch(torch.nn.Module):
    """Image batch (``...xCxHxW``; uint8 in 0..255 or float in 0..1, torchvision's convention)
    -> float32 normalised with :data:`MEAN`/:data:`STD`, on the batches' device (move it there once).

    ``reuse_output=True`` writes each CPU batch into the previous call's output tensor when shape
    and memory format match: a fresh 38 MB batch is new pages faulted in on first write, most of
    the cost of normalising on a CPU (docs/benchmarks.md). Only for a caller done with a batch
    before it normalises the next one (a training loop once ``backward()`` freed the graph)."""

    def __init__(self, reuse_output: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(-1, 1, 1), persistent=False)
        self.reuse_output = reuse_output
        self._out = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # The same operations as v2.ToDtype(float32, scale=True) + v2.Normalize(MEAN, STD) per
        # sample, so the numbers are those of a per-sample pipeline.
        if not (self.reuse_output and images.device.type == "cpu"):
            images = v2.functional.to_dtype(images, torch.float32, scale=True)
            return images.sub(self.mean).div_(self.std)
        out = self._out
        if out is None or out.shape != images.shape or out.stride() != images.stride() or out.device != images.device:
            self._out = out = torch.empty_like(images, dtype=torch.float32)  # in the batch's memory format
        if images.dtype == torch.uint8:  # to_dtype's uint8 -> float: convert, then * (1/255)
            out.copy_(images).mul_(1.0 / 255)
            return out.sub_(self.mean).div_(self.std)
        return torch.sub(images.to(torch.float32), self.mean, out=out).div_(self.std)


class MixCollate:
    """Collate ``(image, label, index)`` samples, then apply MixUp/CutMix (one of them per batch
    when both are on) under an RNG seeded from the batch's first sample, so mixing is as
    reproducible as the per-sample augmentation. Labels become soft ``(B, num_classes)``, and
    mixed uint8 images become float in [0, 1] (a blend of 8-bit pixels is not 8-bit)."""

    def __init__(self, num_classes, mixup_alpha=0.0, cutmix_alpha=0.0, seed=0):
        choices = []
        if mixup_alpha > 0:
            choices.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
        if cutmix_alpha > 0:
            choices.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        self.mix = v2.RandomChoice(choices) if len(choices) > 1 else (choices[0] if choices else None)
        self.seed = seed

    def __call__(self, batch):
        images, labels, indices = default_collate(batch)
        if self.mix is not None:
            images = v2.functional.to_dtype(images, torch.float32, scale=True)
            with seeded_rngs(derived_seed(self.seed, int(indices[0]), len(indices))):
                images, labels = self.mix(images, labels)
        return images, labels, indices
