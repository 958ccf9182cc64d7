"""Faster R-CNN speed: our detector vs detectron2's built-in, identical weights.

    python benchmarks/bench_detector.py [--arch c4|fpn|both] [--height 800 --width 1067]
                                        [--repeats 3] [--train]
    python benchmarks/bench_detector.py --arch c4 --weights R101-C4.safetensors --image photo.jpg

For each design (R101-C4: configs/faster_rcnn_r101_coco.yaml vs detectron2's
COCO-Detection/faster_rcnn_R_101_C4_3x.yaml; R50-FPN: ours with depth 50 vs
faster_rcnn_R_50_FPN_3x.yaml) the built-in model's random weights are loaded into ours
unchanged. Inference s/image is timed for detectron2's model and for ours after
``resnet_det.modeling.inference.optimize_detector_for_inference`` (BN folding,
channels_last, faster exact post-processing, RoI pooling on all threads and, for C4, of the bins
res5 reads; ``--ablation`` adds each step in turn, ``--jit`` and
``--compile`` the optional trunk compilers), alternated in one process. The detections of each
are compared with detectron2's (1000 proposals, score threshold 0, up to 100 detections), next
to detectron2 against itself under harmless changes (thread count, channels_last, every input
pixel scaled by 1 + 1e-6 N(0,1)): the float noise floor and the network's own sensitivity.
``--weights`` puts a trained detectron2 model's weights (converted once from the model zoo's
pickle with ``tools/convert_weights.py --allow-pickle``) in both instead of random ones, and
``--image`` a photo in place of the noise image. The exported contenders (on by default,
``--no-onnx`` skips them) are our model before its deploy step exported by
``resnet_det.export`` (whole detector, one file) and run by ``OnnxDetector`` with
``--threads`` threads on each ``--runtimes`` pair (ONNX Runtime fp32; OpenVINO fp32 and bf16;
both on the NNCF int8 model, quantized here), timed in the same alternation; the export time,
file sizes, and the peak RSS of a process serving fp32 (numpy, Pillow, onnxruntime only) beside
that of one running detectron2's model.
``--floor`` adds each design's fp32 compute floor (its multiply-adds over the machine's measured
matmul rate). ``--profile`` prints where the time goes instead. ``--train`` also times one
training iteration (batch 1) of each, in separate processes so each reports its own peak RSS.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import matmul_ceiling, peak_rss_mb, print_table, time_alternating, write_result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DESIGNS = {
    "c4": ("configs/faster_rcnn_r101_coco.yaml", "COCO-Detection/faster_rcnn_R_101_C4_3x.yaml", {}),
    "fpn": (
        "configs/faster_rcnn_r101_fpn_coco.yaml",
        "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml",
        {"MODEL.RESNETS.DEPTH": 50},
    ),
}


def build_pair(design: str, logit_std: float = 2.0, weights: str | None = None):
    """(detectron2's model, ours) on CPU with identical weights and input handling: random ones
    (calibrated, see :func:`calibrate_frozen_bn`), or ``weights``, a file of detectron2's
    built-in model (e.g. a model-zoo ``model_final_*.pkl`` converted once with
    ``tools/convert_weights.py --allow-pickle``)."""
    from detectron2 import model_zoo
    from detectron2.config import get_cfg as d2_get_cfg
    from detectron2.modeling import build_model

    import resnet_det  # noqa: F401  (registers our backbones)
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
    if weights:
        from resnet_det.checkpoint import load_state_dict_checked
        from resnet_det.checkpoint.io import load_state_dict_file

        state = load_state_dict_file(weights)
        # Model-zoo files carry detectron2's pixel statistics as buffers of the model itself.
        state = {k: v for k, v in state.items() if k not in ("pixel_mean", "pixel_std")}
        load_state_dict_checked(theirs, state, allow_missing=("pixel_mean", "pixel_std"),
                                source=str(weights))
    else:
        calibrate_frozen_bn(theirs, logit_std)
    ours = build_model(cfg)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    build_pair.cache[design] = (None, None, cfg)
    return theirs.eval(), ours.eval(), cfg


build_pair.cache = {}


def calibrate_frozen_bn(model, logit_std: float = 2.0) -> None:
    """Give random-weight FrozenBN layers the statistics of the activations they see, so that a
    101-layer random network produces finite, varied proposals and scores (as a trained one does).

    One forward pass on a random image: each FrozenBN takes its input's per-channel mean and
    variance (in forward order, so every layer sees already-normalised predecessors) and a random
    scale/shift, making BN folding a non-trivial transformation. A second pass scales the RPN
    objectness and the box classifier so their logits have standard deviation ``logit_std``:
    at their init (std 0.01) every score is ~equal, and float rounding alone reorders the
    near-ties in top-k and NMS; a trained detector's scores are spread like this.
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
    if not logit_std:
        return
    logits = {"proposal_generator.rpn_head.objectness_logits": [],
              "roi_heads.box_predictor.cls_score": []}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda m, i, o, seen=seen: seen.append(o.detach().flatten())) for name, seen in logits.items()]
    with torch.no_grad():
        model([{"image": image, "height": 480, "width": 640}])
        for h in handles:
            h.remove()
        for name, seen in logits.items():
            layer, std = model.get_submodule(name), torch.cat(seen).std().item()
            layer.weight.mul_(logit_std / std)
            layer.bias.mul_(logit_std / std)


