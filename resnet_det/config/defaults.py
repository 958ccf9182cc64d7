"""This plugin's detection config keys on top of detectron2's, their allowed values, and the
checks and warnings run before training starts."""
from __future__ import annotations

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

from resnet_det.config.rules import check_rules, merge_config, number
from resnet_det.models.resnet import NORMS, RESNET_SPECS, SHORTCUTS, STEM_CHANNELS, WIDTH_MULTIPLE, valid_width
from resnet_det.utils.image import MAX_PIXELS

__all__ = ["add_resnet_det_config", "get_cfg", "learning_rate_warning", "load_config", "resnet_options",
           "schedule_warnings", "validate_config"]

# Backbones whose options this plugin reads (the others are detectron2's own).
RESNET_BACKBONES = ("build_resnet_det_backbone", "build_resnet_det_fpn_backbone")
RESNET_FEATURES = ("stem", "res2", "res3", "res4", "res5")


# SOLVER.BASE_LR above this many times the reference LR per image (SOLVER.REFERENCE_LR at
# SOLVER.REFERENCE_IMS_PER_BATCH) draws a warning at the start of training: twice the linear
# scaling rule's value (Goyal et al. 2017) still trains in detectron2's recipes; the reported
# divergence was 4x (0.01 at batch 2 on a pretrained backbone).
LR_WARN_FACTOR = 2.0


def add_resnet_det_config(cfg) -> None:
    """Add this plugin's keys to ``cfg`` (in place). ResNet options reuse detectron2's
    ``MODEL.RESNETS.*`` (DEPTH, NORM, STRIDE_IN_1X1, OUT_FEATURES, STEM_OUT_CHANNELS) and
    ``MODEL.BACKBONE.FREEZE_AT``; the new keys are the paper's options and the dataset keys."""
    # 'A' zero-padding, 'B' projection when dimensions change (the paper's default), 'C' always.
    cfg.MODEL.RESNETS.SHORTCUT = "B"
    # True: the paper's plain network (no shortcuts at all).
    cfg.MODEL.RESNETS.PLAIN = False
    # Start each residual branch at zero (only matters when training from random init).
    cfg.MODEL.RESNETS.ZERO_INIT_RESIDUAL = False
    # res2's output channels follow from STEM_OUT_CHANNELS (x4 in a bottleneck ResNet): 0 (the
    # default) fills that value in; any other value must equal it.
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 0
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
    # Datasets of your own: [[name, json_file, image_root], ...] and [[name, dirname, split,
    # [class names]], ...] (a fifth item 2007 evaluates with VOC07's 11-point AP; default: all points).
    cfg.DATASETS.COCO_JSON_REGISTER = []
    cfg.DATASETS.VOC_REGISTER = []
    # True: bad annotations and unreadable training images are errors, not counted warnings.
    cfg.DATASETS.STRICT = False
    # Images with more pixels are refused before decoding (Pillow's decompression-bomb limit).
    cfg.DATASETS.MAX_IMAGE_PIXELS = MAX_PIXELS


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


def validate_config(cfg, source="config") -> None:
    """Raise :class:`ConfigError` listing every key whose value is out of range."""
    uses_resnet = cfg.MODEL.BACKBONE.NAME in RESNET_BACKBONES
    rules = {k: r for k, r in RULES.items() if uses_resnet or k not in _RESNET_ONLY}
    if uses_resnet and valid_width(cfg.MODEL.RESNETS.STEM_OUT_CHANNELS):
        # The width is the stem's; detectron2's keys for res2's width must agree with it
        # (as detectron2 requires RES2_OUT_CHANNELS 64 for its R18/R34).
        width = cfg.MODEL.RESNETS.STEM_OUT_CHANNELS
        bottleneck = RESNET_SPECS.get(cfg.MODEL.RESNETS.DEPTH, ("",))[0] == "bottleneck"
        res2 = width * (4 if bottleneck else 1)
        rules["MODEL.RESNETS.RES2_OUT_CHANNELS"] = (
            lambda v: v in (0, res2), f"{res2} or 0 (res2's output: MODEL.RESNETS.STEM_OUT_CHANNELS {width}"
                                      f"{', x4 in a bottleneck ResNet' if bottleneck else ''})")
        if bottleneck:
            rules["MODEL.RESNETS.WIDTH_PER_GROUP"] = (lambda v: v == width,
                                                      f"{width} (= MODEL.RESNETS.STEM_OUT_CHANNELS)")
    check_rules(cfg, rules, source)


def load_config(config_file: str | None = None, opts=()):
    """``get_cfg()`` merged with ``config_file`` (safe yaml, ``_BASE_`` allowed) and ``opts``
    (``[KEY, VALUE, ...]``), validated. Type errors name the key and its allowed values."""
    cfg = merge_config(get_cfg(), config_file, opts, rules=RULES)
    validate_config(cfg, config_file or "config")
    r = cfg.MODEL.RESNETS
    if not r.RES2_OUT_CHANNELS:
        r.RES2_OUT_CHANNELS = r.STEM_OUT_CHANNELS * (4 if RESNET_SPECS.get(r.DEPTH, ("",))[0] == "bottleneck" else 1)
    return cfg


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


def schedule_warnings(cfg) -> list[str]:
    """What in ``cfg``'s solver schedule cannot take effect within SOLVER.MAX_ITER: a warm-up
    longer than the run (detectron2 then stretches it over the whole run, ramping towards the
    learning rate the schedule has at its end) or learning-rate steps at or after the end."""
    s, notes = cfg.SOLVER, []
    if s.WARMUP_ITERS >= s.MAX_ITER:
        end_lr = s.BASE_LR * s.GAMMA ** sum(step < s.MAX_ITER for step in s.STEPS)
        notes.append(f"SOLVER.WARMUP_ITERS {s.WARMUP_ITERS} is not shorter than SOLVER.MAX_ITER "
                     f"{s.MAX_ITER}: the warm-up lasts the whole run and the learning rate only "
                     f"approaches {end_lr:g} at its end, never SOLVER.BASE_LR {s.BASE_LR:g}. "
                     f"Set SOLVER.WARMUP_ITERS to a fraction of the run (e.g. {max(1, s.MAX_ITER // 10)}).")
    late = [step for step in s.STEPS if step >= s.MAX_ITER]
    if late:
        notes.append(f"SOLVER.STEPS {list(late)} are not before SOLVER.MAX_ITER {s.MAX_ITER}: those "
                     "learning-rate drops never happen. Scale SOLVER.STEPS with SOLVER.MAX_ITER.")
    return notes
