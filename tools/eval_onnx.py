#!/usr/bin/env python
"""COCO / VOC mAP of an exported model on the config's test datasets (the evaluators of
tools/train_det.py --eval-only, the runner in place of the PyTorch model), on any runtime and
precision, and with --weights the PyTorch model's beside it.

    python tools/eval_onnx.py --onnx output/onnx_r18_c4/model.onnx \
        --config configs/toy/faster_rcnn_r18_c4_coco.yaml [--runtime openvino] [--precision int8] \
        [--weights output/toy_r18_c4_coco/model_final.pth] [--out results.json] [KEY VALUE ...]
"""
import argparse
import sys

from resnet_det.utils.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from detectron2.utils.logger import setup_logger  # noqa: E402
from tabulate import tabulate  # noqa: E402

from resnet_det.config import load_config  # noqa: E402
from resnet_det.deploy.detect import add_runtime_arguments  # noqa: E402
from resnet_det.export.onnx_evaluation import evaluate_onnx, evaluate_pytorch  # noqa: E402
from resnet_det.utils.files import write_json  # noqa: E402


def main(argv=None):
    """Exit status of :func:`evaluate`: 0, or 2 with the message of an expected error."""
    return run_cli(evaluate, argv)


def evaluate(argv=None):
    """Parse arguments, evaluate, print the main metrics side by side (exit 2 on a bad input)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", required=True, help="model.onnx written by tools/export_model.py")
    p.add_argument("--config", "--config-file", dest="config", required=True,
                   help="the config whose DATASETS.TEST to evaluate on")
    add_runtime_arguments(p)
    p.add_argument("--weights", help="also evaluate this PyTorch checkpoint, for comparison")
    p.add_argument("--out", help="also write {model: {dataset: {task: metrics}}} to this json file")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    setup_logger(name="resnet_det")
    setup_logger(name="detectron2", abbrev_name="d2")  # inference_on_dataset's progress lines
    cfg = load_config(args.config, ["MODEL.DEVICE", "cpu", *args.opts])
    results = {f"{args.runtime} {args.precision}": evaluate_onnx(cfg, args.onnx, args.threads, args.runtime,
                                                                 args.precision)}
    if args.weights:
        results["PyTorch"] = evaluate_pytorch(cfg, args.weights)
    for dataset in cfg.DATASETS.TEST:
        rows = {model: {k: v for k, v in r[dataset]["bbox"].items() if "-" not in k} for model, r in results.items()}
        keys = list(next(iter(rows.values())))
        print(f"{dataset} bbox\n" + tabulate([[m, *(f"{row[k]:.3f}" for k in keys)] for m, row in rows.items()],
                                             headers=["model", *keys], tablefmt="pipe"))
    if args.out:
        write_json(args.out, {m: {d: {t: {k: float(v) for k, v in mt.items()} for t, mt in ts.items()}
                                  for d, ts in r.items()} for m, r in results.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
