"""COCO-style evaluation of detection results against COCO ground truth.

The engine is faster-coco-eval (C++ COCOeval with pycocotools' API and numbers) when it is
importable, else pycocotools' own COCOeval; both give the same 12 summary numbers (the tests
check it against pycocotools). :func:`use_in_detectron2` puts the engine into detectron2's
``COCOEvaluator``. The file readers check the two inputs first, so that a wrong path, broken
json, empty results or ids from another dataset fail with a message naming the file,
instead of an assertion deep inside the COCO API.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging

from resnet_det.data.datasets import DatasetError, read_json

__all__ = ["EngineUnavailableError", "COCO_STAT_NAMES", "coco_engine", "evaluate_coco_files", "load_coco_gt",
           "load_coco_results", "run_cocoeval", "use_in_detectron2"]

logger = logging.getLogger(__name__)

# The 12 numbers of COCOeval.summarize(), in its order (detectron2 uses the first 6 names).
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
                   "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
_IOU_TYPES = ("bbox", "segm", "keypoints")
ENGINES = ("auto", "faster", "pycocotools")


class EngineUnavailableError(ImportError):
    """The COCO evaluation engine asked for is not installed."""


def coco_engine(engine: str = "auto"):
    """``(COCO, COCOeval, name)`` of the evaluation engine: ``"faster"`` (faster-coco-eval),
    ``"pycocotools"``, or ``"auto"``: faster-coco-eval when importable, else pycocotools."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}; choose from {list(ENGINES)}")
    if engine in ("auto", "faster"):
        try:
            from faster_coco_eval import COCO, COCOeval_faster
        except ImportError:
            if engine == "faster":
                raise EngineUnavailableError(
                    "faster-coco-eval is not installed (pip install faster-coco-eval, or run "
                    "tools/setup_env.sh); engine='pycocotools' evaluates without it"
                ) from None
        else:
            return COCO, COCOeval_faster, "faster-coco-eval"
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval, "pycocotools"


def use_in_detectron2() -> str:
    """Make detectron2's ``COCOEvaluator`` (``use_fast_impl=True``, its default) evaluate with
    faster-coco-eval; returns the engine detectron2 now uses ("faster-coco-eval", "detectron2"
    for its own compiled one, or "pycocotools").

    detectron2 looks for its own compiled ``COCOeval_opt`` and falls back to pycocotools when
    it is not built (the PyPI redistribution ships it unloadable). faster-coco-eval fills that
    slot; a detectron2 that has its compiled evaluator keeps it. Idempotent.
    """
    from detectron2.evaluation import coco_evaluation as d2

    if d2.COCOeval_opt is d2.COCOeval:  # detectron2's fast evaluator is not built
        _, cocoeval, name = coco_engine()
        if name == "pycocotools":
            return name
        d2.COCOeval_opt = cocoeval
    if d2.COCOeval_opt is d2.COCOeval:
        return "pycocotools"
    return "faster-coco-eval" if d2.COCOeval_opt.__module__.startswith("faster_coco_eval") else "detectron2"


def load_coco_gt(gt, engine: str = "auto", what: str = "ground-truth json"):
    """A COCO object of the engine from a ground-truth json path or an in-memory COCO dict
    (e.g. detectron2's ``convert_to_coco_dict`` of a registered dataset)."""
    COCO, _, _ = coco_engine(engine)
    data = read_json(gt, what) if isinstance(gt, (str, bytes)) or hasattr(gt, "__fspath__") else gt
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{what} {_name(gt)} is not a COCO object with 'images'")
    if not isinstance(data.get("annotations", []), list):
        raise DatasetError(f"{what} {_name(gt)}: 'annotations' is not a list")
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(data)  # the COCO API writes flags into annotations
        coco_gt.createIndex()
    return coco_gt


