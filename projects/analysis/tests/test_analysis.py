"""tools/analyze_results.py: the pictures show the numbers pycocotools computes."""
import contextlib
import importlib.util
import io
import json
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.structures import Boxes, BoxMode, Instances
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from projects.analysis.results import (
    ERROR_TYPES,
    analyze,
    dataset_ground_truth,
    plot_class_ap,
    plot_confusion_matrix,
    plot_error_breakdown,
    plot_pr_curves,
)
from projects.toy_data import TOY_CLASSES, dataset_opts, make_toy_data
from resnet_det.config import load_config
from resnet_det.data import datasets as ds
from resnet_det.data.datasets import DatasetError
from resnet_det.evaluation.evaluators import RESULTS_JSON, build_evaluator

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SCORE = 0.4


def _detections(gt, rng):
    """Jittered copies of the objects (some with another class, some lost), plus background."""
    cats = [c["id"] for c in gt["categories"]]
    out = []
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        for copy_ in range(2):
            if rng.uniform() < 0.15:
                continue
            j = rng.normal(0, 0.12, 4) * [w, h, w, h]
            cat = a["category_id"] if copy_ == 0 or rng.uniform() < 0.5 else int(rng.choice(cats))
            out.append({"image_id": a["image_id"], "category_id": cat,
                        "bbox": [x + j[0], y + j[1], w + j[2], h + j[3]],
                        "score": float(rng.uniform(0.05, 1))})
    for im in gt["images"]:
        for _ in range(2):
            x, y = rng.uniform(0, [im["width"] - 30, im["height"] - 30])
            out.append({"image_id": im["id"], "category_id": int(rng.choice(cats)),
                        "bbox": [x, y, 25.0, 25.0], "score": float(rng.uniform(0.05, 0.9))})
    return out


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_analysis")
    make_toy_data(root, kinds=("coco",), num_det_train=1, num_det_val=16)
    gt = root / "coco" / "annotations" / "instances_val2017.json"
    dt = root / "results.json"
    dt.write_text(json.dumps(_detections(json.loads(gt.read_text()), np.random.default_rng(0))))
    analysis, coco_gt, coco_dt = analyze(str(gt), str(dt), score_thresh=SCORE)
    return dict(root=root, gt=str(gt), dt=str(dt), analysis=analysis)


