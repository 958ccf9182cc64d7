"""The main job (``make demo``): toy data -> pretraining -> detection from the exported backbone
-> COCO evaluation -> a picture of ground truth vs detections. ``tools/demo_pipeline.py`` is its
command line. Stages (each prints what it wrote; a failure names its stage):

1. data       the toy generator (projects.toy_data) -> OUT/data (kept and reused if present)
2. pretrain   configs/pretrain.yaml here (ResNet-18, GN, half width) on OUT/data/imagenet ->
              OUT/pretrain/backbone.safetensors
3. detect     configs/detect.yaml here (R18-FPN, the same width) on the toy COCO from that backbone ->
              OUT/detect/model_final.pth, COCO evaluation -> OUT/detect/eval_results.json
4. baseline   (``baseline=True``) the same detector and schedule from random init -> OUT/detect_scratch
5. visualise  ground truth and detections on the first val images -> OUT/vis/detections_grid.png

OUT/summary.json collects the figures, each stage's wall and CPU time, and whether the figures
fell inside :data:`EXPECTED` (the range measured over several runs; projects/demo/README.md).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch
from detectron2.utils.logger import setup_logger

from projects.demo.grid import draw_detection_grid
from projects.toy_data import dataset_opts, make_toy_data
from resnet_det.config import load_config, load_pretrain_cfg
from resnet_det.engine.classification import train
from resnet_det.engine.detection import RESULTS_FILE, train_detector
from resnet_det.engine.launch import cpu_model

__all__ = ["EXPECTED", "DEMO_DATA", "DATA_STAMP", "StageError", "check_expected", "run_pipeline", "main"]

CONFIGS = Path(__file__).parent / "configs"  # an application beside the library, not installed
PRETRAIN_CONFIG = CONFIGS / "pretrain.yaml"
DETECT_CONFIG = CONFIGS / "detect.yaml"
VAL_DATASET = "toy_coco_val"

# The demo's data: 200 classification images per class; 100 val images per class and 100
# detection val images, so that a val figure moves by 0.2 points per image and 1% of the boxes.
DEMO_DATA = dict(num_train_per_class=200, num_val_per_class=100, num_det_val=100)
DATA_STAMP = "demo_data.json"  # the settings the data was made with, so a rerun can reuse it
# What a run should land in ("stage.key" of summary.json): the spread of the measured runs
# (threads 1 and 2, seeds 0-2), rounded outwards; the README states the same ranges (a test
# compares them).
EXPECTED = {
    "pretrain.val_top1_err": (13.0, 22.0),
    "detect.AP": (52.0, 67.0),
    "detect.AP50": (73.0, 89.0),
}

# --quick: every stage runs, on a few images for a few iterations (tests).
QUICK_DATA = dict(num_train_per_class=4, num_val_per_class=2, num_det_train=8, num_det_val=3)
QUICK_PRETRAIN = ["SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "8", "TEST.EVAL_PERIOD", "0",
                  "SOLVER.LOG_PERIOD", "1", "DATA.NUM_WORKERS", "0"]
QUICK_DETECT = ["SOLVER.MAX_ITER", "4", "SOLVER.STEPS", "(3,)", "SOLVER.WARMUP_ITERS", "1",
                "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "4", "DATALOADER.NUM_WORKERS", "0"]

# Loggers whose console/file handlers each stage sets up for its own OUTPUT_DIR (log.txt).
_LOGGERS = ("resnet_det", "detectron2", "fvcore")


def _drop_new_handlers(before):
    """Remove the handlers a stage added, so that the next stage neither prints every line
    twice nor writes into this stage's log.txt."""
    for name, handlers in before.items():
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if h not in handlers]:
            logger.removeHandler(handler)
            handler.close()
    setup_logger.cache_clear()  # detectron2 caches it: a later identical call must add them again


class StageError(RuntimeError):
    """A pipeline stage failed; the message names the stage and its output folder."""


