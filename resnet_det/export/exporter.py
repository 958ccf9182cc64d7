"""Export a detectron2 Faster R-CNN (C4, FPN, VGG-16; ours or detectron2's) to one ONNX graph.

The graph takes the image as :class:`~resnet_det.deploy.OnnxDetector` gives it (uint8 HxWx3 RGB,
already resized like detectron2's test-time ``ResizeShortestEdge``, any size) and returns
``boxes`` (xyxy in the resized image's pixels), ``scores`` and ``classes``. Everything
``GeneralizedRCNN.inference`` does in between is inside, written with the model's own modules and
detectron2's box arithmetic, so the detections are PyTorch's up to float rounding: normalisation
and padding, the RPN (anchors, per-level top-k, clipping, per-level NMS), RoIAlign (FPN level
assignment), the box head and predictor, and the post-processing of
:mod:`resnet_det.modeling.postprocess`, whose grouped NMS is one ONNX ``NonMaxSuppression``.

A C4 ``res5`` that reads only the even RoIAlign bins (:func:`~resnet_det.modeling.inference.odd_bins_unread`)
gets only those, each pooled as a 1x1 RoI of one bin's extent (the same sampling points), and a
copy of the block that runs at stride 1: a quarter of the RoIAlign work. The TorchScript-based
exporter (``dynamo=False``) keeps the dynamic sizes detectron2 writes for tracing as graph values.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import time
import warnings
from pathlib import Path

import torch
from detectron2.layers import ROIAlign
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.structures import Boxes
from torch import nn
from torchvision.ops import roi_align

from resnet_det.checkpoint.detection import ResNetDetCheckpointer
from resnet_det.data.datasets import dataset_class_names
from resnet_det.deploy.runtime import FORMAT_VERSION, INPUT_NAME, METADATA_KEY, OUTPUT_NAMES, DeployError
from resnet_det.modeling.inference import odd_bins_unread, unstride
from resnet_det.modeling.postprocess import at_most, batched_nms, clip_boxes, fast_rcnn_inference, first
from resnet_det.utils.cli import add_debug_argument, run_cli, silence_known_warnings
from resnet_det.utils.files import write_json

__all__ = ["ExportableRCNN", "command_line", "export_onnx", "export_from_config", "export_model"]

OPSET = 17
logger = logging.getLogger(__name__)


class ExportableRCNN(nn.Module):
    """A detectron2 ``GeneralizedRCNN`` (Faster R-CNN) in eval mode as a traceable function of
    one uint8 RGB HxWx3 image (already resized), returning ``(boxes, scores, classes)``."""

    def __init__(self, model):
        super().__init__()
        if getattr(model, "proposal_generator", None) is None or model.roi_heads is None:
            raise DeployError("export needs a Faster R-CNN (GeneralizedRCNN with an RPN and RoI heads)")
        self.model = model.eval()
        rpn, heads = model.proposal_generator, model.roi_heads
        if type(rpn).__name__ != "RPN":
            raise DeployError(f"export supports detectron2's RPN, not {type(rpn).__name__}")
        self.bgr = model.input_format == "BGR"
        self.size_divisibility = int(model.backbone.size_divisibility)
        self.c4 = hasattr(heads, "res5")
        self.pooler = heads.pooler if self.c4 else heads.box_pooler
        for level in self.pooler.level_poolers:
            if not isinstance(level, ROIAlign):
                raise DeployError(f"export supports ROIAlign/ROIAlignV2 poolers, not {type(level).__name__}"
                                  " (export a model that did not go through the deploy step)")
        self.box_features = heads.in_features
        # C4: pool only the bins res5 reads, into a copy of res5 whose first block does not
        # stride (the model itself is left as it is).
        self.res5 = None
        if self.c4 and len(self.pooler.level_poolers) == 1 and odd_bins_unread(heads.res5) is not None:
            self.res5 = copy.deepcopy(heads.res5)
            unstride(odd_bins_unread(self.res5))

    def forward(self, image):
        m = self.model
        rpn, heads = m.proposal_generator, m.roi_heads
        height, width = image.shape[0], image.shape[1]
        x = image.permute(2, 0, 1).float()
        if self.bgr:
            x = x[[2, 1, 0]]
        x = (x - m.pixel_mean) / m.pixel_std
        d = self.size_divisibility
        if d > 1:  # zero padding at the bottom and right, as ImageList.from_tensors
            x = nn.functional.pad(x, (0, (width + d - 1) // d * d - width, 0, (height + d - 1) // d * d - height))
        features = m.backbone(x[None])
        h, w = (torch.as_tensor(v, dtype=torch.float32) for v in (height, width))
        proposals = self._proposals(rpn, [features[f] for f in rpn.in_features], h, w)
        return self._detections(heads, [features[f] for f in self.box_features], proposals, h, w)

    def _proposals(self, rpn, features, h, w):
        """``RPN.forward`` + ``find_top_rpn_proposals`` for one image in eval mode."""
        anchors = rpn.anchor_generator(features)
        logits, deltas = rpn.rpn_head(features)
        boxes, scores, levels = [], [], []
        pre_nms_topk, post_nms_topk = rpn.pre_nms_topk[False], rpn.post_nms_topk[False]
        for level, (a, logit, delta) in enumerate(zip(anchors, logits, deltas)):
            logit = logit.permute(0, 2, 3, 1).flatten(1)[0]
            delta = delta.view(delta.shape[0], -1, rpn.anchor_generator.box_dim, delta.shape[-2],
                               delta.shape[-1]).permute(0, 3, 4, 1, 2).flatten(1, -2)[0]
            top, idx = logit.topk(at_most(logit.shape[0], pre_nms_topk))
            # Box decoding is elementwise: decoding only the top-k anchors gives the same boxes.
            boxes.append(rpn.box2box_transform.apply_deltas(delta[idx], a.tensor[idx]))
            scores.append(top)
            levels.append(torch.full_like(idx, level))
        boxes, scores, levels = torch.cat(boxes), torch.cat(scores), torch.cat(levels)
        valid = torch.isfinite(boxes).all(dim=1) & torch.isfinite(scores)
        boxes, scores, levels = boxes[valid], scores[valid], levels[valid]
        boxes = clip_boxes(boxes, h, w)
        size = boxes[:, 2:] - boxes[:, :2]
        keep = (size[:, 0] > rpn.min_box_size) & (size[:, 1] > rpn.min_box_size)
        boxes, scores, levels = boxes[keep], scores[keep], levels[keep]
        keep = batched_nms(boxes, scores, levels, rpn.nms_thresh, num_groups=len(anchors))
        return boxes[first(keep, post_nms_topk)]

    def _pool(self, features, proposals):
        """``ROIPooler`` on ``proposals``; returns (pooled features, the proposals in their order)."""
        pooler = self.pooler
        rois = torch.cat([torch.zeros_like(proposals[:, :1]), proposals], dim=1)
        aligns = pooler.level_poolers
        if len(aligns) == 1:
            a = aligns[0]
            if self.res5 is not None:
                return self._pool_even_bins(features[0], proposals, a), proposals
            return roi_align(features[0], rois, a.output_size, a.spatial_scale, a.sampling_ratio, a.aligned), proposals
        levels = assign_boxes_to_levels([Boxes(proposals)], pooler.min_level, pooler.max_level,
                                        pooler.canonical_box_size, pooler.canonical_level)
        pooled, order = [], []
        for level, (x, a) in enumerate(zip(features, aligns)):
            idx = torch.nonzero(levels == level).squeeze(1)
            pooled.append(roi_align(x, rois[idx], a.output_size, a.spatial_scale, a.sampling_ratio, a.aligned))
            order.append(idx)
        # Each RoI's features and boxes are computed alone: RoIs grouped by level give the same
        # detections as RoIs in proposal order (NMS sorts by score).
        return torch.cat(pooled), proposals[torch.cat(order)]

    @staticmethod
    def _pool_even_bins(feature, proposals, align):
        """RoIAlign's even-row, even-column bins of each proposal, (R, C, H/2, W/2): one 1x1 RoI
        per bin, spanning that bin."""
        out_h, out_w = align.output_size if isinstance(align.output_size, tuple) else (align.output_size,) * 2
        x1, y1, x2, y2 = proposals.unbind(1)
        bin_w, bin_h = (x2 - x1) / out_w, (y2 - y1) / out_h
        cols = torch.arange(0, out_w, 2, dtype=proposals.dtype)
        rows = torch.arange(0, out_h, 2, dtype=proposals.dtype)
        left = x1[:, None] + cols * bin_w[:, None]  # (R, W/2)
        top = y1[:, None] + rows * bin_h[:, None]  # (R, H/2)
        n, gh, gw = proposals.shape[0], rows.shape[0], cols.shape[0]
        left, top = left[:, None, :].expand(n, gh, gw), top[:, :, None].expand(n, gh, gw)
        bins = torch.stack([torch.zeros_like(left), left, top, left + bin_w[:, None, None],
                            top + bin_h[:, None, None]], dim=-1).reshape(-1, 5)
        pooled = roi_align(feature, bins, 1, align.spatial_scale, align.sampling_ratio, align.aligned)
        return pooled.reshape(n, gh, gw, -1).permute(0, 3, 1, 2)

    def _detections(self, heads, features, proposals, h, w):
        """RoI heads + ``fast_rcnn_inference_single_image`` for one image."""
        pooled, proposals = self._pool(features, proposals)
        if self.c4:
            box_features = (heads.res5 if self.res5 is None else self.res5)(pooled).mean(dim=[2, 3])
        else:
            box_features = heads.box_head(pooled)
        predictor = heads.box_predictor
        logits, deltas = predictor(box_features)
        boxes = predictor.box2box_transform.apply_deltas(deltas, proposals)
        return fast_rcnn_inference(boxes, nn.functional.softmax(logits, dim=-1), h, w, predictor.test_score_thresh,
                                   predictor.test_nms_thresh, predictor.test_topk_per_image, heads.num_classes)[:3]


@torch.no_grad()
def export_onnx(model, path, sample_image, *, opset: int = OPSET, metadata: dict | None = None) -> Path:
    """Write ``model`` (an eval ``GeneralizedRCNN``) as ONNX to ``path``, traced on
    ``sample_image`` (uint8 HxWx3 RGB tensor; height and width stay dynamic), with ``metadata``
    (json-able) in the graph's ``metadata_props``; checks the file with ``onnx.checker``."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportableRCNN(model).eval()  # export restores the wrapper's mode on exit
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # Tracing warns about every shape turned into a graph value; that is the point here.
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (sample_image,), str(tmp), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                          dynamic_axes={INPUT_NAME: {0: "height", 1: "width"},
                          **{name: {0: "detections"} for name in OUTPUT_NAMES}})
    graph = onnx.load(str(tmp))
    if metadata is not None:
        entry = graph.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(tmp))
    tmp.replace(path)
    return path


