#!/usr/bin/env python
"""Classification pretraining of a ResNet/VGG-16 backbone (see docs/pretraining.md).

    python tools/pretrain_cls.py --config-file configs/pretrain/toy_resnet18.yaml [--resume]
        [--eval-only] [--num-gpus N] [--num-machines M --machine-rank R --dist-url U] [KEY VALUE ...]
"""
import sys

from resnet_det.utils.cli import silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from resnet_det.engine.classification import command_line  # noqa: E402

if __name__ == "__main__":
    sys.exit(command_line(doc=__doc__))
