"""COCO-style evaluation of a detection results json against a ground-truth json.

A thin layer over pycocotools' COCO/COCOeval: it checks the two files first, so that a
wrong path, broken json, empty results or ids from another dataset fail with a message
naming the file, instead of an assertion deep inside pycocotools.
"""
import contextlib
import io

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.datasets import DatasetError, read_json

__all__ = ["COCO_STAT_NAMES", "evaluate_coco_files"]

# The 12 numbers of COCOeval.summarize(), in its order (detectron2 uses the first 6 names).
COCO_STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
_IOU_TYPES = ("bbox", "segm", "keypoints")


def evaluate_coco_files(gt_json, dt_json, iou_type="bbox", verbose=True):
    """Run pycocotools COCOeval on two files; returns {name: value} for the 12 summary stats.

    Values are pycocotools' own (fractions in [0, 1], -1 where a category/area has no
    ground truth). With `verbose`, pycocotools prints its usual summary to stdout.
    """
    if iou_type not in _IOU_TYPES:
        raise ValueError(f"iou_type={iou_type!r}; choose from {list(_IOU_TYPES)}")
    gt_data = read_json(gt_json, "ground-truth json")
    if not isinstance(gt_data, dict) or not isinstance(gt_data.get("images"), list):
        raise DatasetError(f"ground-truth json {gt_json} is not a COCO object with 'images'")
    results = read_json(dt_json, "results json")
    if isinstance(results, dict) and "annotations" in results:
        raise DatasetError(
            f"results json {dt_json} looks like a ground-truth file; pass the list of "
            "detections ([{image_id, category_id, bbox, score}, ...]) written by the evaluator"
        )
    if not isinstance(results, list) or not results:
        raise DatasetError(
            f"results json {dt_json} has no detections (expected a non-empty list of "
            "{image_id, category_id, bbox, score}); with no detections every AP is 0"
        )
    _check_results(results, gt_data, dt_json, gt_json)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_data
        coco_gt.createIndex()
        # loadRes copies the list; deep-copies are pycocotools' business.
        coco_dt = coco_gt.loadRes(results)
    coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, coco_eval.stats)}


def _check_results(results, gt_data, dt_json, gt_json):
    image_ids = {im.get("id") for im in gt_data["images"] if isinstance(im, dict)}
    category_ids = {c.get("id") for c in gt_data.get("categories", []) if isinstance(c, dict)}
    bad_entries, bad_images, bad_categories = [], set(), set()
    for index, det in enumerate(results):
        if not isinstance(det, dict) or not {"image_id", "category_id", "score"} <= det.keys():
            bad_entries.append(index)
            continue
        if det["image_id"] not in image_ids:
            bad_images.add(det["image_id"])
        if det["category_id"] not in category_ids:
            bad_categories.add(det["category_id"])
    problems = []
    if bad_entries:
        problems.append(
            f"{len(bad_entries)} entries lack image_id/category_id/score, e.g. index "
            f"{bad_entries[0]}"
        )
    if bad_images:
        problems.append(
            f"image ids {sorted(bad_images, key=repr)[:10]} are not in {gt_json} "
            "(results from another split?)"
        )
    if bad_categories:
        problems.append(
            f"category ids {sorted(bad_categories, key=repr)[:10]} are not in {gt_json}'s "
            f"categories {sorted(category_ids)} (contiguous 0-based class indices instead of "
            "the dataset's category ids?)"
        )
    if problems:
        raise DatasetError(f"results json {dt_json}:\n  " + "\n  ".join(problems))
