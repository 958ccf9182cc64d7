"""COCO evaluation: faster-coco-eval (the engine here) vs pycocotools' COCOeval (the baseline).

    python benchmarks/bench_coco_eval.py [--images 5000] [--dets 100] [--repeats 3]
    python benchmarks/bench_coco_eval.py --e2e-config configs/toy/faster_rcnn_r18_fpn_coco.yaml \\
        --e2e-weights output/toy_r18_fpn_coco/model_final.pth [--images 0]

Part 1 (``--images`` > 0): a generated set of COCO val's size (5,000 images of 640x480, 80
categories with COCO's ids, about 7.3 objects per image as in val2017, ``--dets`` detections per
image: jittered copies of the objects, some with another class, and random boxes, random
scores). One timed call is what ``evaluate_coco_files`` does after reading the files: load the
detections into the ground truth's COCO object, evaluate, accumulate, summarize. The two
engines alternate in one process (median of ``--repeats``); all 12 stats are compared.

Part 2 (``--e2e-config``): ``train_det.py --eval-only``'s work in this process (build the
test loader, run the detector on the test set, COCOEvaluator) with detectron2's COCOEvaluator
on faster-coco-eval vs on pycocotools, alternating; and the evaluator's ``evaluate()`` alone.

Writes benchmarks/results/coco_eval.json. Prints ``uptime`` (the load of the shared machine)
before and after.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import print_table, time_alternating, write_result  # noqa: E402

from resnet_det.evaluation import COCO_STAT_NAMES, load_coco_gt, run_cocoeval  # noqa: E402

# COCO's 80 category ids (1..90 with gaps).
COCO_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90,
]


def make_coco_set(num_images=5000, dets_per_image=100, seed=0, width=640, height=480):
    """(ground-truth dict, detection list) of a generated COCO-like val set."""
    rng = np.random.default_rng(seed)
    images, annotations, detections = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": width, "height": height,
                       "file_name": f"{image_id:012d}.jpg"})
        n = max(1, rng.poisson(7.3))
        # Sizes log-uniform from 6 to 400 px: small, medium and large objects all occur.
        wh = np.exp(rng.uniform(np.log(6), np.log(400), (n, 2))).clip(max=[width, height])
        xy = rng.uniform(0, 1, (n, 2)) * ([width, height] - wh)
        cats = rng.choice(COCO_CATEGORY_IDS, n)
        for (x, y), (w, h), c in zip(xy, wh, cats):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": int(c), "bbox": [x, y, w, h], "area": w * h,
                                "iscrowd": 0})
        boxes, classes = [], []
        for (x, y), (w, h), c in zip(xy, wh, cats):
            for _ in range(3):
                j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                boxes.append([x + j[0], y + j[1], max(1.0, w + j[2]), max(1.0, h + j[3])])
                classes.append(int(c) if rng.uniform() < 0.85 else int(rng.choice(COCO_CATEGORY_IDS)))
        boxes, classes = boxes[:dets_per_image], classes[:dets_per_image]
        k = dets_per_image - len(boxes)
        wh = np.exp(rng.uniform(np.log(6), np.log(400), (k, 2))).clip(max=[width, height])
        xy = rng.uniform(0, 1, (k, 2)) * ([width, height] - wh)
        boxes += np.concatenate([xy, wh], axis=1).tolist()
        classes += rng.choice(COCO_CATEGORY_IDS, k).tolist()
        for box, c, s in zip(boxes, classes, rng.uniform(0.01, 1, dets_per_image)):
            detections.append({"image_id": image_id, "category_id": int(c),
                               "bbox": [float(v) for v in box], "score": float(s)})
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in COCO_CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def bench_engines(gt, dets, repeats):
    """Median seconds of each engine's phases over ``repeats`` alternated calls (A B, B A, ...):
    "load" (loadRes of the detections into the ground truth), "evaluate" (evaluate +
    accumulate + summarize: the part the engine replaces), "total"; and both stats vectors."""
    gts = {e: load_coco_gt(gt, e) for e in ("faster", "pycocotools")}
    stats, times = {}, {e: [] for e in gts}

    def run(engine):
        # Fresh inputs, made outside the timed phases (the COCO API writes into them).
        coco_gt, detections = copy.deepcopy(gts[engine]), copy.deepcopy(dets)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(detections)
        loaded = time.perf_counter()
        stats[engine] = np.asarray(run_cocoeval(coco_gt, coco_dt, engine=engine).stats[:12])
        end = time.perf_counter()
        times[engine].append({"load": loaded - start, "evaluate": end - loaded, "total": end - start})
        print(f"  {engine}: " + ", ".join(f"{k} {v:.1f} s" for k, v in times[engine][-1].items()),
              flush=True)

    order = list(gts)
    for i in range(repeats):
        for engine in order if i % 2 == 0 else order[::-1]:
            run(engine)
    seconds = {e: {k: statistics.median(t[k] for t in ts) for k in ts[0]} for e, ts in times.items()}
    return seconds, stats


def bench_eval_only(config, weights, repeats):
    """train_det --eval-only's work (inference + COCOEvaluator), and evaluate() alone, with
    detectron2's evaluator on faster-coco-eval vs pycocotools."""
    import torch
    from detectron2.evaluation import coco_evaluation

    import resnet_det  # noqa: F401  (installs faster-coco-eval into COCOEvaluator)
    from resnet_det.checkpoint.detection import ResNetDetCheckpointer
    from resnet_det.config import load_config
    from resnet_det.data.datasets import register_all_datasets
    from resnet_det.engine.detection import Trainer
    from resnet_det.evaluation.evaluators import build_evaluator

    logging.disable(logging.WARNING)  # detectron2 logs every evaluation table
    engines = {"faster-coco-eval": coco_evaluation.COCOeval_opt,
               "pycocotools": coco_evaluation.COCOeval}
    cfg = load_config(config, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", weights,
                               "OUTPUT_DIR", "/tmp/bench_coco_eval_e2e"])
    register_all_datasets(cfg)
    dataset = cfg.DATASETS.TEST[0]
    model = Trainer.build_model(cfg)
    ResNetDetCheckpointer(model).load(weights)
    model.eval()
    results = {}

    def eval_only(name):
        coco_evaluation.COCOeval_opt = engines[name]
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            results[name] = Trainer.test(cfg, model)["bbox"]

    # evaluate() alone, on the predictions of one inference pass (copied before evaluate(),
    # which maps category ids in place).
    evaluator = build_evaluator(cfg, dataset)
    evaluator.reset()
    with torch.no_grad():
        for inputs in Trainer.build_test_loader(cfg, dataset):
            evaluator.process(inputs, model(inputs))
    predictions = copy.deepcopy(evaluator._predictions)

    def evaluate(name):
        coco_evaluation.COCOeval_opt = engines[name]
        evaluator._predictions = copy.deepcopy(predictions)
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.evaluate()

    alone = time_alternating({n: (lambda n=n: evaluate(n)) for n in engines},
                             repeats=5 * repeats, warmup=1)
    total = time_alternating({n: (lambda n=n: eval_only(n)) for n in engines},
                             repeats=repeats, warmup=0)
    coco_evaluation.COCOeval_opt = engines["faster-coco-eval"]
    logging.disable(logging.NOTSET)
    same = all(abs(results["faster-coco-eval"][k] - v) < 1e-9 or (v != v)
               for k, v in results["pycocotools"].items())
    return total, alone, results, same, len(predictions)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--e2e-config", help="a toy COCO config for the --eval-only comparison")
    parser.add_argument("--e2e-weights", help="its trained weights (model_final.pth)")
    parser.add_argument("--e2e-repeats", type=int, default=3)
    args = parser.parse_args()
    payload = {"uptime_before": uptime()}
    print(payload["uptime_before"])
    if args.images > 0:
        start = time.perf_counter()
        gt, dets = make_coco_set(args.images, args.dets)
        print(f"generated {len(gt['images'])} images, {len(gt['annotations'])} objects, "
              f"{len(dets)} detections in {time.perf_counter() - start:.1f} s")
        seconds, stats = bench_engines(gt, dets, args.repeats)
        diff = float(np.abs(stats["faster"] - stats["pycocotools"]).max())
        base = seconds["pycocotools"]
        rows = [{"engine": e, **{f"{k} s": v for k, v in s.items()},
                 "evaluate ratio": s["evaluate"] / base["evaluate"],
                 "total ratio": s["total"] / base["total"]} for e, s in seconds.items()]
        print_table(rows, ["engine", "load s", "evaluate s", "total s", "evaluate ratio",
                           "total ratio"])
        for name, f, p in zip(COCO_STAT_NAMES, stats["faster"], stats["pycocotools"]):
            print(f"  {name:6s} faster {f:.15f}  pycocotools {p:.15f}  {'==' if f == p else '!='}")
        print(f"max |difference| over the 12 stats: {diff:.3g}")
        payload["generated"] = {
            "images": len(gt["images"]), "objects": len(gt["annotations"]),
            "detections": len(dets), "seconds": seconds,
            "evaluate_ratio": seconds["faster"]["evaluate"] / seconds["pycocotools"]["evaluate"],
            "total_ratio": seconds["faster"]["total"] / seconds["pycocotools"]["total"],
            "stats": {e: dict(zip(COCO_STAT_NAMES, map(float, s))) for e, s in stats.items()},
            "identical_stats": int((stats["faster"] == stats["pycocotools"]).sum()),
            "max_abs_difference": diff,
        }
    if args.e2e_config:
        total, alone, results, same, n = bench_eval_only(args.e2e_config, args.e2e_weights,
                                                         args.e2e_repeats)
        rows = [{"engine": e, "eval-only s": total[e], "evaluate() s": alone[e],
                 "AP": results[e]["AP"]} for e in total]
        print(f"train_det --eval-only work on {n} test images of {args.e2e_config}:")
        print_table(rows, ["engine", "eval-only s", "evaluate() s", "AP"])
        print(f"ratio faster/pycocotools: eval-only {total['faster-coco-eval'] / total['pycocotools']:.3f}, "
              f"evaluate() {alone['faster-coco-eval'] / alone['pycocotools']:.3f}; same metrics: {same}")
        payload["eval_only"] = {"config": args.e2e_config, "images": n, "seconds": total,
                                "evaluate_seconds": alone, "metrics": results, "same_metrics": same}
    payload["uptime_after"] = uptime()
    print(payload["uptime_after"])
    print("wrote", write_result("coco_eval", payload))


if __name__ == "__main__":
    main()
