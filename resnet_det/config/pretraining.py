"""The pretraining config: every key with its default, merged and checked by the detection config's
mechanism (:func:`resnet_det.config.rules.merge_config`, :func:`resnet_det.config.rules.check_rules`) with
the rules of :func:`pretrain_rules`. Where pretraining counts in epochs the key says so
(``SOLVER.STEP_EPOCHS``); the old keys of :data:`RENAMED` fail saying what to write."""
from __future__ import annotations

from fvcore.common.config import CfgNode

from resnet_det.config.defaults import WIDTH_RULE
from resnet_det.config.rules import check_rules, get_key, merge_config, number, one_of
from resnet_det.models import NORMS, RESNET_SPECS, SHORTCUTS
from resnet_det.utils.image import MAX_PIXELS

__all__ = ["OPTIMIZERS", "RENAMED", "PretrainCfgNode", "amp_mode", "get_pretrain_cfg", "load_pretrain_cfg",
           "pretrain_rules", "validate_pretrain_cfg"]

OPTIMIZERS = ("SGD", "AdamW")
# Keys whose meaning differed from detectron2's, and what to write instead.
RENAMED = {"SOLVER.STEPS": "pretraining gives its learning-rate drops in epochs as SOLVER.STEP_EPOCHS "
           "(SOLVER.STEPS is detectron2's key, in iterations)",
           "SOLVER.AMP": "write SOLVER.AMP.ENABLED True with SOLVER.AMP.PRECISION bf16 or fp16 "
           "(detectron2's key shape), or SOLVER.AMP.ENABLED False for 'off'"}


class PretrainCfgNode(CfgNode):
    """fvcore's ``CfgNode`` (``_BASE_`` inheritance, safe yaml, merges type-checked, unknown keys
    refused) that takes an integer for a float key: yaml and the command line read ``EPOCHS 90``
    as an int, which yacs would refuse."""

    def merge_from_other_cfg(self, cfg_other):
        """Merge ``cfg_other`` (a loaded yaml file), its integers for float keys made floats."""
        _ints_to_floats(cfg_other, self)
        return super().merge_from_other_cfg(cfg_other)

    def merge_from_list(self, cfg_list):
        """Merge ``KEY VALUE`` pairs (command line), an integer for a float key made a float."""
        cfg_list = list(cfg_list)
        for i in range(1, len(cfg_list), 2):
            value = _as_float(get_key(self, cfg_list[i - 1]), self._decode_cfg_value(cfg_list[i]))
            if type(value) is float:  # only then: decoding a quoted string twice would unquote it
                cfg_list[i] = value
        return super().merge_from_list(cfg_list)


def _as_float(default, value):
    return float(value) if isinstance(default, float) and type(value) is int else value


def _ints_to_floats(loaded, defaults):
    for key, value in loaded.items():
        default = defaults.get(key) if isinstance(defaults, CfgNode) else None
        if isinstance(value, CfgNode):
            _ints_to_floats(value, default)
        else:
            loaded[key] = _as_float(default, value)


