#!/usr/bin/env python
"""Classification pretraining of a ResNet/VGG-16 backbone (see docs/pretraining.md).

    python tools/pretrain_cls.py --config-file configs/pretrain/toy_resnet18.yaml [--resume]
        [--eval-only] [--num-gpus N] [--num-machines M --machine-rank R --dist-url U] [KEY VALUE ...]
"""
import sys

from resnet_det.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from detectron2.engine import default_argument_parser  # noqa: E402

from resnet_det.classification import launch_from_args  # noqa: E402


def main(argv=None):
    parser = default_argument_parser(epilog=__doc__)
    # train_det.py's spelling too, so both stages take the same flags.
    parser.add_argument("--config", dest="config_file", metavar="FILE", help="same as --config-file")
    add_debug_argument(parser)
    launch_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_cli(main))
