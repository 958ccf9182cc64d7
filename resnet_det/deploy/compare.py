"""Detections against reference detections (numpy only): what "the same boxes" means here."""
from __future__ import annotations

import numpy as np

__all__ = ["pairwise_iou", "match_detections"]


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), xyxy (detectron2's
    ``pairwise_iou``: 0 where the union is empty)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2])
    inter = wh.clip(min=0).prod(axis=2)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(inter > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(ref: dict, other: dict, iou: float = 0.99) -> dict:
    """Pair ``other``'s detections one-to-one with ``ref``'s (dicts of ``boxes``, ``scores``,
    ``classes``): same class, IoU >= ``iou``, each the other's best match. Returns the counts
    of each, ``matched``, and over the pairs the largest box-coordinate difference (pixels)
    and score difference (None without pairs).

    Matching (not index order) because float-level differences may reorder near-tied scores.
    """
    out = {"count": [len(ref["boxes"]), len(other["boxes"])], "matched": 0,
           "max_box_diff_px": None, "max_score_diff": None}
    if not len(ref["boxes"]) or not len(other["boxes"]):
        return out
    overlap = pairwise_iou(np.asarray(ref["boxes"]), np.asarray(other["boxes"]))
    overlap[np.asarray(ref["classes"])[:, None] != np.asarray(other["classes"])[None, :]] = -1
    best_other, best_ref = overlap.argmax(axis=1), overlap.argmax(axis=0)
    rows = np.arange(len(ref["boxes"]))
    ok = (best_ref[best_other] == rows) & (overlap[rows, best_other] >= iou)
    out["matched"] = int(ok.sum())
    if ok.any():
        pairs = best_other[ok]
        out["max_box_diff_px"] = float(np.abs(np.asarray(ref["boxes"])[ok] - np.asarray(other["boxes"])[pairs]).max())
        out["max_score_diff"] = float(np.abs(np.asarray(ref["scores"])[ok] - np.asarray(other["scores"])[pairs]).max())
    return out
