#!/usr/bin/env python
"""Which backbone for my data and my machine: one Faster R-CNN per backbone, trained with the same
base config, data, schedule and overrides (each a tools/train_det.py run in OUTPUT/<label>/),
then evaluated, exported and timed for PyTorch and every installed deploy runtime/precision.
``projects.compare.pipeline`` does the work and documents it (docs/backbones.md).

    python tools/compare_backbones.py --config BASE --backbones vgg16 r18 r50 r101 r18-fpn \\
        r18:seed=1 r18:weights=output/pretrain/backbone.safetensors --output DIR [KEY VALUE ...]
    python tools/compare_backbones.py --runs DIR1 DIR2 ... --output DIR

Writes DIR/comparison.{md,csv,json,png}. A finished run is reused, an unfinished one resumed.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for projects/

from resnet_det.utils.cli import run_cli, silence_known_warnings  # noqa: E402

silence_known_warnings()  # before detectron2's imports, which warn

from projects.compare.pipeline import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_cli(main, doc=__doc__))
