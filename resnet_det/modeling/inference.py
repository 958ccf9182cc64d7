"""The inference deploy step of a detectron2 Faster R-CNN: the same weights and the same detections
(up to float rounding), less time. :func:`optimize_detector_for_inference` applies, each a switch
that ``benchmarks/bench_detector.py --ablation`` times:

- BN folded into the convolutions, convolution weights channels_last;
- the post-processing of :mod:`resnet_det.modeling.postprocess` (per-class NMS on class-sorted
  slices: torchvision's kept indices, in its order);
- ``parallel_roi_align``: on a CPU, RoIs pooled in chunks on every thread (bit-identical);
- ``c4_skip_odd_bins``: a C4 head whose res5 subsamples only through stride-2 1x1 convolutions
  (the MSRA placement) reads only the even RoIAlign bins: pool just those, run the two
  convolutions at stride 1;
- ``jit``, ``compile`` or ``onnxruntime`` (off by default): the convolutional trunks traced and
  frozen by torch.jit, compiled by inductor, or run by ONNX Runtime inside the PyTorch model
  (the whole detector without torch: :mod:`resnet_det.deploy`).

The training path is untouched: these change one model instance, which must be in eval mode.
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import List

import torch
from detectron2.structures import Boxes, Instances
from torch import nn
from torchvision.ops import roi_align

from resnet_det.modeling.postprocess import fast_rcnn_inference
from resnet_det.models.fuse import fuse_conv_bn
from resnet_det.models.resnet import ZeroPadShortcut

__all__ = ["odd_bins_unread", "optimize_detector_for_inference", "roi_align_chunked", "unstride"]

def _predictor_inference(predictor, predictions, proposals: List[Instances]):
    """``FastRCNNOutputLayers.inference`` through :func:`~resnet_det.modeling.postprocess.fast_rcnn_inference`."""
    results, rows = [], []
    for b, s, p in zip(predictor.predict_boxes(predictions, proposals),
                       predictor.predict_probs(predictions, proposals), proposals):
        boxes, scores, classes, kept = fast_rcnn_inference(b, s, *p.image_size, predictor.test_score_thresh,
                                                           predictor.test_nms_thresh, predictor.test_topk_per_image)
        result = Instances(p.image_size)
        result.pred_boxes, result.scores, result.pred_classes = Boxes(boxes), scores, classes
        results.append(result)
        rows.append(kept)
    return results, rows


class _OnnxTrunk(nn.Module):
    """A conv trunk run by ONNX Runtime: exported once (dynamic batch, height and width), then
    each call hands the NCHW input to the session and wraps its outputs as tensors (a dict of
    the trunk's feature names, or one tensor)."""

    def __init__(self, module: nn.Module, example: torch.Tensor, threads: int):
        super().__init__()
        import io

        import onnxruntime as ort

        module = module.eval()
        with torch.no_grad():
            out = module(example)
        self.names = list(out) if isinstance(out, dict) else None
        outputs = self.names or ["y"]
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=17,
                              input_names=["x"], output_names=outputs,
                              dynamic_axes={"x": {0: "n", 2: "h", 3: "w"},
                                            **{o: {0: "n", 2: f"{o}_h", 3: f"{o}_w"} for o in outputs}})
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def forward(self, x):
        outs = [torch.from_numpy(o) for o in self.session.run(None, {"x": x.contiguous().numpy()})]
        return dict(zip(self.names, outs)) if self.names is not None else outs[0]


class _Traced(nn.Module):
    """A conv trunk traced, frozen and optimised by torch.jit on first call (input shapes only
    matter to trace; convolutions, pooling and adds generalise to any batch and image size)."""

    def __init__(self, module: nn.Module, channels_last: bool):
        super().__init__()
        self.module, self.channels_last, self.traced = module, channels_last, None

    def forward(self, x):
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.traced is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(self.module, x[:1], strict=False, check_trace=False)
                self.traced = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        return self.traced(x)


def _trunks(model) -> dict:
    """(parent module, attribute name) of each convolutional trunk: the ResNet that feeds the
    RPN (FPN's ``bottom_up`` or the C4 backbone) and the C4 RoI head's ``res5``."""
    backbone = model.backbone
    trunks = {"backbone": (backbone, "bottom_up") if hasattr(backbone, "bottom_up") else (model, "backbone")}
    if hasattr(model.roi_heads, "res5"):
        trunks["res5"] = (model.roi_heads, "res5")
    return trunks