def load_coco_results(coco_gt, dt, gt_name: str = "the ground truth"):
    """The engine's COCO object of a results json path (or list of detections) on ``coco_gt``,
    after checking that it is a non-empty list whose image and category ids are in it."""
    results = read_json(dt, "results json") if not isinstance(dt, list) else dt
    if isinstance(results, dict) and "annotations" in results:
        raise DatasetError(f"results json {_name(dt)} looks like a ground-truth file; pass the list of "
                           "detections ([{image_id, category_id, bbox, score}, ...]) written by the evaluator")
    if not isinstance(results, list) or not results:
        raise DatasetError(f"results json {_name(dt)} has no detections (expected a non-empty list of "
                           "{image_id, category_id, bbox, score}); with no detections every AP is 0")
    _check_results(results, coco_gt.dataset, _name(dt), gt_name)
    with contextlib.redirect_stdout(io.StringIO()):
        # loadRes adds ids/areas to the entries it gets: give it copies.
        return coco_gt.loadRes(copy.deepcopy(results))


def run_cocoeval(coco_gt, coco_dt, iou_type: str = "bbox", engine: str = "auto", verbose=False,
                 summarize=True, **params):
    """evaluate + accumulate (+ summarize, which needs the default areas and maxDets) with the
    engine's COCOeval; ``params`` override ``COCOeval.params`` fields (``iouThrs``, ``maxDets``,
    ``useCats``...). Returns the COCOeval."""
    if iou_type not in _IOU_TYPES:
        raise ValueError(f"iou_type={iou_type!r}; choose from {list(_IOU_TYPES)}")
    _, COCOeval, _ = coco_engine(engine)
    coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
    for key, value in params.items():
        setattr(coco_eval.params, key, value)
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_eval.evaluate()
        coco_eval.accumulate()
        if summarize:
            coco_eval.summarize()
    return coco_eval


def evaluate_coco_files(gt_json, dt_json, iou_type="bbox", verbose=True, engine="auto"):
    """COCOeval of a results json against a ground-truth json; returns {name: value} for the 12
    summary stats.

    Values are pycocotools' (fractions in [0, 1], -1 where a category/area has no ground
    truth), computed by faster-coco-eval when installed (``engine``: "auto", "faster",
    "pycocotools"). With ``verbose``, the usual summary is printed to stdout.
    """
    if iou_type not in _IOU_TYPES:
        raise ValueError(f"iou_type={iou_type!r}; choose from {list(_IOU_TYPES)}")
    coco_gt = load_coco_gt(gt_json, engine)
    coco_dt = load_coco_results(coco_gt, dt_json, str(gt_json))
    coco_eval = run_cocoeval(coco_gt, coco_dt, iou_type, engine, verbose=False)
    if verbose:
        # faster-coco-eval logs its summary (14 lines); print pycocotools' 12 for both engines.
        _print_summary(coco_eval)
    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, coco_eval.stats)}


def _print_summary(coco_eval):
    """pycocotools' 12-line summary table of an accumulated COCOeval (either engine)."""
    from pycocotools.cocoeval import COCOeval

    # pycocotools' summarize() reads only params and eval; it runs unchanged on the
    # accumulated arrays of either engine (they have the same layout).
    printer = COCOeval.__new__(COCOeval)
    printer.params, printer.eval = coco_eval.params, coco_eval.eval
    printer.summarize()


def _name(source):
    return "(in memory)" if isinstance(source, (list, dict)) else str(source)


def _check_results(results, gt_data, dt_name, gt_name):
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
        problems.append(f"{len(bad_entries)} entries lack image_id/category_id/score, e.g. index "
                        f"{bad_entries[0]}")
    if bad_images:
        problems.append(f"image ids {sorted(bad_images, key=repr)[:10]} are not in {gt_name} "
                        "(results from another split?)")
    if bad_categories:
        problems.append(f"category ids {sorted(bad_categories, key=repr)[:10]} are not in {gt_name}'s "
                        f"categories {sorted(category_ids)} (contiguous 0-based class indices instead of "
                        "the dataset's category ids?)")
    if problems:
        raise DatasetError(f"results json {dt_name}:\n  " + "\n  ".join(problems))