def runner_settings(cfg, class_names) -> dict:
    """What :class:`~resnet_det.deploy.OnnxDetector` needs besides the graph (model.json)."""
    return {
        "input": {"name": INPUT_NAME, "layout": "HWC", "dtype": "uint8", "channels": "RGB"},
        "model_input_format": cfg.INPUT.FORMAT,  # applied inside the graph
        "pixel_mean": list(cfg.MODEL.PIXEL_MEAN),
        "pixel_std": list(cfg.MODEL.PIXEL_STD),
        "min_size_test": int(cfg.INPUT.MIN_SIZE_TEST),
        "max_size_test": int(cfg.INPUT.MAX_SIZE_TEST),
        "size_divisibility": None,  # filled from the built backbone
        "score_thresh_test": float(cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST),
        "nms_thresh_test": float(cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST),
        "detections_per_image": int(cfg.TEST.DETECTIONS_PER_IMAGE),
        "class_names": list(class_names),
    }


def export_model(model, cfg, output_dir, class_names=None, sample_hw=(480, 640)) -> dict:
    """Export a built, loaded ``model`` of ``cfg`` to ``output_dir/model.onnx`` and
    ``output_dir/model.json``; returns ``{"onnx", "json", "seconds", "bytes"}``."""
    import uuid

    num_classes = int(model.roi_heads.num_classes)
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise DeployError(f"{len(class_names)} class names for a model with {num_classes} classes "
                          f"(MODEL.ROI_HEADS.NUM_CLASSES); check DATASETS.TEST / DATASETS.TRAIN")
    out = Path(output_dir)
    settings = runner_settings(cfg, class_names)
    settings["size_divisibility"] = int(model.backbone.size_divisibility)
    settings["format_version"] = FORMAT_VERSION
    # Written into the graph too: a model.json from another export is recognised at load.
    settings["graph"] = {"export_id": uuid.uuid4().hex, "num_classes": num_classes,
                         "meta_architecture": cfg.MODEL.META_ARCHITECTURE,
                         "backbone": cfg.MODEL.BACKBONE.NAME, "opset": OPSET}
    g = torch.Generator().manual_seed(0)
    sample = torch.randint(0, 256, (*sample_hw, 3), generator=g, dtype=torch.uint8)
    start = time.perf_counter()
    logger.info("tracing the detector into %s (the graph is then checked with onnx.checker)", out / "model.onnx")
    onnx_path = export_onnx(model, out / "model.onnx", sample, metadata=settings["graph"])
    seconds = time.perf_counter() - start
    json_path = write_json(out / "model.json", settings)
    return {"onnx": str(onnx_path), "json": str(json_path), "seconds": seconds,
            "bytes": onnx_path.stat().st_size}


