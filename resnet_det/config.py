"""This plugin's config keys on top of detectron2's, and the one merge-and-check mechanism of both
stages' configs (:func:`merge_config`, :func:`check_rules`): errors name the file, the key, the
closest known keys or what to write instead, and the allowed values."""
from __future__ import annotations

import difflib
import math

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

from .models.resnet import NORMS, RESNET_SPECS, SHORTCUTS, STEM_CHANNELS, WIDTH_MULTIPLE, valid_width

__all__ = ["ConfigError", "ConfigKeyError", "add_resnet_det_config", "check_rules", "get_cfg", "get_key",
           "learning_rate_warning", "load_config", "merge_config", "number", "one_of", "resnet_options",
           "validate_config"]

# Backbones whose options this plugin reads (the others are detectron2's own).
RESNET_BACKBONES = ("build_resnet_det_backbone", "build_resnet_det_fpn_backbone")
RESNET_FEATURES = ("stem", "res2", "res3", "res4", "res5")


class ConfigError(ValueError):
    """A config value is out of range; the message names the key and the allowed values."""


class ConfigKeyError(ConfigError, KeyError):
    """A config key that does not exist (a ``KeyError``, as yacs raises, and a ConfigError)."""

    def __str__(self):
        return str(self.args[0]) if self.args else ""


# SOLVER.BASE_LR above this many times the reference LR per image (SOLVER.REFERENCE_LR at
# SOLVER.REFERENCE_IMS_PER_BATCH) draws a warning at the start of training: twice the linear
# scaling rule's value (Goyal et al. 2017) still trains in detectron2's recipes; the reported
# divergence was 4x (0.01 at batch 2 on a pretrained backbone).
LR_WARN_FACTOR = 2.0


def add_resnet_det_config(cfg) -> None:
    """Add this plugin's keys (and the dataset keys of :mod:`resnet_det.data.datasets`) to ``cfg``.

    ResNet options reuse detectron2's ``MODEL.RESNETS.*`` (DEPTH, NORM, STRIDE_IN_1X1,
    OUT_FEATURES) and ``MODEL.BACKBONE.FREEZE_AT``; new keys are the paper's options.
    """
    from .data.datasets import add_dataset_config

    # 'A' zero-padding, 'B' projection when dimensions change (the paper's default), 'C' always.
    cfg.MODEL.RESNETS.SHORTCUT = "B"
    # True: the paper's plain network (no shortcuts at all).
    cfg.MODEL.RESNETS.PLAIN = False
    # Start each residual branch at zero (only matters when training from random init).
    cfg.MODEL.RESNETS.ZERO_INIT_RESIDUAL = False
    cfg.MODEL.VGG = CN()
    # Dropout after fc6 and fc7 of the VGG-16 box head, as in Fast/Faster R-CNN.
    cfg.MODEL.VGG.DROPOUT = 0.5
    # The learning rate the recipe was tuned at, and its batch: detectron2's Faster R-CNN
    # schedules use 0.02 at 16 images. Training warns when BASE_LR per image is more than
    # LR_WARN_FACTOR times REFERENCE_LR / REFERENCE_IMS_PER_BATCH (REFERENCE_LR 0.0: no check).
    cfg.SOLVER.REFERENCE_LR = 0.02
    cfg.SOLVER.REFERENCE_IMS_PER_BATCH = 16
    # As in pretraining: iterations between metrics.json/console lines, and how many periodic
    # checkpoints stay on disk (0: all), counted over restarts.
    cfg.SOLVER.LOG_PERIOD = 20
    cfg.SOLVER.MAX_CHECKPOINTS_TO_KEEP = 0
    add_dataset_config(cfg)


def resnet_options(cfg) -> dict:
    """Our ResNet's options (keyword arguments of ``build_resnet``) from either config shape:
    detectron2's ``MODEL.RESNETS.*`` (detection) or ``MODEL.*`` (pretraining), same key names."""
    r = cfg.MODEL.RESNETS if "RESNETS" in cfg.MODEL else cfg.MODEL
    return dict(depth=r.DEPTH, shortcut=r.SHORTCUT, plain=r.PLAIN, norm=r.NORM,
                stride_in_1x1=r.STRIDE_IN_1X1, zero_init_residual=r.ZERO_INIT_RESIDUAL,
                width=r.STEM_OUT_CHANNELS)