@pytest.fixture(scope="module")
def reference(toy):
    """pycocotools' own evaluation of the same files."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(toy["gt"])
        ev = COCOeval(coco_gt, coco_gt.loadRes(toy["dt"]), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return coco_gt, ev


def _class_ap(ev, k, t=slice(None)):
    p = ev.eval["precision"][t, :, k, 0, -1]
    return p[p > -1].mean()


def test_bar_heights_are_the_per_class_ap(toy, reference, tmp_path):
    _, ev = reference
    fig = plot_class_ap(toy["analysis"], tmp_path / "class_ap.png")
    ax = fig.axes[0]
    ap, ap50, ap75 = ([bar.get_height() for bar in c] for c in ax.containers)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(TOY_CLASSES)
    for k in range(len(TOY_CLASSES)):
        assert ap[k] == pytest.approx(100 * _class_ap(ev, k), abs=1e-9)
        assert ap50[k] == pytest.approx(100 * _class_ap(ev, k, 0), abs=1e-9)
        assert ap75[k] == pytest.approx(100 * _class_ap(ev, k, 5), abs=1e-9)
    assert len(set(np.round(ap, 3))) > 1  # the classes differ: a mixed-up order would show
    assert (tmp_path / "class_ap.png").stat().st_size > 0


def test_pr_curve_area_is_the_ap(toy, reference, tmp_path):
    _, ev = reference
    overall, per_class = plot_pr_curves(toy["analysis"], tmp_path / "pr.png", tmp_path / "prk.png")
    for panel, t in zip(overall.axes, (0, 5)):  # IoU .5, .75
        lines = panel.get_lines()
        assert len(lines) == len(TOY_CLASSES) + 1  # each class and the mean
        for k, line in enumerate(lines[:-1]):
            recall, precision = line.get_xydata().T
            # AP is the mean over COCO's 101 recall points; the area under the drawn curve
            # (trapezoids) must agree within 1 AP point.
            assert np.trapezoid(precision, recall) == pytest.approx(_class_ap(ev, k, t), abs=0.01)
        recall, precision = lines[-1].get_xydata().T
        assert np.trapezoid(precision, recall) == pytest.approx(ev.stats[1 if t == 0 else 2], abs=0.01)
    assert len(per_class.axes) == len(TOY_CLASSES)


def test_confusion_matrix_diagonal_counts_the_true_positives(toy, reference, tmp_path):
    coco_gt, ev = reference
    fig = plot_confusion_matrix(toy["analysis"], tmp_path / "cm.png")
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    assert np.array_equal(drawn, toy["analysis"].confusion)
    K = len(TOY_CLASSES)
    cat_ids = sorted(coco_gt.getCatIds())
    tp = np.zeros(K, int)
    for e in ev.evalImgs:  # IoU .5, area all, 100 detections: COCO's own matches
        if e is None or e["aRng"] != [0, 1e10]:
            continue
        scored = np.asarray(e["dtScores"]) >= SCORE
        matched = (e["dtMatches"][0] > 0) & ~np.asarray(e["dtIgnore"][0], bool)
        tp[cat_ids.index(e["category_id"])] += int((scored & matched).sum())
    assert np.array_equal(np.diag(drawn)[:K], tp) and tp.sum() > 0
    # Every object is counted once in its row, every kept detection once in its column.
    objects = [sum(a["category_id"] == c for a in coco_gt.dataset["annotations"]) for c in cat_ids]
    assert drawn[:K].sum(axis=1).tolist() == objects
    kept = [d for d in json.loads(open(toy["dt"]).read()) if d["score"] >= SCORE]
    assert drawn[:, :K].sum(axis=0).tolist() == [sum(d["category_id"] == c for d in kept) for c in cat_ids]
    assert drawn[K, :K].sum() > 0 and (drawn[:K, :K].sum() - np.trace(drawn[:K, :K])) > 0


def test_confusion_matrix_of_one_class_keeps_its_title_and_labels_inside(toy, tmp_path):
    import dataclasses

    one = dataclasses.replace(toy["analysis"], class_names=["kangaroo"], confusion=np.array([[20, 3], [5, 0]]))
    fig = plot_confusion_matrix(one, tmp_path / "one.png")
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    ax = fig.axes[0]
    for text in [ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels(), *ax.get_yticklabels()]:
        box = text.get_window_extent(renderer)
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, text.get_text()


def test_error_breakdown_starts_at_the_coco_numbers_and_only_adds(toy, reference, tmp_path):
    _, ev = reference
    errors = toy["analysis"].errors  # [7, R, K]
    assert errors[0].mean() == pytest.approx(ev.stats[2], abs=1e-9)  # C75 = AP75
    assert errors[1].mean() == pytest.approx(ev.stats[1], abs=1e-9)  # C50 = AP50
    assert (np.diff(errors, axis=0) >= -1e-12).all()  # each type forgives more
    assert errors[2].mean() > errors[1].mean() and errors[4].mean() > errors[2].mean()
    assert (errors[6] == 1).all()
    (fig,) = plot_error_breakdown(toy["analysis"], tmp_path / "err.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert [label.split()[-1] for label in labels] == list(ERROR_TYPES)
    assert labels[1] == f"[{ev.stats[1]:.3f}] C50"


def test_tool_writes_every_picture_and_the_report(toy, tmp_path, capsys):
    tool = _tool()
    out = tmp_path / "analysis"
    assert tool.main(["--gt", toy["gt"], "--dt", toy["dt"], "--output", str(out), "--image-root",
                      str(toy["root"] / "coco" / "val2017"), "--num-images", "2"]) == 0
    report = (out / "report.md").read_text()
    pictures = ["class_ap.png", "pr_curves.png", "pr_curves_per_class.png", "error_analysis.png",
                "error_analysis_per_class.png", "confusion_matrix.png",
                "most_false_positives.png", "most_missed.png"]
    for name in pictures:
        assert (out / name).stat().st_size > 1000 and f"]({name})" in report
    assert "warning" not in report  # every toy class has objects
    # Which AP it is, beside what a VOC evaluator reports: in the report and on the console.
    assert "interpolated at 101 recall points" in report and "11-point AP50_VOC07" in capsys.readouterr().out


def test_worst_images_are_those_with_the_most_errors(toy, tmp_path):
    from projects.analysis.results import plot_worst_images
    from resnet_det.evaluation.coco import load_coco_gt, load_coco_results

    analysis = toy["analysis"]
    coco_gt = load_coco_gt(toy["gt"])
    coco_dt = load_coco_results(coco_gt, toy["dt"])
    root = str(toy["root"] / "coco" / "val2017")
    for key in ("fp", "missed"):
        drawn = plot_worst_images(analysis, coco_gt, coco_dt, root, key, tmp_path / f"{key}.png", 3)
        counts = sorted((c[key] for c in analysis.per_image.values()), reverse=True)[:3]
        assert [analysis.per_image[i][key] for i in drawn] == counts and counts[0] > 0
    # Per-image counts add up to the confusion matrix's errors.
    m, K = analysis.confusion, len(TOY_CLASSES)
    off_diagonal = m[:K, :K].sum() - np.trace(m[:K, :K])
    assert sum(c["fp"] for c in analysis.per_image.values()) == m[K].sum() + off_diagonal
    assert sum(c["missed"] for c in analysis.per_image.values()) == m[:K, K].sum() + off_diagonal
    assert plot_worst_images(analysis, coco_gt, coco_dt, str(tmp_path), "fp", tmp_path / "x.png") is None  # not found


def _tool():
    spec = importlib.util.spec_from_file_location(
        "analyze_results", os.path.join(REPO, "tools", "analyze_results.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_bad_results_fail_with_the_file_named(toy, tmp_path, capsys):
    detections = json.loads(open(toy["dt"]).read())
    cases = {
        "other_dataset.json": ([dict(detections[0], image_id=999999)], r"image ids \[999999\]"),
        "empty.json": ([], "has no detections"),
        "unknown_class.json": ([dict(detections[0], category_id=42)], r"category ids \[42\]"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(content))
        with pytest.raises(DatasetError, match=message) as info:
            analyze(toy["gt"], str(path))
        assert str(path) in str(info.value)
        assert _tool().main(["--gt", toy["gt"], "--dt", str(path), "--output", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: results json") and str(path) in err
    assert not (tmp_path / "x").exists()


def test_voc_run_is_analysed_through_its_ground_truth_in_memory(tmp_path, monkeypatch, capsys):
    # A train_det OUTPUT_DIR of a toy VOC run: config.yaml, and what the VOC evaluator writes.
    make_toy_data(tmp_path, kinds=("voc",), num_det_train=1, num_det_val=12, det_size=(96, 128))
    cfg = load_config(os.path.join(REPO, "configs", "toy", "faster_rcnn_r18_fpn_voc.yaml"), dataset_opts(tmp_path))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.dump())
    ds.register_all_datasets(cfg)
    (name,) = cfg.DATASETS.TEST
    evaluator = build_evaluator(cfg.clone(), name, output_dir=str(run / "inference" / name))
    evaluator.reset()
    for record in DatasetCatalog.get(name):  # the ground truth as detections
        boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                 for a in record["annotations"]]
        inst = Instances((record["height"], record["width"]))
        inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        inst.scores = torch.ones(len(boxes))
        inst.pred_classes = torch.tensor([a["category_id"] for a in record["annotations"]])
        evaluator.process([{"image_id": record["image_id"]}], [{"instances": inst}])
    assert evaluator.evaluate()["bbox"]["AP50"] == pytest.approx(100)
    results = json.loads((run / "inference" / name / RESULTS_JSON).read_text())
    assert {r["image_id"] for r in results} == {r["image_id"] for r in DatasetCatalog.get(name)}
    gt, _ = dataset_ground_truth(name)  # VOC xml -> COCO dict, in memory
    assert len(gt["annotations"]) == len(results) and gt["categories"][0]["id"] == 0

    assert _tool().main(["--run", str(run), "--output", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| 100.0 | 100.0 | 100.0 |" in report  # AP, AP50, AP75 of the ground truth itself
    assert "(none: no image has a false positive" in report  # nothing wrong to draw
    assert _tool().main(["--run", str(tmp_path), "--output", str(tmp_path / "o2")]) == 2
    assert "is not a train_det OUTPUT_DIR" in capsys.readouterr().err
