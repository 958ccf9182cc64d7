#!/usr/bin/env python
"""The whole project on toy data, in one command (``make demo``): pretraining feeds the detector.
``resnet_det.pipeline`` runs the stages and documents them; ``--help`` lists the options.

    python tools/demo_pipeline.py [--out output/demo] [--baseline] [--quick] [--threads N] [--seed S]
"""
import sys

from resnet_det.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