def _as_arrays(instances) -> dict:
    if isinstance(instances, dict):
        return instances
    return {"boxes": instances.pred_boxes.tensor.numpy(), "scores": instances.scores.numpy(),
            "classes": instances.pred_classes.numpy()}


def compare(a, b) -> dict:
    """How far detections ``b`` are from reference ``a`` (detectron2 ``Instances`` or the ONNX
    detector's dicts): :func:`resnet_det.deploy.compare.match_detections` (counts, one-to-one
    pairs with the same class and IoU >= 0.99, largest box and score differences; and the pairs
    at IoU >= 0.9, the looser match that reduced precisions are held to)."""
    from resnet_det.deploy.compare import match_detections

    a, b = _as_arrays(a), _as_arrays(b)
    out = match_detections(a, b)
    out["matched_iou_0.9"] = match_detections(a, b, 0.9)["matched"]
    return {k: v for k, v in out.items() if v is not None}


def variants_to_time(ours, ablation: bool, jit: bool, compile: bool, exact: bool = False,
                     ort_trunks: bool = False) -> dict:
    """Our model under the deploy steps to time; the last one is the full recipe."""
    from resnet_det.modeling.inference import optimize_detector_for_inference as opt

    steps = {}
    full = "ours +fold_bn +channels_last +postprocess +roi"
    no_roi = dict(parallel_roi_align=False, c4_skip_odd_bins=False)
    if ablation:  # each step added on its own, to show what it contributes
        steps["ours (no deploy step)"] = dict(fold_bn=False, channels_last=False, fast_postprocess=False, **no_roi)
        steps["ours +fold_bn"] = dict(channels_last=False, fast_postprocess=False, **no_roi)
        steps["ours +fold_bn +channels_last"] = dict(fast_postprocess=False, **no_roi)
        steps["ours +fold_bn +channels_last +postprocess"] = dict(**no_roi)
        steps[full] = dict()
    if exact:  # only the steps that keep every float: the same detections to the bit
        steps["ours +postprocess +roi (exact)"] = dict(fold_bn=False, channels_last=False)
        steps.setdefault(full, dict())
    if jit:
        steps[full + " +jit"] = dict(jit=True)
    if compile:
        steps[full + " +compile"] = dict(compile=True)
    if ort_trunks:  # next to the full recipe it extends
        steps.setdefault(full, dict())
        steps[full + " +onnxruntime trunks"] = dict(onnxruntime=True)
    if not steps:
        steps[full] = dict()
    names = list(steps)
    return {name: opt(ours if name == names[-1] else copy.deepcopy(ours), **kw)
            for name, kw in steps.items()}


