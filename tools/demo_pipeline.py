#!/usr/bin/env python
"""The whole project on toy data, in one command: pretraining feeds the detector.

    python tools/demo_pipeline.py [--out output/demo] [--baseline] [--quick] [--threads N] [--seed S]
    make demo

Stages: data -> pretrain -> detect (-> baseline) -> visualise; ``resnet_det.pipeline`` runs them
and documents each. OUT/summary.json collects the figures, the time of each stage, and whether
the figures fell inside the ranges the README states; --quick runs every stage with tiny
settings (tests).
"""
import sys

from resnet_det.pipeline import DATA_STAMP, DEMO_DATA, main  # noqa: F401  (DATA_STAMP, DEMO_DATA: tests)

if __name__ == "__main__":
    sys.exit(main())
