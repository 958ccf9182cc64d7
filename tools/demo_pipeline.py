#!/usr/bin/env python
"""The whole project on toy data, in one command (``make demo``): pretraining feeds the detector.
``projects.demo.pipeline`` runs the stages and documents them; ``--help`` lists the options.

    python tools/demo_pipeline.py [--out output/demo] [--baseline] [--quick] [--threads N] [--seed S]
"""
import sys  # noqa: E402,I001
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: projects/
import sys

from projects.demo.pipeline import main

if __name__ == "__main__":
    sys.exit(main())
