"""curves.png of a detection run: losses, learning rate and AP read from detectron2's metrics.json."""
import json

import pytest
from PIL import Image

from resnet_det.engine.classification import plot_curves
from resnet_det.utils.plotting import (
    detection_curve_panels,
    plot_detection_curves,
    pretraining_curve_panels,
    read_metrics_json,
)


def _write_detectron2_metrics(path):
    lines = []
    for it in range(19, 200, 20):
        lines.append({"iteration": it, "total_loss": 2.0 - it / 200, "loss_cls": 1.0 - it / 400,
                      "loss_box_reg": 0.5, "lr": 0.02 if it < 150 else 0.002, "time": 0.5})
    # An evaluation lands on the line of its iteration (written again: merged, later wins).
    lines.append({"iteration": 99, "bbox/AP": 10.0, "bbox/AP50": 1.0})
    lines.append({"iteration": 99, "bbox/AP50": 25.0})
    lines.append({"iteration": 199, "bbox/AP": 20.0, "bbox/AP50": 40.0, "bbox/APl": float("nan")})
    text = "\n".join(json.dumps(x) for x in lines) + '\n{"iteration": 219, "total_lo'  # killed
    path.write_text(text)


def test_detection_curves_read_each_loss_lr_and_ap_from_metrics_json(tmp_path):
    metrics = tmp_path / "metrics.json"
    _write_detectron2_metrics(metrics)
    records = read_metrics_json(metrics)
    assert [r["iteration"] for r in records] == list(range(19, 200, 20))
    (loss_label, losses, log), (_, (lr,), _), (_, aps, _) = detection_curve_panels(records)
    assert log and [s[0] for s in losses] == ["total_loss", "loss_box_reg", "loss_cls"]
    assert losses[0][1][0] == (19, pytest.approx(2.0 - 19 / 200)) and len(losses[0][1]) == 10
    assert lr[1][-1] == (199, 0.002)
    assert {label: points for label, points, _ in aps} == {
        "bbox/AP": [(99, 10.0), (199, 20.0)], "bbox/AP50": [(99, 25.0), (199, 40.0)]}
    path = plot_detection_curves(metrics)
    assert path == tmp_path / "curves.png"
    with Image.open(path) as im:
        assert im.size == (1800, 400)  # three 6x4-inch panels at 100 dpi


def test_pretraining_curves_use_the_same_plotting(tmp_path):
    records = [{"iteration": 10, "train_top1_err": 80.0}, {"iteration": 20, "train_top1_err": 60.0,
                                                           "val_top1_err": 70.0}]
    ((ylabel, series, _),) = pretraining_curve_panels(records)
    assert ylabel == "top-1 error (%)" and series[1][1] == [(20, 70.0)]
    with Image.open(plot_curves(records, tmp_path / "curves.png")) as im:
        assert im.size == (600, 400)  # the look pretraining's curves.png always had
