"""Ground truth fed back as predictions scores AP 100 in detectron2's COCO and VOC evaluators."""
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.structures import Boxes, BoxMode, Instances

import resnet_det  # noqa: F401
from projects.toy_data import TOY_CLASSES, make_toy_data
from resnet_det.data import datasets as ds


@pytest.fixture(scope="module")
def toy_datasets(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("toy_eval"))
    make_toy_data(root, kinds=("voc", "coco"), num_det_train=2, num_det_val=16)
    voc = f"{root}/VOC2007"
    ds.register_coco_json("eval_toy_coco_val", f"{root}/coco/annotations/instances_val2017.json",
                          f"{root}/coco/val2017")
    ds.register_voc("eval_toy_voc_test_07", voc, "test", year=2007, class_names=TOY_CLASSES)
    # Same files, year 2012: detectron2 then uses the area (all-point) AP instead of 11-point.
    ds.register_voc("eval_toy_voc_test_12", voc, "test", year=2012, class_names=TOY_CLASSES)
    return root


def predictions(dicts, rng=None):
    """detectron2 model outputs equal to the ground truth, or jittered/dropped/extra if `rng`."""
    inputs, outputs = [], []
    for d in dicts:
        boxes = np.array([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                          for a in d["annotations"]], dtype=np.float64).reshape(-1, 4)
        classes = np.array([a["category_id"] for a in d["annotations"]], dtype=np.int64)
        scores = np.ones(len(boxes))
        if rng is not None:
            size = (boxes[:, 2:] - boxes[:, :2]).repeat(2, axis=0).reshape(-1, 4)
            boxes = boxes + rng.normal(0, 0.12, boxes.shape) * size
            scores = rng.uniform(0.05, 1, len(boxes))
            keep = rng.uniform(size=len(boxes)) > 0.15
            boxes, classes, scores = boxes[keep], classes[keep], scores[keep]
            extra = rng.uniform([0, 0, 0, 0], [d["width"], d["height"]] * 2, (2, 4))
            extra = np.concatenate([extra[:, :2].clip(max=extra[:, 2:]), extra[:, 2:]], axis=1)
            boxes = np.concatenate([boxes, extra])
            classes = np.concatenate([classes, rng.integers(len(TOY_CLASSES), size=2)])
            scores = np.concatenate([scores, rng.uniform(0.05, 0.6, 2)])
        instances = Instances((d["height"], d["width"]))
        instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.scores = torch.tensor(scores, dtype=torch.float32)
        instances.pred_classes = torch.tensor(classes)
        inputs.append({"image_id": d["image_id"], "height": d["height"], "width": d["width"]})
        outputs.append({"instances": instances})
    return inputs, outputs


def run(evaluator, dicts, rng=None):
    evaluator.reset()
    evaluator.process(*predictions(dicts, rng))
    return evaluator.evaluate()["bbox"]


def test_coco_evaluator_gives_ap_100_for_ground_truth(toy_datasets, tmp_path):
    dicts = DatasetCatalog.get("eval_toy_coco_val")
    assert len(dicts) == 16
    evaluator = COCOEvaluator("eval_toy_coco_val", tasks=("bbox",), distributed=False,
                              output_dir=str(tmp_path))
    result = run(evaluator, dicts)
    assert result["AP"] == pytest.approx(100) and result["AP50"] == pytest.approx(100)
    assert result["AP75"] == pytest.approx(100)
    perturbed = run(evaluator, dicts, np.random.default_rng(0))
    assert 5 < perturbed["AP"] < 95 and perturbed["AP"] < perturbed["AP50"]


def test_voc_evaluator_gives_ap_100_for_ground_truth_with_both_ap_definitions(toy_datasets):
    dicts = DatasetCatalog.get("eval_toy_voc_test_07")
    assert len(dicts) == 16 and dicts == DatasetCatalog.get("eval_toy_voc_test_12")
    voc07 = PascalVOCDetectionEvaluator("eval_toy_voc_test_07")
    voc12 = PascalVOCDetectionEvaluator("eval_toy_voc_test_12")
    assert voc07._is_2007 and not voc12._is_2007
    for evaluator in (voc07, voc12):
        result = run(evaluator, dicts)
        assert result["AP50"] == pytest.approx(100) and result["AP"] == pytest.approx(100)
    # On imperfect detections the 11-point (VOC07, as the paper reports) and all-point
    # averages differ, which shows each year selects its own metric.
    ap07 = run(voc07, dicts, np.random.default_rng(1))["AP50"]
    ap12 = run(voc12, dicts, np.random.default_rng(1))["AP50"]
    assert 10 < ap07 < 100 and 10 < ap12 < 100 and ap07 != pytest.approx(ap12, abs=1e-6)
