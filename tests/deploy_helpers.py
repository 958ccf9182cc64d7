"""Test helpers: the PyTorch model's detections the way detectron2's DefaultPredictor computes
them, and their comparison with an exported detector's."""
import numpy as np
import torch
from detectron2.data import transforms as T

from resnet_det.deploy.compare import match_detections


@torch.no_grad()
def pytorch_detections(model, cfg, image) -> dict:
    """The PyTorch model's detections on ``image`` (HxWx3 uint8 RGB) the way detectron2's
    ``DefaultPredictor`` computes them (its own ``ResizeShortestEdge``), as numpy arrays."""
    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    resized = resize.get_transform(image).apply_image(image)
    if cfg.INPUT.FORMAT == "BGR":
        resized = resized[:, :, ::-1]
    x = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    inst = model([{"image": x, "height": image.shape[0], "width": image.shape[1]}])[0]["instances"]
    return {"boxes": inst.pred_boxes.tensor.numpy(), "scores": inst.scores.numpy(),
            "classes": inst.pred_classes.numpy()}


def compare_with_pytorch(model, cfg, detector, images, iou: float = 0.99) -> dict:
    """Detections of ``detector`` against the PyTorch ``model``'s on each of ``images`` (HxWx3
    uint8 RGB): totals of :func:`~resnet_det.deploy.compare.match_detections` (detections of
    each, matched pairs, largest box and score differences over the pairs)."""
    total = {"images": 0, "pytorch": 0, "onnx": 0, "matched": 0, "max_box_diff_px": 0.0,
             "max_score_diff": 0.0, "sizes": set()}
    for image in images:
        m = match_detections(pytorch_detections(model, cfg, image), detector(image), iou)
        total["images"] += 1
        total["pytorch"] += m["count"][0]
        total["onnx"] += m["count"][1]
        total["matched"] += m["matched"]
        total["sizes"].add(detector.resize(image).shape[:2])
        for key in ("max_box_diff_px", "max_score_diff"):
            if m[key] is not None:
                total[key] = max(total[key], m[key])
    total["sizes"] = sorted(total["sizes"])
    return total
