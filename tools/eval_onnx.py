#!/usr/bin/env python
"""COCO / VOC mAP of an exported model on the config's test datasets (the evaluators of
tools/train_det.py --eval-only, the ONNX Runtime detector in place of the PyTorch model).

    python tools/eval_onnx.py --onnx output/onnx_r18_c4/model.onnx \
        --config configs/toy/faster_rcnn_r18_c4_coco.yaml [--out results.json] [KEY VALUE ...]
"""
import argparse
import json
import sys

from resnet_det.utils.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from detectron2.utils.logger import create_small_table, setup_logger  # noqa: E402

from resnet_det.config import load_config  # noqa: E402
from resnet_det.export.onnx_evaluation import evaluate_onnx  # noqa: E402


def main(argv=None):
    """Exit status of :func:`evaluate`: 0, or 2 with the message of an expected error."""
    return run_cli(evaluate, argv)


def evaluate(argv=None):
    """Parse arguments, evaluate, print the main metrics (exit 2 on a bad input)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="model.onnx written by tools/export_model.py")
    p.add_argument("--config", "--config-file", dest="config", required=True,
                   help="the config whose DATASETS.TEST to evaluate on")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads")
    p.add_argument("--out", help="also write {dataset: {task: metrics}} to this json file")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    setup_logger(name="resnet_det")
    setup_logger(name="detectron2", abbrev_name="d2")  # inference_on_dataset's progress lines
    cfg = load_config(args.config, args.opts)
    results = evaluate_onnx(cfg, args.onnx, args.threads)
    for dataset, tasks in results.items():
        for task, metrics in tasks.items():
            main_metrics = {k: v for k, v in metrics.items() if "-" not in k}
            print(f"{dataset} {task} (ONNX Runtime):\n{create_small_table(main_metrics)}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({d: {t: {k: float(v) for k, v in m.items()} for t, m in tasks.items()}
                       for d, tasks in results.items()}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
