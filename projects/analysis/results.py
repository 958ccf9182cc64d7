"""Result analysis of a detector on a COCO-format ground truth: pictures and a report.

From one ground truth (a COCO json, or a registered dataset's ground truth converted in memory
by detectron2's ``convert_to_coco_dict``: VOC works too) and one results file (the COCO results
format that detectron2's ``COCOEvaluator`` and this package's VOC evaluator write):

- ``class_ap.png``: AP, AP50 and AP75 per class (COCOeval's ``precision`` array, as detectron2's
  per-category AP);
- ``pr_curves.png`` (all classes at IoU .5 and .75) and ``pr_curves_per_class.png``;
- ``error_analysis.png`` / ``error_analysis_per_class.png``: the COCO error breakdown of
  Detectron's ``analyze`` and MMDetection's ``coco_error_analysis``: PR curves at C75, C50, Loc
  (IoU .1), Sim (confusions within a supercategory forgiven), Oth (all class confusions
  forgiven), BG (all false positives forgiven) and FN (all objects found);
- ``confusion_matrix.png``: ground-truth class (+ background) vs predicted class (+ missed) at a
  score threshold and an IoU threshold;
- ``most_false_positives.png`` / ``most_missed.png``: the images with the most false positives
  and the most missed objects, ground truth and detections side by side (detectron2's
  ``Visualizer``);
- ``report.md`` showing them, with the 12 COCO numbers and the per-class table.

Curves come from the evaluation engine's accumulated arrays (``precision[T, R, K, A, M]``);
per-detection matches (confusion matrix, per-image counts) from pycocotools' ``evaluateImg``
(COCO's greedy matching in score order), not from a matcher of our own.
"""
from __future__ import annotations

import contextlib
import copy
import glob
import io
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resnet_det.data.datasets import DatasetError, read_json
from resnet_det.evaluation import COCO_STAT_NAMES, coco_engine, load_coco_gt, load_coco_results, run_cocoeval
from resnet_det.utils.draw import draw_boxes
from resnet_det.utils.plotting import new_figure, save_figure

__all__ = [
    "AP_DEFINITION",
    "ERROR_TYPES",
    "Analysis",
    "analyze",
    "analyze_run",
    "confusion_matrix",
    "error_breakdown",
    "find_run_results",
    "per_class_ap",
    "plot_class_ap",
    "plot_confusion_matrix",
    "plot_error_breakdown",
    "plot_pr_curves",
    "pr_curves",
    "write_analysis",
]

logger = logging.getLogger(__name__)

# What "AP" means in the analysis, beside what the training run's evaluator reports.
AP_DEFINITION = ("COCO's: precision interpolated at 101 recall points, averaged over IoU .50:.95 (AP50 at "
                 "IoU .5). A VOC test set's eval_results.json holds VOC's AP50 instead (all points, and the "
                 "11-point AP50_VOC07), which differs from the COCO AP50 here by the interpolation")
# Detectron's / MMDetection's error types, from the strictest PR curve to the most lenient.
ERROR_TYPES = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
_ERROR_COLORS = ((1, 1, 1), (0.31, 0.51, 0.74), (0.75, 0.31, 0.30), (0.36, 0.90, 0.38),
                 (0.50, 0.39, 0.64), (1, 0.6, 0), (0.8, 0.8, 0.8))
_ALL_AREA = [[0, 1e10]]


@dataclass
class Analysis:
    """Everything the pictures and the report are drawn from."""

    class_names: list
    category_ids: list
    stats: dict  # the 12 COCO numbers (fractions; -1 where undefined)
    class_ap: dict  # name -> {"AP", "AP50", "AP75"} (fractions; nan without ground truth)
    recall: np.ndarray  # COCO's 101 recall thresholds
    pr: dict  # IoU (0.5, 0.75) -> precision [K, R] at area all, 100 detections (-1: no GT)
    errors: np.ndarray  # [7, R, K] precision of each error type (ERROR_TYPES)
    confusion: np.ndarray  # [K+1, K+1] counts: rows GT class + background, cols predicted + missed
    score_thresh: float
    iou_thresh: float
    per_image: dict = field(default_factory=dict)  # image id -> {"fp": n, "missed": n}
    matches: dict = field(default_factory=dict)  # image id -> (tp det ids, found gt ids)
    engine: str = ""
    warnings: list = field(default_factory=list)