def get_cfg():
    """detectron2's default config with this plugin's keys added."""
    cfg = _d2_get_cfg()
    add_resnet_det_config(cfg)
    return cfg


def _is_number(v, integer=False):
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
        return False
    return integer or math.isfinite(v)


def one_of(*choices):
    """A rule: the value is one of ``choices`` (of the same type: True is not 1)."""
    return lambda v: any(v == c and type(v) is type(c) for c in choices), " | ".join(map(str, choices))


def number(lo=None, hi=None, *, integer=False, lo_open=False, hi_open=False, note=""):
    """A rule: an integer (or a finite number) in the range ``lo``..``hi`` (ends included unless
    ``lo_open``/``hi_open``)."""
    def check(v):
        return (_is_number(v, integer) and (lo is None or (v > lo if lo_open else v >= lo))
                and (hi is None or (v < hi if hi_open else v <= hi)))

    words = "an integer" if integer else "a number"
    if lo is not None and hi is not None:
        words += f" in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        words += f" {'>' if lo_open else '>='} {lo}"
    return check, words + (f" ({note})" if note else "")


_positive, _non_negative = number(0, lo_open=True)[0], number(0)[0]


def _device(v):
    return v == "cpu" or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit())


# A ResNet's width (MODEL.RESNETS.STEM_OUT_CHANNELS here, MODEL.STEM_OUT_CHANNELS in pretraining).
WIDTH_RULE = (valid_width, f"a multiple of {WIDTH_MULTIPLE} (the paper's: {STEM_CHANNELS})")