def export_from_config(cfg, weights: str, output_dir) -> dict:
    """Build ``cfg``'s detector on CPU, load ``weights`` through the safe checkpointer, export it
    (class names from the config's datasets); see :func:`export_model`."""
    from detectron2.modeling import build_model


    if not Path(weights).is_file():
        # fvcore's loader would stop on a bare assertion; name the file instead.
        raise FileNotFoundError(f"{weights}: no such weights file (--weights)")
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    logger.info("building %s with %s", cfg.MODEL.BACKBONE.NAME, weights)
    model = build_model(cfg).eval()
    ResNetDetCheckpointer(model).load(weights)
    return export_model(model, cfg, output_dir, dataset_class_names(cfg))


def command_line(argv=None, doc=None) -> int:
    """``resnet-det-export`` (tools/export_model.py): export a trained detector; the exit status."""
    silence_known_warnings()
    from detectron2.utils.logger import setup_logger

    setup_logger(name="resnet_det")
    return run_cli(_export, argv, doc)


def _export(argv=None, doc=None):
    from resnet_det.config import load_config
    from resnet_det.export.quantize import calibration_files, quantize_export

    p = argparse.ArgumentParser(prog="resnet-det-export", description=doc or __doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "--config-file", dest="config", required=True, help="detector yaml")
    p.add_argument("--weights", required=True, help="detector checkpoint (.pth/.safetensors)")
    p.add_argument("--output", required=True, help="directory for model.onnx and model.json")
    p.add_argument("--int8", action="store_true", help="also write model.int8.onnx (NNCF post-training quantization)")
    p.add_argument("--calibration", metavar="DATA", help="with --int8: a registered dataset name or an image folder")
    p.add_argument("--calibration-images", type=int, default=300, metavar="N",
                   help="with --int8: how many calibration images (default 300, NNCF's)")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    if args.int8 != bool(args.calibration) or args.calibration_images < 1:
        p.error("--int8 and --calibration DATA go together (and --calibration-images N >= 1)")
    cfg = load_config(args.config, args.opts)
    if args.int8:
        calibration_files(args.calibration, cfg)  # a wrong --calibration stops before the export
    info = export_from_config(cfg, args.weights, args.output)
    print(f"{info['onnx']} ({info['bytes'] / 2**20:.1f} MiB, exported in {info['seconds']:.1f} s, "
          f"onnx.checker passed) and {info['json']}")
    if args.int8:
        record = quantize_export(cfg, args.output, args.calibration, args.calibration_images)
        print(f"{Path(args.output) / record['file']} (int8, {record['calibration']['images']} calibration images "
              f"of {args.calibration})")
    return 0
