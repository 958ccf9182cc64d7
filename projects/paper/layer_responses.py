"""Layer responses (the paper's Figure 7): the std of each residual branch's output, taken after
the block's last BN and before the addition (and before the ReLU), for plain and residual nets.

The paper's argument: if identity mappings are near optimal, residual branches learn small
responses, so ResNets show smaller stds than their plain counterparts, and the deeper the net,
the smaller each block's share.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from resnet_det.utils.plotting import new_figure, save_figure

__all__ = [
    "residual_blocks",
    "layer_responses",
    "study_layer_responses",
    "init_layer_responses",
    "plot_layer_responses",
]


def residual_blocks(model) -> list:
    """The blocks of ``model`` (a ResNet or CIFAR ResNet of this package), in forward order."""
    stages = getattr(model, "stages", None)
    if not stages:
        raise ValueError(
            f"{type(model).__name__} has no 'stages'; layer responses need a network built by "
            f"build_resnet or build_cifar_resnet"
        )
    return [block for stage in stages for block in stage]


@torch.no_grad()
def layer_responses(model, images: torch.Tensor, batch_stats: bool = False) -> list[float]:
    """One std per block of ``model`` on ``images`` (a normalised float batch).

    The std is taken per channel over images and positions, then averaged over channels, so it
    measures the response's scale and not the spread of BN's per-channel offsets. BN uses its
    running statistics (a trained net in test mode) unless ``batch_stats`` is set, which suits a
    net at random init whose running statistics were never estimated; the model is not modified.
    """
    if batch_stats:
        # A copy: train-mode BN would otherwise overwrite the caller's running statistics.
        model = copy.deepcopy(model).train()
    else:
        was_training = model.training
        model.eval()
    blocks = residual_blocks(model)
    stds: list = [None] * len(blocks)

    def hook_for(i):
        def hook(module, inputs, output):
            stds[i] = output.float().transpose(0, 1).flatten(1).std(dim=1).mean().item()

        return hook

    # The last conv of a block is detectron2's Conv2d with its norm applied inside: its output is
    # the branch output after the last BN, before the shortcut is added.
    handles = [b.last_conv().register_forward_hook(hook_for(i)) for i, b in enumerate(blocks)]
    try:
        model(images)
    finally:
        for h in handles:
            h.remove()
        if not batch_stats:
            model.train(was_training)
    return stds


def study_layer_responses(study_dir, num_images: int = 500, data_dir=None, cifar10_dir=None):
    """``{model name: stds}`` for every model saved by a degradation study in ``study_dir``, on
    the first ``num_images`` test images of the study's dataset (or of the one given)."""
    from projects.paper.degradation import STUDY_JSON, load_study_data, load_study_model

    study_dir = Path(study_dir)
    path = study_dir / STUDY_JSON
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; run tools/degradation_study.py --out {study_dir} first"
        )
    study = json.loads(path.read_text())
    if data_dir is None and cifar10_dir is None:
        source = study["data"]
        key = "cifar10_dir" if source["kind"] == "cifar10" else "data_dir"
        data = load_study_data(**{key: source["path"]}, image_size=source["image_size"])
    else:
        data = load_study_data(data_dir, cifar10_dir, image_size=study["data"]["image_size"])
    responses = {}
    for name, entry in study["models"].items():
        model, meta = load_study_model(study_dir / entry["weights"])
        # Normalise with the statistics the model was trained with, not the new data's.
        data.pixel_mean, data.pixel_std = meta["pixel_mean"], meta["pixel_std"]
        responses[name] = layer_responses(model, data.normalize(data.test_images[:num_images]))
    return responses


def init_layer_responses(specs, images: torch.Tensor, seed: int = 0) -> dict:
    """``{spec: stds}`` of freshly initialised CIFAR nets (``'plain-20'``, ``'resnet-20'``, ...)
    on ``images``, with BN on batch statistics (the baseline a trained net departs from)."""
    from projects.paper.cifar import build_cifar_resnet
    from projects.paper.degradation import parse_model_spec

    responses = {}
    for spec in specs:
        depth, plain = parse_model_spec(spec)
        torch.manual_seed(seed)
        model = build_cifar_resnet(depth, plain=plain)
        responses[f"{'plain' if plain else 'resnet'}-{depth}"] = layer_responses(
            model, images, batch_stats=True
        )
    return responses


def plot_layer_responses(responses: dict, path, title: str | None = None) -> Path:
    """Figure 7 style PNG: std vs block index (top) and the same stds sorted by magnitude
    (bottom), one line per model (``responses``: name -> list of stds)."""
    from matplotlib import colormaps

    fig = new_figure((7, 6.5))
    top, bottom = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    # One colour per depth, dashed for plain nets: a plain net and its ResNet read as a pair.
    depths = sorted({len(stds) for stds in responses.values()})
    colors = dict(zip(depths, colormaps["tab10"].colors))
    for name, stds in responses.items():
        style = dict(ls="--" if name.startswith("plain") else "-", marker=".", label=name,
                     color=colors[len(stds)])  # fmt: skip
        top.plot(range(1, len(stds) + 1), stds, **style)
        bottom.plot(range(1, len(stds) + 1), sorted(stds, reverse=True), **style)
    top.set_xlabel("block index (original order)")
    bottom.set_xlabel("block index (sorted by magnitude)")
    for ax in (top, bottom):
        ax.set_ylabel("std of branch output")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    top.set_title(title or "Responses of each block's last BN, before the addition", fontsize=9)
    return save_figure(fig, path)
