"""Faster R-CNN's inference post-processing, written once for the PyTorch deploy step
(:mod:`resnet_det.modeling.inference`) and the ONNX export (:mod:`resnet_det.export.exporter`):
NMS within groups (classes, or RPN levels) that returns torchvision's ``batched_nms`` indices,
and detectron2's ``fast_rcnn_inference_single_image`` as a function of tensors (traceable, with
the image size as graph values)."""
from __future__ import annotations

import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import nms

__all__ = ["at_most", "batched_nms", "clip_boxes", "fast_rcnn_inference", "first"]

# torchvision runs one NMS per class ("vanilla") above this many box coordinates on CPU, and the
# coordinate-offset trick below it; we defer to it below, so results are identical everywhere.
_VANILLA_MIN_NUMEL = 4000
_LOWEST = -3.4028234663852886e38  # float32's lowest finite value: ONNX NMS's score threshold


def _batched_nms_eager(boxes, scores, idxs, iou_threshold: float) -> torch.Tensor:
    if boxes.numel() <= _VANILLA_MIN_NUMEL or boxes.device.type != "cpu":
        return tv_batched_nms(boxes, scores, idxs, iou_threshold)
    # One stable sort by group instead of a full scan per group: each group's NMS gets its boxes
    # in ascending index order, as torchvision's per-group loop gives them.
    order = torch.argsort(idxs, stable=True)
    counts = torch.unique_consecutive(idxs[order], return_counts=True)[1].tolist()
    boxes_sorted, scores_sorted = boxes[order], scores[order]
    kept, start = [], 0
    for count in counts:
        kept.append(nms(boxes_sorted[start:start + count], scores_sorted[start:start + count], iou_threshold) + start)
        start += count
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    keep_mask[order[torch.cat(kept)]] = True
    keep_indices = torch.where(keep_mask)[0]
    return keep_indices[scores[keep_indices].sort(descending=True)[1]]


class _GroupedNMS(torch.autograd.Function):
    """Greedy NMS in each group: ``boxes`` (N, 4), ``scores`` (G, N) holding -inf where a box is
    not in the group; returns ONNX ``NonMaxSuppression``'s (K, 3) int64 rows (0, group, box)."""

    @staticmethod
    def forward(ctx, boxes, scores, iou_threshold: float):
        # Runs only while tracing, for the values the trace carries on (the graph holds the ONNX
        # op): torchvision's own traceable path, not the per-group loop.
        group, index = torch.isfinite(scores).nonzero(as_tuple=True)
        keep = tv_batched_nms(boxes[index], scores[group, index], group, iou_threshold)
        return torch.stack([torch.zeros_like(keep), group[keep], index[keep]], dim=1)

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float):
        zero = g.op("Constant", value_t=torch.tensor([0], dtype=torch.int64))
        return g.op("NonMaxSuppression", g.op("Unsqueeze", boxes, zero), g.op("Unsqueeze", scores, zero),
                    g.op("Constant", value_t=torch.tensor([2**31 - 1], dtype=torch.int64)),
                    g.op("Constant", value_t=torch.tensor([iou_threshold], dtype=torch.float32)),
                    g.op("Constant", value_t=torch.tensor([_LOWEST], dtype=torch.float32)))


def batched_nms(boxes, scores, idxs, iou_threshold: float, num_groups: int | None = None) -> torch.Tensor:
    """``torchvision.ops.batched_nms``'s kept indices (by decreasing score). On CPU it runs one
    NMS per group on group-sorted slices; under ONNX export it is one ``NonMaxSuppression``
    whose class dimension holds the ``num_groups`` groups (torchvision's per-group result
    exactly; the coordinate-offset trick that torchvision traces rounds large offsets)."""
    if not torch.onnx.is_in_onnx_export():
        return _batched_nms_eager(boxes, scores, idxs, iou_threshold)
    if num_groups is None:
        raise ValueError("batched_nms needs num_groups to be exported")
    ids = torch.arange(num_groups, device=idxs.device)
    table = torch.where(idxs[None, :] == ids[:, None], scores[None, :], torch.full_like(scores, float("-inf"))[None, :])
    keep = _GroupedNMS.apply(boxes, table, iou_threshold)[:, 2]
    return keep[torch.topk(scores[keep], keep.shape[0])[1]]  # by decreasing score, as batched_nms


def at_most(n, k: int):
    """``min(n, k)`` for a size ``n``, which is a graph value (a tensor) when tracing."""
    return torch.clamp(n, max=k) if isinstance(n, torch.Tensor) else min(n, k)


def first(x, k: int):
    """The first ``min(k, len(x))`` rows of ``x`` (all of them if ``k < 0``)."""
    return x if k < 0 else x[: at_most(x.shape[0], k)]


def clip_boxes(boxes, height, width):
    """``Boxes.clip``: xyxy ``boxes`` (N, 4) clipped to ``[0, width] x [0, height]`` (numbers, or
    tensors when tracing)."""
    x1, y1, x2, y2 = (boxes[:, i].clamp(min=0) for i in range(4))
    width, height = (torch.as_tensor(v, dtype=boxes.dtype, device=boxes.device) for v in (width, height))
    return torch.stack((torch.minimum(x1, width), torch.minimum(y1, height),
                        torch.minimum(x2, width), torch.minimum(y2, height)), dim=-1)


def fast_rcnn_inference(boxes, probs, height, width, score_thresh: float, nms_thresh: float, topk: int,
                        num_classes: int | None = None):
    """detectron2's ``fast_rcnn_inference_single_image`` on one image: ``boxes`` (R, 4K or 4)
    predicted per class, ``probs`` (R, K + 1) softmax scores with background last. Returns
    ``(boxes, scores, classes, rows)``: the detections by decreasing score and, for each, its
    row in the input among the finite ones. ``num_classes`` (K) is needed to export it."""
    valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(probs).all(dim=1)
    boxes, probs = boxes[valid], probs[valid][:, :-1]
    per_class = boxes.shape[1] // 4
    boxes = clip_boxes(boxes.reshape(-1, 4), height, width).view(-1, per_class, 4)
    idx = (probs > score_thresh).nonzero()
    boxes = boxes[idx[:, 0], 0] if per_class == 1 else boxes[idx[:, 0], idx[:, 1]]
    scores = probs[idx[:, 0], idx[:, 1]]
    keep = first(batched_nms(boxes, scores, idx[:, 1], nms_thresh, num_groups=num_classes), topk)
    return boxes[keep], scores[keep], idx[keep, 1], idx[keep, 0]
