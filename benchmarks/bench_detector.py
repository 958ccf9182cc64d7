"""Faster R-CNN speed: our detector vs detectron2's built-in, identical weights.

    python benchmarks/bench_detector.py [--arch c4|fpn|both] [--height 800 --width 1067]
                                        [--repeats 3] [--train]

For each design (R101-C4: configs/faster_rcnn_r101_coco.yaml vs detectron2's
COCO-Detection/faster_rcnn_R_101_C4_3x.yaml; R50-FPN: ours with depth 50 vs
faster_rcnn_R_50_FPN_3x.yaml) the built-in model's random weights are loaded into ours
unchanged. Inference s/image is timed for detectron2's model and for ours after
``optimize_for_inference`` (BN folding + channels_last; ``--ablation`` adds ours unchanged and
BN folding alone), alternated in one process; the detections of ours are compared with
detectron2's (1000 proposals, score threshold 0, up to 100 detections). ``--train`` also times one training
iteration (batch 1) of each, in separate processes so each reports its own peak RSS.
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, time_alternating, write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DESIGNS = {
    "c4": ("configs/faster_rcnn_r101_coco.yaml", "COCO-Detection/faster_rcnn_R_101_C4_3x.yaml", {}),
    "fpn": (
        "configs/faster_rcnn_r101_fpn_coco.yaml",
        "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
        {"MODEL.RESNETS.DEPTH": 50},
    ),
}


def build_pair(design: str):
    """(detectron2's model, ours) on CPU with identical random weights and input handling."""
    import resnet_det  # noqa: F401  (registers our backbones)
    from detectron2 import model_zoo
    from detectron2.config import get_cfg as d2_get_cfg
    from detectron2.modeling import build_model

    from resnet_det.config import get_cfg

    ours_file, d2_file, overrides = DESIGNS[design]
    d2_cfg = d2_get_cfg()
    d2_cfg.merge_from_file(model_zoo.get_config_file(d2_file))
    cfg = get_cfg()
    cfg.merge_from_file(str(REPO / ours_file))
    for key, value in overrides.items():
        cfg.merge_from_list([key, value])
    for c in (cfg, d2_cfg):
        c.MODEL.DEVICE = "cpu"
        # Random weights score every box low: keep all detections so there is something to compare.
        c.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    # The same pixel normalisation as the built-in (ours defaults to torchvision's RGB one).
    cfg.INPUT.FORMAT, cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = (
        d2_cfg.INPUT.FORMAT, d2_cfg.MODEL.PIXEL_MEAN, d2_cfg.MODEL.PIXEL_STD)
    torch.manual_seed(0)
    theirs = build_model(d2_cfg).eval()
    calibrate_frozen_bn(theirs)
    ours = build_model(cfg)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs.eval(), ours.eval(), cfg


def calibrate_frozen_bn(model) -> None:
    """Give random-weight FrozenBN layers the statistics of the activations they see, so that a
    101-layer random network produces finite, varied proposals and scores (as a trained one does).

    One forward pass on a random image: each FrozenBN takes its input's per-channel mean and
    variance (in forward order, so every layer sees already-normalised predecessors) and a random
    scale/shift, making BN folding a non-trivial transformation.
    """
    g = torch.Generator().manual_seed(1)

    def hook(module, inputs):
        x = inputs[0].detach()
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)) + module.eps)
        module.weight.copy_(torch.rand(module.weight.shape, generator=g) * 0.5 + 0.5)
        module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules()
               if type(m).__name__ == "FrozenBatchNorm2d"]
    image = torch.randint(0, 256, (3, 480, 640), generator=g, dtype=torch.uint8)
    with torch.no_grad():
        model([{"image": image, "height": 480, "width": 640}])
    for h in handles:
        h.remove()


def compare(a, b) -> dict:
    """How far detections ``b`` are from reference ``a``: each reference detection is matched to
    the detection of the same class in ``b`` with the highest IoU; reported are the fraction
    matched at IoU >= 0.99 and, over those, the largest box-coordinate and score differences.

    Matching (not index order) because a random-weight detector scores many boxes alike, so
    float-level differences reorder near-ties in top-k and NMS.
    """
    from detectron2.structures import pairwise_iou

    out = {"count": [len(a), len(b)]}
    if len(a) == 0 or len(b) == 0:
        return {**out, "matched_fraction": float(len(a) == len(b))}
    iou = pairwise_iou(a.pred_boxes, b.pred_boxes)
    iou[a.pred_classes[:, None] != b.pred_classes[None, :]] = -1
    best_iou, idx = iou.max(dim=1)
    ok = best_iou >= 0.99
    out["matched_fraction"] = ok.float().mean().item()
    if ok.any():
        out["max_box_diff_px"] = (a.pred_boxes.tensor[ok] - b.pred_boxes.tensor[idx[ok]]).abs().max().item()
        out["max_score_diff"] = (a.scores[ok] - b.scores[idx[ok]]).abs().max().item()
    return out