# ------------------------------------------------------------------ inputs


def find_run_results(output_dir):
    """``[(dataset name, results json), ...]`` of a train_det OUTPUT_DIR (its
    ``inference/<dataset>/coco_instances_results.json``, COCO and VOC test sets alike)."""
    from resnet_det.evaluation.evaluators import RESULTS_JSON

    found = sorted(glob.glob(os.path.join(str(output_dir), "inference", "*", RESULTS_JSON)))
    if not found:
        raise DatasetError(
            f"{output_dir} has no inference/<dataset>/{RESULTS_JSON}: evaluate the run first "
            f"(python tools/train_det.py --config {os.path.join(str(output_dir), 'config.yaml')} "
            "--eval-only MODEL.WEIGHTS <its model_final.pth>)"
        )
    return [(Path(p).parent.name, p) for p in found]


def dataset_ground_truth(dataset_name):
    """(COCO ground truth, image root) of a registered detectron2 dataset: the path of its COCO
    json when it has one, else detectron2's ``convert_to_coco_dict`` of its records (VOC: a
    dict in memory, whose file names are full paths)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets.coco import convert_to_coco_dict

    meta = MetadataCatalog.get(dataset_name)
    if getattr(meta, "json_file", None) and os.path.isfile(meta.json_file):
        return meta.json_file, getattr(meta, "image_root", None)
    DatasetCatalog.get(dataset_name)  # fails early, naming the dataset's files
    with contextlib.redirect_stdout(io.StringIO()):
        gt = convert_to_coco_dict(dataset_name)
    return gt, None  # VOC records carry each image's full path as its file name


def _integer_ids(gt, results):
    """faster-coco-eval wants integer image ids; VOC's are strings ("000005"): number them."""
    if all(isinstance(im["id"], int) for im in gt["images"]):
        return gt, results
    mapping = {im["id"]: i + 1 for i, im in enumerate(gt["images"])}
    gt = copy.deepcopy(gt)
    for im in gt["images"]:
        im["id"] = mapping[im["id"]]
    for ann in gt["annotations"]:
        ann["image_id"] = mapping[ann["image_id"]]
    results = [dict(r, image_id=mapping.get(r.get("image_id"), r.get("image_id")))
               if isinstance(r, dict) else r for r in results]
    return gt, results


# ------------------------------------------------------------------ numbers


def per_class_ap(coco_eval, class_names):
    """{class: {"AP", "AP50", "AP75"}} from COCOeval's precision (area all, last maxDets),
    as detectron2's per-category table; nan for a class without ground truth."""
    precision = coco_eval.eval["precision"]
    iou = np.asarray(coco_eval.params.iouThrs)
    out = {}
    for k, name in enumerate(class_names):
        row = {}
        for key, sel in (("AP", slice(None)), ("AP50", np.isclose(iou, 0.5)),
                         ("AP75", np.isclose(iou, 0.75))):
            p = precision[sel, :, k, 0, -1]
            p = p[p > -1]
            row[key] = float(p.mean()) if p.size else float("nan")
        out[name] = row
    return out


def pr_curves(coco_eval, iou):
    """Precision [K, R] at IoU ``iou``, area all, the last maxDets (-1 where a class has no
    ground truth), and the recall thresholds [R]."""
    t = int(np.flatnonzero(np.isclose(coco_eval.params.iouThrs, iou))[0])
    return coco_eval.eval["precision"][t, :, :, 0, -1].T.copy(), np.asarray(coco_eval.params.recThrs)