def get_pretrain_cfg() -> CfgNode:
    """A fresh config holding every pretraining key with its default (the paper's recipe)."""
    _C = PretrainCfgNode()
    _C.MODEL = PretrainCfgNode()
    _C.MODEL.ARCH = "resnet"  # resnet | vgg16
    _C.MODEL.DEPTH = 50  # 18 | 34 | 50 | 101 | 152 (resnet only)
    _C.MODEL.SHORTCUT = "B"  # A | B | C (paper, Sec. 3.3)
    _C.MODEL.PLAIN = False  # no shortcuts at all (the paper's plain nets)
    _C.MODEL.NORM = "BN"  # BN | SyncBN | GN | FrozenBN
    _C.MODEL.STRIDE_IN_1X1 = True  # MSRA placement; False = torchvision v1.5
    _C.MODEL.ZERO_INIT_RESIDUAL = False
    # The stem's and res2's channels, doubled per stage (the paper's 64; a multiple of 32).
    _C.MODEL.STEM_OUT_CHANNELS = 64
    # 0: the number of class folders under DATA.ROOT/DATA.TRAIN_DIR.
    _C.MODEL.NUM_CLASSES = 0
    # --eval-only: a pretraining checkpoint (.pth) or full classifier weights; empty: the last
    # checkpoint in OUTPUT_DIR. Training always starts from random init (or --resume).
    _C.MODEL.WEIGHTS = ""

    _C.DATA = PretrainCfgNode()
    _C.DATA.ROOT = ""  # holds TRAIN_DIR and VAL_DIR, each <class>/<image> (ImageNet layout)
    _C.DATA.TRAIN_DIR = "train"
    _C.DATA.VAL_DIR = "val"
    _C.DATA.RECIPE = "paper"  # paper: random short side + crop; modern: RandomResizedCrop
    _C.DATA.CROP_SIZE = 224
    # Paper recipe: the short side is resized to a random integer in [lo, hi].
    _C.DATA.RESIZE_RANGE = (256, 480)
    _C.DATA.TEST_RESIZE = 256  # short side before the centre crop / 10 crops at evaluation
    # Brightness/contrast/saturation strength; stands in for the paper's PCA lighting noise.
    _C.DATA.COLOR_JITTER = 0.4
    # Unreadable images: False skips them (counted warning naming the file), True raises.
    _C.DATA.STRICT = False
    # Images with more pixels are refused (PIL's decompression-bomb guard, made explicit).
    _C.DATA.MAX_IMAGE_PIXELS = MAX_PIXELS
    _C.DATA.NUM_WORKERS = 4
    _C.DATA.PERSISTENT_WORKERS = True
    _C.DATA.PREFETCH_FACTOR = 2
    # Seconds to wait for one batch from a worker before failing instead of hanging (0: forever).
    _C.DATA.TIMEOUT = 600

    _C.SOLVER = PretrainCfgNode()
    _C.SOLVER.IMS_PER_BATCH = 256  # total over all GPUs and accumulation steps
    _C.SOLVER.BASE_LR = 0.1  # per REFERENCE_BATCH images; scaled linearly with IMS_PER_BATCH
    _C.SOLVER.REFERENCE_BATCH = 256
    _C.SOLVER.MOMENTUM = 0.9
    _C.SOLVER.NESTEROV = False
    _C.SOLVER.WEIGHT_DECAY = 1e-4
    _C.SOLVER.WEIGHT_DECAY_NORM = 1e-4  # the paper decays every weight, BN included
    # SGD (the paper's) | AdamW (MOMENTUM is then its beta1; NESTEROV does not apply).
    _C.SOLVER.OPTIMIZER = "SGD"
    _C.SOLVER.OPTIMIZER_IMPL = "auto"  # auto: fused on CUDA, foreach elsewhere
    # Length: EPOCHS, or MAX_ITER (optimizer steps) when > 0.
    _C.SOLVER.EPOCHS = 90.0
    _C.SOLVER.MAX_ITER = 0
    _C.SOLVER.SCHEDULE = "step"  # step | cosine
    _C.SOLVER.STEP_EPOCHS = (30.0, 60.0)  # lr *= GAMMA at each
    _C.SOLVER.GAMMA = 0.1
    _C.SOLVER.WARMUP_EPOCHS = 0.0
    _C.SOLVER.WARMUP_FACTOR = 0.1
    _C.SOLVER.LABEL_SMOOTHING = 0.0
    _C.SOLVER.MIXUP_ALPHA = 0.0  # 0 disables
    _C.SOLVER.CUTMIX_ALPHA = 0.0  # 0 disables
    _C.SOLVER.GRAD_ACCUM_STEPS = 1
    # Mixed precision, detectron2's key (its AMPTrainer: fp16) plus the precision: bf16 | fp16
    # (fp16 uses a GradScaler).
    _C.SOLVER.AMP = PretrainCfgNode({"ENABLED": False, "PRECISION": "fp16"})
    _C.SOLVER.CHANNELS_LAST = False
    _C.SOLVER.COMPILE = False
    _C.SOLVER.CHECKPOINT_PERIOD = 0  # iterations; 0: once per epoch
    # Periodic checkpoints kept on disk (the newest ones; older ones are deleted once a newer
    # one is complete); 0 keeps all. model_final.pth and the backbone export are never deleted.
    _C.SOLVER.MAX_CHECKPOINTS_TO_KEEP = 3
    _C.SOLVER.LOG_PERIOD = 20  # iterations between host syncs for logging and the NaN check

    _C.TEST = PretrainCfgNode()
    _C.TEST.IMS_PER_BATCH = 256
    _C.TEST.EVAL_PERIOD = 0  # iterations, as in detectron2; 0: only after training
    _C.TEST.TEN_CROP = True  # the final evaluation also reports the paper's 10-crop errors

    _C.SEED = 0
    _C.OUTPUT_DIR = "output/pretrain"
    return _C


def load_pretrain_cfg(config_file: str = "", opts=()) -> CfgNode:
    """Defaults, then ``config_file`` (with ``_BASE_`` inheritance), then ``opts``; validated."""
    cfg = get_pretrain_cfg()
    merge_config(cfg, config_file, opts, rules=pretrain_rules(cfg), renamed=RENAMED)
    validate_pretrain_cfg(cfg, source=config_file or "defaults")
    cfg.freeze()
    return cfg


def amp_mode(cfg) -> str:
    """``off``, ``bf16`` or ``fp16``: the autocast of ``cfg.SOLVER.AMP``."""
    return cfg.SOLVER.AMP.PRECISION if cfg.SOLVER.AMP.ENABLED else "off"


