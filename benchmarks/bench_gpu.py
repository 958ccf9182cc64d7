"""GPU speed and memory: the pretraining step, switch by switch, and Faster R-CNN R101-C4.

    python benchmarks/bench_gpu.py [--depths 50 101] [--batch 128] [--steps 10] [--repeats 5]
                                   [--compile] [--skip-pretrain] [--skip-detection]
                                   [--detection train|inference|both] [--no-tf32]

Needs a CUDA device. Three measurements, each with its contenders alternated in this process
after warm-up (median of ``--repeats`` calls of ``--steps`` steps each):

1. Pretraining step of ``build_resnet(depth)`` (batch ``--batch``, 224 px, SGD as
   ``resnet_det.engine.solver.build_optimizer``). Each row adds one switch to the row
   above, starting from a naive loop: fp32 NCHW, float32 batch copied from pageable host memory
   (what a per-sample float pipeline hands over), the loss read on the host every step, foreach
   SGD. Then: uint8 batch from pinned memory with ``non_blocking`` and normalisation on the GPU
   (our loader's hand-over), no per-step host sync (losses read with a lag, as our engine does),
   channels_last, bf16 autocast, fused SGD, and with ``--compile`` torch.compile. The last rows
   put torchvision's ResNet against ours (torchvision's stride placement) at the best settings.
   Peak memory is measured per row in a separate step.
2. Faster R-CNN R101-C4 training iteration, 2 images of 800x1067 per step (detectron2's 2
   images per GPU): ours (``configs/faster_rcnn_r101_coco.yaml``) vs detectron2's built-in
   ``faster_rcnn_R_101_C4_3x.yaml`` holding the same weights, fp32 and AMP (fp16 autocast +
   GradScaler, as detectron2's AMPTrainer); s/iter and peak memory.
3. Inference s/image, R101-C4 and R50-FPN, ours after ``optimize_for_inference`` vs
   detectron2's, with the detections compared (``bench_detector.compare``).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, time_alternating, write_result  # noqa: E402

from resnet_det.data.transforms import NormalizeBatch  # noqa: E402
from resnet_det.engine.solver import build_optimizer  # noqa: E402
from resnet_det.models import build_resnet, optimize_for_inference  # noqa: E402

CUDA = torch.device("cuda")

# Cumulative switches of the pretraining ladder: (row name, settings changed from the row above).
LADDER = [
    ("fp32 NCHW, pageable float32 input, host sync/step, foreach SGD",
     dict(input="float_pageable", sync_each_step=True, channels_last=False, amp=None, opt="foreach")),
    ("+ uint8 pinned input, non_blocking, normalise on GPU", dict(input="uint8_pinned")),
    ("+ no per-step host sync (lagged loss)", dict(sync_each_step=False)),
    ("+ channels_last", dict(channels_last=True)),
    ("+ bf16 autocast", dict(amp=torch.bfloat16)),
    ("+ fused SGD", dict(opt="fused")),
]


def peak_memory_gib(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**30


class PretrainStep:
    """``steps`` training steps of one model under one set of switches."""

    def __init__(self, model, batch, steps, *, input, sync_each_step, channels_last, amp, opt,
                 compile=False):
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(CUDA, memory_format=self.fmt).train()
        self.optimizer = build_optimizer(self.model, 0.1 * batch / 256, impl=opt)
        self.forward = torch.compile(self.model) if compile else self.model
        self.steps, self.input, self.sync_each_step, self.amp = steps, input, sync_each_step, amp
        g = torch.Generator().manual_seed(0)
        uint8 = torch.randint(0, 256, (batch, 3, 224, 224), generator=g, dtype=torch.uint8)
        # The engine's normalisation: on the host for the float hand-over, on the GPU otherwise.
        self.normalize = NormalizeBatch().to(CUDA)
        self.host = NormalizeBatch()(uint8) if input == "float_pageable" else uint8.pin_memory()
        self.labels = torch.randint(0, 1000, (batch,), generator=g).to(CUDA)

    def __call__(self):
        losses = []
        for _ in range(self.steps):
            if self.input == "float_pageable":
                x = self.host.to(CUDA)
            else:
                x = self.normalize(self.host.to(CUDA, non_blocking=True))
            x = x.contiguous(memory_format=self.fmt)
            with torch.autocast("cuda", dtype=self.amp, enabled=self.amp is not None):
                loss = torch.nn.functional.cross_entropy(self.forward(x), self.labels)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.sync_each_step:
                losses.append(loss.item())
            else:
                losses.append(loss.detach())
        if not self.sync_each_step:
            torch.stack(losses).tolist()  # one read per call: the engine's lagged logging


def bench_pretrain(args) -> dict:
    results = {}
    for depth in args.depths:
        torch.manual_seed(0)
        # The layout is the ladder's channels_last switch, so ours must not choose its own.
        base = build_resnet(depth, channels_last=False)
        rows, settings = {}, {}
        for name, change in LADDER:
            settings = {**settings, **change}
            rows[name] = PretrainStep(copy.deepcopy(base), args.batch, args.steps, **settings)
        if args.compile:
            rows["+ torch.compile"] = PretrainStep(copy.deepcopy(base), args.batch, args.steps,
                                                   **settings, compile=True)
        torch.manual_seed(0)
        tv_placement = build_resnet(depth, stride_in_1x1=False, channels_last=False)
        tv = getattr(torchvision.models, f"resnet{depth}")()
        rows["ours, torchvision's stride placement (best settings)"] = PretrainStep(
            tv_placement, args.batch, args.steps, **settings)
        rows["torchvision resnet (best settings)"] = PretrainStep(tv, args.batch, args.steps, **settings)
        first_call = {}
        for name, step in rows.items():  # first call separately: compile time shows here
            start = time.perf_counter()
            step()
            torch.cuda.synchronize()
            first_call[name] = time.perf_counter() - start
        seconds = time_alternating(rows, repeats=args.repeats, warmup=1, device=CUDA)
        memory = {}
        for name, step in rows.items():
            steps, step.steps = step.steps, 1
            memory[name] = peak_memory_gib(step)
            step.steps = steps
        table = [{"row": name, "img/s": args.batch * args.steps / s,
                  "vs first row": seconds[next(iter(rows))] / s,
                  "peak GiB": memory[name], "first call s": first_call[name]}
                 for name, s in seconds.items()]
        print(f"\nResNet-{depth} pretraining step, batch {args.batch}, 224 px, {args.steps} steps per call")
        print_table(table, ["row", "img/s", "vs first row", "peak GiB", "first call s"])
        results[depth] = table
        del rows
        torch.cuda.empty_cache()
    return results


def bench_detection_train(args) -> dict:
    from bench_detector import build_pair, training_batch
    from detectron2.utils.events import EventStorage

    theirs, ours, _ = build_pair("c4")
    batch = training_batch(n=2, boxes=((100.0, 120.0, 400.0, 500.0), (500.0, 200.0, 900.0, 700.0),
                                       (50.0, 600.0, 300.0, 780.0)), classes=(3, 17, 0))

    def trainer(model, amp):
        model = copy.deepcopy(model).to(CUDA).train()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.0,
                              momentum=0.9, fused=True)
        scaler = torch.amp.GradScaler("cuda", enabled=amp)

        def run():
            for _ in range(args.det_steps):
                with EventStorage(0), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                    losses = model(batch)
                scaler.scale(sum(losses.values())).backward()
                scaler.step(opt)
                scaler.update()
                opt.zero_grad(set_to_none=True)
        return run

    rows = {f"{who} {'AMP fp16' if amp else 'fp32'}": trainer(m, amp)
            for amp in (False, True) for who, m in (("detectron2", theirs), ("ours", ours))}
    seconds = time_alternating(rows, repeats=args.repeats, warmup=1, device=CUDA)
    table = []
    for name, run in rows.items():
        steps, args.det_steps = args.det_steps, 1
        mem = peak_memory_gib(run)
        args.det_steps = steps
        base = seconds[name.replace("ours", "detectron2")]
        table.append({"model": name, "s/iter": seconds[name] / args.det_steps,
                      "ratio vs detectron2": seconds[name] / base, "peak GiB": mem})
    print(f"\nFaster R-CNN R101-C4 training iteration, 2 images 800x1067, {args.det_steps} iterations per call")
    print_table(table, ["model", "s/iter", "ratio vs detectron2", "peak GiB"])
    return {"train": table}


def bench_detection_inference(args) -> dict:
    from bench_detector import build_pair, compare

    results = {}
    g = torch.Generator().manual_seed(2)
    image = torch.randint(0, 256, (3, 800, 1067), generator=g, dtype=torch.uint8)
    inputs = [{"image": image, "height": 800, "width": 1067}]
    for design in ("c4", "fpn"):
        theirs, ours, _ = build_pair(design)
        theirs = theirs.to(CUDA).eval()
        ours = optimize_for_inference(ours.to(CUDA).eval(), channels_last=True)
        outputs = {}

        def runner(name, model):
            def run():
                with torch.inference_mode():
                    for _ in range(args.steps):
                        outputs[name] = model(inputs)[0]["instances"].to("cpu")
            return run

        seconds = time_alternating({"detectron2": runner("detectron2", theirs),
                                    "ours": runner("ours", ours)},
                                   repeats=args.repeats, warmup=1, device=CUDA)
        agreement = compare(outputs["detectron2"], outputs["ours"])
        table = [{"model": k, "s/image": s / args.steps, "ratio vs detectron2": s / seconds["detectron2"]}
                 for k, s in seconds.items()]
        print(f"\n{design} inference on GPU, 800x1067, fp32 (TF32 convolutions: "
              f"{torch.backends.cudnn.allow_tf32}); agreement {agreement}")
        print_table(table, ["model", "s/image", "ratio vs detectron2"])
        results[design] = {"table": table, "agreement": agreement}
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--depths", type=int, nargs="+", default=[50, 101])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="steps per timed call")
    p.add_argument("--det-steps", type=int, default=5, help="detection iterations per timed call")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compile", action="store_true", help="add a torch.compile row to the ladder")
    p.add_argument("--skip-pretrain", action="store_true")
    p.add_argument("--skip-detection", action="store_true")
    p.add_argument("--detection", choices=["train", "inference", "both"], default="both")
    p.add_argument("--no-tf32", action="store_true",
                   help="plain fp32 convolutions and matmuls (for comparing detections box by box)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device (torch.cuda.is_available() is False)")
    torch.backends.cudnn.benchmark = True
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    results = {}
    if not args.skip_pretrain:
        results["pretrain"] = bench_pretrain(args)
    if not args.skip_detection:
        results["detection"] = {}
        if args.detection in ("train", "both"):
            results["detection"].update(bench_detection_train(args))
        if args.detection in ("inference", "both"):
            results["detection"].update(bench_detection_inference(args))
    path = write_result("gpu", {"args": vars(args), "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