# key -> (check, allowed values in words). Checked by validate_config; also appended to
# yacs' "Type mismatch" messages so they say what to write instead.
RULES = {
    "MODEL.RESNETS.DEPTH": (lambda v: v in RESNET_SPECS, ", ".join(map(str, RESNET_SPECS))),
    "MODEL.RESNETS.NORM": (lambda v: v in NORMS, ", ".join(NORMS)),
    "MODEL.RESNETS.SHORTCUT": (lambda v: v in SHORTCUTS, ", ".join(SHORTCUTS)),
    "MODEL.RESNETS.OUT_FEATURES": (lambda v: len(v) > 0 and set(v) <= set(RESNET_FEATURES),
                                   "a non-empty subset of " + ", ".join(RESNET_FEATURES)),
    "MODEL.RESNETS.NUM_GROUPS": (lambda v: v == 1, "1 (ResNeXt is not part of this plugin)"),
    # The network's width (models/resnet.py): the stem's and res2's channels, doubled per stage.
    "MODEL.RESNETS.STEM_OUT_CHANNELS": WIDTH_RULE,
    "MODEL.RESNETS.RES5_DILATION": (lambda v: v == 1, "1"),
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": (lambda v: not any(v), "all False"),
    "MODEL.BACKBONE.FREEZE_AT": (lambda v: 0 <= v <= 5, "0..5 (0: nothing frozen)"),
    "MODEL.VGG.DROPOUT": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "MODEL.ROI_HEADS.NUM_CLASSES": (lambda v: v >= 1, "an integer >= 1"),
    "MODEL.PIXEL_MEAN": (lambda v: len(v) == 3, "3 numbers"),
    "MODEL.PIXEL_STD": (lambda v: len(v) == 3 and all(_positive(x) for x in v), "3 numbers > 0"),
    "MODEL.DEVICE": (_device, "cpu, cuda or cuda:N"),
    "INPUT.FORMAT": (lambda v: v in ("RGB", "BGR"), "RGB, BGR"),
    "INPUT.MIN_SIZE_TRAIN": (lambda v: len(v) > 0 and all(_positive(x) for x in v),
                             "one or more sizes > 0"),
    "INPUT.MAX_SIZE_TRAIN": (_positive, "a size > 0"),
    "INPUT.MIN_SIZE_TEST": (_non_negative, "a size >= 0 (0: no resizing)"),
    "INPUT.MAX_SIZE_TEST": (_positive, "a size > 0"),
    "SOLVER.BASE_LR": (_positive, "a number > 0"),
    "SOLVER.MAX_ITER": (lambda v: v >= 1, "an integer >= 1"),
    "SOLVER.IMS_PER_BATCH": (lambda v: v >= 1, "an integer >= 1"),
    "SOLVER.REFERENCE_LR": (_non_negative, "a number >= 0 (0: no learning-rate warning)"),
    "SOLVER.REFERENCE_IMS_PER_BATCH": (lambda v: v >= 1, "an integer >= 1"),
    "SOLVER.MOMENTUM": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "SOLVER.WEIGHT_DECAY": (_non_negative, "a number >= 0"),
    "SOLVER.GAMMA": (_positive, "a number > 0"),
    "SOLVER.STEPS": (lambda v: all(s >= 0 for s in v) and list(v) == sorted(v), "increasing iteration numbers >= 0"),
    "SOLVER.WARMUP_ITERS": (lambda v: v >= 0, "an integer >= 0"),
    "SOLVER.WARMUP_FACTOR": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "SOLVER.CHECKPOINT_PERIOD": (lambda v: v >= 1, "an integer >= 1"),
    "SOLVER.LOG_PERIOD": (lambda v: v >= 1, "an integer >= 1"),
    "SOLVER.MAX_CHECKPOINTS_TO_KEEP": (lambda v: v >= 0, "an integer >= 0 (0: keep all)"),
    "TEST.EVAL_PERIOD": (lambda v: v >= 0, "an integer >= 0 (0: only after training)"),
    "DATALOADER.NUM_WORKERS": (lambda v: v >= 0, "an integer >= 0"),
    # The trainer's loader (resnet_det/detection/loader.py) resumes exactly; it draws images
    # like detectron2's TrainingSampler and has no repeat-factor or subset variants.
    "DATALOADER.SAMPLER_TRAIN": (lambda v: v == "TrainingSampler", "TrainingSampler"),
}
# Keys that only mean something for our ResNet backbones.
_RESNET_ONLY = tuple(k for k in RULES if k.startswith("MODEL.RESNETS."))


def get_key(cfg, key, default=None):
    """The value of the dotted ``key`` (``"SOLVER.BASE_LR"``) in ``cfg``; ``default`` when a
    part of it does not exist."""
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return default
        cfg = cfg[part]
    return cfg


def check_rules(cfg, rules, source="config") -> None:
    """Raise :class:`ConfigError` listing every key of ``rules`` (key -> (check, allowed words))
    whose value in ``cfg`` fails its check, each as ``KEY = value; allowed: words``."""
    problems = []
    for key, (check, allowed) in rules.items():
        value = get_key(cfg, key)
        try:
            ok = bool(check(value))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            problems.append(f"  {key} = {value!r}; allowed: {allowed}")
    if problems:
        raise ConfigError(f"{source}: invalid config value(s):\n" + "\n".join(problems))


def validate_config(cfg, source="config") -> None:
    """Raise :class:`ConfigError` listing every key whose value is out of range."""
    uses_resnet = cfg.MODEL.BACKBONE.NAME in RESNET_BACKBONES
    rules = {k: r for k, r in RULES.items() if uses_resnet or k not in _RESNET_ONLY}
    if uses_resnet and RESNET_SPECS.get(cfg.MODEL.RESNETS.DEPTH, ("",))[0] == "bottleneck":
        # detectron2's bottleneck width; ours is the stem's (basic blocks ignore it, as there).
        width = cfg.MODEL.RESNETS.STEM_OUT_CHANNELS
        rules["MODEL.RESNETS.WIDTH_PER_GROUP"] = (lambda v: v == width,
                                                  f"{width} (= MODEL.RESNETS.STEM_OUT_CHANNELS)")
    check_rules(cfg, rules, source)


