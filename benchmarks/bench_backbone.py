"""ResNet backbone throughput: ``build_resnet`` vs torchvision at identical settings.

    python benchmarks/bench_backbone.py [--depth 101] [--batch 8] [--size 224] [--device cpu]

Reports forward and forward+backward img/s for both, the ratio ours/torchvision, and the
achieved multiply-add rate of our forward as a fraction of the measured matmul rate.
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
    p.add_argument("--channels-last", action="store_true", help="both models in channels_last")
    p.add_argument("--amp", choices=["off", "bf16", "fp16"], default="off")
    args = p.parse_args()

    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    # stride_in_1x1=False: torchvision's placement, so both networks do the same arithmetic.
    ours = build_resnet(args.depth, stride_in_1x1=False).to(args.device, memory_format=fmt)
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
    macs_per_image = flops.total()
    ceiling = matmul_ceiling(args.device)
    achieved = macs_per_image * args.batch / fwd["ours"]

    rows = []
    for name in ("ours", "torchvision"):
        rows.append({
            "model": f"{name} resnet{args.depth}",
            "fwd img/s": args.batch / fwd[name],
            "fwd+bwd img/s": args.batch / trn[name],
        })
    ratios = {
        "forward": fwd["torchvision"] / fwd["ours"],
        "train_step": trn["torchvision"] / trn["ours"],
    }
    rows.append({"model": "ratio ours/torchvision", "fwd img/s": ratios["forward"], "fwd+bwd img/s": ratios["train_step"]})
    print(f"resnet{args.depth}, batch {args.batch}, {args.size}px, {args.device}, amp={args.amp}, "
          f"channels_last={args.channels_last}")
    print_table(rows, ["model", "fwd img/s", "fwd+bwd img/s"])
    print(f"our forward: {achieved / 1e9:.1f} GMAC/s = {achieved / ceiling:.1%} of the measured "
          f"fp32 matmul rate ({ceiling / 1e9:.1f} GMAC/s)")
    path = write_result(f"backbone_r{args.depth}_{args.device}", {
        "args": vars(args), "seconds": {"forward": fwd, "train_step": trn},
        "img_per_s": rows[:2], "ratio_ours_over_torchvision": ratios,
        "macs_per_image": macs_per_image, "matmul_macs_per_s": ceiling,
        "fraction_of_matmul_ceiling": achieved / ceiling,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