def inference(args, design):
    import time

    theirs, ours, _ = build_pair(design, args.logit_std, args.weights)
    g = torch.Generator().manual_seed(2)
    image = bench_image(args.image, args.height, args.width, g)
    inputs = [{"image": image, "height": args.height, "width": args.width}]
    onnx = export_for_bench(ours, args, design) if args.onnx else None
    variants = {"detectron2": theirs, **variants_to_time(ours, args.ablation, args.jit, args.compile, args.exact,
                                                                 args.ort_trunks)}
    outputs, first_call = {}, {}

    def runner(name, model):
        def run():
            start = time.perf_counter()
            with torch.inference_mode():
                outputs[name] = model(inputs)[0]["instances"]
            first_call.setdefault(name, time.perf_counter() - start)  # includes jit/compile
        return run

    contenders = {k: runner(k, m) for k, m in variants.items()}
    unavailable = {}
    if onnx is not None:
        rgb = image.permute(1, 2, 0).numpy()[:, :, ::-1].copy()  # the bench image is BGR CHW
        onnx["rgb"] = rgb
        detectors, unavailable = runtime_contenders(onnx, args, rgb)

        def deploy_runner(name, detector):
            def run():
                start = time.perf_counter()
                outputs[name] = detector(rgb)
                first_call.setdefault(name, time.perf_counter() - start)
            return run

        for name, detector in detectors.items():
            contenders[name] = deploy_runner(name, detector)
            variants[name] = detector
    seconds = time_alternating(contenders, repeats=args.repeats, warmup=1)
    agreement = {k: compare(outputs["detectron2"], outputs[k]) for k in variants if k != "detectron2"}
    # Float-noise floors: detectron2 against itself under changes that only reorder additions:
    # another thread count (other GEMM blocking), and channels_last (other oneDNN kernels).
    threads = torch.get_num_threads()
    other = 1 if threads > 1 else 2
    torch.set_num_threads(other)
    with torch.inference_mode():
        noise = theirs(inputs)[0]["instances"]
    torch.set_num_threads(threads)
    agreement[f"noise floor: detectron2, {other} thread(s)"] = compare(outputs["detectron2"], noise)
    with torch.inference_mode():
        noise = theirs.to(memory_format=torch.channels_last)(inputs)[0]["instances"]
    agreement["noise floor: detectron2, channels_last"] = compare(outputs["detectron2"], noise)
    theirs.to(memory_format=torch.contiguous_format)
    # The network's own sensitivity: every pixel changed by one part per million (a uint8 image
    # is quantised at one part in 255).
    jitter = 1 + 1e-6 * torch.randn(image.shape, generator=g)
    with torch.inference_mode():
        noise = theirs([{**inputs[0], "image": image.float() * jitter}])[0]["instances"]
    agreement["noise floor: detectron2, input x (1 + 1e-6 N(0,1))"] = compare(outputs["detectron2"], noise)
    floor = compute_floor(theirs, inputs, args.threads, seconds["detectron2"]) if args.floor else None
    return seconds, agreement, first_call, onnx, floor, unavailable


ONNX_NAME = "onnxruntime fp32"  # the runner's default: the peak-memory contender


def runtime_contenders(onnx: dict, args, rgb) -> tuple[dict, dict]:
    """``{"<runtime> <precision>": OnnxDetector}`` for each of ``--runtimes`` this machine runs,
    and ``{name: reason}`` for the others (the runner's own one-line error). int8 needs
    ``model.int8.onnx``: quantized here (``resnet_det.export.quantize``) on
    ``--calibration-images`` uniform-noise images of the benchmark's size, as the graph's random
    weights are timed on noise; the quantizer's time is reported."""
    import time

    import numpy as np

    from resnet_det.deploy import DeployError, OnnxDetector
    from resnet_det.export.quantize import quantize_int8

    export_dir = Path(onnx["onnx"]).parent
    if any(spec.endswith(":int8") for spec in args.runtimes):
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, rgb.shape, dtype=np.uint8) for _ in range(args.calibration_images)]
        start = time.perf_counter()
        quantize_int8(export_dir, images, {"kind": "uniform noise", "seed": 0, "source": "bench_detector.py"})
        onnx["int8_s"] = time.perf_counter() - start
        onnx["int8_bytes"] = (export_dir / "model.int8.onnx").stat().st_size
    detectors, unavailable = {}, {}
    for spec in args.runtimes:
        runtime, precision = spec.split(":")
        try:
            detectors[f"{runtime} {precision}"] = OnnxDetector(
                export_dir, runtime=runtime, precision=precision, threads=args.threads,
                providers=["CPUExecutionProvider"] if runtime == "onnxruntime" else None)
        except DeployError as e:
            unavailable[f"{runtime} {precision}"] = str(e)
    return detectors, unavailable


