"""resnet_det: ResNet and VGG-16 from classification pretraining to Faster R-CNN on detectron2.

Importing the package registers its backbones and RoI heads with detectron2 (idempotently).
"""
import warnings

__version__ = "0.1.0"

with warnings.catch_warnings():
    # fvcore and detectron2.modeling script functions at import time; torch 2.14
    # deprecates torch.jit.script, which is not ours to act on.
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
    import detectron2.layers  # noqa: F401
    import detectron2.modeling  # noqa: F401

from . import models  # noqa: E402,F401
from . import detection  # noqa: E402,F401  (registers backbones and RoI heads)
