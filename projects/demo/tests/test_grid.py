"""make demo's picture: ground truth and detections in two colours, in a grid."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model
from PIL import Image

from projects.demo.grid import DET_COLOR, GT_COLOR, LEGEND_HEIGHT, draw_detection_grid, draw_gt_and_detections, tile
from projects.toy_data import TOY_CLASSES, dataset_opts
from resnet_det.config import load_config

CONFIG = "configs/toy/faster_rcnn_r18_c4_coco.yaml"


# ---------------------------------------------------------------- ground truth vs detections

def _is(pixels, color, tol=60):
    """Which of ``pixels`` (...x3 uint8) are within ``tol`` of ``color`` (RGB 0..255) per channel."""
    return (np.abs(pixels.astype(int) - np.array(color)) <= tol).all(-1)


def test_ground_truth_and_detections_are_drawn_on_their_box_edges():
    image = np.full((96, 128, 3), 128, np.uint8)
    gt, det = [10, 12, 50, 40], [70, 50, 118, 88]
    scale = 2
    drawn = draw_gt_and_detections(image, [gt], [0], [det], [3], [0.87], list(TOY_CLASSES), scale=scale)
    assert drawn.shape == (96 * scale, 128 * scale, 3)

    def edges(box, skip, label_px=0):
        # Pixels on the box's outline, in the enlarged image, away from the corners and from the
        # side (``skip``) where the label sits (``label_px`` high when it hangs inside the box).
        x0, y0, x1, y1 = (int(v * scale) for v in box)
        ys, xs = slice(y0 + 6 + label_px, y1 - 6), slice(x0 + 6, x1 - 6)
        sides = {"left": drawn[ys, x0], "right": drawn[ys, x1], "top": drawn[y0, xs], "bottom": drawn[y1, xs]}
        return {k: v for k, v in sides.items() if k != skip}

    for side, pixels in edges(gt, "bottom").items():  # ground truth: name under the box
        assert _is(pixels, GT_COLOR).all(), f"ground-truth {side} edge"
        assert not _is(pixels, DET_COLOR).any(), f"ground-truth {side} edge"
    for side, pixels in edges(det, "top", label_px=20).items():  # detection: name and score inside its top
        assert _is(pixels, DET_COLOR).all(), f"detection {side} edge"
    # inside the boxes and between them the image is untouched
    for y, x in ((26, 30), (75, 94), (80, 30), (20, 100)):
        y, x = y * scale, x * scale
        assert (np.abs(drawn[y, x].astype(int) - 128) <= 2).all(), (y, x)


def test_a_detection_on_its_object_leaves_the_ground_truth_visible_beside_it():
    image = np.full((96, 128, 3), 128, np.uint8)
    box = [20, 20, 100, 80]
    drawn = draw_gt_and_detections(image, [box], [1], [box], [1], [0.99], list(TOY_CLASSES), scale=2)
    x0, row = 40, drawn[100]  # the left edge at x0 = 20 * 2, halfway down
    # At scale 2: the detection's 2-pixel line centred on the edge, inside the ground truth's
    # 6-pixel one, which stays visible on both sides of it.
    assert _is(row[x0 - 1:x0 + 1], DET_COLOR).all()
    assert _is(row[x0 - 3:x0 - 1], GT_COLOR).all() and _is(row[x0 + 1:x0 + 3], GT_COLOR).all()
    assert not _is(row[x0 - 5:x0 - 3], GT_COLOR).any() and not _is(row[x0 + 3:x0 + 5], GT_COLOR).any()


def test_tile_places_each_image_in_its_cell():
    images = [np.full((10, 20, 3), 10 * (i + 1), np.uint8) for i in range(5)]
    grid = tile(images, columns=2, gap=3, fill=255)
    assert grid.shape == (3 + 3 * 13, 3 + 2 * 23, 3)
    for i in range(5):
        r, c = divmod(i, 2)
        y, x = 3 + r * 13, 3 + c * 23
        assert (grid[y:y + 10, x:x + 20] == 10 * (i + 1)).all()
    assert (grid[3 + 2 * 13:, 3 + 23:] == 255).all()  # the sixth cell is empty
    with pytest.raises(ValueError, match="differ in shape"):
        tile([images[0], np.zeros((5, 5, 3), np.uint8)], columns=2)


def test_detection_grid_draws_each_val_image_with_its_ground_truth(tmp_path, toy):
    cfg = load_config(CONFIG, ["MODEL.DEVICE", "cpu", *dataset_opts(toy)])
    torch.manual_seed(0)
    DetectionCheckpointer(build_model(cfg), save_dir=str(tmp_path)).save("model_final")
    out = tmp_path / "vis" / "grid.png"
    result = draw_detection_grid(cfg, str(tmp_path / "model_final.pth"), "toy_coco_val", out,
                                 num_images=8, columns=2, scale=2, confidence_threshold=0.0, title="untrained")
    assert json.loads(out.with_suffix(".json").read_text()) == result
    assert [Path(r["file"]).name for r in result["images"]] == sorted(p.name for p in (toy / "coco/val2017").iterdir())
    coco = json.loads((toy / "coco/annotations/instances_val2017.json").read_text())
    grid = np.asarray(Image.open(out).convert("RGB"))
    h, w, gap = 192 * 2, 256 * 2, 4
    assert grid.shape == (LEGEND_HEIGHT + gap + h + gap, gap + 2 * (w + gap), 3)
    for i, rec in enumerate(result["images"]):
        assert rec["detections"], "threshold 0 keeps the untrained detector's boxes"
        image_id = coco["images"][i]["id"]
        expected = sorted([round(x, 2), round(y, 2), round(x + bw, 2), round(y + bh, 2)]
                          for a in coco["annotations"] if a["image_id"] == image_id
                          for x, y, bw, bh in [a["bbox"]])
        drawn_gt = sorted(g["bbox_xyxy"] for g in rec["ground_truth"])
        assert np.allclose(drawn_gt, expected, atol=0.011)
        # each ground-truth box's left edge is green in this image's cell, where no detection
        # (drawn over it) crosses it
        top, left = LEGEND_HEIGHT + gap, gap + i * (w + gap)
        for g in rec["ground_truth"]:
            x0, y0, x1, y1 = (v * 2 for v in g["bbox_xyxy"])
            ys = np.arange(int(y0) + 4, int(y1) - 4)
            covered = np.zeros(ys.shape, bool)
            for d in rec["detections"]:
                dx0, dy0, dx1, dy1 = (v * 2 for v in d["bbox_xyxy"])
                near = (abs(dx0 - x0) < 8) | (abs(dx1 - x0) < 8) | ((dx0 < x0 < dx1) & (abs(ys - dy0) < 24)) \
                    | ((dx0 < x0 < dx1) & (abs(ys - dy1) < 8))
                covered |= near & (ys > dy0 - 8) & (ys < dy1 + 8)
            column = grid[top + ys[~covered], left + int(round(x0))]
            if len(column):
                assert _is(column, GT_COLOR, tol=90).mean() > 0.9
