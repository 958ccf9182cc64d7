"""ResNet backbone throughput: ``build_resnet`` vs torchvision at identical settings.

    python benchmarks/bench_backbone.py [--depth 101] [--batch 8] [--size 224] [--device cpu]
    python benchmarks/bench_backbone.py --device cuda --batch 64 --amp bf16 --layout nhwc

``--layout shipped`` (default) runs each library as it comes: ours picks NHWC activations where
they were measured faster (``build_resnet(channels_last=None)``: CUDA, and bottleneck depths on
CPU), torchvision stays NCHW; the input batch is the same NCHW float tensor. ``nchw`` and
``nhwc`` force one layout on both (``nhwc`` also stores both models' weights NHWC; the old flag
``--channels-last`` means ``--layout nhwc``), so they compare the same arithmetic.

Reports forward (eval, no grad) and training-step (forward + backward + SGD step) img/s for
both, timed alternately in one process, and their ratio ours/torchvision in img/s (> 1: ours
is faster); and the achieved multiply-add rate of each as a fraction of the measured matmul
rate in the same dtype (a training step counted as 3x the forward's multiply-adds).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision
from fvcore.nn import FlopCountAnalysis

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import matmul_ceiling, print_table, time_alternating, write_result  # noqa: E402

from resnet_det.models import build_resnet  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depth", type=int, default=101)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--layout", choices=["shipped", "nchw", "nhwc"], default="shipped",
                   help="shipped: each library's default; nchw/nhwc: both models alike")
    p.add_argument("--channels-last", action="store_true", help="same as --layout nhwc")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.device(args.device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # both models alike: best algorithm per shape

    if args.channels_last:
        args.layout = "nhwc"
    torch.manual_seed(0)
    fmt = torch.channels_last if args.layout == "nhwc" else torch.contiguous_format
    # stride_in_1x1=False: torchvision's placement, so both networks do the same arithmetic.
    ours = build_resnet(args.depth, stride_in_1x1=False,
                        channels_last={"shipped": None, "nchw": False, "nhwc": True}[args.layout])
    ours.to(args.device, memory_format=fmt)
    theirs = getattr(torchvision.models, f"resnet{args.depth}")().to(args.device, memory_format=fmt)
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device).to(memory_format=fmt)
    target = torch.randint(0, 1000, (args.batch,), device=args.device)
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.amp]
    device_type = torch.device(args.device).type

    def forward(model):
        def run():
            with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
                model.eval()(x)
        return run

    def train_step(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def run():
            model.train()
            with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
                loss = torch.nn.functional.cross_entropy(model(x), target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return run

    kw = dict(repeats=args.repeats, warmup=args.warmup, device=args.device)
    fwd = time_alternating({"ours": forward(ours), "torchvision": forward(theirs)}, **kw)
    trn = time_alternating({"ours": train_step(ours), "torchvision": train_step(theirs)}, **kw)

    flops = FlopCountAnalysis(ours.eval(), x[:1])
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    macs_per_image = flops.total()  # fvcore counts one "flop" per multiply-add
    ceiling = matmul_ceiling(args.device, dtype=dtype or torch.float32)

    rows, fraction = [], {}
    for name in ("ours", "torchvision"):
        rows.append({
            "model": f"{name} resnet{args.depth}",
            "fwd img/s": args.batch / fwd[name],
            "train-step img/s": args.batch / trn[name],
        })
        fraction[name] = {"forward": macs_per_image * args.batch / fwd[name] / ceiling,
                          "train_step": 3 * macs_per_image * args.batch / trn[name] / ceiling}
    ratios = {  # img/s of ours divided by img/s of torchvision: > 1 means ours is faster
        "forward": fwd["torchvision"] / fwd["ours"],
        "train_step": trn["torchvision"] / trn["ours"],
    }
    rows.append({"model": "img/s ratio ours/torchvision", "fwd img/s": ratios["forward"],
                 "train-step img/s": ratios["train_step"]})
    for name in ("ours", "torchvision"):
        rows.append({"model": f"{name}: MAC rate / matmul rate",
                     "fwd img/s": f"{fraction[name]['forward']:.1%}",
                     "train-step img/s": f"{fraction[name]['train_step']:.1%}"})
    print(f"resnet{args.depth}, batch {args.batch}, {args.size}px, {args.device}, amp={args.amp}, "
          f"layout {args.layout}, {torch.get_num_threads()} CPU threads, "
          f"median of {args.repeats} alternated runs")
    print_table(rows, ["model", "fwd img/s", "train-step img/s"])
    tf32 = device_type == "cuda" and dtype is None and torch.backends.cudnn.allow_tf32
    print(f"{macs_per_image / 1e9:.2f} GMAC per image; measured {ceiling / 1e9:.1f} GMAC/s "
          f"on a {'fp32' if dtype is None else args.amp} matmul{' (TF32, as cuDNN convs)' if tf32 else ''}")
    tag = f"_{args.amp}" if dtype is not None else ""
    tag += "" if args.layout == "shipped" else f"_{args.layout}"
    path = write_result(f"backbone_r{args.depth}_{torch.device(args.device).type}{tag}", {
        "args": vars(args), "seconds": {"forward": fwd, "train_step": trn},
        "img_per_s": rows[:2], "img_per_s_ratio_ours_over_torchvision": ratios,
        "macs_per_image": macs_per_image, "matmul_macs_per_s": ceiling,
        "fraction_of_matmul_rate": fraction,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