def merge_config(cfg, config_file=None, opts=(), *, rules=None, renamed=None):
    """Merge ``config_file`` (safe yaml, ``_BASE_`` allowed) and ``opts`` (``[KEY, VALUE, ...]``)
    into ``cfg``, turning yacs' errors into ones that say what to write: an unknown key a
    :class:`ConfigKeyError` with the closest known keys (or, for a key of ``renamed``, old key
    -> what to write instead, that advice), a wrong type a :class:`ConfigError` with the
    allowed words of ``rules``."""
    rules, renamed, opts = rules or {}, renamed or {}, list(opts or ())
    if len(opts) % 2:
        raise ConfigError(f"config overrides must be KEY VALUE pairs; got an odd list: {opts}")
    where = f"{config_file}: " if config_file else ""
    try:
        if config_file:
            # allow_unsafe=False: a yaml file must not construct Python objects (run code).
            cfg.merge_from_file(config_file, allow_unsafe=False)
        where = ""
        cfg.merge_from_list(opts)
    except (KeyError, AssertionError) as e:
        # yacs: KeyError "Non-existent config key: K" from a yaml, AssertionError
        # "Non-existent key: K" from the command line.
        text = str(e.args[0]) if e.args else str(e)
        if "Non-existent" not in text:
            raise
        key = text.rsplit(":", 1)[-1].strip()
        raise _unknown_key(cfg, key, where, renamed) from e
    except ValueError as e:
        # yacs: "Type mismatch (...) with values (...) for config key: KEY"
        key = str(e).rsplit("config key: ", 1)[-1].strip()
        if key in renamed:
            raise _unknown_key(cfg, key, where, renamed) from e
        if key in rules:
            raise ConfigError(f"{where}{e}; allowed: {rules[key][1]}") from e
        raise ConfigError(f"{where}{e}") from e
    return cfg


def _unknown_key(cfg, key, where, renamed):
    if key in renamed:
        return ConfigKeyError(f"{where}config key {key} is no longer used; {renamed[key]}")
    return ConfigKeyError(
        f"{where}Non-existent config key: {key}; closest known keys: "
        f"{difflib.get_close_matches(key, list(_all_keys(cfg)), n=3, cutoff=0.6) or 'none'}"
    )


def load_config(config_file: str | None = None, opts=()):
    """``get_cfg()`` merged with ``config_file`` (safe yaml, ``_BASE_`` allowed) and ``opts``
    (``[KEY, VALUE, ...]``), validated. Type errors name the key and its allowed values."""
    cfg = merge_config(get_cfg(), config_file, opts, rules=RULES)
    validate_config(cfg, config_file or "config")
    return cfg


def _all_keys(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _all_keys(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def learning_rate_warning(cfg) -> str | None:
    """A warning when SOLVER.BASE_LR per image is more than :data:`LR_WARN_FACTOR` times the
    reference (SOLVER.REFERENCE_LR at SOLVER.REFERENCE_IMS_PER_BATCH), naming the linearly
    scaled value for SOLVER.IMS_PER_BATCH; None when it is not."""
    s = cfg.SOLVER
    if not s.REFERENCE_LR:
        return None
    per_image = s.BASE_LR / s.IMS_PER_BATCH
    reference = s.REFERENCE_LR / s.REFERENCE_IMS_PER_BATCH
    if per_image <= LR_WARN_FACTOR * reference:
        return None
    scaled = reference * s.IMS_PER_BATCH
    return (
        f"SOLVER.BASE_LR {s.BASE_LR:g} at SOLVER.IMS_PER_BATCH {s.IMS_PER_BATCH} is "
        f"{per_image / reference:.1f}x the reference learning rate per image "
        f"(SOLVER.REFERENCE_LR {s.REFERENCE_LR:g} at SOLVER.REFERENCE_IMS_PER_BATCH "
        f"{s.REFERENCE_IMS_PER_BATCH}) and may diverge. Scaled linearly to batch "
        f"{s.IMS_PER_BATCH} the reference is SOLVER.BASE_LR {scaled:g}."
    )