def pretrain_rules(cfg) -> dict:
    """key -> (check, allowed words) for :func:`resnet_det.config.defaults.check_rules`, beyond the types
    that merging checks; some depend on other keys (the ResNet options only apply to resnet)."""
    d, s = cfg.DATA, cfg.SOLVER
    rules = {"MODEL.ARCH": one_of("resnet", "vgg16")}
    if cfg.MODEL.ARCH == "resnet":
        rules.update({"MODEL.DEPTH": one_of(*RESNET_SPECS), "MODEL.SHORTCUT": one_of(*SHORTCUTS),
                      "MODEL.NORM": one_of(*NORMS), "MODEL.STEM_OUT_CHANNELS": WIDTH_RULE})
    rules.update({
        "MODEL.NUM_CLASSES": number(0, integer=True, note="0: one per class folder"),
        "DATA.RECIPE": one_of("paper", "modern"),
        "DATA.CROP_SIZE": number(8, integer=True),
        "DATA.RESIZE_RANGE": (
            lambda v: len(v) == 2 and all(type(x) is int for x in v) and d.CROP_SIZE <= v[0] <= v[1],
            f"two integers lo <= hi with lo >= DATA.CROP_SIZE ({d.CROP_SIZE})",
        ),
        "DATA.TEST_RESIZE": number(d.CROP_SIZE, integer=True, note="DATA.CROP_SIZE or more"),
        "DATA.COLOR_JITTER": number(0, 1),
        "DATA.MAX_IMAGE_PIXELS": number(1, integer=True),
        "DATA.NUM_WORKERS": number(0, integer=True),
        "DATA.PREFETCH_FACTOR": number(1, integer=True),
        "DATA.TIMEOUT": number(0, note="seconds; 0: wait forever"),
        "SOLVER.IMS_PER_BATCH": (lambda v: number(1, integer=True)[0](v) and v % s.GRAD_ACCUM_STEPS == 0,
                                 f"an integer >= 1, a multiple of SOLVER.GRAD_ACCUM_STEPS ({s.GRAD_ACCUM_STEPS})",),
        "SOLVER.BASE_LR": number(0, lo_open=True),
        "SOLVER.REFERENCE_BATCH": number(1, integer=True),
        "SOLVER.MOMENTUM": number(0, 1),
        "SOLVER.WEIGHT_DECAY": number(0),
        "SOLVER.WEIGHT_DECAY_NORM": number(0),
        "SOLVER.OPTIMIZER": one_of(*OPTIMIZERS),
        "SOLVER.OPTIMIZER_IMPL": one_of("auto", "fused", "foreach", "for-loop"),
        "SOLVER.EPOCHS": (lambda v: number(0)[0](v) and (v > 0 or s.MAX_ITER > 0),
                          "a number >= 0, > 0 unless SOLVER.MAX_ITER is"),
        "SOLVER.MAX_ITER": number(0, integer=True, note="0: SOLVER.EPOCHS decides"),
        "SOLVER.SCHEDULE": one_of("step", "cosine"),
        "SOLVER.STEP_EPOCHS": (lambda v: all(number(0, lo_open=True)[0](x) for x in v) and list(v) == sorted(v),
                               "increasing epoch numbers > 0",),
        "SOLVER.GAMMA": number(0, lo_open=True),
        "SOLVER.WARMUP_EPOCHS": number(0),
        "SOLVER.WARMUP_FACTOR": number(0, 1, lo_open=True),
        "SOLVER.LABEL_SMOOTHING": number(0, 1, hi_open=True),
        "SOLVER.MIXUP_ALPHA": number(0, note="0: off"),
        "SOLVER.CUTMIX_ALPHA": number(0, note="0: off"),
        "SOLVER.GRAD_ACCUM_STEPS": number(1, integer=True),
        "SOLVER.AMP.PRECISION": one_of("fp16", "bf16"),
        "SOLVER.CHECKPOINT_PERIOD": number(0, integer=True, note="0: once per epoch"),
        "SOLVER.MAX_CHECKPOINTS_TO_KEEP": number(0, integer=True, note="0: keep all"),
        "SOLVER.LOG_PERIOD": number(1, integer=True),
        "TEST.IMS_PER_BATCH": number(1, integer=True),
        "TEST.EVAL_PERIOD": number(0, integer=True, note="0: only after training"),
        "SEED": number(0, integer=True),
        "OUTPUT_DIR": (bool, "a directory path"),
    })
    return rules


def validate_pretrain_cfg(cfg: CfgNode, source: str = "config") -> None:
    """Raise :class:`~resnet_det.config.defaults.ConfigError` naming each key whose value is not allowed,
    the value and the allowed values. Cheap: meant to run before any work starts."""
    check_rules(cfg, pretrain_rules(cfg), source)