@torch.no_grad()
def optimize_detector_for_inference(
    model,
    *,
    fold_bn: bool = True,
    channels_last: bool = True,
    fast_postprocess: bool = True,
    jit: bool = False,
    compile: bool = False,
    parallel_roi_align: bool = True,
    c4_skip_odd_bins: bool = True,
    onnxruntime: bool = False,
):
    """Deploy step for a detectron2 ``GeneralizedRCNN`` (ours or detectron2's): eval mode, then
    the enabled transforms of the module docstring; in place, returns ``model``.

    Outputs equal the unmodified model's up to float rounding (folding and kernel choice change
    the order of additions, nothing else).
    """
    if sum((jit, compile, onnxruntime)) > 1:
        raise ValueError("choose one of jit=True, compile=True and onnxruntime=True")
    model.eval()
    if fold_bn:
        fuse_conv_bn(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    _optimize_roi_pooling(model.roi_heads, parallel_roi_align, c4_skip_odd_bins, channels_last)
    predictor = getattr(model.roi_heads, "box_predictor", None)
    if fast_postprocess and predictor is not None:
        predictor.inference = _predictor_inference.__get__(predictor)
    if onnxruntime:
        # Exported before the channels_last / RoI steps touch them: ONNX Runtime lays out and
        # prepacks the weights itself. res5 sees pooled RoIs: its example is a small batch.
        for key, (parent, name) in _trunks(model).items():
            trunk = getattr(parent, name)
            example = _trunk_example(model, key)
            _replace_module(parent, name, _OnnxTrunk(trunk.to(memory_format=torch.contiguous_format),
                                                     example, torch.get_num_threads()), trunk)
    if jit or compile:
        for parent, name in _trunks(model).values():
            trunk = getattr(parent, name)
            if jit:
                wrapped = _Traced(trunk, channels_last)
            else:
                import torch._inductor.config as inductor_config

                inductor_config.freezing = True  # weights are constants: prepacked, folded
                wrapped = torch.compile(trunk, dynamic=True)
            _replace_module(parent, name, wrapped, trunk)
    return model


def _trunk_example(model, key: str) -> torch.Tensor:
    """An input of the trunk ``key`` ("backbone": an image batch; "res5": pooled RoI features)."""
    if key == "backbone":
        return torch.zeros(1, 3, 64, 96)
    block = model.roi_heads.res5[0]
    channels = block.conv1.in_channels
    size = model.roi_heads.pooler.output_size
    return torch.zeros(2, channels, size[0], size[1])


def _replace_module(parent, name, wrapped, original):
    """Swap ``parent.name`` for ``wrapped`` keeping the attributes detectron2 reads from the
    original (a backbone's ``output_shape()``, ``size_divisibility``...)."""
    if isinstance(wrapped, (_Traced, _OnnxTrunk)) or hasattr(wrapped, "_orig_mod"):
        for attr in ("output_shape", "size_divisibility", "padding_constraints", "_out_features",
                     "_out_feature_strides", "_out_feature_channels"):
            if hasattr(original, attr) and not hasattr(wrapped, attr):
                object.__setattr__(wrapped, attr, getattr(original, attr))
    setattr(parent, name, wrapped)


_POOLS: dict[int, ThreadPoolExecutor] = {}  # thread count -> pool


def _thread_pool() -> ThreadPoolExecutor:
    threads = torch.get_num_threads()
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="roi_align")
    return _POOLS[threads]


def roi_align_chunked(features, rois, output_size, spatial_scale, sampling_ratio, aligned, *,
                      every: int = 1, memory_format=torch.contiguous_format, parallel: bool = True,
                      chunk: int = 16) -> torch.Tensor:
    """``torchvision.ops.roi_align`` keeping every ``every``-th output row and column, written
    into a tensor of ``memory_format``; on CPU, chunks of ``chunk`` RoIs are pooled on
    ``torch.get_num_threads()`` threads when ``parallel``. The kept values are bit-identical to
    ``roi_align(...)[:, :, ::every, ::every]``."""
    oh, ow = output_size
    n = rois.shape[0]
    shape = (n, features.shape[1], len(range(0, oh, every)), len(range(0, ow, every)))
    rois = rois.to(dtype=features.dtype)
    if features.device.type != "cpu":
        pooled = roi_align(features, rois, output_size, spatial_scale, sampling_ratio, aligned)
        return pooled[:, :, ::every, ::every].contiguous(memory_format=memory_format)
    out = torch.empty(shape, dtype=features.dtype, device=features.device, memory_format=memory_format)
    features = features.contiguous()  # the CPU kernel reads NCHW; convert once, not per chunk
    # Grad and inference modes are per thread: the workers run under the caller's.
    inference, grad = torch.is_inference_mode_enabled(), torch.is_grad_enabled()

    def pool(start):
        with torch.inference_mode(inference), torch.set_grad_enabled(grad):
            stop = min(start + chunk, n)
            part = roi_align(features, rois[start:stop], output_size, spatial_scale, sampling_ratio, aligned)
            out[start:stop].copy_(part[:, :, ::every, ::every])

    starts = range(0, n, chunk)
    if parallel and torch.get_num_threads() > 1 and len(starts) > 1:
        list(_thread_pool().map(pool, starts))
    else:
        for start in starts:
            pool(start)
    return out