def error_breakdown(coco_gt, coco_dt, iou_type="bbox", engine="auto"):
    """[7, R, K] precision per error type (:data:`ERROR_TYPES`) and per class, area all, 100
    detections, as MMDetection's coco_error_analysis computes it (Detectron's analyze).

    Sim / Oth: for class k, only its detections are kept and the objects of the other classes
    (of its supercategory / of all) become class k objects *marked crowd*, so that a detection
    on one is neither a true nor a false positive and they need not be found (the cocoapi
    ``analyze``'s ignore flag; pycocotools has no per-object ignore other than iscrowd, whose
    IoU divides by the detection's area). BG: precision 1 wherever Oth has recall. FN: 1.
    """
    cat_ids = sorted(coco_gt.getCatIds())
    base = run_cocoeval(coco_gt, coco_dt, iou_type, engine, summarize=False,
                        iouThrs=np.array([0.75, 0.5, 0.1]), maxDets=[100], areaRng=_ALL_AREA,
                        areaRngLbl=["all"])
    ps = np.zeros((7, base.eval["precision"].shape[1], len(cat_ids)))
    ps[:3] = base.eval["precision"][:, :, :, 0, 0]
    cats = {c["id"]: c for c in coco_gt.dataset["categories"]}
    COCO, _, _ = coco_engine(engine)
    for k, cat in enumerate(cat_ids):
        dts = [d for d in coco_dt.dataset["annotations"] if d["category_id"] == cat]
        supercategory = cats[cat].get("supercategory")
        similar = {c for c, v in cats.items()
                   if supercategory is not None and v.get("supercategory") == supercategory}
        for row, forgiven in ((3, similar), (4, set(cats))):
            if not dts:
                ps[row, :, k] = -1 if ps[1, 0, k] == -1 else 0
                continue
            # Fresh dicts (the COCO API writes flags into them); their fields are not mutated.
            gt = dict(coco_gt.dataset, annotations=[
                dict(a, category_id=cat, iscrowd=1)
                if a["category_id"] != cat and a["category_id"] in forgiven else dict(a)
                for a in coco_gt.dataset["annotations"]])
            with contextlib.redirect_stdout(io.StringIO()):
                g = COCO()
                g.dataset = gt
                g.createIndex()
                d = g.loadRes(copy.deepcopy(dts))
            ev = run_cocoeval(g, d, iou_type, engine, summarize=False, iouThrs=np.array([0.1]),
                              maxDets=[100], areaRng=_ALL_AREA, areaRngLbl=["all"], catIds=[cat])
            ps[row, :, k] = ev.eval["precision"][0, :, 0, 0, 0]
    no_gt = ps[1, 0, :] == -1
    ps[ps == -1] = 0
    ps[5] = ps[4] > 0
    ps[6] = 1.0
    ps[:, :, no_gt] = -1  # classes without ground truth stay out of every mean
    return ps