def _cpu_seconds():
    # This process's threads plus its finished child processes (data-loader workers).
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _stage(times, name, folder, fn, *args, **kwargs):
    """Run one stage with a banner; its wall and CPU time go to ``times[name]``. Any failure is
    re-raised naming the stage."""
    print(f"\n=== stage {name} -> {folder}", flush=True)
    start, cpu = time.perf_counter(), _cpu_seconds()
    before = {n: list(logging.getLogger(n).handlers) for n in _LOGGERS}
    try:
        result = fn(*args, **kwargs)
    except Exception as e:  # the stage name matters more than the type here
        raise StageError(f"stage '{name}' ({folder}) failed: {type(e).__name__}: {e}") from e
    finally:
        _drop_new_handlers(before)
    times[name] = {"wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(_cpu_seconds() - cpu, 1)}
    print(f"=== stage {name} done in {times[name]['wall_s']:.0f} s ({times[name]['cpu_s']:.0f} s CPU)", flush=True)
    return result


def make_data(data_dir: Path, quick: bool) -> dict:
    """The toy classification tree and toy COCO under ``data_dir``, reused when an earlier run
    wrote them with the same settings (recorded in ``data_dir/DATA_STAMP``)."""
    settings = QUICK_DATA if quick else DEMO_DATA
    stamp = data_dir / DATA_STAMP
    if stamp.is_file():
        recorded = json.loads(stamp.read_text())
        if recorded != settings:
            raise ValueError(f"{data_dir} holds toy data made with {recorded}, this run needs "
                             f"{settings}: delete {data_dir} or choose another --out")
        print(f"reusing the toy data in {data_dir} (delete it to regenerate)")
        return {}
    written = make_toy_data(data_dir, kinds=("classification", "coco"), **settings)
    for kind, info in written.items():
        counts = ", ".join(f"{k} {v}" for k, v in info.items() if k.startswith("num_"))
        print(f"wrote toy {kind} data: {counts}")
    stamp.write_text(json.dumps(settings))  # last: an interrupted run leaves no stamp
    return written


def pretrain(data_dir: Path, out_dir: Path, quick: bool, seed: int) -> dict:
    """Classification pretraining (``PRETRAIN_CONFIG`` + the demo schedule) on the torch threads
    its loader workers leave free; returns its final val errors and that thread count."""
    opts = ["DATA.ROOT", str(data_dir / "imagenet"), "OUTPUT_DIR", str(out_dir), "SEED", str(seed)]
    cfg = load_pretrain_cfg(str(PRETRAIN_CONFIG), opts + (QUICK_PRETRAIN if quick else []))
    setup_logger(str(out_dir), name="resnet_det")
    # A step of 32 images of 24 px is too little work to split over threads, and the loader's
    # workers need cores of their own: leave them one each (on 2 cores, 1 thread beside 1 worker
    # took 0.044 s per step, 2 threads 0.068 s, to the same weights).
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads - cfg.DATA.NUM_WORKERS))
    try:
        metrics = dict(train(cfg), threads=torch.get_num_threads())
    finally:
        torch.set_num_threads(threads)
    print(f"pretraining ({metrics['threads']} thread(s)): val top-1 error {metrics['val_top1_err']:.1f}% (1 crop)"
          + (f", {metrics['val_10crop_top1_err']:.1f}% (10 crops)" if "val_10crop_top1_err" in metrics else "")
          + f"; wrote {out_dir / 'backbone.safetensors'}")
    return metrics


def detect(weights: str, data_dir: Path, out_dir: Path, quick: bool, seed: int) -> dict:
    """Train and COCO-evaluate the toy detector, as ``tools/train_det.py`` does; returns bbox AP."""
    opts = ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(out_dir), "SEED", str(seed),
            "MODEL.BACKBONE.FREEZE_AT", "2" if weights else "0", *dataset_opts(data_dir)]
    opts += QUICK_DETECT if quick else []
    train_detector(str(DETECT_CONFIG), opts)
    results_file = out_dir / RESULTS_FILE
    if not results_file.is_file():
        raise StageError(f"the detector's training wrote no {results_file}")
    bbox = json.loads(results_file.read_text())[VAL_DATASET]["bbox"]
    print(f"detection ({'pretrained backbone' if weights else 'random init'}): "
          f"AP {bbox['AP']:.1f}, AP50 {bbox['AP50']:.1f}; wrote {out_dir / 'model_final.pth'}, "
          f"{results_file}")
    return bbox


def visualise(detectors: dict, out_dir: Path) -> dict:
    """One grid of ground truth vs detections per ``{file name: (weights, title)}``
    (``projects.demo.grid.draw_detection_grid``), each detector built from the ``config.yaml``
    its training wrote beside the weights; returns ``{file name: png path}``."""
    drawn = {}
    for name, (weights, title) in detectors.items():
        cfg = load_config(str(Path(weights).parent / "config.yaml"))
        result = draw_detection_grid(cfg, str(weights), VAL_DATASET, out_dir / name, title=title)
        found = sum(len(r["detections"]) for r in result["images"])
        truth = sum(len(r["ground_truth"]) for r in result["images"])
        print(f"{len(result['images'])} val images, {truth} ground-truth boxes, {found} detections "
              f"drawn -> {result['picture']}")
        drawn[name] = result["picture"]
    return drawn