class _ROIAlignChunked(nn.Module):
    """detectron2's ``ROIAlign`` (``forward(input, rois)``) through :func:`roi_align_chunked`."""

    def __init__(self, align, every: int, memory_format, parallel: bool):
        super().__init__()
        self.output_size, self.spatial_scale = align.output_size, align.spatial_scale
        self.sampling_ratio, self.aligned = align.sampling_ratio, align.aligned
        self.every, self.memory_format, self.parallel = every, memory_format, parallel

    def forward(self, input, rois):
        assert rois.dim() == 2 and rois.size(1) == 5
        if input.is_quantized:
            input = input.dequantize()
        return roi_align_chunked(input, rois, self.output_size, self.spatial_scale,
                                 self.sampling_ratio, self.aligned, every=self.every,
                                 memory_format=self.memory_format, parallel=self.parallel)


def odd_bins_unread(res5) -> list | None:
    """The stride-2 modules of a C4 res5's first block if it reads only even RoI rows/columns
    (1x1 stride-2 conv1, stride-1 conv2, and a 1x1 stride-2 conv, option-A or no shortcut)."""
    block = res5[0] if isinstance(res5, nn.Sequential) and len(res5) else None
    conv1, conv2 = getattr(block, "conv1", None), getattr(block, "conv2", None)
    if not (isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d)):
        return None
    if conv1.kernel_size != (1, 1) or conv1.stride != (2, 2) or conv1.padding != (0, 0) or conv2.stride != (1, 1):
        return None
    shortcut = getattr(block, "shortcut", None)
    if shortcut is None:
        return [conv1]
    if isinstance(shortcut, nn.Conv2d) and shortcut.kernel_size == (1, 1) and shortcut.stride == (2, 2) \
            and shortcut.padding == (0, 0):
        return [conv1, shortcut]
    if isinstance(shortcut, ZeroPadShortcut) and shortcut.stride == 2:
        return [conv1, shortcut]
    return None


def unstride(modules) -> None:
    """Set the stride-2 modules :func:`odd_bins_unread` found to stride 1: the res5 then takes
    only the even bins as its input."""
    for module in modules:
        module.stride = 1 if isinstance(module, ZeroPadShortcut) else (1, 1)


def _optimize_roi_pooling(roi_heads, parallel: bool, skip_odd_bins: bool, channels_last: bool):
    """Swap the RoI poolers' ``ROIAlign`` levels for :class:`_ROIAlignChunked` (see the module
    docstring: ``parallel_roi_align`` and ``c4_skip_odd_bins``)."""
    from detectron2.layers import ROIAlign

    strided = None
    pooler = getattr(roi_heads, "pooler", None)  # C4 (Res5ROIHeads)
    if skip_odd_bins and pooler is not None and hasattr(roi_heads, "res5") \
            and len(pooler.level_poolers) == 1 and isinstance(pooler.level_poolers[0], ROIAlign):
        strided = odd_bins_unread(roi_heads.res5)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for name in ("pooler", "box_pooler", "mask_pooler", "keypoint_pooler"):
        pooler = getattr(roi_heads, name, None)
        if pooler is None or not hasattr(pooler, "level_poolers"):
            continue
        every = 2 if strided is not None and name == "pooler" else 1
        if not parallel and every == 1:
            continue
        for i, level in enumerate(pooler.level_poolers):
            if isinstance(level, ROIAlign):
                pooler.level_poolers[i] = _ROIAlignChunked(
                    level, every, fmt if every == 2 else torch.contiguous_format, parallel)
    if strided is not None:
        unstride(strided)
