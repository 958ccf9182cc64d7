"""Backbone names and initialisations of the comparison, as config overrides on one base config.

A backbone spec on the command line is ``NAME[:key=value...]``:

- ``NAME``: ``vgg16``; ``r18`` ``r34`` ``r50`` ``r101`` ``r152`` (the paper's C4 design);
  ``r18-fpn`` ... ``r152-fpn``. Each is the design of one of configs/Base-R101-C4.yaml,
  Base-R101-FPN.yaml, Base-VGG16.yaml (:data:`DESIGN_KEYS`, read from those files) applied on
  top of the base config, at the name's depth;
- ``weights=PATH``: a backbone file of tools/pretrain_cls.py, a torchvision ResNet/VGG-16
  checkpoint (then FrozenBN, torchvision's stride placement and FREEZE_AT 2, as detectron2's
  recipes) or a detector checkpoint (fine-tuned as it is); default: random initialisation;
- ``seed=S``: SEED (another draw of the same run); ``label=NAME``: the run's folder name.

Everything else (data, schedule, image sizes, norm, RPN/RoI sample sizes) comes from the base
config and the shared ``KEY VALUE`` overrides, identical for every backbone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from resnet_det.config import ConfigError, load_config

__all__ = ["BACKBONES", "DESIGN_KEYS", "Spec", "describe_run", "parse_spec", "run_overrides", "weights_kind"]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
DESIGN_FILES = {"c4": "Base-R101-C4.yaml", "fpn": "Base-R101-FPN.yaml", "vgg16": "Base-VGG16.yaml"}
# What makes a design (the layout of the network), taken from its Base-*.yaml; sizes of samples,
# proposals and images stay the base config's, shared by all backbones.
DESIGN_KEYS = ("MODEL.BACKBONE.NAME", "MODEL.RESNETS.OUT_FEATURES", "MODEL.FPN.IN_FEATURES", "MODEL.RPN.IN_FEATURES",
               "MODEL.ROI_HEADS.NAME", "MODEL.ROI_HEADS.IN_FEATURES", "MODEL.ROI_BOX_HEAD.NAME",
               "MODEL.ROI_BOX_HEAD.NUM_FC", "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION")
# Left to the base config in a design: C4's RoI size (res5 runs on every RoI, so at the paper's
# 14x14 it is most of a CPU step; the CPU configs pool 6x6). FPN's and VGG-16's 7x7 are fixed
# (VGG-16's fc6 takes 7x7x512).
BASE_SIZED = {"c4": ("MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION",)}
DEPTHS = (18, 34, 50, 101, 152)
# name -> (design, depth)
BACKBONES = {"vgg16": ("vgg16", None), **{f"r{d}": ("c4", d) for d in DEPTHS},
             **{f"r{d}-fpn": ("fpn", d) for d in DEPTHS}}
SPEC_KEYS = ("weights", "seed", "label")
# How a weights file of each kind shows in a run's label.
KIND_LABELS = {"backbone": "pretrained", "torchvision": "torchvision", "detector": "finetuned"}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Spec:
    """One run of the comparison: a backbone name, its initialisation and seed, and its label."""

    name: str
    weights: str = ""
    seed: int | None = None
    label: str = ""
    kind: str = "random"  # random | backbone | torchvision | detector
    options: dict = field(default_factory=dict)

    @property
    def design(self) -> str:
        return BACKBONES[self.name][0]

    @property
    def depth(self) -> int | None:
        return BACKBONES[self.name][1]


def parse_spec(text: str) -> Spec:
    """``NAME[:weights=PATH][:seed=S][:label=L]`` -> :class:`Spec` (weights file kind detected)."""
    name, *items = text.split(":")
    if "." in name and name.isupper():
        raise ConfigError(f"--backbones {text!r} looks like a config key: put KEY VALUE overrides last, after "
                          "--output DIR")
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r} in --backbones; choose from {', '.join(BACKBONES)}")
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in SPEC_KEYS or not value:
            raise ConfigError(f"--backbones {text!r}: {item!r} is not one of "
                              f"{', '.join(k + '=...' for k in SPEC_KEYS)}")
        options[key] = value
    spec = Spec(name, options=options)
    if "seed" in options:
        if not options["seed"].isdigit():
            raise ConfigError(f"--backbones {text!r}: seed must be an integer >= 0, got {options['seed']!r}")
        spec.seed = int(options["seed"])
    if "weights" in options:
        spec.weights = options["weights"]
        spec.kind = weights_kind(spec.weights)
        if spec.kind == "torchvision" and spec.design != "vgg16" and spec.depth is None:
            raise ConfigError(f"--backbones {text!r}: a torchvision checkpoint for a network of no depth")
    spec.label = options.get("label") or default_label(spec)
    if not _LABEL.match(spec.label):
        raise ConfigError(f"--backbones {text!r}: label {spec.label!r} must be letters, digits, '.', '_' or '-'")
    return spec


def default_label(spec: Spec) -> str:
    """``NAME``, plus ``-pretrained``/``-torchvision``/``-finetuned`` for a weights file and
    ``-seedS`` for a seed given explicitly."""
    label = spec.name + (f"-{KIND_LABELS[spec.kind]}" if spec.weights else "")
    return label + (f"-seed{spec.seed}" if spec.seed is not None else "")


def weights_kind(path) -> str:
    """``backbone`` (a tools/pretrain_cls.py file), ``torchvision`` or ``detector``: what the
    weights file at ``path`` holds, read safely (no pickle)."""
    from resnet_det.checkpoint import BACKBONE_FORMAT, load_state_dict_file, read_safetensors_metadata
    from resnet_det.checkpoint.torchvision import is_torchvision_resnet, is_torchvision_vgg16

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weights file (--backbones ...:weights=PATH)")
    if path.suffix == ".safetensors" and (read_safetensors_metadata(path) or {}).get("format") == BACKBONE_FORMAT:
        return "backbone"
    state = load_state_dict_file(path)
    if any(k.startswith(("backbone.", "roi_heads.")) for k in state):
        return "detector"
    if is_torchvision_resnet(state) or is_torchvision_vgg16(state):
        return "torchvision"
    raise ConfigError(f"{path}: neither a backbone file of tools/pretrain_cls.py, a torchvision ResNet/VGG-16 "
                      "checkpoint nor a detector checkpoint (its keys are none of theirs)")


def _design_values(design: str) -> dict:
    """The :data:`DESIGN_KEYS` of a design, as its configs/Base-*.yaml sets them."""
    cfg = load_config(str(CONFIGS / DESIGN_FILES[design]))
    values = {}
    for key in (k for k in DESIGN_KEYS if k not in BASE_SIZED.get(design, ())):
        node = cfg
        for part in key.split("."):
            node = node[part]
        values[key] = node
    return values


def anchor_sizes(base_sizes, design: str, levels: int) -> list:
    """The base config's anchor sizes laid out for ``design``: all in one level (C4, VGG-16), or
    one per pyramid level (FPN; doubling from the smallest when the base has not ``levels`` of
    them), as detectron2's defaults lay out 32..512 both ways."""
    sizes = sorted({float(s) for level in base_sizes for s in level})
    if design != "fpn":
        return [sizes]
    if len(sizes) != levels:
        sizes = [sizes[0] * 2 ** i for i in range(levels)]
    return [[s] for s in sizes]