def check_expected(summary: dict, expected: dict = EXPECTED) -> dict:
    """``{"stage.key": {"value", "range", "in_range"}}`` for each figure of ``expected`` that
    ``summary`` holds (e.g. ``summary["detect"]["AP"]`` for ``"detect.AP"``)."""
    checks = {}
    for key, (lo, hi) in expected.items():
        stage, name = key.split(".", 1)
        if name in summary.get(stage, {}):
            value = summary[stage][name]
            checks[key] = {"value": value, "range": [lo, hi], "in_range": bool(lo <= value <= hi)}
    return checks


def run_pipeline(out: Path, *, quick=False, baseline=False, seed=0) -> dict:
    """Run every stage into ``out``; returns (and writes to OUT/summary.json) the figures."""
    out = Path(out)
    data_dir = out / "data"
    times = {}
    summary = {"quick": quick, "seed": seed, "threads": torch.get_num_threads(),
               "cpu": cpu_model(), "cpu_count": os.cpu_count()}
    start, cpu = time.perf_counter(), _cpu_seconds()
    _stage(times, "data", data_dir, make_data, data_dir, quick)
    summary["pretrain"] = _stage(times, "pretrain", out / "pretrain", pretrain, data_dir,
                                 out / "pretrain", quick, seed)
    backbone = out / "pretrain" / "backbone.safetensors"
    summary["detect"] = _stage(times, "detect", out / "detect", detect, str(backbone), data_dir, out / "detect",
                               quick, seed)
    detectors = {"detections_grid.png": (out / "detect" / "model_final.pth", "detector from the pretrained backbone")}
    if baseline:
        summary["detect_scratch"] = _stage(
            times, "baseline", out / "detect_scratch", detect, "", data_dir, out / "detect_scratch", quick, seed)
        detectors["detections_grid_random_init.png"] = (out / "detect_scratch" / "model_final.pth",
                                                        "the same detector from random init")
    summary["visualisation"] = _stage(times, "visualise", out / "vis", visualise, detectors, out / "vis")
    summary["time"] = {"wall_s": round(time.perf_counter() - start, 1),
                       "cpu_s": round(_cpu_seconds() - cpu, 1), "stages": times}
    if quick:
        summary["expected"] = None
        summary["in_expected_range"] = None  # the ranges are for the demo schedule, not --quick
    else:
        summary["expected"] = check_expected(summary)
        summary["in_expected_range"] = all(c["in_range"] for c in summary["expected"].values())
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _report(summary: dict, out: Path):
    print("\n=== summary")
    pre = summary["pretrain"]
    print(f"pretraining (toy classification): val top-1 error {pre['val_top1_err']:.1f}%")
    for key, label in (("detect", "from the pretrained backbone"), ("detect_scratch", "from random init")):
        if key in summary:
            print(f"detector {label}: toy COCO val AP {summary[key]['AP']:.1f}, AP50 {summary[key]['AP50']:.1f}")
    for path in summary["visualisation"].values():
        print(f"ground truth vs detections drawn: {path}")
    if summary["expected"] is not None:
        for key, c in summary["expected"].items():
            verdict = "inside" if c["in_range"] else "OUTSIDE"
            print(f"{key} = {c['value']:.1f}: {verdict} the expected range {c['range'][0]:g}-{c['range'][1]:g}")
    t = summary["time"]
    print(f"total {t['wall_s'] / 60:.1f} min ({t['cpu_s'] / 60:.1f} min CPU, {summary['threads']} thread(s)); "
          f"figures in {out / 'summary.json'}")


def main(argv=None) -> int:
    """The command line of ``tools/demo_pipeline.py``; returns the exit code."""
    p = argparse.ArgumentParser(prog="demo_pipeline.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="output/demo", help="output folder (default: output/demo)")
    p.add_argument("--quick", action="store_true", help="tiny data and schedules (tests, smoke runs)")
    p.add_argument("--baseline", action="store_true",
                   help="also train the detector from random init, print both mAPs, draw both")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0,
                   help="SEED of pretraining and detection (initialisation, data order); the toy "
                        "data stays the same (default: 0)")
    args = p.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.seed < 0:
        p.error(f"--seed must be >= 0, got {args.seed}")
    try:
        summary = run_pipeline(Path(args.out), quick=args.quick, baseline=args.baseline, seed=args.seed)
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    _report(summary, Path(args.out))
    return 0
