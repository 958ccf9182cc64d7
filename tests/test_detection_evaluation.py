"""Evaluators picked by evaluator_type; the VOC one also reports the paper's VOC07 11-point AP50."""
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import COCOEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

from resnet_det.config import get_cfg
from resnet_det.data.datasets import register_voc
from resnet_det.data.toy import TOY_CLASSES, make_toy_data
from resnet_det.detection.evaluation import VOCDetectionEvaluator, build_evaluator


@pytest.fixture(scope="module")
def voc_name(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    make_toy_data(root, kinds=["voc"], num_det_train=2, num_det_val=12, det_size=(96, 128))
    name = "test_eval_voc07_test"
    register_voc(name, root / "VOC2007", "test", 2007, TOY_CLASSES)
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
    register_voc(name, root, "test", 2012, TOY_CLASSES)
    bbox = _evaluate(name)
    assert bbox["AP50-circle"] == pytest.approx(100) and bbox["AP50"] == pytest.approx(100 / 5)
