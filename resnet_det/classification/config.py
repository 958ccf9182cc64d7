"""The pretraining config: a detectron2 ``CfgNode`` with ``_BASE_`` inheritance, validated up front.

Every key has a default here; a yaml file (or ``KEY VALUE`` pairs on the command line) may only
override existing keys, so a typo fails with the key named. :func:`validate_pretrain_cfg`
checks types, ranges and choices before any data is read or any process is started.
"""
from __future__ import annotations

from detectron2.config import CfgNode

from ..config import ConfigError, ConfigKeyError
from ..models import NORMS, RESNET_SPECS, SHORTCUTS
from .solver import OPTIMIZERS

__all__ = [
    "ARCHS",
    "RECIPES",
    "SCHEDULES",
    "AMP_MODES",
    "OPTIMIZER_IMPLS",
    "PretrainCfgNode",
    "get_pretrain_cfg",
    "load_pretrain_cfg",
    "validate_pretrain_cfg",
]

ARCHS = ("resnet", "vgg16")
RECIPES = ("paper", "modern")
SCHEDULES = ("step", "cosine")
AMP_MODES = ("off", "bf16", "fp16")
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "for-loop")


class PretrainCfgNode(CfgNode):
    """detectron2's ``CfgNode`` (``_BASE_`` inheritance, safe yaml) without its detection-config
    VERSION upgrade machinery, which does not apply to this config."""

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge ``cfg_filename`` (and its ``_BASE_`` chain); unknown keys raise naming the key."""
        from pathlib import Path

        if not Path(cfg_filename).is_file():
            raise FileNotFoundError(f"config file {cfg_filename} does not exist")
        loaded = type(self)(self.load_yaml_with_base(cfg_filename, allow_unsafe=allow_unsafe))
        _ints_to_floats(loaded, self)
        try:
            self.merge_from_other_cfg(loaded)
        except KeyError as e:
            raise ConfigKeyError(f"{cfg_filename}: {e.args[0] if e.args else e}") from e
        except ValueError as e:
            raise ConfigError(f"{cfg_filename}: {e.args[0] if e.args else e}") from e


    def merge_from_list(self, cfg_list) -> None:
        """Merge ``KEY VALUE`` pairs (command line); ``EPOCHS 5`` is accepted for a float key."""
        cfg_list = list(cfg_list)
        if len(cfg_list) % 2:
            raise ConfigError(f"config overrides must be KEY VALUE pairs; got an odd list: {cfg_list}")
        for i in range(0, len(cfg_list), 2):
            default = _lookup(self, cfg_list[i])
            value = self._decode_cfg_value(cfg_list[i + 1])
            if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
                cfg_list[i + 1] = repr(float(value))
        super().merge_from_list(cfg_list)


def _lookup(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            return None  # yacs then raises its "Non-existent config key" error
        node = node[part]
    return node


def _ints_to_floats(loaded, defaults):
    # yaml reads "EPOCHS: 90" as an int; yacs would reject it for a float key.
    for key, value in loaded.items():
        default = defaults.get(key) if isinstance(defaults, CfgNode) else None
        if isinstance(value, CfgNode):
            _ints_to_floats(value, default)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            loaded[key] = float(value)


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
    _C.DATA.MAX_IMAGE_PIXELS = 89_478_485
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
    _C.SOLVER.STEPS = (30.0, 60.0)  # in epochs; lr *= GAMMA at each
    _C.SOLVER.GAMMA = 0.1
    _C.SOLVER.WARMUP_EPOCHS = 0.0
    _C.SOLVER.WARMUP_FACTOR = 0.1
    _C.SOLVER.LABEL_SMOOTHING = 0.0
    _C.SOLVER.MIXUP_ALPHA = 0.0  # 0 disables
    _C.SOLVER.CUTMIX_ALPHA = 0.0  # 0 disables
    _C.SOLVER.GRAD_ACCUM_STEPS = 1
    _C.SOLVER.AMP = "off"  # off | bf16 | fp16 (fp16 uses a GradScaler)
    _C.SOLVER.CHANNELS_LAST = False
    _C.SOLVER.COMPILE = False
    _C.SOLVER.CHECKPOINT_PERIOD = 0  # iterations; 0: once per epoch
    # Periodic checkpoints kept on disk (the newest ones; older ones are deleted once a newer
    # one is complete); 0 keeps all. model_final.pth and the backbone export are never deleted.
    _C.SOLVER.MAX_CHECKPOINTS_TO_KEEP = 3
    _C.SOLVER.LOG_PERIOD = 20  # iterations between host syncs for logging and the NaN check

    _C.TEST = PretrainCfgNode()
    _C.TEST.IMS_PER_BATCH = 256
    _C.TEST.EVAL_PERIOD = 0  # iterations; 0: once per epoch
    _C.TEST.TEN_CROP = True  # the final evaluation also reports the paper's 10-crop errors

    _C.SEED = 0
    _C.OUTPUT_DIR = "output/pretrain"
    return _C


def load_pretrain_cfg(config_file: str = "", opts=()) -> CfgNode:
    """Defaults, then ``config_file`` (with ``_BASE_`` inheritance), then ``opts``; validated."""
    cfg = get_pretrain_cfg()
    if config_file:
        cfg.merge_from_file(config_file, allow_unsafe=False)
    if opts:
        cfg.merge_from_list(list(opts))
    validate_pretrain_cfg(cfg, source=config_file or "defaults")
    cfg.freeze()
    return cfg


def _fail(source, key, value, allowed):
    raise ConfigError(f"{source}: invalid {key} = {value!r}; allowed: {allowed}")


def validate_pretrain_cfg(cfg: CfgNode, source: str = "config") -> None:
    """Raise ``ValueError`` naming the key, the value and the allowed values for the first bad
    setting. Cheap: meant to run before any work starts."""
    def choice(key, allowed):
        value = _get(cfg, key)
        if value not in allowed:
            _fail(source, key, value, " | ".join(map(str, allowed)))

    def number(key, lo=None, hi=None, *, integer=False, lo_open=False):
        value = _get(cfg, key)
        kind = int if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind):
            _fail(source, key, value, f"{'an integer' if integer else 'a number'}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            _fail(source, key, value, f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else ""))
        if hi is not None and value > hi:
            _fail(source, key, value, f"<= {hi}")

    choice("MODEL.ARCH", ARCHS)
    if cfg.MODEL.ARCH == "resnet":
        choice("MODEL.DEPTH", tuple(RESNET_SPECS))
        choice("MODEL.SHORTCUT", SHORTCUTS)
        choice("MODEL.NORM", NORMS)
    number("MODEL.NUM_CLASSES", 0, integer=True)
    choice("DATA.RECIPE", RECIPES)
    number("DATA.CROP_SIZE", 8, integer=True)
    rr = cfg.DATA.RESIZE_RANGE
    if len(rr) != 2 or not all(isinstance(v, int) for v in rr) or not cfg.DATA.CROP_SIZE <= rr[0] <= rr[1]:
        _fail(source, "DATA.RESIZE_RANGE", rr, f"two integers lo <= hi with lo >= DATA.CROP_SIZE ({cfg.DATA.CROP_SIZE})")
    number("DATA.TEST_RESIZE", cfg.DATA.CROP_SIZE, integer=True)
    number("DATA.COLOR_JITTER", 0.0, 1.0)
    number("DATA.MAX_IMAGE_PIXELS", 1, integer=True)
    number("DATA.NUM_WORKERS", 0, integer=True)
    number("DATA.PREFETCH_FACTOR", 1, integer=True)
    number("DATA.TIMEOUT", 0)
    number("SOLVER.IMS_PER_BATCH", 1, integer=True)
    number("SOLVER.BASE_LR", 0.0, lo_open=True)
    number("SOLVER.REFERENCE_BATCH", 1, integer=True)
    number("SOLVER.MOMENTUM", 0.0, 1.0)
    number("SOLVER.WEIGHT_DECAY", 0.0)
    number("SOLVER.WEIGHT_DECAY_NORM", 0.0)
    choice("SOLVER.OPTIMIZER", OPTIMIZERS)
    choice("SOLVER.OPTIMIZER_IMPL", OPTIMIZER_IMPLS)
    number("SOLVER.EPOCHS", 0.0)
    number("SOLVER.MAX_ITER", 0, integer=True)
    if cfg.SOLVER.EPOCHS <= 0 and cfg.SOLVER.MAX_ITER <= 0:
        _fail(source, "SOLVER.EPOCHS / SOLVER.MAX_ITER", (cfg.SOLVER.EPOCHS, cfg.SOLVER.MAX_ITER), "one of them > 0")
    choice("SOLVER.SCHEDULE", SCHEDULES)
    steps = list(cfg.SOLVER.STEPS)
    if any(isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0 for s in steps) or steps != sorted(steps):
        _fail(source, "SOLVER.STEPS", cfg.SOLVER.STEPS, "increasing positive epoch numbers")
    number("SOLVER.GAMMA", 0.0, lo_open=True)
    number("SOLVER.WARMUP_EPOCHS", 0.0)
    number("SOLVER.WARMUP_FACTOR", 0.0, 1.0, lo_open=True)
    number("SOLVER.LABEL_SMOOTHING", 0.0, 1.0)
    if cfg.SOLVER.LABEL_SMOOTHING >= 1.0:
        _fail(source, "SOLVER.LABEL_SMOOTHING", cfg.SOLVER.LABEL_SMOOTHING, "in [0, 1)")
    number("SOLVER.MIXUP_ALPHA", 0.0)
    number("SOLVER.CUTMIX_ALPHA", 0.0)
    number("SOLVER.GRAD_ACCUM_STEPS", 1, integer=True)
    choice("SOLVER.AMP", AMP_MODES)
    for key in ("SOLVER.CHANNELS_LAST", "SOLVER.COMPILE", "SOLVER.NESTEROV", "DATA.STRICT",
                "DATA.PERSISTENT_WORKERS", "TEST.TEN_CROP", "MODEL.PLAIN",
                "MODEL.STRIDE_IN_1X1", "MODEL.ZERO_INIT_RESIDUAL"):
        choice(key, (True, False))
    number("SOLVER.CHECKPOINT_PERIOD", 0, integer=True)
    number("SOLVER.MAX_CHECKPOINTS_TO_KEEP", 0, integer=True)
    number("SOLVER.LOG_PERIOD", 1, integer=True)
    number("TEST.IMS_PER_BATCH", 1, integer=True)
    number("TEST.EVAL_PERIOD", 0, integer=True)
    number("SEED", 0, integer=True)
    if cfg.SOLVER.IMS_PER_BATCH % cfg.SOLVER.GRAD_ACCUM_STEPS:
        _fail(source, "SOLVER.IMS_PER_BATCH", cfg.SOLVER.IMS_PER_BATCH,
              f"a multiple of SOLVER.GRAD_ACCUM_STEPS ({cfg.SOLVER.GRAD_ACCUM_STEPS})")
    if not cfg.OUTPUT_DIR:
        _fail(source, "OUTPUT_DIR", cfg.OUTPUT_DIR, "a directory path")


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node
