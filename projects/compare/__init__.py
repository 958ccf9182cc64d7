"""Which backbone for my data and my machine: one detector per backbone (and initialisation)
trained through tools/train_det.py with the same config, then evaluated, exported and timed
(``tools/compare_backbones.py``; docs/backbones.md)."""
from projects.compare.backbones import BACKBONES, Spec, parse_spec, run_overrides
from projects.compare.pipeline import compare_backbones, compare_runs, main

__all__ = ["BACKBONES", "Spec", "compare_backbones", "compare_runs", "main", "parse_spec", "run_overrides"]
