#!/usr/bin/env python
"""The whole project on toy data, in one command (``make demo``): pretraining feeds the detector.
``projects.demo.pipeline`` runs the stages and documents them; ``--help`` lists the options.

    python tools/demo_pipeline.py [--out output/demo] [--baseline] [--quick] [--threads N] [--seed S]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for projects/

from projects.demo.pipeline import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