def _coco_of(gt, annotations):
    """A pycocotools COCO of ``gt``'s images and categories with ``annotations`` (copied, ids
    kept: the matches are reported in the ids the caller knows)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = {"images": gt["images"], "categories": gt["categories"],
                    "annotations": copy.deepcopy(annotations)}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _evaluate_img_matches(coco_gt, coco_dt, iou, use_cats):
    """pycocotools' per-image matching at one IoU threshold (area all, every detection):
    ``[(image id, det ids, matched gt id per det (0: none), gt ids, gt ignore)]``."""
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(coco_gt, coco_dt, "bbox")
    ev.params.iouThrs = np.array([iou])
    ev.params.areaRng, ev.params.areaRngLbl = _ALL_AREA, ["all"]
    per_image = Counter(d["image_id"] for d in coco_dt.dataset["annotations"])
    ev.params.maxDets = [max(per_image.values(), default=1)]
    ev.params.useCats = int(use_cats)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
    return [(e["image_id"], e["dtIds"], e["dtMatches"][0].astype(int), e["gtIds"],
             np.asarray(e["gtIgnore"], bool)) for e in ev.evalImgs if e is not None]


def confusion_matrix(gt, results, score_thresh=0.5, iou_thresh=0.5):
    """Confusion matrix [K+1, K+1] at a score and an IoU threshold, per-image counts, and the
    matches: (matrix, {image id: {"fp", "missed"}}, {image id: (tp det ids, found gt ids)}).

    Rows: ground-truth class, last row background; columns: predicted class, last column
    missed. Detections with ``score >= score_thresh`` are first matched to objects of their own
    class (COCO's matching; the diagonal = true positives), the rest then to the objects still
    unmatched, whatever their class (off-diagonal: right place, wrong class); what is left is
    background (a false positive) or missed. Crowd objects count in neither.
    """
    cat_ids = sorted(c["id"] for c in gt["categories"])
    index = {c: i for i, c in enumerate(cat_ids)}
    K = len(cat_ids)
    matrix = np.zeros((K + 1, K + 1), dtype=np.int64)
    kept = [r for r in results if r["score"] >= score_thresh]
    coco_gt = load_coco_gt(gt, "pycocotools")
    dt_by_id, gt_by_id = {}, coco_gt.anns
    tp_dets, found = set(), set()
    ignored = {a["id"] for a in gt["annotations"] if a.get("iscrowd", 0)}
    if kept:
        coco_dt = _coco_of(gt, kept)  # the detections keep their ids (and the caller's)
        dt_by_id = coco_dt.anns
        for _, dt_ids, matched, _, _ in _evaluate_img_matches(coco_gt, coco_dt, iou_thresh, True):
            for d, g in zip(dt_ids, matched):
                if g > 0 and g in ignored:
                    tp_dets.add(d)  # on a crowd region: neither TP nor FP, as in COCOeval
                elif g > 0:
                    tp_dets.add(d)
                    found.add(g)
                    matrix[index[gt_by_id[g]["category_id"]], index[dt_by_id[d]["category_id"]]] += 1
    # Second round: class-agnostic matching of what is left.
    left_dts = [dict(dt_by_id[d]) for d in sorted(dt_by_id) if d not in tp_dets]
    left_gts = [a for a in gt["annotations"] if a["id"] not in found and a["id"] not in ignored]
    confused_dets, confused_gts = set(), set()
    if left_dts and left_gts:
        g2, d2 = _coco_of(gt, left_gts), _coco_of(gt, left_dts)
        for _, dt_ids, matched, _, _ in _evaluate_img_matches(g2, d2, iou_thresh, False):
            for d, g in zip(dt_ids, matched):
                if g > 0:
                    confused_dets.add(d)
                    confused_gts.add(g)
                    matrix[index[gt_by_id[g]["category_id"]], index[dt_by_id[d]["category_id"]]] += 1
    per_image = defaultdict(lambda: {"fp": 0, "missed": 0})
    for d in left_dts:
        per_image[d["image_id"]]["fp"] += 1
        if d["id"] not in confused_dets:
            matrix[K][index[d["category_id"]]] += 1
    for a in left_gts:
        per_image[a["image_id"]]["missed"] += 1
        if a["id"] not in confused_gts:
            matrix[index[a["category_id"]]][K] += 1
    matches = defaultdict(lambda: (set(), set()))
    for d in tp_dets:
        matches[dt_by_id[d]["image_id"]][0].add(d)
    for g in found:
        matches[gt_by_id[g]["image_id"]][1].add(g)
    return matrix, dict(per_image), dict(matches)


def analyze(gt, dt, score_thresh=0.5, iou_thresh=0.5, engine="auto", gt_name="ground truth"):
    """All the numbers of the analysis (:class:`Analysis`) of results ``dt`` (a json path or a
    list) on ground truth ``gt`` (a json path or a COCO dict). Bad input (results of another
    dataset, unknown category ids, an empty file) raises :class:`DatasetError` naming it."""
    gt_data = read_json(gt, "ground-truth json") if not isinstance(gt, dict) else gt
    results = read_json(dt, "results json") if not isinstance(dt, list) else dt
    gt_name = gt if isinstance(gt, (str, os.PathLike)) else gt_name
    dt_name = dt if isinstance(dt, (str, os.PathLike)) else "(in memory)"
    if not isinstance(results, list) or not results:
        load_coco_results(load_coco_gt(gt_data, engine), dt)  # raises, naming the file
    gt_data, results = _integer_ids(gt_data, results)
    coco_gt = load_coco_gt(gt_data, engine)
    try:
        coco_dt = load_coco_results(coco_gt, results, str(gt_name))
    except DatasetError as e:
        raise DatasetError(str(e).replace("(in memory)", str(dt_name), 1)) from None
    coco_eval = run_cocoeval(coco_gt, coco_dt, "bbox", engine)
    cats = sorted(gt_data["categories"], key=lambda c: c["id"])
    names = [c["name"] for c in cats]
    warnings = []
    without_gt = [n for k, n in enumerate(names) if coco_eval.eval["precision"][0, 0, k, 0, -1] == -1]
    if without_gt:
        warnings.append(f"{len(without_gt)} classes have no ground-truth object and are left out "
                        f"of every mean: {without_gt}")
    matrix, per_image, matches = confusion_matrix(coco_gt.dataset, coco_dt.dataset["annotations"],
                                                  score_thresh, iou_thresh)
    recall = np.asarray(coco_eval.params.recThrs)
    return Analysis(
        class_names=names,
        category_ids=[c["id"] for c in cats],
        stats={n: float(v) for n, v in zip(COCO_STAT_NAMES, coco_eval.stats)},
        class_ap=per_class_ap(coco_eval, names),
        recall=recall,
        pr={iou: pr_curves(coco_eval, iou)[0] for iou in (0.5, 0.75)},
        errors=error_breakdown(coco_gt, coco_dt, "bbox", engine),
        confusion=matrix,
        score_thresh=score_thresh,
        iou_thresh=iou_thresh,
        per_image=per_image,
        matches=matches,
        engine=coco_engine(engine)[2],
        warnings=warnings,
    ), coco_gt, coco_dt


# ------------------------------------------------------------------ pictures


def _per_class_figure(class_names, panel_size, draw, path, keep=None):
    """One panel per class (4 a row) drawn by ``draw(ax, k, name)``, saved to ``path``;
    classes whose ``keep[k]`` is false get no panel. Returns the Figure."""
    n = len(class_names)
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig = new_figure((panel_size[0] * cols, panel_size[1] * rows))
    for k, name in enumerate(class_names):
        if keep is None or keep[k]:
            draw(fig.add_subplot(rows, cols, k + 1), k, name)
    save_figure(fig, path)
    return fig


def plot_class_ap(analysis: Analysis, path):
    """Bar chart of AP, AP50 and AP75 (%) per class; returns the Figure (saved to ``path``)."""
    names = analysis.class_names
    x = np.arange(len(names))
    fig = new_figure((max(5, 0.9 * len(names) + 2), 3.6))
    ax = fig.add_subplot()
    for i, key in enumerate(("AP", "AP50", "AP75")):
        values = [100 * analysis.class_ap[n][key] for n in names]
        bars = ax.bar(x + (i - 1) * 0.27, np.nan_to_num(values), 0.27, label=key)
        bars.set_label(key)
    ax.set_xticks(x, names, rotation=30 if len(names) > 8 else 0, ha="right" if len(names) > 8 else "center")
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"AP per class (mean AP {100 * analysis.stats['AP']:.1f})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    save_figure(fig, path)
    return fig


def plot_pr_curves(analysis: Analysis, path, per_class_path=None):
    """PR curves: all classes at IoU .5 and .75 (one line per class and their mean), and with
    ``per_class_path`` one panel per class with both IoUs. Returns the Figures."""
    r = analysis.recall
    fig = new_figure((10, 4))
    for i, iou in enumerate((0.5, 0.75)):
        ax = fig.add_subplot(1, 2, i + 1)
        p = analysis.pr[iou]
        for k, name in enumerate(analysis.class_names):
            if p[k, 0] > -1 or (p[k] > -1).any():
                ax.plot(r, p[k], lw=1, alpha=0.8,
                        label=f"{name} [{100 * p[k].mean():.1f}]")
        valid = (p > -1).all(axis=1)
        if valid.any():
            mean = p[valid].mean(axis=0)
            ax.plot(r, mean, color="k", lw=2.2, label=f"mean [{100 * mean.mean():.1f}]")
        _pr_axes(ax, f"IoU {iou}: precision-recall, [AP]")
        ax.legend(fontsize=7)
    save_figure(fig, path)
    figs = [fig]
    if per_class_path:
        def draw(ax, k, name):
            for iou in (0.5, 0.75):
                p = analysis.pr[iou][k]
                if (p > -1).any():
                    ax.plot(r, p, label=f"IoU {iou} [{100 * p.mean():.1f}]")
            _pr_axes(ax, name)
            ax.legend(fontsize=7)

        figs.append(_per_class_figure(analysis.class_names, (3.2, 2.8), draw, per_class_path))
    return figs


def _pr_axes(ax, title):
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)


def _error_panel(ax, recall, ps, title):
    """Stacked PR areas of the error types, MMDetection's ``makeplot`` look."""
    aps = [p.mean() for p in ps]
    curves = [np.zeros_like(recall)] + list(ps)
    for i, name in enumerate(ERROR_TYPES):
        ax.plot(recall, curves[i + 1], color="k", lw=0.5)
        ax.fill_between(recall, curves[i], curves[i + 1], color=_ERROR_COLORS[i],
                        label=f"[{aps[i]:.3f}] {name}")
    _pr_axes(ax, title)
    ax.legend(fontsize=7, loc="lower left")


def plot_error_breakdown(analysis: Analysis, path, per_class_path=None):
    """The COCO error breakdown: all classes (mean over classes with ground truth), and with
    ``per_class_path`` one panel per class. Returns the Figures."""
    e = analysis.errors
    valid = e[0, 0, :] > -1
    fig = new_figure((5.5, 4.5))
    _error_panel(fig.add_subplot(), analysis.recall, e[:, :, valid].mean(axis=2),
                 "bbox, all classes, all areas")
    save_figure(fig, path)
    figs = [fig]
    if per_class_path:
        def draw(ax, k, name):
            _error_panel(ax, analysis.recall, e[:, :, k], name)

        figs.append(_per_class_figure(analysis.class_names, (3.6, 3.2), draw, per_class_path,
                                      keep=valid))
    return figs


def plot_confusion_matrix(analysis: Analysis, path):
    """Confusion matrix image with the counts written in each cell; returns the Figure."""
    m = analysis.confusion
    labels = list(analysis.class_names)
    n = len(labels) + 1
    fig = new_figure((max(4.0, 1.0 + 0.55 * n), max(3.2, 0.8 + 0.5 * n)))  # the title fits one class too
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues", aspect="auto", vmin=0, vmax=max(1, m.max()))
    for i in range(n):
        for j in range(n):
            if m[i, j]:
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if m[i, j] > 0.6 * m.max() else "black")
    ax.set_xticks(range(n), labels + ["(missed)"], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels + ["background"], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(f"score >= {analysis.score_thresh}, IoU >= {analysis.iou_thresh}", fontsize=10)
    save_figure(fig, path)
    return fig


def plot_worst_images(analysis: Analysis, coco_gt, coco_dt, image_root, key, path, num=4):
    """The ``num`` images with the most ``key`` ("fp" or "missed"): ground truth (left; missed
    objects red) and detections above the score threshold (right; false positives red). Returns
    the image ids drawn ([] when no image has one), or None when an image file is not found."""
    from resnet_det.utils.image import read_image_checked

    ranked = sorted(analysis.per_image.items(), key=lambda kv: (-kv[1][key], str(kv[0])))
    ranked = [image_id for image_id, counts in ranked if counts[key] > 0][:num]
    names = dict(zip(analysis.category_ids, analysis.class_names))
    rows = []
    for image_id in ranked:
        info = coco_gt.imgs[image_id]
        file = info["file_name"] if image_root is None else os.path.join(image_root, info["file_name"])
        if not os.path.isfile(file):
            logger.warning(f"{file} not found: the images are not drawn (pass --image-root)")
            return None
        rgb = read_image_checked(file, "RGB")
        tp, found = analysis.matches.get(image_id, (set(), set()))
        gts = [a for a in coco_gt.imgToAnns[image_id] if not a.get("iscrowd", 0)]
        dts = [d for d in coco_dt.imgToAnns[image_id] if d["score"] >= analysis.score_thresh]
        panels = []
        for anns, ok, label in ((gts, found, lambda a: names[a["category_id"]]),
                                (dts, tp, lambda d: f"{names[d['category_id']]} {d['score']:.2f}")):
            boxes = np.array([a["bbox"] for a in anns], dtype=float).reshape(-1, 4)
            boxes[:, 2:] += boxes[:, :2]
            colors = [(25, 190, 50) if a["id"] in ok else (240, 25, 25) for a in anns]
            panels.append(draw_boxes(rgb, boxes, [label(a) for a in anns], colors, max_side=800))
        gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
        rows.append((image_id, np.concatenate([panels[0], gap, panels[1]], axis=1)))
    if rows:
        _save_rows(rows, analysis, coco_gt, path)
    return [image_id for image_id, _ in rows]


def _save_rows(rows, analysis, coco_gt, path):
    """Stack the picture rows under one caption each; a palette PNG (photos with 256 colours
    stay readable at a tenth of the size)."""
    from PIL import Image, ImageDraw

    width = max(picture.shape[1] for _, picture in rows)
    caption = 16
    sheet = Image.new("RGB", (width, sum(p.shape[0] + caption for _, p in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for image_id, picture in rows:
        counts = analysis.per_image[image_id]
        name = os.path.basename(str(coco_gt.imgs[image_id].get("file_name", image_id)))
        draw.text((2, y + 2), f"{name}: {counts['fp']} false positives, {counts['missed']} missed"
                  " | left: ground truth, right: detections (red: wrong)", fill="black")
        sheet.paste(Image.fromarray(picture), (0, y + caption))
        y += picture.shape[0] + caption
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


# ------------------------------------------------------------------ report


def write_analysis(gt, dt, out_dir, image_root=None, score_thresh=0.5, iou_thresh=0.5,
                   num_images=4, engine="auto", title=None):
    """Run :func:`analyze` and write the pictures and ``report.md`` to ``out_dir``; returns
    the :class:`Analysis`."""
    analysis, coco_gt, coco_dt = analyze(gt, dt, score_thresh, iou_thresh, engine)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_class_ap(analysis, out / "class_ap.png")
    plot_pr_curves(analysis, out / "pr_curves.png", out / "pr_curves_per_class.png")
    plot_error_breakdown(analysis, out / "error_analysis.png", out / "error_analysis_per_class.png")
    plot_confusion_matrix(analysis, out / "confusion_matrix.png")
    worst = {key: plot_worst_images(analysis, coco_gt, coco_dt, image_root, key,
                                    out / f"most_{name}.png", num_images)
             for key, name in (("fp", "false_positives"), ("missed", "missed"))}
    (out / "report.md").write_text(_report(analysis, worst, title or "Detection results", gt, dt))
    return analysis


def analyze_run(output_dir, out_dir, **options):
    """:func:`write_analysis` of each test set of a train_det OUTPUT_DIR (its config.yaml names
    the datasets; the ground truth comes from the registry: COCO json, or VOC converted in
    memory). One folder per dataset under ``out_dir`` when there are several. Returns
    ``{dataset: Analysis}``."""
    from resnet_det.config import load_config
    from resnet_det.data.datasets import register_all_datasets

    config = os.path.join(str(output_dir), "config.yaml")
    if not os.path.isfile(config):
        raise DatasetError(f"{config} does not exist: {output_dir} is not a train_det OUTPUT_DIR")
    register_all_datasets(load_config(config))
    runs = find_run_results(output_dir)
    done = {}
    for name, results in runs:
        gt, image_root = dataset_ground_truth(name)
        target = Path(out_dir) / name if len(runs) > 1 else Path(out_dir)
        done[name] = write_analysis(gt, results, target, image_root=image_root,
                                    title=f"{name}: {output_dir}", **options)
    return done


def _pct(v):
    return "n/a" if v != v or v < 0 else f"{100 * v:.1f}"


def _report(a: Analysis, worst, title, gt, dt):
    source = lambda x: f"`{x}`" if isinstance(x, (str, os.PathLike)) else "(in memory)"  # noqa: E731
    lines = [f"# {title}", "",
             f"Ground truth {source(gt)}, detections {source(dt)}; evaluated with {a.engine}.", "",
             f"AP here is {AP_DEFINITION}.", ""]
    lines += [f"> warning: {w}" for w in a.warnings] + ([""] if a.warnings else [])
    lines += ["| " + " | ".join(COCO_STAT_NAMES) + " |", "|" + "---:|" * 12,
              "| " + " | ".join(_pct(a.stats[n]) for n in COCO_STAT_NAMES) + " |", "",
              "## AP per class", "", "![AP per class](class_ap.png)", "",
              "| class | AP | AP50 | AP75 |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {_pct(v['AP'])} | {_pct(v['AP50'])} | {_pct(v['AP75'])} |"
              for n, v in a.class_ap.items()]
    e = a.errors
    valid = e[0, 0, :] > -1
    means = e[:, :, valid].mean(axis=(1, 2)) if valid.any() else np.zeros(7)
    lines += ["", "## Precision-recall curves", "",
              "Interpolated precision at COCO's 101 recall points, 100 detections per image, "
              "all object sizes; [AP] in the legends.", "",
              "![PR curves](pr_curves.png)", "", "![PR curves per class](pr_curves_per_class.png)",
              "", "## Error breakdown", "",
              "Each area is what fixing one kind of error would add (Detectron's analyze, "
              "MMDetection's coco_error_analysis): C75 / C50 PR at IoU .75 / .5; Loc at IoU .1 "
              "(localisation errors forgiven); Sim: confusions with classes of the same "
              "supercategory forgiven; Oth: all class confusions forgiven; BG: all background "
              "false positives removed; FN: every object found.", "",
              "| " + " | ".join(ERROR_TYPES) + " |", "|" + "---:|" * 7,
              "| " + " | ".join(f"{100 * m:.1f}" for m in means) + " |", "",
              "![error breakdown](error_analysis.png)", "",
              "![error breakdown per class](error_analysis_per_class.png)", "",
              "## Confusion matrix", "",
              f"Detections with score >= {a.score_thresh}, matched at IoU >= {a.iou_thresh}: "
              "first to an object of their own class (COCO's matching: the diagonal are the "
              "true positives), then to any object still unmatched (off the diagonal: the right "
              "place, the wrong class). The background row counts false positives on nothing; "
              "the missed column counts objects no detection of any class found.", "",
              "![confusion matrix](confusion_matrix.png)", ""]
    m = a.confusion
    hits = int(np.trace(m[:-1, :-1]))
    lines += [f"True positives {hits}, wrong class {int(m[:-1, :-1].sum()) - hits}, "
              f"background {int(m[-1].sum())}, missed {int(m[:-1, -1].sum())}.", ""]
    for key, name, what in (("fp", "false_positives", "most false positives"),
                            ("missed", "missed", "most missed objects")):
        lines += [f"## Images with the {what}", ""]
        if worst[key]:
            lines += [f"Score >= {a.score_thresh}, IoU >= {a.iou_thresh}; green: matched, red: "
                      "a false positive (right) or a missed object (left).", "",
                      f"![{what}](most_{name}.png)", ""]
        elif worst[key] is None:
            lines += ["(not drawn: the image files were not found; pass the image root, "
                      "`--image-root`)", ""]
        else:
            lines += [f"(none: no image has {'a false positive' if key == 'fp' else 'a missed object'} "
                      f"at score >= {a.score_thresh}, IoU >= {a.iou_thresh})", ""]
    return "\n".join(lines)