def ort_matmul_ceiling(threads: int, n: int = 2048, repeats: int = 5) -> float:
    """Multiply-adds per second of ONNX Runtime's fp32 MatMul (MLAS) on two n x n matrices
    with ``threads`` intra-op threads: ``common.matmul_ceiling``'s measurement for the other
    runtime."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "mm",
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(helper.make_model(graph).SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {k: rng.standard_normal((n, n), dtype=np.float32) for k in "ab"}
    seconds = time_alternating({"mm": lambda: session.run(None, feed)}, repeats=repeats, warmup=2)["mm"]
    return n**3 / seconds


def compute_floor(model, inputs, threads: int, detectron2_seconds: float) -> dict:
    """The design's convolution + linear multiply-adds on the benchmark image (detectron2's
    ``FlopCountAnalysis`` of its built-in model, which counts one per multiply-add), divided by
    the best fp32 matmul rate measured here (PyTorch/oneDNN and ONNX Runtime/MLAS, ``--threads``):
    the least time any fp32 implementation needs on this machine, and that as a ratio of
    detectron2's measured time."""
    from detectron2.utils.analysis import FlopCountAnalysis

    count = FlopCountAnalysis(model, inputs)
    by_op = count.unsupported_ops_warnings(False).uncalled_modules_warnings(False).by_operator()
    conv, linear = by_op.get("conv", 0) / 1e9, by_op.get("linear", 0) / 1e9
    ceilings = {"torch.mm": matmul_ceiling() / 1e9, "onnxruntime MatMul": ort_matmul_ceiling(threads) / 1e9}
    rate = max(ceilings.values())
    seconds = (conv + linear) / rate
    return {"conv_gmac": conv, "linear_gmac": linear, "gmac": conv + linear, "ceilings": ceilings,
            "gmac_per_s": rate, "seconds": seconds, "ratio": seconds / detectron2_seconds}


def export_for_bench(ours, args, design) -> dict:
    """Our model (before its deploy step) exported with resnet_det.export.exporter into
    benchmarks/results/onnx_<design>/; returns export seconds and file size with the paths."""
    from resnet_det.export.exporter import export_model

    _, _, cfg = build_pair.cache[design]
    cfg = cfg.clone()
    cfg.defrost()
    # The benchmark image goes to both models at its own size: the runner's test-time resize
    # must leave it so (detectron2's model gets no resize here).
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = min(args.height, args.width), max(args.height, args.width)
    out = REPO / "benchmarks" / "results" / f"onnx_{design}"
    return export_model(copy.deepcopy(ours).eval(), cfg, out, sample_hw=(args.height, args.width))


# A serving process: only resnet_det.deploy (numpy, Pillow, onnxruntime) is imported.
_ONNX_MEMORY_CHILD = """
import json, sys
import numpy as np
from resnet_det.deploy import OnnxDetector
from common import peak_rss_mb
detector = OnnxDetector(sys.argv[1], threads=int(sys.argv[2]), providers=["CPUExecutionProvider"])
image = np.load(sys.argv[3])
for _ in range(2):
    detector(image)
print(json.dumps({"peak_rss_mb": peak_rss_mb()}))
"""


def inference_memory(which: str, args, onnx_path: str | None = None, rgb=None) -> float:
    """Peak RSS (MiB) of a fresh process that loads one contender and runs two inferences:
    ``detectron2:<design>`` (this script, its built-in model) or ``onnx`` (``onnx_path`` on
    ``rgb``, saved beside it)."""
    if which == "onnx":
        import numpy as np

        image_file = str(Path(onnx_path).with_name("bench_image.npy"))
        np.save(image_file, rgb)
        cmd = [sys.executable, "-c", _ONNX_MEMORY_CHILD, onnx_path, str(args.threads), image_file]
    else:
        cmd = [sys.executable, __file__, "--memory-child", which, "--threads", str(args.threads),
               "--height", str(args.height), "--width", str(args.width), "--logit-std", str(args.logit_std)]
    paths = [str(REPO), str(Path(__file__).resolve().parent), os.environ.get("PYTHONPATH")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
    child = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if child.returncode:
        sys.exit(f"memory child {which} failed:\n{child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def memory_child(which: str, args) -> dict:
    """``--memory-child detectron2:<design>``: build the built-in model, run it twice."""
    design = which.split(":")[1]
    theirs, _, _ = build_pair(design, args.logit_std, args.weights)
    image = bench_image(args.image, args.height, args.width, torch.Generator().manual_seed(2))
    with torch.inference_mode():
        for _ in range(2):
            theirs([{"image": image, "height": args.height, "width": args.width}])
    return {"peak_rss_mb": peak_rss_mb()}


def bench_image(path, height: int, width: int, generator) -> torch.Tensor:
    """The benchmark's uint8 CHW image in detectron2's BGR order: ``path`` resized to
    ``height x width``, or uniform noise (what random weights are benchmarked on)."""
    if not path:
        return torch.randint(0, 256, (3, height, width), generator=generator, dtype=torch.uint8)
    from PIL import Image

    rgb = Image.open(path).convert("RGB").resize((width, height), Image.BILINEAR)
    import numpy as np

    return torch.from_numpy(np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])).permute(2, 0, 1).contiguous()


