#!/usr/bin/env python
"""The whole project on toy data, in one command: pretraining feeds the detector.

    python tools/demo_pipeline.py [--out output/demo] [--baseline] [--quick] [--threads N]
    make demo

Stages (each prints what it wrote; a failure names its stage):
  1. data      tools/make_toy_data.py's generator -> OUT/data (kept and reused if present)
  2. pretrain  ResNet-18 (GN) classification on OUT/data/imagenet -> OUT/pretrain/backbone.safetensors
  3. detect    Faster R-CNN R18-FPN on toy COCO from that backbone -> OUT/detect/model_final.pth,
               COCO evaluation (detectron2's COCOEvaluator) -> OUT/detect/eval_results.json
  4. baseline  (--baseline) the same detector and schedule from random init -> OUT/detect_scratch
  5. visualise detections on the first toy COCO val image -> OUT/vis/<image>.png
OUT/summary.json collects the figures. About ten minutes on a 2-core CPU (see README);
--quick runs every stage with tiny settings (tests).
"""
import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import torch
from detectron2.engine import default_argument_parser
from detectron2.utils.logger import setup_logger

from resnet_det.classification import load_pretrain_cfg, train
from resnet_det.config import load_config
from resnet_det.data.toy import make_toy_data
from resnet_det.detection.demo import list_images, run_demo
from resnet_det.detection.engine import RESULTS_FILE, launch_from_args

REPO = Path(__file__).resolve().parent.parent
PRETRAIN_CONFIG = REPO / "configs/pretrain/toy_resnet18.yaml"
DETECT_CONFIG = REPO / "configs/toy/faster_rcnn_r18_fpn_coco.yaml"
# The detector's schedule in the demo: 300 iterations instead of the config's 500, so that the
# whole pipeline fits in about ten minutes; the random-init baseline gets the same.
DETECT_SCHEDULE = ["SOLVER.MAX_ITER", "300", "SOLVER.STEPS", "(240, 285)", "SOLVER.CHECKPOINT_PERIOD", "300"]

# 200 classification images per class (library default: 60), as configs/pretrain/toy_resnet18.yaml
# was measured with; the detection data is the library default (120 train / 40 val images).
DEMO_DATA = dict(num_train_per_class=200)
DATA_STAMP = "demo_data.json"  # the settings the data was made with, so a rerun can reuse it
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


def _stage(name, folder, fn, *args, **kwargs):
    """Run one stage with a banner and its wall time; any failure is re-raised naming it."""
    print(f"\n=== stage {name} -> {folder}", flush=True)
    start = time.perf_counter()
    before = {n: list(logging.getLogger(n).handlers) for n in _LOGGERS}
    try:
        result = fn(*args, **kwargs)
    except Exception as e:  # the stage name matters more than the type here
        raise StageError(f"stage '{name}' ({folder}) failed: {type(e).__name__}: {e}") from e
    finally:
        _drop_new_handlers(before)
    print(f"=== stage {name} done in {time.perf_counter() - start:.0f} s", flush=True)
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


def pretrain(data_dir: Path, out_dir: Path, quick: bool) -> dict:
    """Classification pretraining (``PRETRAIN_CONFIG``); returns its final val errors."""
    opts = ["DATA.ROOT", str(data_dir / "imagenet"), "OUTPUT_DIR", str(out_dir)]
    cfg = load_pretrain_cfg(str(PRETRAIN_CONFIG), opts + (QUICK_PRETRAIN if quick else []))
    setup_logger(str(out_dir), name="resnet_det")
    metrics = train(cfg)
    print(f"pretraining: val top-1 error {metrics['val_top1_err']:.1f}% (1 crop)"
          + (f", {metrics['val_10crop_top1_err']:.1f}% (10 crops)" if "val_10crop_top1_err" in metrics else "")
          + f"; wrote {out_dir / 'backbone.safetensors'}")
    return metrics


def detect(weights: str, out_dir: Path, quick: bool) -> dict:
    """Train and COCO-evaluate the toy detector, as ``tools/train_det.py`` does; returns bbox AP."""
    opts = ["MODEL.WEIGHTS", weights, "OUTPUT_DIR", str(out_dir)]
    opts += QUICK_DETECT if quick else DETECT_SCHEDULE
    args = default_argument_parser().parse_args(["--config-file", str(DETECT_CONFIG), *opts])
    launch_from_args(args)
    results_file = out_dir / RESULTS_FILE
    if not results_file.is_file():
        raise StageError(f"the detector's training wrote no {results_file}")
    bbox = json.loads(results_file.read_text())["toy_coco_val"]["bbox"]
    print(f"detection ({'pretrained backbone' if weights else 'random init'}): "
          f"AP {bbox['AP']:.1f}, AP50 {bbox['AP50']:.1f}; wrote {out_dir / 'model_final.pth'}, "
          f"{results_file}")
    return bbox


def visualise(weights: Path, image: Path, out_dir: Path) -> list:
    """Detections of ``weights`` drawn on ``image`` (``resnet_det.detection.demo.run_demo``)."""
    cfg = load_config(str(DETECT_CONFIG), [])
    records = run_demo(cfg, str(weights), image, out_dir, confidence_threshold=0.5)
    for r in records:
        print(f"{len(r['detections'])} detection(s) drawn -> {r['output']}")
    return records


def run_pipeline(out: Path, *, quick=False, baseline=False) -> dict:
    """Run every stage into ``out``; returns (and writes to OUT/summary.json) the figures."""
    out = Path(out)
    data_dir = out / "data"
    # The detection configs read the toy COCO from here (resnet_det.data.datasets).
    os.environ["RESNET_DET_TOY_DATA"] = str(data_dir)
    summary = {"quick": quick}
    start = time.perf_counter()
    _stage("data", data_dir, make_data, data_dir, quick)
    summary["pretrain"] = _stage("pretrain", out / "pretrain", pretrain, data_dir, out / "pretrain", quick)
    backbone = out / "pretrain" / "backbone.safetensors"
    summary["detect"] = _stage("detect", out / "detect", detect, str(backbone), out / "detect", quick)
    if baseline:
        summary["detect_scratch"] = _stage(
            "baseline", out / "detect_scratch", detect, "", out / "detect_scratch", quick)
    val_image = list_images(data_dir / "coco" / "val2017")[0]
    records = _stage("visualise", out / "vis", visualise, out / "detect" / "model_final.pth",
                     val_image, out / "vis")
    summary["visualisation"] = records[0]["output"]
    summary["wall_time_s"] = round(time.perf_counter() - start, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="output/demo", help="output folder (default: output/demo)")
    p.add_argument("--quick", action="store_true", help="tiny data and schedules (tests, smoke runs)")
    p.add_argument("--baseline", action="store_true",
                   help="also train the detector from random init and print both mAPs")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            p.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        summary = run_pipeline(Path(args.out), quick=args.quick, baseline=args.baseline)
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n=== summary")
    pre = summary["pretrain"]
    print(f"pretraining (toy classification): val top-1 error {pre['val_top1_err']:.1f}%")
    for key, label in (("detect", "from the pretrained backbone"), ("detect_scratch", "from random init")):
        if key in summary:
            print(f"detector {label}: toy COCO val AP {summary[key]['AP']:.1f}, AP50 {summary[key]['AP50']:.1f}")
    print(f"detections drawn: {summary['visualisation']}")
    print(f"total {summary['wall_time_s'] / 60:.1f} min; figures in {Path(args.out) / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
