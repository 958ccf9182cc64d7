"""Evaluators picked by evaluator_type; the VOC one also reports the paper's VOC07 11-point AP50."""
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

from projects.toy_data import TOY_CLASSES, make_toy_data
from resnet_det.config import get_cfg
from resnet_det.data.datasets import register_voc
from resnet_det.evaluation.evaluators import VOCDetectionEvaluator, build_evaluator


@pytest.fixture(scope="module")
def voc_name(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_data(root, kinds=["voc"], num_det_train=2, num_det_val=12, det_size=(96, 128))
    name = "test_eval_voc07_test"
    register_voc(name, root / "VOC2007", "test", TOY_CLASSES, 2007)
    return name


def _as_predictions(record, jitter=0.0):
    boxes = torch.tensor(
        [
            BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
            for a in record["annotations"]
        ]
    )
    inst = Instances((record["height"], record["width"]))
    inst.pred_boxes = Boxes(boxes + jitter)
    inst.scores = torch.ones(len(boxes))
    inst.pred_classes = torch.tensor([a["category_id"] for a in record["annotations"]])
    return {"instances": inst}


def _evaluate(name, jitter=0.0):
    evaluator = VOCDetectionEvaluator(name)
    evaluator.reset()
    for record in DatasetCatalog.get(name):
        evaluator.process([{"image_id": record["image_id"]}], [_as_predictions(record, jitter)])
    return evaluator.evaluate()["bbox"]


def test_ground_truth_as_predictions_scores_100(voc_name):
    bbox = _evaluate(voc_name)
    assert bbox["AP50"] == pytest.approx(100) and bbox["AP"] == pytest.approx(100)
    assert bbox["AP50_VOC07"] == pytest.approx(100) and bbox["AP50_allpoints"] == pytest.approx(100)
    present = {
        TOY_CLASSES[a["category_id"]]
        for r in DatasetCatalog.get(voc_name)
        for a in r["annotations"]
    }
    assert present == set(TOY_CLASSES)  # (a class without ground truth would score 0)
    for cls in present:
        assert bbox[f"AP50-{cls}"] == pytest.approx(100)


def test_shifted_boxes_lose_strict_ious_only(voc_name):
    bbox = _evaluate(voc_name, jitter=3.0)
    assert bbox["AP50"] == pytest.approx(bbox["AP50_VOC07"])  # 2007: AP50 is the 11-point AP
    assert bbox["AP75"] < bbox["AP50"] <= 100


def test_evaluator_follows_evaluator_type(voc_name, tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    assert isinstance(build_evaluator(cfg, voc_name).evaluator, VOCDetectionEvaluator)
    coco_name = "test_eval_fake_coco"
    if coco_name not in DatasetCatalog:
        DatasetCatalog.register(coco_name, lambda: [])
        json_file = tmp_path / "x.json"
        json_file.write_text(
            '{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}'
        )
        MetadataCatalog.get(coco_name).set(evaluator_type="coco", json_file=str(json_file))
    assert isinstance(build_evaluator(cfg, coco_name).evaluator, COCOEvaluator)
    other = "test_eval_unknown_type"
    if other not in DatasetCatalog:
        DatasetCatalog.register(other, lambda: [])
        MetadataCatalog.get(other).set(evaluator_type="sem_seg")
    with pytest.raises(ValueError, match="'sem_seg'"):
        build_evaluator(cfg, other)


def _write_voc(root, objects_per_image, size=128):
    """A minimal VOC2007 folder: one xml per image (VOC's 1-based pixel boxes), test split."""
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, boxes in objects_per_image.items():
        objects = "".join(
            f"<object><name>shape</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for x1, y1, x2, y2 in boxes
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{size}</width>"
            f"<height>{size}</height><depth>3</depth></size>{objects}</annotation>"
        )
    (root / "ImageSets" / "Main" / "test.txt").write_text("\n".join(objects_per_image) + "\n")


def test_voc07_11_point_ap_against_a_hand_computed_curve(tmp_path):
    # 4 objects; 3 detections in score order: hit, miss (background), hit. Two objects are
    # never found. Ranked list: precision 1/1, 1/2, 2/3 at recall 1/4, 1/4, 2/4.
    objects = {"a": [(10, 10, 50, 50), (60, 60, 100, 100), (10, 60, 50, 100)],
               "b": [(20, 20, 80, 80)]}
    _write_voc(tmp_path, objects)
    detections = {  # detectron2 boxes are 0-based: xml xmin/ymin - 1 (IoU 1 with the object)
        "a": [((9, 9, 50, 50), 0.9)],
        "b": [((100, 100, 120, 120), 0.8), ((19, 19, 80, 80), 0.7)],
    }
    # By hand. 11-point (VOC2007): mean over t = 0, .1, ..., 1 of the best precision at
    # recall >= t: t <= .2 -> 1 (recall .25 at precision 1); t = .3, .4, .5 -> 2/3
    # (recall .5); t >= .6 -> 0 (recall never exceeds .5). (3 * 1 + 3 * 2/3) / 11 = 5/11.
    ap_11_point = (3 * 1 + 3 * 2 / 3) / 11
    # All points (VOC2010+): area under the precision envelope, recall steps of 1/4:
    # 1/4 * 1 + 1/4 * 2/3 = 5/12.
    ap_all_points = 1 / 4 * 1 + 1 / 4 * 2 / 3
    assert ap_11_point == pytest.approx(0.454545, abs=1e-6) and ap_all_points == pytest.approx(0.416667, abs=1e-6)

    results = {}
    for year in (2007, 2012):
        name = f"test_eval_hand_voc_{year}"
        register_voc(name, tmp_path, "test", ["shape"], year)
        evaluator = VOCDetectionEvaluator(name)
        evaluator.reset()
        for image_id, dets in detections.items():
            inst = Instances((128, 128))
            inst.pred_boxes = Boxes(torch.tensor([b for b, _ in dets], dtype=torch.float32))
            inst.scores = torch.tensor([s for _, s in dets])
            inst.pred_classes = torch.zeros(len(dets), dtype=torch.int64)
            evaluator.process([{"image_id": image_id}], [{"instances": inst}])
        results[year] = evaluator.evaluate()["bbox"]
    for bbox in results.values():
        assert bbox["AP50_VOC07"] == pytest.approx(100 * ap_11_point)
        assert bbox["AP50_allpoints"] == pytest.approx(100 * ap_all_points)
    assert results[2007]["AP50"] == pytest.approx(100 * ap_11_point)  # the year's own definition
    assert results[2012]["AP50"] == pytest.approx(100 * ap_all_points)
    assert results[2007]["AP50-shape"] == pytest.approx(100 * ap_11_point)


def _no_detections(record):
    return {"instances": Instances((record["height"], record["width"]), pred_boxes=Boxes(
        torch.zeros(0, 4)), scores=torch.zeros(0), pred_classes=torch.zeros(0, dtype=torch.long))}


def test_no_detection_reports_zero_ap_with_a_warning_and_nan_for_empty_size_ranges(
    tmp_path, caplog
):
    import json
    import logging
    import math

    from resnet_det.data.datasets import register_coco_json

    root = tmp_path / "toy"
    make_toy_data(root, kinds=["coco"], num_det_train=2, num_det_val=6, det_size=(96, 128))
    json_file = root / "coco" / "annotations" / "instances_val2017.json"
    name = "test_eval_no_detection_coco"
    register_coco_json(name, json_file, root / "coco" / "val2017")
    areas = [a["area"] for a in json.loads(json_file.read_text())["annotations"]]
    assert areas and max(areas) < 96**2  # 96x128 images: no "large" ground truth
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    evaluator = build_evaluator(cfg, name)
    evaluator.reset()
    for record in DatasetCatalog.get(name):
        evaluator.process([record], [_no_detections(record)])
    with caplog.at_level(logging.WARNING):
        bbox = evaluator.evaluate()["bbox"]
    assert (bbox["AP"], bbox["AP50"], bbox["AP75"]) == (0.0, 0.0, 0.0)
    assert math.isnan(bbox["APl"])  # no ground truth of that size: still undefined
    assert any(bbox[k] == 0.0 for k in ("APs", "APm"))
    assert "made no detection on test_eval_no_detection_coco" in caplog.text


def test_no_detection_on_voc_warns_and_scores_zero(voc_name, tmp_path, caplog):
    import logging

    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path)
    evaluator = build_evaluator(cfg, voc_name)
    evaluator.reset()
    for record in DatasetCatalog.get(voc_name):
        evaluator.process([record], [_no_detections(record)])
    with caplog.at_level(logging.WARNING):
        bbox = evaluator.evaluate()["bbox"]
    assert bbox["AP50"] == 0.0 and bbox["AP"] == 0.0
    assert "made no detection" in caplog.text


def test_voc_evaluation_reads_xml_without_pose_or_flags_and_with_decimal_boxes(tmp_path):
    """CVAT-style files: decimal coordinates, no <pose>/<truncated>/<difficult>; detectron2's
    voc_eval alone fails on them (int('11.5'), None.text)."""
    root = tmp_path / "voc"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    boxes = {"a": (11.5, 21.0, 40.4, 60.0), "b": (5.0, 5.0, 50.0, 30.0)}
    for image_id, (x0, y0, x1, y1) in boxes.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>100</width>"
            f"<height>80</height></size><object><name>circle</name><bndbox><xmin>{x0}</xmin>"
            f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>")
    (root / "ImageSets" / "Main" / "test.txt").write_text("a\nb\n")
    name = "test_eval_cvat_style"
    register_voc(name, root, "test", TOY_CLASSES, 2012)
    bbox = _evaluate(name)
    assert bbox["AP50-circle"] == pytest.approx(100) and bbox["AP50"] == pytest.approx(100 / 5)