def sensitivity(args, design):
    """Relative L2 change of every backbone block's output, against detectron2's model as it is,
    under: BN folded (the deploy step's rounding), another thread count (the float-noise floor)
    and every input pixel times 1 + 1e-6 N(0,1) (the network's own sensitivity)."""
    from resnet_det.models.fuse import fuse_conv_bn

    theirs, _, _ = build_pair(design, args.logit_std, args.weights)
    g = torch.Generator().manual_seed(2)
    image = bench_image(args.image, args.height, args.width, g)
    with torch.inference_mode():
        x = theirs.preprocess_image([{"image": image, "height": args.height, "width": args.width}]).tensor
    jittered = x * (1 + 1e-6 * torch.randn(x.shape, generator=g))
    bottom_up = getattr(theirs.backbone, "bottom_up", theirs.backbone)
    names = [n for n, _ in bottom_up.named_modules() if n == "stem" or (n.startswith("res") and n.count(".") == 1)]

    def blocks(model, inp):
        seen, net = {}, getattr(model.backbone, "bottom_up", model.backbone)
        hooks = [net.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: seen.__setitem__(n, o.detach().clone())) for n in names]
        with torch.inference_mode():
            net(inp)
        for h in hooks:
            h.remove()
        return seen

    ref = blocks(theirs, x)
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    other_threads = blocks(theirs, x)
    torch.set_num_threads(threads)
    cases = {"BN folded": blocks(fuse_conv_bn(copy.deepcopy(theirs)), x),
             "other thread count": other_threads, "input x (1 + 1e-6 N)": blocks(theirs, jittered)}
    rows = [{"block": n, **{k: f"{((c[n] - ref[n]).norm() / ref[n].norm()).item():.2e}" for k, c in cases.items()}}
            for n in names]
    print(f"\n{design}: relative L2 change of each block's output, {args.height}x{args.width}")
    print_table(rows, ["block", *cases])
    return rows


STAGES = {  # module path -> label; the rest of a parent's time is reported as its own line
    "backbone": "backbone",
    "proposal_generator.rpn_head": "RPN head convs",
    "proposal_generator": "RPN total (head + anchors, top-k, NMS)",
    "roi_heads.pooler": "RoIAlign (pooler)",
    "roi_heads.box_pooler": "RoIAlign (FPN box pooler)",
    "roi_heads.res5": "res5 per RoI (C4 head)",
    "roi_heads.box_head": "box head FCs (FPN)",
    "roi_heads.box_predictor": "box predictor",
    "roi_heads": "RoI heads total",
}