def inference(args, design):
    from resnet_det.models import optimize_for_inference

    theirs, ours, _ = build_pair(design)
    g = torch.Generator().manual_seed(2)
    image = torch.randint(0, 256, (3, args.height, args.width), generator=g, dtype=torch.uint8)
    inputs = [{"image": image, "height": args.height, "width": args.width}]
    variants = {"detectron2": theirs, "ours": ours}
    if args.ablation:  # each inference step on its own, to show what it contributes
        variants["ours+fold_bn"] = optimize_for_inference(copy.deepcopy(ours), channels_last=False)
    variants["ours+fold_bn+channels_last"] = optimize_for_inference(ours, channels_last=True)
    if not args.ablation:
        del variants["ours"]
    outputs = {}

    def runner(name, model):
        def run():
            with torch.inference_mode():
                outputs[name] = model(inputs)[0]["instances"]
        return run

    seconds = time_alternating(
        {k: runner(k, m) for k, m in variants.items()}, repeats=args.repeats, warmup=1
    )
    agreement = {k: compare(outputs["detectron2"], outputs[k]) for k in variants if k != "detectron2"}
    return seconds, agreement


def train_iteration(design: str, repeats: int) -> dict:
    """Median s/iter of one batch-1 training step; run in a child process (own peak RSS)."""
    from detectron2.structures import Boxes, Instances

    which, design = design.split(":")
    theirs, ours, cfg = build_pair(design)
    model = (theirs if which == "detectron2" else ours).train()
    h, w = 800, 1067
    inst = Instances((h, w))
    inst.gt_boxes = Boxes(torch.tensor([[100.0, 120.0, 400.0, 500.0], [500.0, 200.0, 900.0, 700.0]]))
    inst.gt_classes = torch.tensor([3, 17])
    g = torch.Generator().manual_seed(2)
    batch = [{"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
              "instances": inst, "height": h, "width": w}]
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def step():
        losses = model(batch)
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds = time_alternating({"step": step}, repeats=repeats, warmup=1)["step"]
    return {"s_per_iter": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=["c4", "fpn", "both"], default="both")
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--width", type=int, default=1067)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--ablation", action="store_true",
                   help="also time ours unchanged and with BN folding alone")
    p.add_argument("--train", action="store_true", help="also time one training iteration per model")
    p.add_argument("--train-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.train_child:
        print(json.dumps(train_iteration(args.train_child, args.repeats)))
        return

    designs = ["c4", "fpn"] if args.arch == "both" else [args.arch]
    results = {}
    for design in designs:
        seconds, agreement = inference(args, design)
        base = seconds["detectron2"]
        detections = {"detectron2": next(iter(agreement.values()))["count"][0]}
        detections.update({k: a["count"][1] for k, a in agreement.items()})
        rows = [{"model": k, "s/image": s, "ratio vs detectron2": s / base,
                 "detections": detections[k],
                 "matched": agreement.get(k, {}).get("matched_fraction", "-"),
                 "max box diff px (matched)": agreement.get(k, {}).get("max_box_diff_px", "-")}
                for k, s in seconds.items()]
        print(f"\n{design}: inference, {args.height}x{args.width}, {args.threads} threads")
        print_table(rows, ["model", "s/image", "ratio vs detectron2", "detections", "matched",
                          "max box diff px (matched)"])
        results[design] = {"inference_s": seconds, "agreement": agreement}
        if args.train:
            train = {}
            for which in ("detectron2", "ours"):  # separate processes: separate peak RSS
                out = subprocess.run(
                    [sys.executable, __file__, "--train-child", f"{which}:{design}",
                     "--repeats", str(args.repeats), "--threads", str(args.threads)],
                    check=True, capture_output=True, text=True,
                ).stdout
                train[which] = json.loads(out.strip().splitlines()[-1])
            print(f"{design}: one training iteration (batch 1, 800x1067)")
            print_table([{"model": k, **v} for k, v in train.items()], ["model", "s_per_iter", "peak_rss_mb"])
            results[design]["train"] = train
    path = write_result("detector", {"args": vars(args), "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