def run_overrides(base_cfg, spec: Spec) -> list[str]:
    """``KEY VALUE`` overrides that turn ``base_cfg`` (the loaded base config with the shared
    overrides) into ``spec``'s detector: design, depth, initialisation, seed."""
    values = _design_values(spec.design)
    levels = len(values["MODEL.RPN.IN_FEATURES"])
    values["MODEL.ANCHOR_GENERATOR.SIZES"] = anchor_sizes(base_cfg.MODEL.ANCHOR_GENERATOR.SIZES, spec.design, levels)
    if spec.depth is not None:
        # load_config fills RES2_OUT_CHANNELS in from the width (0); bottlenecks need
        # WIDTH_PER_GROUP = the width (STEM_OUT_CHANNELS).
        values.update({"MODEL.RESNETS.DEPTH": spec.depth, "MODEL.RESNETS.RES2_OUT_CHANNELS": 0,
                       "MODEL.RESNETS.WIDTH_PER_GROUP": base_cfg.MODEL.RESNETS.STEM_OUT_CHANNELS})
    if spec.weights:
        values["MODEL.WEIGHTS"] = str(Path(spec.weights).resolve())
    if spec.kind == "torchvision":
        # detectron2's recipes for ImageNet weights: frozen statistics, stem + res2 fixed.
        values["MODEL.BACKBONE.FREEZE_AT"] = 2
        if spec.depth is not None:
            values.update({"MODEL.RESNETS.NORM": "FrozenBN", "MODEL.RESNETS.STRIDE_IN_1X1": False})
    if spec.seed is not None:
        values["SEED"] = spec.seed
    return [item for key, value in values.items() for item in (key, _literal(value))]


def _literal(value) -> str:
    """A value as yacs' ``merge_from_list`` reads it back (Python literal, strings bare)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return repr([_plain(v) for v in value])
    return repr(value)


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def describe_run(cfg) -> dict:
    """``{"name", "design", "depth", "init", "weights", "seed"}`` read back from a run's config
    (for --runs folders that the comparison did not start)."""
    backbone = cfg.MODEL.BACKBONE.NAME
    design = {"build_resnet_det_backbone": "c4", "build_resnet_det_fpn_backbone": "fpn",
              "build_vgg16_backbone": "vgg16"}.get(backbone)
    depth = cfg.MODEL.RESNETS.DEPTH if design in ("c4", "fpn") else None
    name = next((n for n, d in BACKBONES.items() if d == (design, depth)), backbone)
    weights = cfg.MODEL.WEIGHTS
    try:
        init = weights_kind(weights) if weights else "random"
    except (FileNotFoundError, ConfigError, ValueError):
        init = "unknown"  # the file moved or is not readable: say so rather than guess
    return {"name": name, "design": design or backbone, "depth": depth, "init": init, "weights": weights,
            "seed": cfg.SEED}