def profile(args, design):
    """Where one inference goes: seconds per detector stage (forward hooks) and the top operators
    (torch.profiler), for detectron2's model and ours after its deploy step."""
    import time

    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from resnet_det.modeling.inference import optimize_detector_for_inference

    theirs, ours, _ = build_pair(design, args.logit_std, args.weights)
    g = torch.Generator().manual_seed(2)
    image = bench_image(args.image, args.height, args.width, g)
    inputs = [{"image": image, "height": args.height, "width": args.width}]
    for name, model in {"detectron2": theirs, "ours": optimize_detector_for_inference(ours, jit=args.jit)}.items():
        seconds, handles = {}, []
        for path in STAGES:
            try:
                module = model.get_submodule(path)
            except AttributeError:
                continue
            start = {}
            handles.append(module.register_forward_pre_hook(
                lambda m, i, p=path, s=start: s.__setitem__(p, time.perf_counter())))
            handles.append(module.register_forward_hook(
                lambda m, i, o, p=path, s=start: seconds.__setitem__(
                    p, seconds.get(p, 0.0) + time.perf_counter() - s[p])))
        with torch.inference_mode():
            model(inputs)  # warm-up
            seconds.clear()
            t0 = time.perf_counter()
            model(inputs)
            total = time.perf_counter() - t0
            for h in handles:
                h.remove()
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                model(inputs)
        print(f"\n{design} {name}: {total:.2f} s/image, {args.height}x{args.width}, "
              f"{torch.get_num_threads()} threads")
        for path, label in STAGES.items():
            if path in seconds:
                print(f"  {label:45s} {seconds[path]:7.3f} s  {seconds[path] / total:6.1%}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))


def training_batch(n=1, h=800, w=1067,
                   boxes=((100.0, 120.0, 400.0, 500.0), (500.0, 200.0, 900.0, 700.0)), classes=(3, 17)):
    """``n`` random ``h x w`` uint8 images, each with the same ground-truth ``boxes``/``classes``:
    a detectron2 training batch (fixed seed)."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(2)
    batch = []
    for _ in range(n):
        inst = Instances((h, w))
        inst.gt_boxes = Boxes(torch.tensor(boxes))
        inst.gt_classes = torch.tensor(classes)
        batch.append({"image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                      "instances": inst, "height": h, "width": w})
    return batch


def train_iteration(design: str, repeats: int) -> dict:
    """Median s/iter of one batch-1 training step; run in a child process (own peak RSS)."""
    from detectron2.utils.events import EventStorage

    which, design = design.split(":")
    theirs, ours, cfg = build_pair(design)
    model = (theirs if which == "detectron2" else ours).train()
    batch = training_batch()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    def step():
        with EventStorage():  # detectron2's losses log to the current event storage
            losses = model(batch)
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    seconds = time_alternating({"step": step}, repeats=repeats, warmup=1)["step"]
    return {"s_per_iter": seconds, "peak_rss_mb": peak_rss_mb()}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=["c4", "fpn", "both"], default="both")
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--width", type=int, default=1067)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--ablation", action="store_true",
                   help="also time ours with no deploy step and with each step added in turn")
    p.add_argument("--jit", action="store_true", help="also time ours with the jit-frozen trunks")
    p.add_argument("--exact", action="store_true",
                   help="also time ours with only the exact steps (post-processing, RoI pooling; no folding, NCHW)")
    p.add_argument("--compile", action="store_true",
                   help="also time ours with torch.compile'd trunks (compile time in 'first call s')")
    p.add_argument("--logit-std", type=float, default=2.0,
                   help="std of the random model's RPN and classifier logits (0: detectron2's init, "
                        "where all scores are near-tied)")
    p.add_argument("--weights", help="detectron2 built-in model weights (.safetensors/.pth) for both "
                   "models instead of random ones; needs --arch c4 or fpn (the file's design)")
    p.add_argument("--image", help="an image to run on (resized to --height x --width) instead of noise")
    p.add_argument("--train", action="store_true", help="also time one training iteration per model")
    p.add_argument("--profile", action="store_true",
                   help="print a per-stage and per-operator profile instead of timing")
    p.add_argument("--profile-rows", type=int, default=25)
    p.add_argument("--sensitivity", action="store_true",
                   help="print how BN folding, another thread count and a 1e-6 input change "
                        "propagate through the backbone's blocks instead of timing")
    p.add_argument("--ort-trunks", action="store_true",
                   help="also time ours with its conv trunks on ONNX Runtime inside PyTorch "
                        "(optimize_detector_for_inference(onnxruntime=True))")
    p.add_argument("--floor", action="store_true",
                   help="also report each design's fp32 compute floor: its convolution and linear "
                        "multiply-adds (detectron2's FlopCountAnalysis) over this machine's measured "
                        "fp32 matmul rate, as a ratio of detectron2's time in the same run")
    p.add_argument("--no-onnx", dest="onnx", action="store_false",
                   help="skip the exported contenders (export, timing, peak memory)")
    p.add_argument("--runtimes", nargs="+", metavar="RUNTIME:PRECISION",
                   default=["onnxruntime:fp32", "openvino:fp32", "openvino:bf16", "onnxruntime:int8", "openvino:int8"],
                   help="the exported detector's runtime x precision contenders (default: all five); "
                        "those this machine cannot run are listed with the reason")
    p.add_argument("--calibration-images", type=int, default=8,
                   help="noise images NNCF calibrates the int8 contenders on (default 8)")
    p.add_argument("--train-child", help=argparse.SUPPRESS)
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.weights and args.arch == "both":
        p.error("--weights holds one design's weights: pass --arch c4 or --arch fpn with it")
    torch.set_num_threads(args.threads)
    if args.train_child:
        print(json.dumps(train_iteration(args.train_child, args.repeats)))
        return
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args)))
        return

    designs = ["c4", "fpn"] if args.arch == "both" else [args.arch]
    if args.profile or args.sensitivity:
        for design in designs:
            (profile if args.profile else sensitivity)(args, design)
        return
    results = {}
    for design in designs:
        seconds, agreement, first_call, onnx, floor, unavailable = inference(args, design)
        base = seconds["detectron2"]
        rows = [{"model": k, "s/image": s, "ratio vs detectron2": s / base,
                 "first call s": first_call[k]} for k, s in seconds.items()]
        print(f"\n{design}: inference, {args.height}x{args.width}, {args.threads} threads, "
              f"median of {args.repeats} alternated runs")
        rows += [{"model": k, "s/image": "-", "ratio vs detectron2": "-", "first call s": f"not run: {why}"}
                 for k, why in unavailable.items()]
        print_table(rows, ["model", "s/image", "ratio vs detectron2", "first call s"])
        print(f"{design}: detections against detectron2's (one-to-one: same class, IoU >= 0.99; and >= 0.9)")
        print_table([{"model": k, "detections (d2, this)": "%d, %d" % tuple(a["count"]),
                      "matched": a["matched"], "matched IoU>=0.9": a["matched_iou_0.9"],
                      "max box diff px": a.get("max_box_diff_px", "-"),
                      "max score diff": a.get("max_score_diff", "-")} for k, a in agreement.items()],
                    ["model", "detections (d2, this)", "matched", "matched IoU>=0.9", "max box diff px",
                     "max score diff"])
        results[design] = {"inference_s": seconds, "first_call_s": first_call, "agreement": agreement,
                           "not_run": unavailable}
        if floor is not None:
            results[design]["floor"] = floor
            print(f"{design}: fp32 compute floor: {floor['gmac']:.1f} GMAC (conv {floor['conv_gmac']:.1f}, "
                  f"linear {floor['linear_gmac']:.1f}) at {floor['gmac_per_s']:.1f} GMAC/s (the faster of "
                  f"{', '.join(f'{k} {v:.1f}' for k, v in floor['ceilings'].items())}) = {floor['seconds']:.2f} s, "
                  f"{floor['ratio']:.2f}x detectron2's {base:.2f} s: no fp32 implementation on this machine "
                  "runs this design in less, before RoIAlign, NMS and memory traffic")
        if onnx is not None:
            memory = {"detectron2": inference_memory(f"detectron2:{design}", args, None),
                      ONNX_NAME: inference_memory("onnx", args, onnx["onnx"], onnx["rgb"])}
            if "int8_s" in onnx:
                print(f"{design}: int8 quantization (NNCF, {args.calibration_images} images) {onnx['int8_s']:.1f} s, "
                      f"model.int8.onnx {onnx['int8_bytes'] / 2**20:.1f} MiB")
                results[design]["int8"] = {"quantize_s": onnx["int8_s"], "file_mb": onnx["int8_bytes"] / 2**20}
            print(f"{design}: ONNX export {onnx['seconds']:.1f} s, model.onnx {onnx['bytes'] / 2**20:.1f} MiB; "
                  "peak RSS of a process that builds the model and runs two inferences:")
            print_table([{"model": k, "peak_rss_mb": v} for k, v in memory.items()], ["model", "peak_rss_mb"])
            results[design]["onnx"] = {"export_s": onnx["seconds"], "file_mb": onnx["bytes"] / 2**20,
                                       "peak_rss_mb": memory}
        if args.train:
            train = {}
            for which in ("detectron2", "ours"):  # separate processes: separate peak RSS
                child = subprocess.run(
                    [sys.executable, __file__, "--train-child", f"{which}:{design}",
                     "--repeats", str(args.repeats), "--threads", str(args.threads)],
                    capture_output=True, text=True,
                )
                if child.returncode:
                    sys.exit(f"training child {which}:{design} failed:\n{child.stderr[-3000:]}")
                train[which] = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"{design}: one training iteration (batch 1, 800x1067)")
            print_table([{"model": k, **v} for k, v in train.items()], ["model", "s_per_iter", "peak_rss_mb"])
            results[design]["train"] = train
    path = write_result("detector", {"args": vars(args), "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
